"""The Speaker interface the coach talks to, its speech records, and the simple speakers."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TextIO, runtime_checkable

from voicecoach.events import Priority

if TYPE_CHECKING:
    from voicecoach.speaking.render import FallbackRenderer

_LOGGER = logging.getLogger(__name__)

MIN_RATE, MAX_RATE = 80, 400
VOLUME_STEP = 0.1


@dataclass(frozen=True)
class SpeechInterval:
    """One utterance as it was (or is being) played.

    ``start``/``end`` are on the speaker's clock (audio/workout time for WavSpeaker, the
    injected clock, by default ``time.monotonic()``, for TtsSpeaker); ``end`` is None while it
    is still playing. ``t`` is the workout time given to ``say``. ``completed`` is False when it
    was cut off; ``tone`` is True when a tone stood in for failed speech.
    """

    start: float
    end: float | None
    text: str
    priority: Priority
    t: float
    completed: bool = True
    tone: bool = False


#: Called on the speaker's thread when an utterance starts (``end`` None) and when it ends.
SpeechListener = Callable[[SpeechInterval], None]


class Speaker(Protocol):
    """Speech out. ``say`` never blocks; everything else returns at once too."""

    def say(self, text: str, priority: Priority, t: float) -> None:
        """Queue ``text`` (said at workout time ``t``); URGENT cuts off a lower-priority one."""
        ...

    def cancel_queued(self) -> int:
        """Drop utterances not yet started; return how many were dropped."""
        ...

    def interrupt(self) -> None:
        """Cut off the utterance being spoken now (queued ones stay queued)."""
        ...

    def is_speaking(self) -> bool:
        """True while an utterance is playing or waiting to be played."""
        ...

    def set_volume(self, volume: float) -> float:
        """Set the volume (clamped to 0.0..1.0) for the next utterances; return it."""
        ...

    def set_rate(self, wpm: int) -> int:
        """Set the speaking rate (clamped to 80..400 words per minute); return it."""
        ...

    def speaking_intervals(self) -> list[SpeechInterval]:
        """Utterances played so far (the last one may still be playing), oldest first."""
        ...

    def add_listener(self, listener: SpeechListener) -> None:
        """Call ``listener`` at the start and the end of every utterance."""
        ...

    def close(self) -> None:
        """Stop speaking now and release the engine and device."""
        ...


@runtime_checkable
class PlaysBack(Protocol):
    """A speaker that can say what it played: the echo canceller's and the duplex gate's
    reference (TtsSpeaker on its own clock, WavSpeaker on the audio clock)."""

    def played_audio(self, start: float, end: float) -> Any:
        """The samples played from ``start`` to ``end`` (int16 at 16 kHz, zeros where silent)."""
        ...


@runtime_checkable
class LosesOutput(Protocol):
    """A speaker whose output device can be given up and tried again (TtsSpeaker): the device
    loop re-reads the device list for it (voicecoach.device.speaker_search)."""

    #: Seconds between its tries of a device given up.
    sink_retry_s: float

    @property
    def output_lost(self) -> bool:
        """Whether its output device is given up now."""
        ...


def clamp_volume(volume: float) -> float:
    """Volume limited to 0.0..1.0 and rounded to 2 decimals (so steps of 0.1 stay exact)."""
    return round(min(1.0, max(0.0, float(volume))), 2)


def clamp_rate(wpm: int) -> int:
    """Rate limited to MIN_RATE..MAX_RATE words per minute."""
    return int(min(MAX_RATE, max(MIN_RATE, int(wpm))))


class VoiceControls:
    """Volume and rate for the speakers that render speech themselves (TTS and WAV timeline)."""

    volume: float
    rate: int
    _engine: FallbackRenderer

    def set_volume(self, volume: float) -> float:
        self.volume = clamp_volume(volume)
        return self.volume

    def set_rate(self, wpm: int) -> int:
        self.rate = clamp_rate(wpm)
        if self._engine.renderer is not None:
            self._engine.renderer.rate = self.rate
        return self.rate


def format_time(t: float) -> str:
    """Workout time as ``  m:ss`` (minutes right-aligned in 3 places)."""
    whole = max(0, int(t))
    return f"{whole // 60:3d}:{whole % 60:02d}"


class _Quiet:
    """Shared do-nothing parts of the speakers that have no queue."""

    volume: float = 0.8
    rate: int = 160

    def cancel_queued(self) -> int:
        return 0

    def interrupt(self) -> None:
        pass

    def is_speaking(self) -> bool:
        return False

    def set_volume(self, volume: float) -> float:
        self.volume = clamp_volume(volume)
        return self.volume

    def set_rate(self, wpm: int) -> int:
        self.rate = clamp_rate(wpm)
        return self.rate

    def speaking_intervals(self) -> list[SpeechInterval]:
        return []

    def add_listener(self, listener: SpeechListener) -> None:
        pass

    def close(self) -> None:
        pass


class NullSpeaker(_Quiet):
    """Says nothing; remembers what it was asked to say (``said``) for the curious."""

    def __init__(self) -> None:
        self.said: list[tuple[float, Priority, str]] = []

    def say(self, text: str, priority: Priority, t: float) -> None:
        if text.strip():
            self.said.append((t, priority, text))


class ConsoleSpeaker(_Quiet):
    """Prints each utterance with its workout time: ``[  3:05] coach: Land on your toes.``"""

    def __init__(self, stream: TextIO | None = None, name: str = "coach") -> None:
        self.stream = stream
        self.name = name

    def say(self, text: str, priority: Priority, t: float) -> None:
        if not text.strip():
            return
        stream = self.stream if self.stream is not None else sys.stdout
        print(f"[{format_time(t)}] {self.name}: {text.strip()}", file=stream, flush=True)


class MultiSpeaker:
    """Several speakers at once (say, a TtsSpeaker and a ConsoleSpeaker); the first one leads.

    ``is_speaking``, ``speaking_intervals`` and the returned volume/rate come from the first.
    """

    def __init__(self, speakers: Sequence[Speaker]) -> None:
        if not speakers:
            raise ValueError("MultiSpeaker needs at least one speaker")
        self.speakers = list(speakers)

    def say(self, text: str, priority: Priority, t: float) -> None:
        for speaker in self.speakers:
            speaker.say(text, priority, t)

    def cancel_queued(self) -> int:
        return [s.cancel_queued() for s in self.speakers][0]

    def interrupt(self) -> None:
        for speaker in self.speakers:
            speaker.interrupt()

    def is_speaking(self) -> bool:
        return self.speakers[0].is_speaking()

    def set_volume(self, volume: float) -> float:
        return [s.set_volume(volume) for s in self.speakers][0]

    def set_rate(self, wpm: int) -> int:
        return [s.set_rate(wpm) for s in self.speakers][0]

    def speaking_intervals(self) -> list[SpeechInterval]:
        return self.speakers[0].speaking_intervals()

    def add_listener(self, listener: SpeechListener) -> None:
        self.speakers[0].add_listener(listener)

    def close(self) -> None:
        for speaker in self.speakers:
            speaker.close()
