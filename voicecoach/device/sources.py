"""Where the device loop's audio comes from: the microphone (reopened after a loss) or WAV files
replayed as fast as possible or at audio pace. Each is an ``open_source`` for DeviceLoop: call
it for the next source, None when there is no more input."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from voicecoach.audio.chunk import AudioChunk, AudioSource
from voicecoach.audio.wav import AudioFileSource

_LOGGER = logging.getLogger(__name__)

#: Gives the next audio source, or None when there is no more input (replayed files).
SourceOpener = Callable[[], AudioSource | None]


class Paced:
    """A source replayed at audio pace: each chunk is given when its start time has come."""

    def __init__(self, source: AudioSource, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.source = source
        self._clock = clock
        self._sleep = sleep

    def chunks(self) -> Iterator[AudioChunk]:
        began = self._clock()
        for chunk in self.source.chunks():
            wait = chunk.start_s - (self._clock() - began)
            if wait > 0:
                self._sleep(wait)
            yield chunk

    def close(self) -> None:
        self.source.close()


def replay(paths: list[str], realtime: bool) -> SourceOpener:
    """The files one after the other (every file checked now, before listening); with
    ``realtime`` at audio pace, else as fast as the loop takes them."""
    sources = [AudioFileSource(p) for p in paths]
    pending = iter(sources)

    def next_source() -> AudioSource | None:
        source = next(pending, None)
        if source is None or not realtime:
            return source
        return Paced(source)
    return next_source


class Microphone:
    """The microphone as a SourceOpener: opened now (a missing device is one clear line at
    once), and at every later call reopened with the device list re-read first (a device
    plugged back in is only seen so): after a loss, and when the device loop reopens it to
    look for a lost speaker (``rereads_devices``: voicecoach.device.speaker_search)."""

    #: Opening it again re-reads PortAudio's device list.
    rereads_devices = True

    def __init__(self, device: str | int | None) -> None:
        from voicecoach.audio.mic import MicSource

        self.device = device
        self._first: list[AudioSource] = [MicSource(device)]

    def __call__(self) -> AudioSource | None:
        from voicecoach.audio.devices import refresh_devices
        from voicecoach.audio.mic import MicSource

        if self._first:
            return self._first.pop()
        refresh_devices()
        return MicSource(self.device)
