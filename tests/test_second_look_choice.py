"""Choosing the second look with running talk in the cost (lab.training.second_look, talk).

The events here are written out by hand: what is tested is the arithmetic of the choice (what
the engine would act on for given settings, and that false commands in talk move the
thresholds), not recognition; the real out-of-fold talk is made by lab.training.talk.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from voicecoach.lab.training.second_look import choose_second_look
from voicecoach.lab.training.talk import talk_outcome

MISS = {"stop": 10.0}
FALSE = {"stop": 2.0, "faster": 5.0}


def event(t: float, command: str, *, opening: float = 0.0, anywhere: float | None = None,
          run_max: float = 0.3, file: str = "a.wav", others: dict[str, float] | None = None
          ) -> dict[str, Any]:
    opening_scores = {"stop": opening, **(others or {})}
    return {"file": file, "fold": 0, "emitted_s": t, "command": command, "rivals": [],
            "spotter": run_max, "stop_run_max": run_max, "opening": opening_scores,
            "anywhere": {"stop": opening if anywhere is None else anywhere}}


def talk(events: list[dict[str, Any]], stops: list[tuple[float, float]], hours: float = 1.0
         ) -> dict[str, Any]:
    return {"audio_s": hours * 3600.0, "events": events,
            "stops": [{"file": "a.wav", "start_s": lo, "end_s": hi} for lo, hi in stops]}


def test_a_stop_after_talk_is_caught_only_when_read_anywhere() -> None:
    data = talk([event(10.4, "stop", opening=0.001, anywhere=0.6)], [(9.8, 10.3)])
    limits = {"stop": 0.1, "default": 0.3}
    assert talk_outcome(data, 0.99, limits, "anywhere")["caught"] == 1
    assert talk_outcome(data, 0.99, limits, "opening")["caught"] == 0


def test_false_commands_are_counted_per_hour_and_confident_stops_need_no_look() -> None:
    data = talk([event(50.0, "stop", run_max=0.995), event(80.0, "faster", others={"faster": 0.5}),
                 event(80.5, "faster", others={"faster": 0.5})], [], hours=0.5)
    out = talk_outcome(data, 0.99, {"stop": 0.1, "faster": 0.3, "default": 0.3}, "opening")
    # the second faster falls in the first one's refractory second
    assert out["false"] == {"stop": 1, "faster": 1}
    assert out["false_per_hour"] == 4.0
    assert talk_outcome(data, 1.0, {"stop": 0.1, "default": 0.6}, "opening")["false"] == {}


def test_a_command_other_than_the_candidate_must_clear_the_default_bar() -> None:
    data = talk([event(5.0, "faster", others={"faster": 0.0, "slower": 0.2})], [])
    limits = {"stop": 0.5, "slower": 0.1, "default": 0.3}
    assert talk_outcome(data, 1.0, limits, "opening")["false"] == {}
    assert talk_outcome(data, 1.0, {**limits, "default": 0.15}, "opening")["false"] == {"slower": 1}


def clips() -> list[dict[str, Any]]:
    """Stop clips the verifier hears at 0.02-0.9 and word clips it never hears as stop: on clips
    alone, the lowest stop threshold costs nothing."""
    out = []
    for i in range(20):
        out.append({"command": "stop", "word": "stop", "looks": {"stop": 0.02 + 0.045 * i},
                    "looks_anywhere": {"stop": 0.02 + 0.045 * i}, "probs": [], "stat": 0.3})
    for _ in range(40):
        out.append({"command": "", "word": "up", "looks": {"stop": 0.0}, "probs": [], "stat": 0.1})
    return out


def test_false_stops_in_talk_raise_the_stop_threshold() -> None:
    stat = lambda c: c["stat"]  # noqa: E731
    conf, alone, _ = choose_second_look(clips(), MISS, FALSE, 20.0, stat)
    assert alone["stop"] <= 0.02
    # ten false stops an hour in talk at verifier 0.05: worth losing the one stop clip at 0.02
    noisy = talk([event(30.0 * k, "stop", opening=0.05) for k in range(1, 11)], [])
    conf, chosen, method = choose_second_look(clips(), MISS, FALSE, 20.0, stat, noisy)
    assert 0.05 < chosen["stop"] <= 0.065
    assert talk_outcome(noisy, conf, chosen, method)["false"] == {}


def test_stops_inside_talk_choose_reading_anywhere() -> None:
    stat = lambda c: c["stat"]  # noqa: E731
    said = talk([event(20.0 * k + 0.4, "stop", opening=0.0005, anywhere=0.5) for k in range(1, 9)],
                [(20.0 * k - 0.2, 20.0 * k + 0.3) for k in range(1, 9)])
    _, chosen, method = choose_second_look(clips(), MISS, FALSE, 20.0, stat, said)
    assert method == "anywhere"
    assert talk_outcome(said, 1.0, chosen, method)["caught"] == 8


def test_a_damaged_talk_cache_is_looked_at_again_not_a_traceback(tmp_path: Path) -> None:
    from voicecoach.grammar import load_grammar
    from voicecoach.lab.training.head import labels_for
    from voicecoach.lab.training.talk import talk_events
    from voicecoach.listening.spotter.decide import Decision

    grammar = load_grammar("en")
    args = ([], {}, grammar, labels_for(grammar), Decision(0.9, 0.9), None, 12, tmp_path, 0.2, 0.5)
    first = talk_events(*args)  # type: ignore[arg-type]
    (cached,) = tmp_path.glob("talk-events-*.json")
    cached.write_text('{"audio_s": 36', encoding="utf-8")       # cut short
    assert talk_events(*args) == first  # type: ignore[arg-type]
    assert json.loads(cached.read_text(encoding="utf-8")) == first


def test_the_long_form_counts_one_stop_per_word_and_everything_else_false() -> None:
    from voicecoach.lab.longform import match_stops

    said = [(10.0, 10.5), (30.0, 30.4)]
    acted = [(9.9, "stop"), (10.9, "stop"), (20.0, "faster"), (31.3, "stop"), (31.6, "stop")]
    # 9.9 s is inside the 0.2 s before the first word; 31.6 s is past 1 s after the second
    assert match_stops(acted, said) == [0, None, None, 1, None]


def sure_clips() -> list[dict[str, Any]]:
    """Stop clips: 16 the look hears (0.5), 4 the spotter is sure of (0.97) whose looks only
    lean to stop (0.006); word clips the spotter is as sure of whose looks score 0.002."""
    out = [{"command": "stop", "word": "stop", "looks": {"stop": 0.5}, "stat": 0.6}
           for _ in range(16)]
    out += [{"command": "stop", "word": "stop", "looks": {"stop": 0.006}, "stat": 0.97}
            for _ in range(4)]
    out += [{"command": "", "word": "up", "looks": {"stop": 0.002}, "stat": 0.97}
            for _ in range(40)]
    for c in out:
        c["looks_anywhere"] = c["looks"]
    return out


def test_the_sure_stop_rule_is_kept_only_where_it_pays_and_never_takes_a_word() -> None:
    from voicecoach.lab.training.second_look import choose_sure_stop, second_look_figures

    stat = lambda c: c["stat"]  # noqa: E731
    limits = {"stop": 0.1, "default": 0.3}
    sure = choose_sure_stop(sure_clips(), MISS, FALSE, 20.0, stat, 1.0, limits, "opening")
    assert sure is not None and sure[0] <= 0.97 and 0.002 < sure[1] <= 0.006
    figs = second_look_figures(sure_clips(), 1.0, limits, stat, "opening", sure)
    assert figs["recall"]["stop"]["heard"] == 20
    assert figs["false_accepts_words"]["accepts"] == 0
    # the same leaning looks as false stops in an hour of talk: the rule costs more than it gives
    noisy = talk([event(30.0 * k, "stop", opening=0.006, run_max=0.98) for k in range(1, 31)], [])
    assert choose_sure_stop(sure_clips(), MISS, FALSE, 20.0, stat, 1.0, limits, "opening",
                            noisy) is None
    # in talk the rule acts as the engine would: a sure run with a leaning look is a stop
    said = talk([event(20.4, "stop", opening=0.006, run_max=0.98)], [(19.9, 20.3)])
    assert talk_outcome(said, 1.0, limits, "opening")["caught"] == 0
    assert talk_outcome(said, 1.0, limits, "opening", sure=(0.95, 0.005))["caught"] == 1
    assert talk_outcome(said, 1.0, limits, "opening", sure=(0.99, 0.005))["caught"] == 0


def test_a_sure_rule_for_another_command_reads_the_spotters_score_at_the_candidate() -> None:
    from voicecoach.lab.training.second_look import choose_sure_commands, second_look_figures

    def clip(command: str, word: str, pairs: list[list[float]]) -> dict[str, Any]:
        best = max((v for _, v in pairs), default=0.0)
        return {"command": command, "word": word, "looks": {"no": best} if pairs else {},
                "looks_anywhere": {}, "look_pairs": {"no": pairs} if pairs else {}, "stat": 0.0}

    # "no" heard as "now": 16 clear looks, 4 the spotter raised at 0.97 that score 0.08; the
    # word "now"'s looks score as high but the spotter raised it at 0.6
    clips = [clip("no", "no", [[0.9, 0.5]]) for _ in range(16)]
    clips += [clip("no", "no", [[0.97, 0.08]]) for _ in range(4)]
    clips += [clip("", "now", [[0.6, 0.09]]) for _ in range(40)]
    limits = {"stop": 0.1, "no": 0.2, "default": 0.3}
    stat = lambda c: c["stat"]  # noqa: E731
    rules = choose_sure_commands(clips, MISS, FALSE, 20.0, 1.0, limits, "opening", None)
    assert set(rules) == {"no"}
    spot, bar = rules["no"]
    assert 0.6 < spot <= 0.97 and bar <= 0.08
    figs = second_look_figures(clips, 1.0, limits, stat, "opening", None, rules)
    assert figs["recall"]["no"]["heard"] == 20 and figs["false_accepts_words"]["accepts"] == 0
    # talk: the candidate itself, raised at the sure score, with a look over the lower bar
    said = talk([event(20.4, "no", others={"no": 0.08}, run_max=0.0)], [])
    said["events"][0]["spotter"] = 0.97
    assert talk_outcome(said, 1.0, limits, "opening")["false"] == {}
    assert talk_outcome(said, 1.0, limits, "opening", sure_commands=rules)["false"] == {"no": 1}
    # false "no"s in talk at that score: the rule costs more than it gives, and is left out
    noisy = talk([event(30.0 * k, "no", others={"no": 0.08}) for k in range(1, 31)], [])
    for e in noisy["events"]:
        e["spotter"] = 0.99
    assert choose_sure_commands(clips, MISS, FALSE, 20.0, 1.0, limits, "opening", None,
                                noisy) == {}
