"""The trained English command spotter as a streaming :class:`Recogniser`.

Audio -> speech embeddings every 80 ms (``features``) -> the head's phrase probabilities over
the last ``window`` embeddings (``model``) -> commands (``decide``) -> with a verifier
(``verify``), a second look at the audio before a candidate is acted on. All state is in audio
time and advances in whole 80 ms steps, so the result does not depend on the chunk size.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

import numpy as np

from voicecoach.audio.chunk import AudioChunk
from voicecoach.errors import VoicecoachError
from voicecoach.grammar import Grammar
from voicecoach.listening.recogniser import Detection
from voicecoach.listening.spotter.decide import Decider, Decision
from voicecoach.listening.spotter.enroll import EnrolledScorer, scorer_for
from voicecoach.listening.spotter.features import EMB_DIM, STEP_S, EmbeddingFrontEnd
from voicecoach.listening.spotter.look_probe import LookProbe, load_look_probe
from voicecoach.listening.spotter.looks import (  # noqa: F401 - where tests and benches read them
    OVER_SPEECH_LOOK_S,
    OVER_SPEECH_SPAN_S,
    OVER_SPEECH_STOP_BAR,
    SecondLook,
)
from voicecoach.listening.spotter.loudness import Loudness
from voicecoach.listening.spotter.model import SpotterModel, load_model, phrases_of
from voicecoach.listening.spotter.verify import WhisperVerifier

_LOGGER = logging.getLogger(__name__)

AUDIO_KEEP_S = 4.0
"""Audio kept for the verifier's look."""
FLUSH_S = 0.64
"""End of stream: this much room tone lets a phrase said at the very end finish."""
FLOOR_DBFS = -65.0
"""The room tone of a stream too short to have a floor of its own (the warm-up's level)."""
class SpotterRecogniser(SecondLook):
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

    def set_commands(self, commands: Collection[str]) -> None:
        self.decider.set_commands(commands)
        self.enrolled.set_commands(commands)

    def reset(self) -> None:
        """Start afresh, as after digital silence (deterministic)."""
        self._fe.reset()
        self._ring = self._fe.warm_embeddings()[-self._window:].copy()
        self._loud = Loudness()
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
        self._loud.feed(samples)
        keep = int(AUDIO_KEEP_S * 16000) + samples.size
        self._audio = np.concatenate([self._audio, samples])[-keep:]
        self._fed += samples.size
        out: list[Detection] = []
        for emb in self._fe.push(samples):
            out += self._step(emb)
        return out

    def phrase_bounds(self, emitted_s: float, rose_s: float) -> tuple[float, float]:
        """Start and end (audio s) of the last loud run before ``emitted_s`` begun by ``rose_s``
        (the last one, if none was): :meth:`Loudness.phrase_bounds`."""
        return self._loud.phrase_bounds(self._origin_s or 0.0, emitted_s, rose_s)

    def word_end(self, emitted_s: float, rose_s: float) -> float:
        """The end (audio s) of the word in that run: :meth:`Loudness.word_end`."""
        return self._loud.word_end(self._origin_s or 0.0, emitted_s, rose_s)

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

    def release_stop(self) -> None:
        """The duplex gate dropped the stop just emitted as the coach's own voice: the user's
        stop that follows is not held back by its refractory second (Decider.release_stop)."""
        self.decider.release_stop()
        self.enrolled.release_stop()

    def flush(self) -> list[Detection]:
        """End of stream: room tone at the stream's own floor lets a phrase said at the very end
        finish (digital zeros are nothing the head heard in training)."""
        floor = self._loud.floor_db()
        rms = float(np.sqrt(10.0 ** (floor / 10.0))) if floor is not None \
            else 32768.0 * 10.0 ** (FLOOR_DBFS / 20.0)
        rng = np.random.default_rng(20261204)
        tone = np.clip(np.round(rng.standard_normal(int(FLUSH_S * 16000)) * rms), -32768, 32767)
        return self._feed(tone.astype(np.int16))

    def close(self) -> None:
        self._fe.close()
