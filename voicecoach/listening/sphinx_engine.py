"""The bundled English recogniser: pocketsphinx keyword spotting with per-phrase thresholds."""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voicecoach.audio.chunk import SAMPLE_RATE, SAMPLE_WIDTH, AudioChunk
from voicecoach.errors import VoicecoachError
from voicecoach.grammar import STOP, Grammar
from voicecoach.listening.noise_floor import NoiseFloor
from voicecoach.listening.recogniser import Detection

_LOGGER = logging.getLogger(__name__)

FRAME_RATE = 100
"""pocketsphinx feature frames per second (its default ``frate``)."""
_LOG_BASE = 1.0001  # pocketsphinx's default ``logbase``
_SHIFT = 1024  # kws scores are log-base-1.0001 values shifted right by 10 bits
_KWS_MAX = 1500  # kws_search.c subtracts this from every detection score
FLOOR_DBFS = -62.0  # long quiet stretches are filled up to this level (see NoiseFloor)


@dataclass(frozen=True)
class ThresholdRule:
    """Per-phrase detection thresholds, in kws score units (about 0.1 nat each).

    The kws score of a phrase is its acoustic log-likelihood ratio against pocketsphinx's
    free phone loop, summed over the phrase's frames. Longer phrases collect more evidence,
    so the threshold falls with the number of phones: ``base - per_phone * (phones - 2)``.
    The values were chosen once on the whole Speech Commands development set (see
    ``python -m voicecoach.lab.bench.recognition``), never per file; the figures are there.
    """

    base: float = 300.0
    """Threshold for a two-phone phrase such as "no" or "go"."""
    per_phone: float = 125.0
    """How much lower the threshold is for each phone after the second."""
    stop_bonus: float = 500.0
    """Extra leniency for one-word phrases of the stop command: a missed "stop" is worse
    than a false one (the coach only ends the session)."""
    compete_margin: float = 200.0
    """A decoy or another command's phrase over the same stretch rejects a match only when
    it beats the match by this much (both measured against their base thresholds); a
    positive sensitivity widens it by ``sensitivity_step`` per unit, a negative one never
    narrows it."""
    sensitivity_step: float = 100.0
    """Threshold change for a sensitivity change of 1.0."""
    max_frames_per_phone: int = 20
    """A match longer than this many frames (10 ms) per phone is rejected as noise."""

    def base_threshold(self, phones: int) -> float:
        """The length-only threshold of a phrase of ``phones`` phones."""
        return self.base - self.per_phone * (phones - 2)

@dataclass
class _Candidate:
    phrase: str
    start_f: int  # absolute frames since the stream began
    end_f: int
    margin: float  # score minus the phrase's threshold (>= 0: it may be reported)
    rank: float  # score minus the phrase's base threshold (for competition)


class SphinxRecogniser:
    """Streaming command spotter on the US-English model bundled with pocketsphinx.

    Every phrase of the grammar, plus the grammar's ``never_commands`` words as decoys, is
    spotted by pocketsphinx's keyword search, which scores each against a phone loop (a
    likelihood ratio). A phrase is reported when its ratio clears its threshold, its duration
    is plausible, and no overlapping decoy or phrase of another command scored clearly better
    (by ``ThresholdRule.compete_margin``, each against its own length-based threshold).
    Detections are reported ``kws_delay`` frames plus ``hold_s`` after the phrase ends:
    "stop" never waits for the end of an utterance.

    Audio is cut into fixed ``block_s`` blocks before decoding and every time is counted in
    samples, so the result does not depend on how the caller chunks the audio.
    """

    name = "pocketsphinx"
    language = "en"

    def __init__(self, grammar: Grammar, *, sensitivity: float = 0.0, block_s: float = 0.05,
                 hold_s: float = 0.05, kws_delay: int = 10, decoys: bool = True,
                 keep_channel: bool = True, rule: ThresholdRule | None = None,
                 floor_dbfs: float | None = FLOOR_DBFS) -> None:
        """Build the decoder for ``grammar``.

        ``sensitivity``: 0.0 is the calibrated default; positive values hear more (more
        false accepts), negative values hear less. ``block_s``: decoding block (the audio
        is buffered to this size). ``hold_s``: extra wait after a match ends for a better
        competing match. ``kws_delay``: pocketsphinx's own wait for a match's best score,
        in frames. ``decoys``: use the grammar's never_commands words as competitors.
        ``keep_channel``: keep the cepstral mean (the microphone and room) across ``reset``.
        ``floor_dbfs``: after a second below it, the decoder hears this level (None: off).
        """
        if not grammar.language.lower().startswith("en"):
            raise VoicecoachError(
                f"the pocketsphinx engine has only a US-English model, not '{grammar.language}'",
                "use --engine vosk with a model for that language")
        import pocketsphinx  # local import: a missing wheel is reported by engines.py

        self.grammar = grammar
        self.sensitivity = sensitivity
        self.rule = rule or ThresholdRule()
        self._compete = self.rule.compete_margin + self.rule.sensitivity_step * max(
            sensitivity, 0.0)
        self._block = max(160, int(round(block_s * SAMPLE_RATE))) * SAMPLE_WIDTH
        self._hold_f = int(round(hold_s * FRAME_RATE))
        self._delay_f = kws_delay
        config = pocketsphinx.Config(lm=None, keyphrase="stop", loglevel="FATAL",
                                     samprate=SAMPLE_RATE, kws_delay=kws_delay)
        try:
            self._decoder = pocketsphinx.Decoder(config)
        except RuntimeError as exc:  # its model folder is missing or incomplete
            raise VoicecoachError(
                f"pocketsphinx cannot load its model ({exc}; looked in "
                f"{pocketsphinx.get_model_path()})",
                "reinstall it: .venv/bin/pip install --force-reinstall pocketsphinx") from None
        self._phones = self._check_words(grammar, decoys)
        self._phrase_cmd = grammar.phrase_map()
        with tempfile.TemporaryDirectory(prefix="voicecoach-kws-") as tmp:
            path = Path(tmp) / "phrases.kws"
            path.write_text("".join(f"{p} /{self._kws_value(p):.6e}/\n" for p in self._phones),
                            encoding="utf-8")
            self._decoder.add_kws("commands", str(path))
        self._decoder.activate_search("commands")
        self._keep_channel = keep_channel
        self._floor = NoiseFloor(floor_dbfs, SAMPLE_RATE) if floor_dbfs is not None else None
        self._cmn0 = self._decoder.get_cmn()
        self._active: frozenset[str] = frozenset(grammar.commands)
        self._started = False
        self.reset()

    # -- set-up -------------------------------------------------------------------------
    def _check_words(self, grammar: Grammar, decoys: bool) -> dict[str, int]:
        """Phone count of every phrase (and decoy); one clear error for unknown words."""
        phrases = list(grammar.all_phrases())
        missing: list[str] = []
        phones: dict[str, int] = {}
        if decoys:  # a decoy the dictionary lacks is simply left out
            phones = {w: len(p.split()) for w in grammar.never if w not in phrases
                      for p in [self._decoder.lookup_word(w)] if p}
        for phrase in phrases:
            count = 0
            for word in phrase.split():
                pron = self._decoder.lookup_word(word)
                if pron is None:
                    missing.append(word)
                else:
                    count += len(pron.split())
            phones[phrase] = count
        if missing:
            where = grammar.path or "the grammar"
            raise VoicecoachError(
                f"{where}: word(s) not in the pocketsphinx English dictionary: "
                f"{', '.join(sorted(set(missing)))}",
                "use dictionary words in the phrases or use the vosk engine")
        return phones

    def threshold(self, phrase: str) -> float:
        """The kws score ``phrase`` must reach at the current sensitivity."""
        value = self.rule.base_threshold(self._phones[phrase])
        if self._phrase_cmd.get(phrase) == STOP and " " not in phrase:
            value -= self.rule.stop_bonus
        return value - self.rule.sensitivity_step * self.sensitivity

    def _kws_value(self, phrase: str) -> float:
        """pocketsphinx's own (lower) threshold for ``phrase``, as the likelihood ratio its
        kws file wants: low enough that every match which could report or compete is kept."""
        floor = min(self.threshold(phrase),
                    self.rule.base_threshold(self._phones[phrase]) - self.rule.stop_bonus
                    - self.rule.sensitivity_step * max(self.sensitivity, 0.0))
        return math.exp(floor * _SHIFT * math.log(_LOG_BASE))

    # -- Recogniser interface -----------------------------------------------------------
    def set_commands(self, commands: Collection[str]) -> None:
        """Listen only for ``commands``; the other phrases stay in as competitors."""
        unknown = sorted(set(commands) - set(self.grammar.commands))
        if unknown:
            raise VoicecoachError(f"no such command(s) in the grammar: {', '.join(unknown)}",
                                  f"use one of: {', '.join(self.grammar.commands)}")
        self._active = frozenset(commands)

    def reset(self) -> None:
        """Forget buffered audio and the utterance in progress; the next chunk's
        ``start_s`` anchors the times again. The cepstral mean (the channel) is kept."""
        if self._started:
            self._decoder.end_utt()
        self._samples = 0  # samples decoded since the anchor
        self._base_s: float | None = None
        self._buffer = b""
        self._emitted: list[tuple[str, int, int]] = []
        if not self._keep_channel:
            self._decoder.set_cmn(self._cmn0)
        if self._floor:
            self._floor.reset()  # a new stream: its quiet stretch starts again
        self._start_utt()

    def accept(self, chunk: AudioChunk) -> list[Detection]:
        """Feed one chunk of 16 kHz mono int16 audio; return commands heard by its end."""
        if chunk.rate != SAMPLE_RATE:
            raise VoicecoachError(f"audio at {chunk.rate} Hz reached the recogniser",
                                  "resample to 16 kHz mono before recognising")
        if self._base_s is None:
            self._base_s = chunk.start_s
        self._buffer += chunk.audio
        found: list[Detection] = []
        while len(self._buffer) >= self._block:
            block, self._buffer = self._buffer[:self._block], self._buffer[self._block:]
            found += self._decode(block)
        return found

    def flush(self) -> list[Detection]:
        """End of stream: decode the rest, wait out the delays on quiet padding, report."""
        found: list[Detection] = []
        if self._buffer:
            found += self._decode(self._buffer)
            self._buffer = b""
        end_samples = self._samples
        pad_frames = self._delay_f + self._hold_f + 2
        rng = np.random.default_rng(0)
        quiet = rng.normal(0.0, 3.0, pad_frames * SAMPLE_RATE // FRAME_RATE)
        found += self._decode(np.round(quiet).astype("<i2").tobytes(), emit_at=end_samples)
        self.reset()  # the next chunk starts a new stream
        return found

    # -- decoding -----------------------------------------------------------------------
    def _start_utt(self) -> None:
        self._decoder.start_utt()
        self._started = True
        self._utt_start_f = self._samples * FRAME_RATE // SAMPLE_RATE

    def _decode(self, block: bytes, emit_at: int | None = None) -> list[Detection]:
        block = self._floor.fill(block, self._samples) if self._floor else block
        self._decoder.process_raw(block)
        self._samples += len(block) // SAMPLE_WIDTH
        now_f = self._utt_start_f + self._decoder.n_frames()
        detections = self._collect(now_f, self._samples if emit_at is None else emit_at)
        self._maybe_restart(now_f)
        return detections

    def _candidates(self) -> list[_Candidate]:
        best: dict[tuple[str, int], _Candidate] = {}
        for seg in self._decoder.seg() or ():
            if seg.prob <= 0.0:
                continue
            score = math.log(seg.prob) / math.log(_LOG_BASE) + _KWS_MAX
            phrase = seg.word.strip()
            start, end = self._utt_start_f + seg.start_frame, self._utt_start_f + seg.end_frame
            if end - start > self.rule.max_frames_per_phone * self._phones.get(phrase, 1):
                continue
            cand = _Candidate(phrase, start, end, score - self.threshold(phrase),
                              score - self.rule.base_threshold(self._phones[phrase]))
            key = (phrase, start)
            if key not in best or best[key].margin < cand.margin:
                best[key] = cand
        return list(best.values())

    def _collect(self, now_f: int, emit_samples: int) -> list[Detection]:
        cands = self._candidates()
        out: list[Detection] = []
        for cand in sorted(cands, key=lambda c: c.end_f):
            command = self._phrase_cmd.get(cand.phrase)
            if command is None or command not in self._active or cand.margin < 0:
                continue
            if now_f < cand.end_f + self._delay_f + self._hold_f:
                continue  # wait for competitors and a better end point
            if any(o.rank > cand.rank + self._compete and o.start_f < cand.end_f
                   and o.end_f > cand.start_f and self._phrase_cmd.get(o.phrase) != command
                   for o in cands):
                continue  # a decoy or another command's phrase fits this stretch better
            if any(c == command and s < cand.end_f and e > cand.start_f
                   for c, s, e in self._emitted):
                continue  # already reported
            self._emitted.append((command, cand.start_f, cand.end_f))
            out.append(self._detection(command, cand, emit_samples))
        return out

    def _detection(self, command: str, cand: _Candidate, emit_samples: int) -> Detection:
        base = self._base_s or 0.0
        confidence = 1.0 / (1.0 + math.exp(-cand.margin / self.rule.sensitivity_step))
        return Detection(command=command, phrase=cand.phrase,
                         start_s=base + cand.start_f / FRAME_RATE,
                         end_s=base + cand.end_f / FRAME_RATE,
                         emitted_s=base + emit_samples / SAMPLE_RATE,
                         confidence=confidence)

    def _maybe_restart(self, now_f: int) -> None:
        """Start a new utterance now and then so the detection list stays short and the
        cepstral mean adapts; only where no match ended recently."""
        length = now_f - self._utt_start_f
        if length < 10 * FRAME_RATE:
            return
        recent = max((e for _, _, e in self._emitted), default=-(10**9))
        for seg in self._decoder.seg() or ():
            recent = max(recent, self._utt_start_f + seg.end_frame)
        if now_f - recent > FRAME_RATE or length > 30 * FRAME_RATE:
            self._decoder.end_utt()
            self._start_utt()
            self._emitted = [x for x in self._emitted if x[2] > now_f - FRAME_RATE]
