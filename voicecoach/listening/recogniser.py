"""The interface every command recogniser implements, and what it reports."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from voicecoach.audio.chunk import AudioChunk


@dataclass(frozen=True)
class Detection:
    """A command heard in the audio.

    Times are audio seconds: ``start_s``/``end_s`` bound the phrase, ``emitted_s`` is the
    audio time at which the recogniser reported it (latency = ``emitted_s - end_s``).
    """

    command: str
    phrase: str
    start_s: float
    end_s: float
    emitted_s: float
    confidence: float
    verified: bool = False
    """A second look (the spotter's verifier) heard the command too."""

    def to_dict(self) -> dict[str, Any]:
        """Rounded plain dict for JSON output (``verified`` stays out: the output is unchanged)."""
        d = asdict(self)
        d.pop("verified")
        for key in ("start_s", "end_s", "emitted_s", "confidence"):
            d[key] = round(d[key], 3)
        return d


class Recogniser(Protocol):
    """A streaming, grammar-restricted command recogniser for 16 kHz mono int16 audio.

    An engine may also offer ``hear_coach(spans)``: the device loop then hands it where the
    coach's own speech can be in the audio (a callable returning (start, end) audio-time
    spans; the spotter's second look reads stop differently over it)."""

    name: str
    language: str

    def set_commands(self, commands: Collection[str]) -> None:
        """Listen only for these command names (the current state's grammar)."""
        ...

    def accept(self, chunk: AudioChunk) -> list[Detection]:
        """Feed one chunk; return commands emitted by the end of it (each once)."""
        ...

    def flush(self) -> list[Detection]:
        """End of stream: return anything still pending."""
        ...

    def reset(self) -> None:
        """Forget the utterance in progress (e.g. after the coach's own speech)."""
        ...
