"""Where rendered speech is played: a sounddevice output stream, or silence of the same length."""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Protocol

import numpy as np
import soxr

from voicecoach.audio.chunk import SAMPLE_RATE
from voicecoach.audio.devices import PORTAUDIO_STREAMS

_LOGGER = logging.getLogger(__name__)


class SinkError(RuntimeError):
    """The output device is missing, was unplugged, or PortAudio is not installed."""


class AudioSink(Protocol):
    """Plays 16 kHz int16 mono audio, blocking, and stops early when ``stop`` is set."""

    def play(self, audio: np.ndarray, stop: threading.Event,
             on_start: Callable[[], None] | None = None) -> bool:
        """Play ``audio``; call ``on_start`` as sound begins; return False if cut off by ``stop``.

        Raise SinkError if the device fails."""
        ...

    def close(self) -> None:
        """Release the device."""
        ...


class SilentSink:
    """No device: takes as long as the audio would (so timing stays the same), plays nothing."""

    def __init__(self) -> None:
        self.played_s = 0.0

    def play(self, audio: np.ndarray, stop: threading.Event,
             on_start: Callable[[], None] | None = None) -> bool:
        if on_start is not None:
            on_start()
        seconds = audio.size / SAMPLE_RATE
        cut = stop.wait(seconds)
        self.played_s += seconds
        return not cut

    def close(self) -> None:
        pass


def load_sounddevice(module: ModuleType | None = None) -> ModuleType:
    """The sounddevice module, or SinkError if it or the PortAudio library is missing."""
    if module is not None:
        return module
    try:
        return importlib.import_module("sounddevice")
    except (ImportError, OSError) as exc:  # OSError: "PortAudio library not found"
        raise SinkError(f"sounddevice/PortAudio is not available ({exc})") from None


class SoundDeviceSink:
    """An output stream opened per utterance, written in short blocks so it can be cut off.

    Opening per utterance costs a few tens of milliseconds but means an unplugged speaker is
    found on the next utterance and a re-plugged one comes back once PortAudio has read the
    devices again (voicecoach.audio.devices.refresh_devices, done when the microphone is
    reopened and when the speaker is tried again after a failure; the stream is registered
    open in PORTAUDIO_STREAMS meanwhile). ``device`` is a PortAudio device number
    (None for the default); ``spec``, the configured name or number, is resolved again at
    each open, since a device plugged back in may come back under another number; ``sd``
    injects a module.
    """

    def __init__(self, device: int | None = None, block_s: float = 0.05,
                 sd: ModuleType | None = None, spec: str | int | None = None) -> None:
        self.device = device
        self.block_s = block_s
        self._sd = sd
        self.spec = spec

    def _open(self, sd: ModuleType) -> tuple[object, int]:
        if self.spec is not None:
            from voicecoach.audio.devices import resolve_device

            self.device = resolve_device(self.spec, "output", sd)
        try:
            stream = sd.OutputStream(samplerate=SAMPLE_RATE, channels=1, dtype="int16",
                                     device=self.device)
            return stream, SAMPLE_RATE
        except Exception:  # noqa: BLE001 - the device may not do 16 kHz: try its own rate
            info = sd.query_devices(self.device, "output")
            rate = int(info["default_samplerate"])
            stream = sd.OutputStream(samplerate=rate, channels=1, dtype="int16",
                                     device=self.device)
            return stream, rate

    def play(self, audio: np.ndarray, stop: threading.Event,
             on_start: Callable[[], None] | None = None) -> bool:
        sd = load_sounddevice(self._sd)
        try:
            with PORTAUDIO_STREAMS.held():  # a re-read of the devices waits for it
                return self._play(sd, audio, stop, on_start)
        except Exception as exc:  # noqa: BLE001 - PortAudioError and friends
            if isinstance(exc, SinkError):
                raise
            raise SinkError(f"output device {self._name()} failed: {exc}") from None

    def _play(self, sd: ModuleType, audio: np.ndarray, stop: threading.Event,
              on_start: Callable[[], None] | None) -> bool:
        stream, rate = self._open(sd)
        if rate != SAMPLE_RATE:
            audio = np.clip(soxr.resample(audio.astype(np.float32), SAMPLE_RATE, rate),
                            -32768, 32767).astype(np.int16)
        block = max(1, int(self.block_s * rate))
        with stream:  # type: ignore[attr-defined]
            if on_start is not None:
                on_start()
            for offset in range(0, audio.size, block):
                if stop.is_set():
                    stream.abort()  # type: ignore[attr-defined]
                    return False
                stream.write(audio[offset:offset + block].reshape(-1, 1))  # type: ignore
        return True

    def refresh_devices(self, wait_s: float) -> bool:
        """Read the device list again (voicecoach.audio.devices.refresh_devices); True if
        done. The speaker's stream is reopened from it at the next utterance."""
        from voicecoach.audio.devices import refresh_devices

        try:
            sd = load_sounddevice(self._sd)
        except SinkError:
            return False
        return refresh_devices(sd, wait_s)

    def _name(self) -> str:
        return "default" if self.device is None else f"#{self.device}"

    def close(self) -> None:
        pass
