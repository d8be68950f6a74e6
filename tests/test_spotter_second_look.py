"""The second look names the command: the rule that turns the verifier's scores for a candidate
and its rivals into the command acted on (or nothing).

The verifier here is a scripted stand-in that returns given scores, so the rule itself is what
is tested; the real verifier on real people is tested in test_spotter_verify.py and measured
by the locked benchmark.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace

import numpy as np
import pytest

from voicecoach.audio.chunk import AudioChunk
from voicecoach.grammar import load_grammar
from voicecoach.listening.spotter.decide import Decider, Decision, Fired
from voicecoach.listening.spotter.engine import SpotterRecogniser

GRAMMAR = load_grammar("en")


class Scripted:
    """Returns the scores it was given for whatever it is asked, and records what was asked."""

    def __init__(self, scores: Mapping[str, float]) -> None:
        self.given = dict(scores)
        self.asked: list[set[str]] = []
        self.anywhere: list[set[str]] = []
        self.seconds: list[float] = []
        self.looks = 0

    def scores(self, audio: np.ndarray, phrases: Mapping[str, Sequence[str]],
               anywhere: Collection[str] = (), opening: dict[str, float] | None = None
               ) -> dict[str, float]:
        self.looks += 1
        self.seconds.append(len(audio) / 16000)
        self.asked.append(set(phrases))
        self.anywhere.append(set(anywhere))
        return {c: self.given.get(c, 0.0) for c in phrases}

    def close(self) -> None:
        pass


def spotter(scores: Mapping[str, float], state: str) -> tuple[SpotterRecogniser, Scripted]:
    verifier = Scripted(scores)
    rec = SpotterRecogniser(GRAMMAR, verifier=verifier)  # type: ignore[arg-type]
    rec.set_commands(GRAMMAR.commands_for(state))
    return rec, verifier


def candidate(command: str, rivals: tuple[str, ...]) -> Fired:
    return Fired(command, command, 0.3, 1.0, 1.2, needs_look=True, rivals=rivals)


def test_a_stop_candidate_the_verifier_hears_as_start_is_acted_on_as_start() -> None:
    rec, verifier = spotter({"start": 0.9, "stop": 0.0}, "idle")
    got = rec._second_look(candidate("stop", ("start", "help")))
    assert got is not None and got.command == "start" and got.phrase == "start"
    assert verifier.asked == [{"stop", "start", "help"}]


def test_stop_wins_whenever_it_clears_its_threshold() -> None:
    limits = SpotterRecogniser(GRAMMAR).verify_thresholds
    rec, _ = spotter({"stop": limits["stop"], "start": 0.99}, "idle")
    got = rec._second_look(candidate("stop", ("start", "help")))
    assert got is not None and got.command == "stop"
    # named from another candidate, stop must clear the default bar too (its own threshold was
    # chosen for stop candidates the spotter raised)
    bar = max(limits["stop"], limits["default"])
    for score, named in ((bar, "stop"), (bar * 0.9, "faster")):
        rec, _ = spotter({"faster": 0.95, "stop": score}, "backward")
        got = rec._second_look(candidate("faster", ("slower", "pause")))
        assert got is not None and got.command == named


def test_stop_is_always_asked_even_when_not_a_rival() -> None:
    rec, verifier = spotter({}, "backward")
    assert rec._second_look(candidate("faster", ("slower", "pause"))) is None
    assert verifier.asked == [{"faster", "slower", "pause", "stop"}]


@pytest.mark.parametrize("heard", [{}, {"faster": 0.01, "slower": 0.01}])
def test_nothing_is_acted_on_when_no_score_clears_its_threshold(heard: dict[str, float]) -> None:
    rec, _ = spotter(heard, "backward")
    assert rec._second_look(candidate("faster", ("slower", "pause"))) is None


def test_the_best_heard_of_several_is_named() -> None:
    rec, _ = spotter({"faster": 0.5, "slower": 0.9}, "backward")
    got = rec._second_look(candidate("faster", ("slower", "pause")))
    assert got is not None and got.command == "slower"


def test_rivals_are_the_next_best_commands_the_state_accepts() -> None:
    from voicecoach.listening.spotter.model import load_model, phrases_of

    model = load_model()
    decider = Decider(model.labels, phrases_of(GRAMMAR), Decision.from_card(model.decision),
                      verifying=True)
    decider.set_commands(GRAMMAR.commands_for("idle"))
    probs = np.zeros(len(model.labels))
    for label, p in (("stop", 0.55), ("start", 0.3), ("faster", 0.1), ("help", 0.05)):
        probs[model.labels.index(label)] = p
    fired = []
    for k in range(4):
        fired += decider.step(probs * (1.0 if k < 2 else 0.9), 0.08 * (k + 1))
    assert fired and fired[0].command == "stop" and fired[0].needs_look
    # faster is not a command of the idle state: help is the runner-up after start
    assert fired[0].rivals == ("start", "help")



def test_only_the_commands_the_card_reads_anywhere_are_asked_anywhere() -> None:
    rec, verifier = spotter({"stop": 0.0, "start": 0.0}, "idle")
    rec.verify_anywhere = frozenset({"stop"})
    rec._second_look(candidate("start", ("help",)))
    assert verifier.anywhere == [{"stop"}]
    rec.verify_anywhere = frozenset()
    rec._second_look(candidate("start", ("help",)))
    assert verifier.anywhere[-1] == set()


def test_a_look_over_the_coachs_speech_reads_its_window_at_the_opening_only() -> None:
    """Told where the coach's speech is, a look with the coach within OVER_SPEECH_SPAN_S
    reads the last OVER_SPEECH_LOOK_S and stop at the transcript's opening only (read
    anywhere, the coach's own words passed as stops); a look clear of it, or with nothing told,
    reads LOOK_S, stop where the card says."""
    from voicecoach.audio.chunk import split_pcm
    from voicecoach.listening.spotter.engine import OVER_SPEECH_LOOK_S, OVER_SPEECH_SPAN_S
    from voicecoach.listening.spotter.verify import LOOK_S

    assert OVER_SPEECH_LOOK_S <= LOOK_S <= OVER_SPEECH_SPAN_S
    rec, verifier = spotter({}, "backward")
    rec.verify_anywhere = frozenset({"stop"})
    hum = np.random.default_rng(1).normal(0.0, 30.0, 16000 * 6).astype(np.int16)
    for chunk in split_pcm(hum.tobytes(), 0.1):
        rec.accept(chunk)
    verifier.seconds.clear()
    now = rec._steps * 0.08  # the look's end (audio time; the stream began at 0)
    told: list[tuple[float, float]] = []
    rec.hear_coach(lambda: told)
    span = OVER_SPEECH_SPAN_S
    for spans, seconds, anywhere in (([], LOOK_S, {"stop"}),
                                     ([(0.0, now - span - 0.5)], LOOK_S, {"stop"}),  # before
                                     ([(0.0, now - span + 0.3)], OVER_SPEECH_LOOK_S, set()),
                                     ([(now - 1.0, float("inf"))], OVER_SPEECH_LOOK_S, set())):
        told[:] = spans
        rec._second_look(candidate("faster", ("slower", "pause")))
        assert verifier.seconds[-1] == pytest.approx(seconds, abs=1 / 16000), spans
        assert verifier.anywhere[-1] == anywhere, spans
    rec.hear_coach(None)
    rec._second_look(candidate("faster", ("slower", "pause")))
    assert verifier.seconds[-1] == pytest.approx(LOOK_S, abs=1 / 16000)
    assert verifier.anywhere[-1] == {"stop"}


def test_over_the_coachs_speech_a_stop_candidate_clears_the_lower_over_speech_bar() -> None:
    """A stop candidate looked at over the coach's own speech needs only the over-speech bar (if
    lower than the card's); clear of the coach, or with no bar set, it needs the card's. The bar
    never applies to a stop named from another command's candidate below the default bar, and
    never raises the card's threshold."""
    card = SpotterRecogniser(GRAMMAR).verify_thresholds["stop"]
    low = card / 5
    between = (low + card) / 2
    rec, _ = spotter({"stop": between}, "backward")
    rec.over_speech_stop_bar = low
    rec.hear_coach(lambda: [(0.0, float("inf"))])
    assert rec.stop_bar(True) == pytest.approx(low) and rec.stop_bar(False) == pytest.approx(card)
    got = rec._second_look(candidate("stop", ("faster", "pause")))
    assert got is not None and got.command == "stop"
    rec.hear_coach(None)                                   # nobody says where the coach is
    assert rec._second_look(candidate("stop", ("faster", "pause"))) is None
    rec.hear_coach(lambda: [(0.0, float("inf"))])
    rec.over_speech_stop_bar = None                        # no bar: the card's
    assert rec._second_look(candidate("stop", ("faster", "pause"))) is None
    rec.over_speech_stop_bar = card * 2                    # a higher bar does not raise it
    assert rec.stop_bar(True) == pytest.approx(card)
    # named from a "faster" candidate, stop must still clear the default bar
    rec.over_speech_stop_bar = low
    default = rec.verify_thresholds["default"]
    rec, _ = spotter({"stop": max(low, default) * 0.9, "faster": 0.0}, "backward")
    rec.over_speech_stop_bar = low
    rec.hear_coach(lambda: [(0.0, float("inf"))])
    assert rec._second_look(candidate("faster", ("slower", "pause"))) is None


def test_a_stop_run_the_spotter_is_sure_of_needs_only_the_sure_bar_but_not_over_the_coach() -> None:
    """With the card's sure-stop rule: a stop candidate whose run reached the sure level and
    whose look scores from the sure bar up (under the stop bar) is acted on as stop; a look
    under the sure bar, or any look over the coach's speech, is not."""
    card = SpotterRecogniser(GRAMMAR).verify_thresholds["stop"]

    def acted(look: float, over: bool) -> list[str]:
        rec, _ = spotter({"stop": look}, "backward")
        rec.decider.decision = replace(rec.decider.decision, sure_stop_threshold=0.8,
                                       sure_stop_bar=card / 4)
        if over:  # (the over-speech bar left out: the card's applies there too)
            rec.hear_coach(lambda: [(0.0, float("inf"))])
            rec.over_speech_stop_bar = None
        labels = rec.model.labels
        quiet, sure = np.zeros(len(labels)), np.zeros(len(labels))
        quiet[labels.index("_noise_")] = sure[labels.index("_noise_")] = 1.0
        sure[labels.index("stop")], sure[labels.index("_noise_")] = 0.9, 0.1
        out = []
        for j, p in enumerate([quiet, sure, sure, sure, quiet, quiet]):
            for f in rec.decider.step(p, (j + 1) * 0.08):
                got = rec._second_look(f) if f.needs_look else f
                out += [got.command] if got is not None else []
        return out

    assert rec_conf_below_one()
    assert acted(card / 2, over=False) == ["stop"]
    assert acted(card / 8, over=False) == []
    assert acted(card / 2, over=True) == []


def rec_conf_below_one() -> bool:
    """The shipped card never acts on the spotter's stop alone under 0.9 (else the test above
    would not reach the look)."""
    dec = SpotterRecogniser(GRAMMAR).decider.decision
    return dec.threshold_for("stop", verifying=True) > 0.9


def test_a_candidate_the_spotter_raised_sure_of_itself_needs_only_its_sure_bar() -> None:
    """With the card's sure rule for "no": a "no" candidate raised at the sure score or more
    is acted on from the lower bar; raised under it, or a rival command, needs the usual bar."""
    own = SpotterRecogniser(GRAMMAR).verify_thresholds["no"]
    rec, _ = spotter({"no": own / 2}, "briefing")
    rec.verify_sure = {"no": (0.95, own / 4)}
    sure = Fired("no", "no", 0.97, 1.0, 1.2, needs_look=True, rivals=("yes", "help"))
    unsure = replace(sure, score=0.9)
    got = rec._second_look(sure)
    assert got is not None and got.command == "no"
    assert rec._second_look(unsure) is None
    rec, _ = spotter({"no": own / 8}, "briefing")
    rec.verify_sure = {"no": (0.95, own / 4)}
    assert rec._second_look(sure) is None                      # under the sure bar
    # a rival is never named through another command's sure rule
    rec, _ = spotter({"yes": own / 2, "no": 0.0}, "briefing")
    rec.verify_sure = {"no": (0.95, own / 4), "yes": (0.95, own / 4)}
    assert rec._second_look(sure) is None


class Failing(Scripted):
    """A verifier whose runtime fails while listening (ctranslate2 raising mid-session)."""

    def scores(self, audio: np.ndarray, phrases: Mapping[str, Sequence[str]],
               anywhere: Collection[str] = (), opening: dict[str, float] | None = None
               ) -> dict[str, float]:
        self.looks += 1
        raise RuntimeError("std::bad_alloc")


@pytest.mark.parametrize(("command", "acted"), [("stop", "stop"), ("faster", None)])
def test_a_verifier_failing_mid_session_turns_the_look_off_and_never_loses_that_stop(
        command: str, acted: str | None, caplog: pytest.LogCaptureFixture) -> None:
    verifier = Failing({})
    rec = SpotterRecogniser(GRAMMAR, verifier=verifier)  # type: ignore[arg-type]
    rec.set_commands(GRAMMAR.commands_for("backward"))
    got = rec._second_look(candidate(command, ()))
    assert (got.command if got else None) == acted
    assert rec.verifier is None and not rec.decider.verifying
    assert rec.look_off is not None and "bad_alloc" in rec.look_off
    assert [r.message for r in caplog.records if "second look failed" in r.message]
    # from now on the spotter decides alone: nothing more is asked of the verifier
    rec.accept(AudioChunk(np.zeros(16000, np.int16).tobytes(), 0.0))
    assert verifier.looks == 1


def test_a_turned_down_stop_is_looked_at_again_once_its_word_has_ended() -> None:
    """With the card's relook_end_s, a stop candidate whose look was turned down waits for the
    word's end (its last sound within 30 dB of its loudest, not the clip's background after it)
    and is looked at again that long after; a first look that came that late saw the whole word
    and is not repeated."""
    from voicecoach.audio.chunk import split_pcm

    rec, verifier = spotter({"stop": 0.0}, "backward")
    rec.look_probe = None
    rec.decider.decision = replace(rec.decider.decision, relook_end_s=0.2)
    rng = np.random.default_rng(5)
    audio = rng.standard_normal(int(3.0 * 16000)) * 30.0  # room tone
    audio[int(1.0 * 16000):int(1.3 * 16000)] *= 300.0     # the word
    audio[int(1.3 * 16000):int(1.6 * 16000)] *= 4.0       # background after it
    for chunk in split_pcm(np.clip(audio, -32768, 32767).astype("<i2").tobytes(), 0.1):
        rec.accept(chunk)
    first = Fired("stop", "stop", 0.3, 1.2, 1.2, needs_look=True)
    assert rec._second_look(first) is None
    assert rec.decider.relook_waiting() == pytest.approx(1.2)
    due = []
    for step in range(14, 22):  # 1.12 .. 1.68 s
        end_s = round(step * 0.08, 2)
        rec._time_relook(end_s)
        if rec.decider.relook_waiting() is None:
            due.append(end_s)
            break
    assert due == [1.52]  # the first step 0.2 s after the word's end (1.3 s), not the run's (1.6 s)
    # the first look already 0.2 s past the word's end: no second one
    rec.decider.reset()
    late = Fired("stop", "stop", 0.3, 1.2, 1.52, needs_look=True)
    assert rec._second_look(late) is None
    assert rec.decider.relook_waiting() is None
    # the card without relook_end_s: nothing waits
    rec.decider.decision = replace(rec.decider.decision, relook_end_s=None)
    assert rec._second_look(first) is None and rec.decider.relook_waiting() is None
