"""The spotter's second look: Whisper's verdict on a candidate before it is acted on.

A mixin of :class:`voicecoach.listening.spotter.engine.SpotterRecogniser` (the engine keeps the
stream, the envelope and the decider; this part reads the kept audio for the verifier): which
command a candidate becomes, an enrolled voice's hit, a confident stop looked at again for the
duplex gate, the bars over the coach's own speech, and the re-look timed by a word's end.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from voicecoach.errors import VoicecoachError
from voicecoach.listening.recogniser import Detection
from voicecoach.listening.spotter.decide import STOP, Decider, Fired, sure_enough
from voicecoach.listening.spotter.enroll import EnrolledScorer, UserHit
from voicecoach.listening.spotter.features import STEP_S
from voicecoach.listening.spotter.look_probe import LookProbe
from voicecoach.listening.spotter.loudness import MAX_PHRASE_S
from voicecoach.listening.spotter.verify import LOOK_S, WhisperVerifier, look_window

_LOGGER = logging.getLogger("voicecoach.listening.spotter.engine")

OVER_SPEECH_LOOK_S = 1.2
"""While the coach's own speech is within :data:`OVER_SPEECH_SPAN_S` of a look
(``coach_speech``), the look reads only this much before the candidate: the word the spotter
raised, not the coach's leftover words before it, which open Whisper's transcript and take a
user's stop's opening probability down to nothing (chosen on dev speakers with
lab.bench.barge_in; README). Since session 9 every look reads this much (:data:`LOOK_S`)."""
OVER_SPEECH_SPAN_S = 2.0
"""A look is over the coach's speech if the coach spoke within this much before it (the look
window the over-speech rules were chosen with)."""
OVER_SPEECH_STOP_BAR: float | None = 0.004
"""The verifier's stop threshold for a look whose window holds the coach's own speech, when
lower than the card's (None: the card's everywhere). The card's bar was chosen on clips and
room talk with no coach in them; over the coach, Whisper's transcript opens on the coach's
leftover words and a user's stop scores far lower. Chosen on dev speakers' barge-in trials by
``python -m voicecoach.lab.bench.barge_bar`` (the spotter's costs, no look at the coach's own
voice let through; README "Barge-in with real people", session 9)."""


class SecondLook:
    """The second look's part of the spotter (see the module's docstring)."""

    # what it reads of the engine (SpotterRecogniser sets them)
    decider: Decider
    verifier: WhisperVerifier | None
    verify_thresholds: dict[str, float]
    verify_anywhere: frozenset[str]
    verify_sure: dict[str, tuple[float, float]]
    look_probe: LookProbe | None
    look_off: str | None
    over_speech_stop_bar: float | None
    last_look_over: bool
    coach_speech: Callable[[], Sequence[tuple[float, float]]] | None
    enrolled: EnrolledScorer
    verify_enrolled: bool
    _phrases: dict[str, list[str]]
    _origin_s: float | None
    _audio: np.ndarray
    _fed: int
    _steps: int

    if TYPE_CHECKING:
        def phrase_bounds(self, emitted_s: float, rose_s: float) -> tuple[float, float]: ...

        def word_end(self, emitted_s: float, rose_s: float) -> float: ...

    def _coach_over(self, start_s: float, end_s: float) -> bool:
        """True if the coach's speech (as told) overlaps [start_s, end_s]."""
        if self.coach_speech is None:
            return False
        return any(a <= end_s and b >= start_s for a, b in self.coach_speech())

    def _time_relook(self, end_s: float) -> None:
        """A turned-down stop candidate's second look that waits for its word to end
        (:attr:`Decision.relook_end_s`) is due at the first step that long after the end of the
        word's loud run (:meth:`phrase_bounds`); it is given up if the word has not ended within
        :data:`MAX_PHRASE_S` of its rise (not a short command)."""
        rose = self.decider.relook_waiting()
        tail = self.decider.decision.relook_end_s
        if rose is None or tail is None:
            return
        if end_s - self.word_end(end_s, rose) >= tail - 1e-9:
            self.decider.relook_now(end_s)
        elif end_s - rose > MAX_PHRASE_S:
            self.decider.drop_relook()

    def _turned_down(self, fired: Fired, verifier_stop: float) -> Fired | None:
        """A stop candidate's look turned down (:meth:`Decider.looked_at_stop`); a second look
        timed by the word's end is not taken if this look already came that long after it (it
        saw the whole word)."""
        verdict = self.decider.looked_at_stop(fired, verifier_stop)
        tail = self.decider.decision.relook_end_s
        if tail is not None and self.decider.relook_waiting() is not None and \
                fired.emitted_s - self.word_end(fired.emitted_s, fired.rose_s) >= tail - 1e-9:
            self.decider.drop_relook()
        return verdict

    def _second_look(self, fired: Fired) -> Fired | None:
        """The second look names the command: the verifier scores the candidate and its rivals
        (the spotter's runners-up among the commands the state accepts) on the audio up to
        ``fired``'s step, and the candidate becomes the one it hears best among those that clear
        their thresholds (stop first, if it clears), or nothing. A command other than the
        candidate must clear at least the default threshold. So a "start" the
        spotter took for a stop is acted on as start, and a stop taken for another command is
        still a stop (stop is always asked)."""
        if self.verifier is None:
            return None
        # A candidate is looked at with the LOOK_S before its step (look_window), as the
        # thresholds were chosen: the word the spotter raised, not the talk before it, which
        # would open the transcript. Stop is read where the card says (its opening, or
        # anywhere: stop said after other words, a visitor's), except over the coach's own
        # speech (_look). (A second try from a rejected stop's onset was taken out: it opened
        # talk to the transcript at a threshold chosen without talk, and false stops in an
        # hour of talk went from 29 to 127.) The audio kept ends where the fed samples end,
        # which may run past this step.
        end = self._step_end()
        end_s = (self._origin_s or 0.0) + self._steps * STEP_S
        # stop is always asked too: any candidate may be a stop the spotter misnamed
        asked = {c: self._phrases[c] for c in (fired.command, *fired.rivals, STOP)
                 if c in self._phrases}
        looked = self._safe_look(self.verifier, end, end_s, asked)
        if looked is None:
            # the verifier failed just now (the spotter goes on alone): a stop is acted on,
            # since a missed stop is the worst error; a candidate for anything else is not
            if fired.command != STOP:
                return None
            self.decider.accept(fired)
            return fired
        score, over = looked

        default = self.verify_thresholds.get("default", 1.0)

        def limit(command: str) -> float:
            # each threshold was chosen for looks at candidates the spotter raised as that
            # command; a command it did not raise must clear at least the default bar
            own = self.verify_thresholds.get(command, default)
            if command == STOP:
                own = self.stop_bar(over)
            return own if command == fired.command else max(own, default)

        sure = self.verify_sure.get(fired.command)
        heard = {c: p for c, p in score.items()
                 if p >= limit(c) or (c == fired.command and sure_enough(sure, fired.score, p))}
        named = STOP if STOP in heard else max(heard, key=heard.__getitem__, default=None)
        _LOGGER.debug("second look at %s (spotter %.2f%s): verifier %s -> %s", fired.command,
                      fired.score, ", over the coach" if over else "",
                      " ".join(f"{c} {p:.3f}/{limit(c):.3f}" for c, p in score.items()),
                      named or "drop")
        if named is None:
            # a stop run the spotter is sure of needs less from the look (Decision.sure_stop_*,
            # chosen on talk and clips without the coach; over the coach, stop_bar alone)
            return None if over else self._turned_down(fired, score.get(STOP, 0.0))
        if named != fired.command:
            fired = replace(fired, command=named, phrase=self._phrases[named][0])
        self.decider.accept(fired)
        return fired

    def _look_at_hit(self, hit: UserHit) -> tuple[UserHit, bool] | None:
        """An enrolled voice's detection, through the second look as the spotter's candidates
        are, and whether it was looked at: a non-stop command (it moves the belt or answers a
        question) is acted on only when the verifier hears it at the card's bar for it, as stop
        when it hears stop (stop is always asked, as in :meth:`_second_look`), else not at all.
        Enrollment's stop is never held back; without a verifier (or with
        :attr:`verify_enrolled` off) every hit stands."""
        if hit.command == STOP or self.verifier is None or not self.verify_enrolled:
            return hit, False
        asked = {c: self._phrases[c] for c in (hit.command, STOP) if c in self._phrases}
        looked = self._safe_look(self.verifier, self._step_end(), hit.emitted_s, asked)
        if looked is None:
            return hit, False  # the verifier failed just now: enrollment goes on alone
        score, over = looked
        bar = self.verify_thresholds.get(hit.command, self.verify_thresholds.get("default", 1.0))
        named = STOP if STOP in asked and score.get(STOP, 0.0) >= self.stop_bar(over) \
            else hit.command if score.get(hit.command, 0.0) >= bar else None
        _LOGGER.debug("second look at %s's %s (enrolled %.2f%s): verifier %s -> %s", hit.user,
                      hit.command, hit.score, ", over the coach" if over else "",
                      " ".join(f"{c} {p:.3f}" for c, p in score.items()), named or "drop")
        if named is None:
            self.enrolled.withdraw(hit)
            return None
        if named != hit.command:
            hit = replace(hit, command=named, phrase=self._phrases[named][0])
        return hit, True

    def _step_end(self) -> int:
        """The index in the kept audio where the current step ends (the fed samples may run
        past it)."""
        return self._audio.size - max(0, self._fed - self._steps * 1280)

    def look_again(self, det: Detection) -> bool:
        """A second look at a stop acted on without one (a confident stop, ``det``), asked by the
        duplex gate before it drops the stop as the coach's own voice: True if the verifier
        hears stop in the audio up to the step it was emitted at, read as any stop candidate's
        look is (over the coach's speech: its window, the opening, :meth:`stop_bar`). The
        look is evidence of the user's word, the gate's residual a guess at who spoke
        (README "Barge-in with real people", session 9). False if there is no verifier or the
        audio is no longer kept."""
        if self.verifier is None or det.command != STOP or STOP not in self._phrases:
            return False
        origin = self._origin_s or 0.0
        back = self._fed - int(round((det.emitted_s - origin) * 16000))
        end = self._audio.size - back
        if back < 0 or end <= 0:
            return False
        looked = self._safe_look(self.verifier, end, det.emitted_s, {STOP: self._phrases[STOP]})
        if looked is None:
            return False
        score, over = looked
        limit = self.stop_bar(over)
        _LOGGER.debug("second look at a confident stop (%.2f s%s): verifier %.3f/%.3f",
                      det.emitted_s, ", over the coach" if over else "", score.get(STOP, 0.0),
                      limit)
        return score.get(STOP, 0.0) >= limit

    def stop_bar(self, over: bool) -> float:
        """The verifier's stop threshold: the card's, or over the coach's own speech
        :attr:`over_speech_stop_bar` if that is lower (None: the card's everywhere)."""
        own = self.verify_thresholds.get(STOP, self.verify_thresholds.get("default", 1.0))
        if over and self.over_speech_stop_bar is not None:
            probe = self.look_probe
            if probe is not None and probe.over_bar is not None:
                return probe.over_bar  # the over-the-coach probe's own bar (_look)
            # over the coach the opening is read, never the clean learned look (_look); the
            # card's bar is on the opening's scale only without a clean one
            return self.over_speech_stop_bar if probe is not None and probe.reads(False) \
                else min(own, self.over_speech_stop_bar)
        return own

    def _safe_look(self, verifier: WhisperVerifier, end: int, end_s: float,
                   asked: dict[str, list[str]]) -> tuple[dict[str, float], bool] | None:
        """:meth:`_look`, or None if the verifier fails: then the second look is turned off
        for good (one line; ``look_off`` says why, as doctor does) and the spotter decides alone
        from the next step, with its own thresholds, as it does without the verify extra."""
        try:
            return self._look(verifier, end, end_s, asked)
        except Exception as exc:  # noqa: BLE001 - a foreign runtime failing: go on without it
            reason = exc.one_line() if isinstance(exc, VoicecoachError) \
                else f"{type(exc).__name__}: {exc}"
            _LOGGER.warning("the second look failed (%s); the spotter goes on alone", reason)
            self.verifier = None
            self.look_off = f"it failed while listening: {reason}"
            self.decider.verifying = False
            return None

    def _look(self, verifier: WhisperVerifier, end: int, end_s: float,
              asked: dict[str, list[str]]) -> tuple[dict[str, float], bool]:
        """The verifier's scores for ``asked`` over the kept audio up to sample ``end`` (audio
        time ``end_s``), and whether the coach spoke within :data:`OVER_SPEECH_SPAN_S` before
        it: then it reads the last :data:`OVER_SPEECH_LOOK_S`, stop at the opening only, else
        :data:`LOOK_S` as the card says."""
        over = self._coach_over(end_s - OVER_SPEECH_SPAN_S, end_s)
        self.last_look_over = over
        window = look_window(self._audio, end, OVER_SPEECH_LOOK_S if over else LOOK_S)
        # over the coach, stop is read at the transcript's opening only (its bar,
        # OVER_SPEECH_STOP_BAR, was chosen so): read anywhere, the coach's own words passed
        # as stops on dev speakers' trials (README "Barge-in with real people")
        anywhere = frozenset() if over else self.verify_anywhere & asked.keys()
        # the learned look scores stop where its bar was chosen: over the coach's speech (while
        # that has a bar of its own) only through a probe fitted there, else the opening
        probe = self.look_probe if STOP in asked else None
        read_over = over and self.over_speech_stop_bar is not None
        if probe is not None and not probe.reads(read_over):
            probe = None
        audio = window.astype(np.float32) / 32768.0
        if probe is None:
            return verifier.scores(audio, asked, anywhere=anywhere), over
        states: list[np.ndarray] = []
        # stop's score is the probe's: no transcript is read for it
        score = verifier.scores(audio, asked, anywhere=anywhere - {STOP}, states=states)
        score[STOP] = probe.stop(states[0], over=read_over)
        return score, over
