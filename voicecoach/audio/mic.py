"""The microphone as an audio source: a PortAudio callback that only enqueues, 16 kHz mono out."""

from __future__ import annotations

import logging
import queue
from collections.abc import Iterator
from typing import Any

import numpy as np
import soxr

from voicecoach.audio.chunk import SAMPLE_RATE, AudioChunk
from voicecoach.audio.devices import resolve_device, sounddevice_module
from voicecoach.errors import VoicecoachError

_LOGGER = logging.getLogger(__name__)


class MicSource:
    """Stream the microphone as 16 kHz mono int16 chunks of ``chunk_s`` seconds.

    ``start_s`` counts the samples received, so it is audio time. Opens at 16 kHz when the
    device allows it, else at the device's own rate, resampled with soxr.
    """

    def __init__(self, device: str | int | None = None, chunk_s: float = 0.1,
                 stall_s: float = 5.0) -> None:
        if chunk_s <= 0:
            raise VoicecoachError(f"chunk length {chunk_s} s is not positive",
                                  "give a chunk length above 0 ms")
        self._sd = sounddevice_module()
        self.device = resolve_device(device, "input", self._sd)
        self.chunk_s = chunk_s
        self.stall_s = max(stall_s, 4 * chunk_s)
        self.rate = self._pick_rate()
        self._queue: queue.Queue[bytes | None] = queue.Queue()  # None: closed
        self._stream: Any = None
        self._closed = False

    def _pick_rate(self) -> int:
        sd = self._sd
        try:
            sd.check_input_settings(device=self.device, channels=1, dtype="int16",
                                    samplerate=SAMPLE_RATE)
            return SAMPLE_RATE
        except (sd.PortAudioError, ValueError) as exc:
            _LOGGER.debug("16 kHz not supported by the input device (%s)", exc)
        try:
            info = sd.query_devices(self.device, "input")
            rate = int(round(float(info["default_samplerate"])))
            sd.check_input_settings(device=self.device, channels=1, dtype="int16",
                                    samplerate=rate)
        except (sd.PortAudioError, ValueError, KeyError, TypeError) as exc:
            raise VoicecoachError(f"the microphone cannot record mono 16-bit audio ({exc})",
                                  "choose another input device with --device") from None
        _LOGGER.info("recording at %d Hz and resampling to %d Hz", rate, SAMPLE_RATE)
        return rate

    def _callback(self, indata: Any, frames: int, time: Any, status: Any) -> None:
        """PortAudio's thread: copy and enqueue, nothing else (no logging, no locks)."""
        self._queue.put(bytes(indata))

    def _open(self) -> None:
        sd = self._sd
        try:
            self._stream = sd.RawInputStream(
                samplerate=self.rate, blocksize=int(round(self.rate * self.chunk_s)),
                device=self.device, channels=1, dtype="int16", callback=self._callback)
            self._stream.start()
        except sd.PortAudioError as exc:
            self.close()
            raise VoicecoachError(f"cannot open the microphone: {exc}",
                                  "check it is plugged in and not used by another program; "
                                  "see --list-devices") from None

    def chunks(self) -> Iterator[AudioChunk]:
        self._open()
        step = max(1, int(round(self.chunk_s * SAMPLE_RATE)))
        resampler = (None if self.rate == SAMPLE_RATE
                     else soxr.ResampleStream(self.rate, SAMPLE_RATE, 1, dtype="float32"))
        pending = np.zeros(0, dtype=np.int16)
        sent = 0
        try:
            while not self._closed:
                try:
                    data = self._queue.get(timeout=self.stall_s)
                except queue.Empty:
                    raise VoicecoachError(
                        f"the microphone sent no audio for {self.stall_s:g} s",
                        "check the input device (--list-devices) and its cable") from None
                if data is None or self._closed:
                    break
                block = np.frombuffer(data, dtype="<i2")
                if resampler is not None:
                    out = resampler.resample_chunk(block.astype(np.float32) / 32768.0)
                    block = np.clip(np.round(out * 32768.0), -32768, 32767).astype(np.int16)
                pending = np.concatenate([pending, block])
                while pending.size >= step:
                    yield AudioChunk(pending[:step].tobytes(), sent / SAMPLE_RATE)
                    sent += step
                    pending = pending[step:]
        finally:
            self._stop_stream()

    def _stop_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.stop()
                stream.close()
            except self._sd.PortAudioError as exc:
                _LOGGER.debug("closing the microphone: %s", exc)

    def close(self) -> None:
        """Stop: the chunk iterator ends at its next step."""
        self._closed = True
        self._queue.put(None)
        self._stop_stream()
