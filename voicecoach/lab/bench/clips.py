"""Reading benchmark clips and streaming them through a recogniser in audio time."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voicecoach.audio.chunk import SAMPLE_RATE, split_pcm
from voicecoach.errors import VoicecoachError
from voicecoach.grammar import Grammar, load_grammar
from voicecoach.listening.recogniser import Detection, Recogniser
from voicecoach.settings import SpeechSettings

_LOGGER = logging.getLogger(__name__)

@dataclass(frozen=True)
class ClipResult:
    """What a recogniser reported for one clip, with times relative to the clip's start."""

    name: str
    audio_s: float
    detections: tuple[Detection, ...]


class Runner:
    """Feeds clips one after another to one recogniser; times stay continuous."""

    def __init__(self, recogniser: Recogniser) -> None:
        self.recogniser = recogniser
        self.audio_s = 0.0
        self._stream_s = 0.0

    def run(self, name: str, samples: np.ndarray, commands: Sequence[str],
            chunk_s: float = 0.1) -> ClipResult:
        """Reset, restrict to ``commands``, stream ``samples`` in ``chunk_s`` chunks, flush."""
        rec = self.recogniser
        rec.reset()
        rec.set_commands(commands)
        start = self._stream_s
        found: list[Detection] = []
        for chunk in split_pcm(samples.tobytes(), chunk_s, start_s=start):
            found += rec.accept(chunk)
        found += rec.flush()
        seconds = samples.size / SAMPLE_RATE
        self._stream_s += seconds
        self.audio_s += seconds
        shifted = tuple(Detection(d.command, d.phrase, d.start_s - start, d.end_s - start,
                                  d.emitted_s - start, d.confidence) for d in found)
        return ClipResult(name, seconds, shifted)


def make_factory(engine: str, language: str, model: Path | None = None,
                 ) -> tuple[Grammar, Callable[..., Recogniser]]:
    """The grammar and a recogniser factory for ``engine``; keyword arguments (the
    pocketsphinx tuning knobs) are only accepted by the pocketsphinx engine."""
    grammar = load_grammar(language)

    def factory(**knobs: float) -> Recogniser:
        if engine == "pocketsphinx" and knobs:
            from voicecoach.listening.sphinx_engine import SphinxRecogniser

            return SphinxRecogniser(grammar, **knobs)  # type: ignore[arg-type]
        if knobs:
            raise VoicecoachError(f"the {engine} engine has no tuning knobs here",
                                  "drop --curve or use --engine pocketsphinx")
        try:
            from voicecoach.listening.engines import make_recogniser
        except ImportError:  # the engine chooser is not there: the bundled engine only
            if engine != "pocketsphinx":
                raise VoicecoachError(f"engine '{engine}' is not available",
                                      "use --engine pocketsphinx") from None
            from voicecoach.listening.sphinx_engine import SphinxRecogniser

            return SphinxRecogniser(grammar)
        settings = SpeechSettings(engine=engine, language=language, model_path=model)
        return make_recogniser(settings, grammar)

    return grammar, factory


def chunk_sizes_agree(factory: Callable[[], Recogniser],
                      clips: Sequence[tuple[str, np.ndarray]], commands: Sequence[str],
                      sizes: Sequence[float] = (0.01, 0.1, 0.5)) -> tuple[bool, list[str]]:
    """Whether a fresh recogniser per chunk size gives the same detections (rounded dicts)
    on every clip; the clips run in order, as one stream, for every size."""
    outputs: list[list[list[dict[str, object]]]] = []
    for size in sizes:
        runner = Runner(factory())
        outputs.append([[d.to_dict() for d in runner.run(name, samples, commands, size).detections]
                        for name, samples in clips])
    differing = [name for i, (name, _) in enumerate(clips)
                 if any(out[i] != outputs[0][i] for out in outputs[1:])]
    return not differing, differing
