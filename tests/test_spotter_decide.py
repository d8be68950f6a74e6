"""The spotter's decision rules on hand-made probability streams (no audio, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from voicecoach.listening.spotter.decide import Decider, Decision

LABELS = ["_noise_", "_other_", "stop", "stop now", "faster", "yes"]
PHRASES = {"stop": ["stop", "stop now"], "faster": ["faster"], "yes": ["yes"]}


def probs(**mass: float) -> np.ndarray:
    p = np.zeros(len(LABELS))
    for label, value in mass.items():
        p[LABELS.index(label.replace("_", " ") if label == "stop_now" else label)] = value
    p[LABELS.index("_other_")] += max(0.0, 1.0 - p.sum())
    return p


def run(decider: Decider, stream: list[np.ndarray]) -> list[tuple[str, float]]:
    out = []
    for j, p in enumerate(stream):
        out += [(f.command, round(f.emitted_s, 2)) for f in decider.step(p, (j + 1) * 0.08)]
    return out


def make(**kw: float) -> Decider:
    decision = Decision(stop_threshold=kw.pop("stop", 0.6), threshold=kw.pop("t", 0.8),
                        smooth=int(kw.pop("smooth", 1)), confirm=int(kw.pop("confirm", 2)),
                        refractory_s=kw.pop("refractory", 1.0))
    return Decider(LABELS, PHRASES, decision)


def test_stop_fires_on_the_first_confident_step_and_sums_its_phrases() -> None:
    d = make()
    quiet = [probs()] * 3
    # 0.35 + 0.35 over two stop phrases: 0.7 >= 0.6 on the 4th step.
    assert run(d, [*quiet, probs(stop=0.35, stop_now=0.35), probs()]) == [("stop", 0.32)]


def test_other_commands_need_a_second_look() -> None:
    d = make()
    once = run(d, [probs(), probs(faster=0.9), probs()])
    assert once == []
    d.reset()
    twice = run(d, [probs(), probs(faster=0.9), probs(faster=0.9), probs()])
    assert twice == [("faster", 0.24)]


def test_only_the_states_commands_fire_but_stop_always_does() -> None:
    d = make()
    d.set_commands(["yes"])
    stream = [probs(faster=0.95)] * 4 + [probs()] * 20 + [probs(stop=0.9)]
    assert run(d, stream) == [("stop", 2.0)]


def test_refractory_period_holds_back_others_but_never_stop() -> None:
    d = make(refractory=1.0)
    stream = [probs(yes=0.9)] * 2 + [probs(faster=0.9)] * 4 + [probs(stop=0.9)]
    fired = run(d, stream)
    assert fired == [("yes", 0.16), ("stop", 0.56)]


def test_smoothing_averages_the_last_steps() -> None:
    d = make(smooth=2, stop=0.6)
    # one step at 0.9 between quiet steps averages to 0.45: no stop.
    assert run(d, [probs(), probs(stop=0.9), probs()]) == []
    d.reset()
    assert run(d, [probs(), probs(stop=0.9), probs(stop=0.5)]) == [("stop", 0.24)]


def test_reset_forgets_a_pending_second_look() -> None:
    d = make()
    run(d, [probs(faster=0.9)])
    d.reset()
    assert run(d, [probs(faster=0.9), probs()]) == []


@pytest.mark.parametrize("value", [0.0, 0.59])
def test_below_threshold_never_fires(value: float) -> None:
    d = make()
    assert run(d, [probs(stop=value)] * 30) == []


# -- with a verifier: candidates, looks, confident stops --------------------------------------
def make_verifying(**kw: float) -> Decider:
    decision = Decision(stop_threshold=0.6, threshold=0.8, smooth=1, confirm=2, refractory_s=1.0,
                        stop_candidate=kw.pop("cand", 0.2), verified_stop_threshold=kw.pop("conf", 0.9),
                        verified_threshold=kw.pop("vt", 0.5), look_after=int(kw.pop("after", 2)),
                        peak_look=bool(kw.pop("peak", False)),
                        sure_stop_threshold=kw.pop("sure", None), sure_stop_bar=kw.pop("bar", None),
                        relook_after=int(kw.pop("relook", 0)), relook_end_s=kw.pop("end", None))
    return Decider(LABELS, PHRASES, decision, verifying=True)


def fired(decider: Decider, stream: list[np.ndarray]) -> list[tuple[str, float, bool]]:
    out = []
    for j, p in enumerate(stream):
        out += [(f.command, round(f.emitted_s, 2), f.needs_look) for f in decider.step(p, (j + 1) * 0.08)]
    return out


def test_a_confident_stop_never_waits_for_a_look() -> None:
    d = make_verifying()
    assert fired(d, [probs(), probs(stop=0.95), probs()]) == [("stop", 0.16, False)]


def test_a_stop_candidate_is_looked_at_once_when_its_score_stops_rising() -> None:
    d = make_verifying(after=4)
    # rises 0.3 -> 0.5, falls: looked at on the step it fell (peak passed), once for the run
    stream = [probs(), probs(stop=0.3), probs(stop=0.5), probs(stop=0.4), probs(stop=0.3), probs()]
    assert fired(d, stream) == [("stop", 0.32, True)]
    d = make_verifying(after=2)
    # still rising: looked at ``look_after`` steps after it crossed, at the latest
    rising = [probs(), probs(stop=0.3), probs(stop=0.4), probs(stop=0.5), probs(stop=0.6), probs()]
    assert fired(d, rising) == [("stop", 0.24, True)]


def test_a_rejected_run_is_not_looked_at_again_but_a_confident_stop_still_fires() -> None:
    d = make_verifying()
    stream = [probs(), probs(stop=0.3), probs(stop=0.3), probs(stop=0.3), probs(stop=0.95), probs()]
    got = fired(d, stream)
    assert got[0] == ("stop", 0.24, True) and got[-1] == ("stop", 0.4, False) and len(got) == 2
    # a new run after the score fell under the candidate level is looked at again
    d.reset()
    again = [probs(), probs(stop=0.3), probs(stop=0.3), probs(), probs(stop=0.3), probs(stop=0.3)]
    assert [f[1] for f in fired(d, again)] == [0.24, 0.48]


def test_with_peak_look_a_run_looked_at_while_rising_is_looked_at_again_at_its_peak() -> None:
    """peak_look: a candidate looked at while its score still rose (the word may not have
    ended) gets one more look when the score stops rising; a run first looked at its peak,
    or without peak_look, gets one look."""
    rising = [probs(), probs(stop=0.3), probs(stop=0.4), probs(stop=0.5), probs(stop=0.7),
              probs(stop=0.8), probs(stop=0.6), probs(stop=0.5), probs(stop=0.4), probs()]
    assert fired(make_verifying(after=2, peak=True), rising) == [("stop", 0.24, True),
                                                                ("stop", 0.56, True)]
    assert fired(make_verifying(after=2), rising) == [("stop", 0.24, True)]
    at_peak = [probs(), probs(stop=0.3), probs(stop=0.5), probs(stop=0.4), probs(stop=0.3),
               probs(stop=0.5), probs(stop=0.3), probs()]
    assert fired(make_verifying(after=4, peak=True), at_peak) == [("stop", 0.32, True)]
    # accepted at the first look: the run fires nothing more
    d = make_verifying(after=2, peak=True)
    got = []
    for j, p in enumerate(rising):
        for f in d.step(p, (j + 1) * 0.08):
            got.append(round(f.emitted_s, 2))
            d.accept(f)
    assert got == [0.24]
    # a new run after the score fell under the candidate level starts afresh
    d = make_verifying(after=2, peak=True)
    twice = rising + rising
    assert [f[1] for f in fired(d, twice)] == [0.24, 0.56, 1.04, 1.36]


def looked(decider: Decider, stream: list[np.ndarray], verifier_stop: float
           ) -> list[tuple[str, float, bool]]:
    """As the engine does: every stop candidate is looked at, its look does not clear the stop
    bar and scores ``verifier_stop``; what is acted on."""
    out = []
    for j, p in enumerate(stream):
        for f in decider.step(p, (j + 1) * 0.08):
            if not f.needs_look:
                out.append((f.command, round(f.emitted_s, 2), False))
            elif (sure := decider.looked_at_stop(f, verifier_stop)) is not None:
                out.append((sure.command, round(sure.emitted_s, 2), True))
    return out


def test_a_run_the_spotter_is_sure_of_needs_less_from_the_look() -> None:
    peaked = [probs(), probs(stop=0.3), probs(stop=0.8), probs(stop=0.7), probs(stop=0.5), probs()]
    # the run reached 0.8 before its look (at 0.32 s, when it fell): the lower bar is enough now
    assert looked(make_verifying(after=4, sure=0.75, bar=0.004), peaked, 0.005) == [
        ("stop", 0.32, True)]
    # a look under the lower bar, a run that never reached the sure level, or no rule: nothing
    assert looked(make_verifying(after=4, sure=0.75, bar=0.004), peaked, 0.003) == []
    assert looked(make_verifying(after=4, sure=0.85, bar=0.004), peaked, 0.005) == []
    assert looked(make_verifying(after=4), peaked, 0.5) == []
    # looked at while rising (look_after): acted on at the step the run reaches the level
    rising = [probs(), probs(stop=0.3), probs(stop=0.4), probs(stop=0.6), probs(stop=0.8),
              probs(stop=0.85), probs(stop=0.3), probs()]
    # (looked at 0.24 s at 0.4)
    assert looked(make_verifying(after=2, sure=0.75, bar=0.004), rising, 0.005) == [
        ("stop", 0.4, False)]
    # the run ended under the level: its lean is forgotten, the next run starts afresh
    low = [probs(), probs(stop=0.3), probs(stop=0.4), probs(stop=0.5), probs()]
    d = make_verifying(after=2, sure=0.75, bar=0.004)
    assert looked(d, low, 0.005) == []
    assert looked(d, [probs(stop=0.1), probs(stop=0.8), probs()], 0.0) == []
    # one stop per run: once acted on, the rest of the run fires nothing
    d = make_verifying(after=2, sure=0.75, bar=0.004)
    assert [f[1] for f in looked(d, rising + [probs(stop=0.85)] * 3, 0.005)] == [0.4]


def test_a_turned_down_stop_look_is_looked_at_once_more_later_whatever_its_score() -> None:
    word = [probs(), probs(stop=0.3), probs(stop=0.6), probs(stop=0.4), probs(), probs(),
            probs(), probs(), probs()]
    # looked at 0.32 s (the score fell), turned down; looked at again 3 steps later though the
    # score has fallen under the candidate level since; a re-look turned down is not repeated
    got = looked(make_verifying(after=4, relook=3), word, 0.0)
    assert got == []
    d = make_verifying(after=4, relook=3)
    raised = []
    for j, p in enumerate(word):
        for f in d.step(p, (j + 1) * 0.08):
            raised.append((round(f.emitted_s, 2), f.relook))
            d.looked_at_stop(f, 0.0)
    assert raised == [(0.32, False), (0.56, True)]
    # without relook_after: one look
    d = make_verifying(after=4)
    assert [round(f.emitted_s, 2) for j, p in enumerate(word) for f in d.step(p, (j + 1) * 0.08)
            if d.looked_at_stop(f, 0.0) is None] == [0.32]
    # a stop accepted in between (the first look cleared, or a confident one): no re-look
    d = make_verifying(after=4, relook=3)
    first = [f for j, p in enumerate(word[:4]) for f in d.step(p, (j + 1) * 0.08)]
    d.looked_at_stop(first[0], 0.0)
    assert [f.relook for j, p in enumerate(word[4:], 4) for f in d.step(p, (j + 1) * 0.08)] == [True]
    d = make_verifying(after=4, relook=3)
    first = [f for j, p in enumerate(word[:4]) for f in d.step(p, (j + 1) * 0.08)]
    d.accept(first[0])
    assert [f for j, p in enumerate(word[4:], 4) for f in d.step(p, (j + 1) * 0.08)] == []
    # with the sure rule: the re-look's lean counts with the run's highest score, though the
    # run ended before it
    d = make_verifying(after=4, relook=3, sure=0.55, bar=0.004)
    acted = []
    for j, p in enumerate(word):
        for f in d.step(p, (j + 1) * 0.08):
            verdict = d.looked_at_stop(f, 0.005 if f.relook else 0.0)
            acted += [round(f.emitted_s, 2)] if verdict is not None else []
    assert acted == [0.56]


def test_a_turned_down_stop_look_timed_by_the_words_end_waits_for_the_engine_to_say_so() -> None:
    word = [probs(), probs(stop=0.3), probs(stop=0.6), probs(stop=0.4)] + [probs()] * 8
    d = make_verifying(after=4, end=0.2)
    raised = []
    for j, p in enumerate(word):
        t = round((j + 1) * 0.08, 2)
        if t == 0.72:  # the engine hears the word has ended
            assert d.relook_waiting() == pytest.approx(0.32)  # the first look's rose_s
            d.relook_now(t)
        for f in d.step(p, t):
            raised.append((round(f.emitted_s, 2), f.relook))
            d.looked_at_stop(f, 0.0)
    # the first look at 0.32 s; the second at the step the engine named, however late, not 3
    # steps after; a second look turned down is not repeated
    assert raised == [(0.32, False), (0.72, True)]
    assert d.relook_waiting() is None
    # dropped (the first look saw the whole word): one look only
    d = make_verifying(after=4, end=0.2)
    looks = 0
    for j, p in enumerate(word):
        for f in d.step(p, (j + 1) * 0.08):
            looks += 1
            d.looked_at_stop(f, 0.0)
            d.drop_relook()
    assert looks == 1 and d.relook_waiting() is None
    # a stop accepted at the first look: nothing waits
    d = make_verifying(after=4, end=0.2)
    first = [f for j, p in enumerate(word[:4]) for f in d.step(p, (j + 1) * 0.08)]
    d.accept(first[0])
    assert d.relook_waiting() is None


def test_other_commands_are_candidates_and_refractory_starts_only_when_accepted() -> None:
    d = make_verifying()
    stream = [probs(), probs(faster=0.6), probs(faster=0.6), probs()]
    got = [f for j, p in enumerate(stream) for f in d.step(p, (j + 1) * 0.08)]
    assert [(f.command, f.needs_look) for f in got] == [("faster", True)]
    # not accepted: a stop candidate right after is still raised, and "yes" may fire
    after = [probs(yes=0.6), probs(yes=0.6)]
    got2 = [f.command for j, p in enumerate(after) for f in d.step(p, 0.4 + j * 0.08)]
    assert got2 == ["yes"]
    d.accept(got[0])
    late = [probs(yes=0.6), probs(yes=0.6), probs()]
    assert [f for j, p in enumerate(late) for f in d.step(p, 0.6 + j * 0.08)] == []


def test_without_a_verifier_nothing_needs_a_look() -> None:
    d = make()
    stream = [probs(), probs(stop=0.3), probs(stop=0.5), probs(faster=0.9), probs(faster=0.9)]
    out = [f for j, p in enumerate(stream) for f in d.step(p, (j + 1) * 0.08)]
    assert [(f.command, f.needs_look) for f in out] == [("faster", False)]


def test_a_stop_score_that_stays_high_fires_once_and_a_new_word_fires_again() -> None:
    d = make(refractory=1.0)
    held = [probs(stop=0.9)] * 25                      # 2 s of one long stop run
    assert run(d, [probs(), *held]) == [("stop", 0.16)]
    d.reset()
    again = [probs(), probs(stop=0.9), *[probs(stop=0.2)] * 2, *[probs()] * 14, probs(stop=0.9)]
    # the run ended (score under half the level) and 1.5 s passed: the second stop fires
    assert run(d, again) == [("stop", 0.16), ("stop", 1.52)]


def test_over_the_coach_a_lower_stop_candidate_level_is_looked_at_and_only_there() -> None:
    """``over_stop_candidate``: while the step is over the coach's speech, a stop run from that
    level is a candidate; away from the coach, or without a verifier, the card's level holds."""
    quiet = [probs(), probs(stop=0.15), probs(stop=0.15), probs(stop=0.15), probs()]

    def over_run(d: Decider, over: bool) -> list[tuple[str, float, bool]]:
        return [(f.command, round(f.emitted_s, 2), f.needs_look)
                for j, p in enumerate(quiet) for f in d.step(p, (j + 1) * 0.08, over=over)]

    d = make_verifying()
    assert over_run(d, over=True) == []            # no level of its own: the card's 0.2
    d.over_stop_candidate = 0.1
    assert over_run(d, over=False) == []           # away from the coach: the card's 0.2
    assert d.stop_candidate() == pytest.approx(0.2)
    d.reset()
    assert over_run(d, over=True) == [("stop", 0.24, True)]
    assert d.stop_candidate() == pytest.approx(0.1)
    assert d.stop_candidate(over=False) == pytest.approx(0.2)   # asked, not the last step's
    d.over_stop_candidate = 0.5                    # never above the card's own level
    assert d.stop_candidate() == pytest.approx(0.2)
    plain = make()
    plain.over_stop_candidate = 0.1                # no verifier: no candidates at all
    assert [f for j, p in enumerate(quiet) for f in plain.step(p, (j + 1) * 0.08, over=True)] == []


def test_a_stop_dropped_as_the_coachs_voice_does_not_hold_back_the_users_stop() -> None:
    def stream(d: Decider, release: bool) -> list[tuple[str, float]]:
        out = []
        # the coach's echo scores a confident stop at 0.08 s, the run ends, and the user's
        # own stop comes 0.4 s later, inside the refractory second
        scores = [0.9, 0.0, 0.0, 0.0, 0.0, 0.9, 0.9, 0.0]
        for j, s in enumerate(scores):
            fired = d.step(probs(stop=s), (j + 1) * 0.08)
            out += [(f.command, round(f.emitted_s, 2)) for f in fired]
            if release and fired and j == 0:
                d.release_stop()          # the duplex gate dropped it as echo
        return out

    assert stream(make(), release=False) == [("stop", 0.08)]
    assert stream(make(), release=True) == [("stop", 0.08), ("stop", 0.48)]
    # the dropped run itself still fires nothing more, released or not
    d = make()
    assert run(d, [probs(stop=0.9)]) == [("stop", 0.08)]
    d.release_stop()
    assert [f.command for f in d.step(probs(stop=0.9), 0.16)] == []


@pytest.mark.parametrize("verifying", [False, True])
def test_one_long_faster_is_one_faster_but_a_second_one_is_heard(verifying: bool) -> None:
    d = make(refractory=1.0)
    d.verifying = verifying

    def feed(scores: list[float], start: int) -> list[str]:
        out = []
        for j, s in enumerate(scores):
            for f in d.step(probs(faster=s), (start + j + 1) * 0.08):
                if f.needs_look:
                    d.accept(f)         # the second look agrees every time
                out.append(f.command)
        return out

    held = [0.9] * 16                        # 1.28 s above the threshold: one utterance
    assert feed(held, 0) == ["faster"]
    # the score falls away, and a second "faster" after the refractory second is heard
    assert feed([0.0] * 4 + [0.9] * 3, 16) == ["faster"]
