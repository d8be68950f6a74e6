"""The microphone as an audio source: a PortAudio callback that only enqueues, 16 kHz mono out."""

from __future__ import annotations

import logging
import math
import queue
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import soxr

from voicecoach.audio.chunk import SAMPLE_RATE, AudioChunk
from voicecoach.audio.devices import PORTAUDIO_STREAMS, resolve_device, sounddevice_module
from voicecoach.errors import VoicecoachError

_LOGGER = logging.getLogger(__name__)

#: Most audio the microphone holds for a loop that runs behind real time (seconds). Enough for
#: a burst of the spotter's second look (about 0.5 s of CPU per look on a Raspberry Pi 4, see
#: the README) to pass without losing a sample; beyond it the oldest audio is dropped, so a
#: "stop" said now is heard at most this much late, and memory stays bounded.
MAX_BACKLOG_S = 2.0
#: PortAudio's capture stamps are believed when they say the block's first sample was taken
#: at most this long before its callback ran (seconds); else the block's length is taken.
MAX_CAPTURE_AGE_S = 1.0


def capture_age(stamps: Any, block_s: float) -> float:
    """How long before its callback a block's first sample was captured (seconds), from
    PortAudio's ``time`` (``currentTime - inputBufferAdcTime``, both on the stream's own
    clock); ``block_s`` when a host API leaves the ADC time 0 or gives nonsense."""
    adc = float(getattr(stamps, "inputBufferAdcTime", 0.0) or 0.0)
    age = float(getattr(stamps, "currentTime", 0.0) or 0.0) - adc
    return age if adc > 0.0 and 0.0 <= age <= MAX_CAPTURE_AGE_S else block_s


class MicSource:
    """Stream the microphone as 16 kHz mono int16 chunks of ``chunk_s`` seconds.

    ``start_s`` counts the samples received, so it is audio time. Opens at 16 kHz when the
    device allows it, else at the device's own rate, resampled with soxr.

    A reader slower than real time finds at most :data:`MAX_BACKLOG_S` of audio waiting: the
    oldest blocks are dropped to keep the newest (a stop said now matters more than old
    audio), counted in ``dropped`` and logged once per stream. Dropped audio is not counted
    in ``start_s`` (every recogniser counts the samples it is given, and the loop's clock must
    agree with them).

    Each chunk says when it was captured (``AudioChunk.captured``, on ``clock``, the speaker's
    ``time.monotonic``): the callback stamps its block with ``clock()`` less the block's age
    by PortAudio's ADC time (:func:`capture_age`), so the echo canceller pairs the block with
    what the speaker played then, however long it waited in the queue and across dropped
    blocks (voicecoach.device.loop.AudioClock).
    """

    def __init__(self, device: str | int | None = None, chunk_s: float = 0.1,
                 stall_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        if chunk_s <= 0:
            raise VoicecoachError(f"chunk length {chunk_s} s is not positive",
                                  "give a chunk length above 0 ms")
        self._sd = sounddevice_module()
        self.device = resolve_device(device, "input", self._sd)
        self.chunk_s = chunk_s
        self.stall_s = max(stall_s, 4 * chunk_s)
        self.rate = self._pick_rate()
        self._clock = clock
        #: (samples, capture time of the first) per block; None: closed
        self._queue: queue.Queue[tuple[bytes, float] | None] = queue.Queue(
            maxsize=max(2, math.ceil(MAX_BACKLOG_S / chunk_s - 1e-9)))
        self._stream: Any = None
        self._held: object | None = None  # its token in PORTAUDIO_STREAMS while open
        self._closed = False
        #: Blocks dropped, oldest first, because the reader fell behind (PortAudio's thread
        #: counts; read it anywhere), and the device frames they held.
        self.dropped = 0
        self.dropped_frames = 0

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
        """PortAudio's thread: stamp, copy and enqueue, nothing else (no logging, no locks but
        the queue's, never a wait; ``status`` unread). A full queue loses its oldest block to
        the new one."""
        captured = self._clock() - capture_age(time, frames / self.rate)
        item = (bytes(indata), captured)
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                pass
            try:
                old = self._queue.get_nowait()
            except queue.Empty:  # the reader took one meanwhile: there is room now
                continue
            if old is None:  # closed: the end mark stays, the new block is not wanted
                self._put_end()
                return
            self.dropped += 1
            self.dropped_frames += len(old[0]) // 2

    def _put_end(self) -> None:
        """Enqueue the end mark without waiting: a full queue gives up its oldest block."""
        while True:
            try:
                self._queue.put_nowait(None)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    pass

    def _open(self) -> None:
        sd = self._sd
        try:
            self._stream = sd.RawInputStream(
                samplerate=self.rate, blocksize=int(round(self.rate * self.chunk_s)),
                device=self.device, channels=1, dtype="int16", callback=self._callback)
            self._stream.start()
            # open: a re-read of the device list (the speaker's, after a failure) waits for it
            self._held = PORTAUDIO_STREAMS.opened()
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
        # (first device frame, capture time) of the blocks given to the resampler, oldest
        # first; output sample n is made from device frame n * rate / SAMPLE_RATE
        blocks: deque[tuple[int, float]] = deque()
        fed = 0
        sent = 0
        warned = False
        try:
            while not self._closed:
                try:
                    item = self._queue.get(timeout=self.stall_s)
                except queue.Empty:
                    raise VoicecoachError(
                        f"the microphone sent no audio for {self.stall_s:g} s",
                        "check the input device (--list-devices) and its cable") from None
                if item is None or self._closed:
                    break
                data, stamp = item
                if self.dropped and not warned:
                    warned = True
                    _LOGGER.warning(
                        "microphone: the coach runs behind real time, so the oldest audio is "
                        "dropped to keep at most %g s waiting (this machine is too slow for "
                        "the settings: the second look, [speech] verify, costs the most)",
                        MAX_BACKLOG_S)
                block = np.frombuffer(data, dtype="<i2")
                blocks.append((fed, stamp))
                fed += block.size
                if resampler is not None:
                    out = resampler.resample_chunk(block.astype(np.float32) / 32768.0)
                    block = np.clip(np.round(out * 32768.0), -32768, 32767).astype(np.int16)
                pending = np.concatenate([pending, block])
                while pending.size >= step:
                    frame = sent * self.rate / SAMPLE_RATE
                    while len(blocks) > 1 and blocks[1][0] <= frame:
                        blocks.popleft()
                    first, captured = blocks[0]
                    yield AudioChunk(pending[:step].tobytes(), sent / SAMPLE_RATE,
                                     captured=captured + (frame - first) / self.rate)
                    sent += step
                    pending = pending[step:]
        finally:
            self._stop_stream()
            if self.dropped:
                _LOGGER.info("microphone: %d block(s) of audio (%.1f s) dropped in all: the "
                             "coach ran behind real time", self.dropped,
                             self.dropped_frames / self.rate)

    def _stop_stream(self) -> None:
        stream, self._stream = self._stream, None
        held, self._held = self._held, None
        if held is not None:
            PORTAUDIO_STREAMS.closed(held)
        if stream is not None:
            try:
                stream.stop()
                stream.close()
            except self._sd.PortAudioError as exc:
                _LOGGER.debug("closing the microphone: %s", exc)

    def close(self) -> None:
        """Stop: the chunk iterator ends at its next step."""
        self._closed = True
        self._put_end()  # never waits, even on a full queue nobody reads
        self._stop_stream()
