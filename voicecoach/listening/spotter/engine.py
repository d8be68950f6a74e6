"""The trained English command spotter as a streaming :class:`Recogniser`.

Audio -> speech embeddings every 80 ms (``features``) -> the head's phrase probabilities over
the last ``window`` embeddings (``model``) -> commands (``decide``) -> with a verifier
(``verify``), a second look at the audio before a candidate is acted on. All state is in audio
time and advances in whole 80 ms steps, so the result does not depend on the chunk size.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from voicecoach.audio.chunk import AudioChunk
from voicecoach.errors import VoicecoachError
from voicecoach.grammar import Grammar
from voicecoach.listening.recogniser import Detection
from voicecoach.listening.spotter.decide import STOP, Decider, Decision, Fired, sure_enough
from voicecoach.listening.spotter.enroll import EnrolledScorer, UserHit, scorer_for
from voicecoach.listening.spotter.features import EMB_DIM, STEP_S, EmbeddingFrontEnd
from voicecoach.listening.spotter.look_probe import LookProbe, load_look_probe
from voicecoach.listening.spotter.model import SpotterModel, load_model, phrases_of
from voicecoach.listening.spotter.verify import LOOK_S, WhisperVerifier, look_window

_LOGGER = logging.getLogger(__name__)

#: Phrase bounds come from the loudness envelope (10 ms frames) before the decision: the
#: last run of frames louder than the recent floor by ``SPEECH_DB`` (gaps up to ``GAP_S``
#: bridged) begun by the time the score rose, at most ``MAX_PHRASE_S`` long. Without a clear
#: run: ``PHRASE_S`` before the rise.
FRAME = 160
ENVELOPE_S = 2.5
KEEP_S = 5.0          # frames kept: the envelope span plus the longest chunk we accept
SPEECH_DB = 9.0
GAP_S = 0.2
MAX_PHRASE_S = 1.8
WORD_DB = -30.0       # a word's extent: frames within this of its loudest (as active_bounds)
PHRASE_S = 0.6
AUDIO_KEEP_S = 4.0
"""Audio kept for the verifier's look."""
FLUSH_S = 0.64
"""End of stream: this much room tone lets a phrase said at the very end finish."""
FLOOR_DBFS = -65.0
"""The room tone of a stream too short to have a floor of its own (the warm-up's level)."""
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


class SpotterRecogniser:
    """Streaming, grammar-restricted command spotting on the pretrained speech embedding."""

    name = "spotter"

    def __init__(self, grammar: Grammar, *, model: SpotterModel | None = None,
                 front_end: EmbeddingFrontEnd | None = None,
                 enrolled: EnrolledScorer | None = None, data_dir: Path | None = None,
                 verifier: WhisperVerifier | None = None) -> None:
        if grammar.language.split("-")[0].lower() != "en":
            raise VoicecoachError(f"the command spotter is trained for English, not "
                                  f"'{grammar.language}'",
                                  "use --engine vosk with a model for that language")
        self.language = grammar.language
        self.model = model or load_model()
        self.model.check_grammar(grammar)
        self._fe = front_end or EmbeddingFrontEnd()
        self._window = self.model.window
        self.verifier = verifier
        self.verify_thresholds: dict[str, float] = dict(self.model.card.get("verify", {}))
        #: commands the verifier hears anywhere in its transcript, not only at its opening (the
        #: card says which: chosen with running talk, lab.training.second_look)
        self.verify_anywhere = frozenset(self.model.card.get("verify_anywhere", []))
        #: per command other than stop: (spotter score, verifier bar) -- a candidate raised at
        #: that score or more needs only the lower bar (lab.training.second_look, the card)
        self.verify_sure: dict[str, tuple[float, float]] = {
            c: (float(r[0]), float(r[1])) for c, r in self.model.card.get("verify_sure", {}).items()}
        #: why the second look is off although a verifier was given (None: it is on, or none
        #: was given)
        self.look_off: str | None = None
        if verifier is not None and not self.verify_thresholds:
            _LOGGER.warning("the spotter's model card has no verifier thresholds: the second look "
                            "is off")
            self.look_off = "the model card has no verifier thresholds"
            self.verifier = None
        #: the learned look at stop the card names (``look_probe``), read off the look's own
        #: encoder pass; without it the look reads stop at the transcript's opening
        self.look_probe: LookProbe | None = None
        if self.verifier is not None:
            try:
                self.look_probe = load_look_probe(self.model.path, self.model.card)
            except VoicecoachError as exc:
                # its thresholds are on the learned look's scale: without it no bar is right
                # (the engine line, ``engines._spotter``, and doctor say so: one line)
                _LOGGER.info("%s: the second look is off", exc.one_line())
                self.look_off = exc.one_line()
                self.verifier = None
        self.decider = Decider(self.model.labels, phrases_of(grammar),
                               Decision.from_card(self.model.decision),
                               verifying=self.verifier is not None)
        if self.look_probe is not None:
            # stop candidates over the coach from the level its over-the-coach look was fitted at
            self.decider.over_stop_candidate = self.look_probe.over_candidate
        self._origin_s: float | None = None
        #: The verifier's stop threshold for a look over the coach's own speech (see
        #: :data:`OVER_SPEECH_STOP_BAR`; None: the card's)
        self.over_speech_stop_bar: float | None = OVER_SPEECH_STOP_BAR
        #: Whether the last look was over the coach's speech (the barge-in bench's trace)
        self.last_look_over = False
        #: When the coach speaks, as (start, end) audio-time spans of its echo (end inf while
        #: it plays): told by the device loop (:meth:`hear_coach`); None where nobody knows
        self.coach_speech: Callable[[], Sequence[tuple[float, float]]] | None = None
        # enrollment (voicecoach.listening.spotter.enroll): adds detections for enrolled voices only
        self._phrases = phrases_of(grammar)
        self.enrollment_problems: list[str] = []
        if enrolled is None:
            # the default folder's problems are said by whoever reads it for the user
            # (use_data_dir's line, doctor); a folder given here is said here
            enrolled, self.enrollment_problems = scorer_for(self.model, self._phrases, data_dir,
                                                            warn=data_dir is not None)
        self.enrolled = enrolled
        #: An enrolled voice's non-stop detections need the second look (issue 15's rule for
        #: every command that moves the belt or answers a question); False only to measure the
        #: rule before session 17 (lab.bench.enroll --verify)
        self.verify_enrolled = True
        self.reset()

    def use_data_dir(self, data_dir: Path) -> str:
        """Read the enrollments of ``data_dir`` instead; a line that says whose are used."""
        self.enrolled, self.enrollment_problems = scorer_for(self.model, self._phrases, data_dir,
                                                             warn=False)  # the line says them
        self.reset()
        users = ", ".join(self.enrolled.users)
        line = f"enrolled voices: {users}" if users else "no enrolled voices"
        return "; ".join([line, *self.enrollment_problems])

    def hear_coach(self, spans: Callable[[], Sequence[tuple[float, float]]] | None) -> None:
        """Where the coach's own speech is in the audio (the duplex gate's echo spans, on this
        recogniser's audio clock): a look over it reads :data:`OVER_SPEECH_LOOK_S`, stop at
        the transcript's opening only, at :data:`OVER_SPEECH_STOP_BAR` (see :meth:`_look`)."""
        self.coach_speech = spans

    def _coach_over(self, start_s: float, end_s: float) -> bool:
        """True if the coach's speech (as told) overlaps [start_s, end_s]."""
        if self.coach_speech is None:
            return False
        return any(a <= end_s and b >= start_s for a, b in self.coach_speech())

    def set_commands(self, commands: Collection[str]) -> None:
        self.decider.set_commands(commands)
        self.enrolled.set_commands(commands)

    def reset(self) -> None:
        """Start afresh, as after digital silence (deterministic)."""
        self._fe.reset()
        self._ring = self._fe.warm_embeddings()[-self._window:].copy()
        self._frames = 0
        self._rest = np.zeros(0, np.float64)
        self._energy: deque[float] = deque(maxlen=int(KEEP_S * 100))
        self._audio = np.zeros(0, np.int16)
        self._fed = 0
        self.decider.reset()
        self.enrolled.reset()
        self._origin_s = None
        self._steps = 0

    def accept(self, chunk: AudioChunk) -> list[Detection]:
        if self._origin_s is None:
            self._origin_s = chunk.start_s
        samples = np.frombuffer(chunk.audio, dtype="<i2")
        return self._feed(samples)

    def _feed(self, samples: np.ndarray) -> list[Detection]:
        self._envelope(samples)
        keep = int(AUDIO_KEEP_S * 16000) + samples.size
        self._audio = np.concatenate([self._audio, samples])[-keep:]
        self._fed += samples.size
        out: list[Detection] = []
        for emb in self._fe.push(samples):
            out += self._step(emb)
        return out

    def _envelope(self, samples: np.ndarray) -> None:
        data = np.concatenate([self._rest, samples.astype(np.float64)])
        n = data.size // FRAME
        if n:
            power = (data[:n * FRAME].reshape(n, FRAME) ** 2).mean(axis=1)
            self._energy.extend((10.0 * np.log10(power + 1.0)).tolist())
            self._frames += n
        self._rest = data[n * FRAME:]

    def phrase_bounds(self, emitted_s: float, rose_s: float) -> tuple[float, float]:
        """Start and end (audio s) of the last loud run before ``emitted_s`` begun by ``rose_s``
        (the last one, if none was)."""
        origin = self._origin_s or 0.0
        energy = np.asarray(self._energy)
        first = self._frames - energy.size          # frame index of energy[0]
        last = min(energy.size, int(round((emitted_s - origin) * 100)) - first)
        fallback = (max(origin, rose_s - PHRASE_S), rose_s)
        if last <= 10:
            return fallback
        env = energy[max(0, last - int(ENVELOPE_S * 100)):last]
        first += max(0, last - int(ENVELOPE_S * 100))
        floor = float(np.percentile(env, 10))
        loud = np.nonzero(env >= floor + SPEECH_DB)[0]
        if loud.size == 0:
            return fallback
        gap = int(GAP_S * 100)
        # a loud run that began after the score rose did not raise it (the coach's echo after a
        # stop the spotter fired late on): the phrase is the last run begun by then, if any
        breaks = np.nonzero(np.diff(loud) > gap)[0]
        run_starts = loud[np.concatenate([[0], breaks + 1])]
        run_ends = loud[np.concatenate([breaks, [loud.size - 1]])]
        rose = int(round((rose_s - origin) * 100)) - first
        begun = np.nonzero(run_starts <= rose)[0]
        end = int(run_ends[begun[-1]] if begun.size else loud[-1])
        loud = loud[loud <= end]
        start = end
        for k in loud[::-1]:
            if start - k > gap or end - k > MAX_PHRASE_S * 100:
                break
            start = int(k)
        to_s = lambda i: origin + (first + i) / 100.0  # noqa: E731
        return to_s(start), to_s(end + 1)

    def word_end(self, emitted_s: float, rose_s: float) -> float:
        """The end (audio s) of the word in :meth:`phrase_bounds`'s loud run: its last 10 ms frame
        within :data:`WORD_DB` of the run's loudest (a word's extent as the rest of the project
        measures it, ``active_bounds``), so background louder than the room around it, which
        keeps the run over the floor, is not taken for the word."""
        start, end = self.phrase_bounds(emitted_s, rose_s)
        origin = self._origin_s or 0.0
        energy = np.asarray(self._energy)
        first = self._frames - energy.size
        lo = max(0, int(round((start - origin) * 100)) - first)
        hi = min(energy.size, int(round((end - origin) * 100)) - first)
        if hi <= lo:
            return end
        run = energy[lo:hi]
        word = np.nonzero(run >= run.max() + WORD_DB)[0]
        return origin + (first + lo + int(word[-1]) + 1) / 100.0

    def _step(self, emb: np.ndarray) -> list[Detection]:
        self._ring = np.concatenate([self._ring[1:], emb.reshape(1, EMB_DIM)])
        probs = self.model.probabilities(self._ring[None])[0]
        # each embedding's own step: push() returns several at once for a long chunk, and
        # fe.steps has already counted all of them by then
        self._steps += 1
        end_s = (self._origin_s or 0.0) + self._steps * STEP_S
        # the coach's speech matters to the decider only where it lowers the stop candidate
        over = self.decider.over_stop_candidate is not None and \
            self._coach_over(end_s - OVER_SPEECH_SPAN_S, end_s)
        self._time_relook(end_s)
        looked = [f if not f.needs_look else self._second_look(f)
                  for f in self.decider.step(probs, end_s, over=over)]
        fired = [f for f in looked if f is not None]
        hits, keep = self.enrolled.step(self._ring.reshape(-1), end_s, [f.command for f in fired])
        found = [(f.command, f.phrase, f.rose_s, f.emitted_s, f.score, f.needs_look)
                 for f in fired if f.command in keep]
        for hit in hits:
            seen = self._look_at_hit(hit)
            if seen is not None:
                act, verified = seen
                found.append((act.command, act.phrase, act.rose_s, act.emitted_s, act.score,
                              verified))
        out = []
        for command, phrase, rose_s, emitted_s, score, verified in found:
            start, end = self.phrase_bounds(emitted_s, rose_s)
            out.append(Detection(command, phrase, start, end, emitted_s, score, verified))
        return out

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

    def release_stop(self) -> None:
        """The duplex gate dropped the stop just emitted as the coach's own voice: the user's
        stop that follows is not held back by its refractory second (Decider.release_stop)."""
        self.decider.release_stop()
        self.enrolled.release_stop()

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

    def flush(self) -> list[Detection]:
        """End of stream: room tone at the stream's own floor lets a phrase said at the very end
        finish (digital zeros are nothing the head heard in training)."""
        energy = np.asarray(self._energy)
        if energy.size >= 50:
            rms = float(np.sqrt(10.0 ** (np.percentile(energy, 10) / 10.0)))
        else:
            rms = 32768.0 * 10.0 ** (FLOOR_DBFS / 20.0)
        rng = np.random.default_rng(20261204)
        tone = np.clip(np.round(rng.standard_normal(int(FLUSH_S * 16000)) * rms), -32768, 32767)
        return self._feed(tone.astype(np.int16))

    def close(self) -> None:
        self._fe.close()
