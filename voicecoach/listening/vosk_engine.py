"""The vosk command recogniser: a grammar of the state's phrases plus filler words to reject."""

from __future__ import annotations

import ctypes
import json
import logging
import threading
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voicecoach.audio.chunk import SAMPLE_RATE, SAMPLE_WIDTH, AudioChunk
from voicecoach.errors import VoicecoachError
from voicecoach.grammar import STOP, Grammar
from voicecoach.listening.models import check_model
from voicecoach.listening.recogniser import Detection
from voicecoach.listening.voicing import Voicing
from voicecoach.listening.vosk_conf import tuned_model_dir
from voicecoach.listening.vosk_vocab import filler_words, missing_words, unknown_symbol

_LOGGER = logging.getLogger(__name__)

_MODELS: dict[Path, Any] = {}
_MODELS_LOCK = threading.Lock()


def load_model(path: Path) -> Any:
    """A ``vosk.Model`` for a checked folder, loaded once per process."""
    key = Path(path).resolve()
    with _MODELS_LOCK:
        if key not in _MODELS:
            import vosk

            vosk.SetLogLevel(-1)
            _LOGGER.info("loading vosk model %s", key)
            try:
                _MODELS[key] = vosk.Model(model_path=str(key))
            except Exception as exc:  # vosk raises a bare Exception on a bad model
                raise VoicecoachError(f"vosk could not load the model in {key} ({exc})",
                                      "download and unzip the model again") from None
        return _MODELS[key]


@dataclass(frozen=True)
class VoskTuning:
    """How the recogniser trades recall against false accepts (measured in the tests)."""

    block_s: float = 0.1
    """Audio fed to vosk per call; results do not depend on the caller's chunk size."""
    frames_per_chunk: int = 5
    """Acoustic-model chunk (output frames, 30 ms each); vosk's default 20 makes partial
    results lag up to 0.6 s behind. Measured on the Korean fixtures: 5 gives stop latency
    median 0.17 s, max 0.43 s at RTF 0.05; 20 gives 0.22/0.53 s at RTF 0.03 (0: default)."""
    command_weight: int = 300
    """Copies of each command phrase in vosk's grammar, against one copy of each filler word."""
    fillers: bool = False
    """Add one-syllable filler words (a garbage model); measured: fewer hits, no fewer
    false accepts on the Korean fixtures, so off by default."""
    unk_weight: int = 1
    """Copies of the model's unknown-word symbol in the grammar (more: more rejection)."""
    min_conf: float = 0.5
    """Lowest per-word confidence (vosk's MBR posterior) for every word of a phrase."""
    stop_blocks: int = 1
    """Blocks in a row a stop phrase must end the partial result before it is acted on
    (0: wait for vosk's endpoint like every other command)."""
    stop_quiet_s: float = 0.1
    """For that, the last this many seconds of audio must also be quiet (the word ended)."""
    isolation_s: float = 0.4
    """A command must stand alone: the stretch of sound around it may run on past the
    phrase's words by at most this much in all, else it was said inside other speech
    (0: no check)."""
    bridge_s: float = 0.15
    """Pauses shorter than this do not end a stretch of sound."""
    margin_s: float = 0.1
    """Slack inside the phrase's word times when looking for its sound (they are loose)."""


def _seed_kaldi() -> None:
    """Reseed libc's rand(), which Kaldi inside vosk draws on while decoding.

    Measured: without this, the same audio through a fresh recogniser on the same model
    gives different word confidences on each run in one process; reseeding at the start
    of each stream makes results repeatable and independent of the chunk size.
    """
    try:
        ctypes.CDLL(None).srand(0)
    except (OSError, AttributeError, TypeError):  # no libc symbol table here (Windows)
        _LOGGER.debug("cannot reseed rand(): vosk results may vary slightly between runs")


class VoskRecogniser:
    """A streaming vosk recogniser restricted to the current state's command phrases."""

    name = "vosk"

    def __init__(self, model_dir: Path, grammar: Grammar, *,
                 tuning: VoskTuning | None = None) -> None:
        info = check_model(Path(model_dir), language=grammar.language)
        self.grammar = grammar
        self.language = grammar.language
        self.tuning = tuning or VoskTuning()
        options = ({"frames-per-chunk": str(self.tuning.frames_per_chunk)}
                   if self.tuning.frames_per_chunk > 0 else {})
        self.model_path = tuned_model_dir(info.path, options)
        self.model = load_model(self.model_path)
        words = sorted({w for p in grammar.all_phrases() for w in p.split()})
        missing = missing_words(self.model, words)
        if missing and len(missing) * 2 >= len(words):
            raise VoicecoachError(
                f"the vosk model in {info.path} knows {len(words) - len(missing)} of the "
                f"{len(words)} words of grammar '{grammar.language}': it is a model of "
                "another language", f"use a '{grammar.language}' model or choose --lang")
        if missing:
            raise VoicecoachError(
                f"grammar {grammar.path or grammar.language}: phrase words missing from the "
                f"vocabulary of the vosk model in {info.path}: {', '.join(missing)}",
                "use words the model knows (try 'voicecoach model path' and its README)")
        self._unk = unknown_symbol(self.model)
        self._fillers = (filler_words(self.model, grammar, words)
                         if self.tuning.fillers else list(grammar.never))
        self._block = max(1, int(round(self.tuning.block_s * SAMPLE_RATE))) * SAMPLE_WIDTH
        self._commands: tuple[str, ...] = grammar.commands
        self._grammar_for: tuple[str, ...] | None = None
        self._rec: Any = None
        self._new_stream(0.0)

    # -- grammar -------------------------------------------------------------------------
    def grammar_json(self, commands: Collection[str]) -> str:
        """The JSON phrase list given to vosk for ``commands`` (weighted, with fillers)."""
        phrases = [p for c in self.grammar.commands if c in commands
                   for p in self.grammar.phrases[c]]
        entries = phrases * self.tuning.command_weight + self._fillers
        if self._unk:
            entries += [self._unk] * self.tuning.unk_weight
        return json.dumps(entries, ensure_ascii=False)

    def set_commands(self, commands: Collection[str]) -> None:
        """Listen for ``commands`` (stop is always kept); vosk switches at the next pause."""
        unknown = [c for c in commands if c not in self.grammar.phrases]
        if unknown:
            raise VoicecoachError(f"unknown command(s) {', '.join(unknown)}",
                                  f"use commands of grammar '{self.language}'")
        wanted = set(commands) | {STOP}
        self._commands = tuple(c for c in self.grammar.commands if c in wanted)
        if not self._running:
            self._apply_grammar()

    def _apply_grammar(self) -> None:
        if self._grammar_for != self._commands:
            self._rec.SetGrammar(self.grammar_json(self._commands))
            self._grammar_for = self._commands

    # -- streaming -----------------------------------------------------------------------
    def _new_stream(self, origin_s: float) -> None:
        import vosk

        _seed_kaldi()
        self._rec = vosk.KaldiRecognizer(self.model, SAMPLE_RATE,
                                         self.grammar_json(self._commands))
        self._rec.SetWords(True)
        # Partial words come from the determinised lattice, which lags 1-2 s behind
        # (measured); the plain best path is current, so stop is read from it.
        self._rec.SetPartialWords(False)
        self._grammar_for = self._commands
        self._origin_s = origin_s
        self._fed = 0                   # samples given to vosk since the stream began
        self._buffer = bytearray()
        self._voicing = Voicing(SAMPLE_RATE)
        self._started = False
        self._running = False
        self._stop_run = 0
        self._mute_until = 0.0          # stream seconds: no detection may start before this
        self._last: list[tuple[str, float]] = []

    @property
    def now_s(self) -> float:
        """Audio time of the last sample given to vosk."""
        return self._origin_s + self._fed / SAMPLE_RATE

    def accept(self, chunk: AudioChunk) -> list[Detection]:
        """Feed a chunk; detections come at endpoints, or from the partial result for stop."""
        if chunk.rate != SAMPLE_RATE:
            raise VoicecoachError(f"the vosk recogniser takes {SAMPLE_RATE} Hz audio, "
                                  f"not {chunk.rate} Hz", "resample the audio source")
        if not self._started:
            self._origin_s = chunk.start_s
            self._started = True
        self._buffer += chunk.audio
        found: list[Detection] = []
        while len(self._buffer) >= self._block:
            block = bytes(self._buffer[:self._block])
            del self._buffer[:self._block]
            found += self._feed(block)
        return found

    def _feed(self, block: bytes) -> list[Detection]:
        endpoint = self._rec.AcceptWaveform(block)
        self._voicing.add(block)
        self._fed += len(block) // SAMPLE_WIDTH
        self._running = True
        if endpoint:
            return self._finish(self._rec.Result())
        partial = json.loads(self._rec.PartialResult()).get("partial", "")
        use = STOP in self._commands and self.tuning.stop_blocks > 0
        stops = self.grammar.phrases[STOP] if use else ()
        quiet = self.tuning.stop_quiet_s
        rel = self._fed / SAMPLE_RATE
        if (any(f" {partial}".endswith(f" {p}") for p in stops)
                and self._voicing.voiced_fraction(rel - quiet, rel) <= 0.1):
            self._stop_run += 1
            if self._stop_run >= self.tuning.stop_blocks:
                # Close the utterance now: the result carries word times and confidences.
                return self._finish(self._rec.Result(), only_stop=True)
        else:
            self._stop_run = 0
        return []

    def _finish(self, result_json: str, only_stop: bool = False) -> list[Detection]:
        self._running = False
        self._stop_run = 0
        found = self._detections(json.loads(result_json).get("result", []), only_stop)
        if only_stop and found:
            # vosk decodes ~0.5 s behind the input: the audio fed since the stop's words
            # (the end of the stop itself) goes to the next utterance. Hear nothing in it.
            self._mute_until = self._fed / SAMPLE_RATE
        self._apply_grammar()
        return found

    def _detections(self, words: list[dict[str, Any]], only_stop: bool) -> list[Detection]:
        phrase_map = self.grammar.phrase_map(self._commands)
        by_length = sorted(phrase_map, key=lambda p: -len(p.split()))
        tokens = [str(w.get("word", "")) for w in words]
        found: list[Detection] = []
        i = 0
        while i < len(tokens):
            for phrase in by_length:
                parts = phrase.split()
                if tokens[i:i + len(parts)] == parts:
                    span = words[i:i + len(parts)]
                    conf = min(float(w.get("conf", 0.0)) for w in span)
                    command = phrase_map[phrase]
                    start = self._origin_s + float(span[0]["start"])
                    sound_end = self._isolated(float(span[0]["start"]), float(span[-1]["end"]))
                    end = self._origin_s + (sound_end or float(span[-1]["end"]))
                    if (conf >= self.tuning.min_conf and (command == STOP or not only_stop)
                            and float(span[0]["start"]) >= self._mute_until
                            and sound_end is not None
                            and not self._duplicate(command, start)):
                        found.append(Detection(command, phrase, start, end, self.now_s, conf))
                    else:
                        _LOGGER.debug("rejected %s (conf %.2f) at %.2f-%.2f s in %s",
                                      phrase, conf, start, end, tokens)
                    i += len(parts)
                    break
            else:
                i += 1
        return found

    def _isolated(self, start: float, end: float) -> float | None:
        """The end of the phrase's sound if it stands alone, else None (said in a sentence).

        vosk's word times are loose at the edges (a word's last syllable is often left
        out of it) and a garbage model is weak here, so this looks at the audio: the stretch
        of sound around the words may run past them by at most ``isolation_s`` in all. The
        phrase ends where its sound ends (never before vosk's word end).
        """
        slack = self.tuning.margin_s
        lo, hi = self._voicing.region(start + slack, max(end - slack, start + slack + 0.01),
                                      self.tuning.bridge_s)
        if self.tuning.isolation_s > 0 and (hi - lo) - (end - start) > self.tuning.isolation_s:
            return None
        return max(end, hi) if hi - end <= self.tuning.isolation_s else end

    def _duplicate(self, command: str, start: float) -> bool:
        """True if ``command`` starting near ``start`` was already emitted."""
        if any(c == command and abs(s - start) < 0.3 for c, s in self._last):
            return True
        self._last = (self._last + [(command, start)])[-8:]
        return False

    def flush(self) -> list[Detection]:
        """End of stream: decode what is left; the next chunk starts a new stream."""
        found: list[Detection] = []
        if self._buffer:
            found += self._feed(bytes(self._buffer))
            self._buffer.clear()
        if self._running:
            found += self._finish(self._rec.FinalResult())
        self._new_stream(self.now_s)
        return found

    def reset(self) -> None:
        """Forget the utterance in progress (audio time keeps counting)."""
        if self._running:
            self._rec.Reset()
            self._running = False
            self._stop_run = 0
            self._apply_grammar()
