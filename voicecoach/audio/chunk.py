"""The one audio type that flows through the pipeline: 16 kHz mono int16 chunks with times."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

SAMPLE_RATE = 16000
SAMPLE_WIDTH = 2  # bytes, signed 16-bit little endian
CHANNELS = 1


@dataclass(frozen=True)
class AudioChunk:
    """A run of 16-bit mono PCM samples starting at ``start_s`` seconds of audio time.

    ``captured``: when its first sample was captured, on the wall clock the live speaker
    stamps its speech with (``time.monotonic``), if the source knows it (the microphone does;
    a file does not). Audio time counts samples heard; this says when they were heard, however
    late the loop takes them and whatever was dropped before them.
    """

    audio: bytes
    start_s: float
    rate: int = SAMPLE_RATE
    captured: float | None = None

    @property
    def samples(self) -> int:
        """Number of samples in the chunk."""
        return len(self.audio) // SAMPLE_WIDTH

    @property
    def seconds(self) -> float:
        """Duration of the chunk in seconds."""
        return self.samples / self.rate

    @property
    def end_s(self) -> float:
        """Audio time just after the last sample."""
        return self.start_s + self.seconds


class AudioSource(Protocol):
    """Anything that yields chunks of 16 kHz mono int16 audio: a microphone or a WAV file."""

    def chunks(self) -> Iterator[AudioChunk]:
        """Yield chunks in order until the source ends (a file) or is closed (a microphone)."""
        ...

    def close(self) -> None:
        """Release the device or file."""
        ...


def split_pcm(pcm: bytes, chunk_s: float, start_s: float = 0.0,
              rate: int = SAMPLE_RATE) -> Iterator[AudioChunk]:
    """Cut a PCM byte string into chunks of ``chunk_s`` seconds (the last may be shorter)."""
    step = max(1, int(round(chunk_s * rate))) * SAMPLE_WIDTH
    for offset in range(0, len(pcm), step):
        yield AudioChunk(pcm[offset:offset + step], start_s + offset / SAMPLE_WIDTH / rate, rate)
