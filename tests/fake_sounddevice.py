"""A stand-in for the sounddevice module (there is no sound card here): it records what it got."""

from __future__ import annotations

import queue
import threading
import time
import types
from collections.abc import Callable
from typing import Any

import numpy as np


class FakePortAudioError(Exception):
    """Like sounddevice.PortAudioError."""


class FakeDeviceList(list):  # type: ignore[type-arg]
    """Like sounddevice.DeviceList: a list of dicts that prints as a table."""

    def __str__(self) -> str:
        return "\n".join(f"  {i} {d['name']}, ({d['max_input_channels']} in, "
                         f"{d['max_output_channels']} out)" for i, d in enumerate(self))


def device(name: str, inputs: int = 1, outputs: int = 0, rate: float = 48000.0) -> dict[str, Any]:
    return {"name": name, "max_input_channels": inputs, "max_output_channels": outputs,
            "default_samplerate": rate}


class FakeTimeInfo:
    """Like the callback's ``time`` (PortAudio's PaStreamCallbackTimeInfo): stamps on the
    stream's own clock, which is not the caller's."""

    def __init__(self, adc: float, current: float) -> None:
        self.inputBufferAdcTime = adc  # noqa: N815 - PortAudio's names
        self.currentTime = current  # noqa: N815
        self.outputBufferDacTime = 0.0  # noqa: N815


#: Where the fake streams' clock stands when the caller's reads 0 (PortAudio counts its own).
PA_EPOCH = 1000.0


class FakeStream:
    """Like RawInputStream: on start() a thread feeds ``audio`` to the callback in blocks, as
    fast as the reader takes them (it waits while the microphone's queue is full, so nothing
    is dropped); with the sound device's ``overrun``, all at once in start(), before the
    reader has taken any (a reader far slower than real time); with ``manual``, nothing: the
    test hands blocks over with :meth:`deliver`. Each block's ``time`` says it was captured
    in real time from the stream's start, on a clock :data:`PA_EPOCH` ahead of the caller's,
    and the callback runs just as it ends. It feeds the sound device's next ``next_audio``
    if there is one left (the user's voice goes on in a reopened microphone), else its
    ``audio``."""

    def __init__(self, sd: FakeSoundDevice, **kwargs: Any) -> None:
        if sd.open_error:
            raise FakePortAudioError(sd.open_error)
        self.sd = sd
        self.kwargs = kwargs
        self.audio = sd.next_audio.pop(0) if sd.next_audio else sd.audio
        self.stopped = False
        self.thread: threading.Thread | None = None
        sd.streams.append(self)

    def start(self) -> None:
        if self.sd.manual:
            if self.sd.on_start is not None:
                self.sd.on_start(self)
            return
        if self.sd.interrupt_after:
            # Like a user pressing Ctrl-C once everything was heard, decided by events, not
            # by time: the whole recording is queued now, in the caller's thread, and the
            # reader's next read after its last block raises KeyboardInterrupt, as a Ctrl-C
            # during a blocked read does. Nothing here depends on how busy the machine is.
            owner = self.kwargs["callback"].__self__
            owner._queue = _CtrlCAfterQueue()
            self._feed()
            owner._queue.fed_all = True
            return
        if self.sd.overrun:
            self._feed()
            return
        self.thread = threading.Thread(target=self._feed, daemon=True)
        self.thread.start()

    def _feed(self) -> None:
        block = self.kwargs["blocksize"] or 160
        rate = self.kwargs["samplerate"]
        data = np.asarray(self.audio, dtype="<i2").tobytes()
        waiting = self.kwargs["callback"].__self__._queue
        for k, offset in enumerate(range(0, len(data), block * 2)):
            while not self.sd.overrun and waiting.full() and not self.stopped:
                time.sleep(0.001)  # faster than real time, never faster than the reader
            if self.stopped:
                return
            buffer = bytearray(data[offset:offset + block * 2])  # reused memory, like cffi's
            self.kwargs["callback"](buffer, len(buffer) // 2,
                                    FakeTimeInfo(PA_EPOCH + k * block / rate,
                                                 PA_EPOCH + (k + 1) * block / rate),
                                    self.sd.status)
            buffer[:] = b"\x55" * len(buffer)  # PortAudio reuses its buffer: a copy must be kept
        if self.sd.interrupt_after:  # a second of silence after the words, then Ctrl-C
            silence = bytearray(block * 2)
            for _ in range(int(self.kwargs["samplerate"] // block) + 1):
                self.kwargs["callback"](silence, block, None, self.sd.status)

    def deliver(self, samples: Any, captured: float, now: float) -> None:
        """(``manual``) PortAudio's thread hands over one block whose first sample was
        captured at ``captured``, the callback running at ``now`` (both on the caller's
        clock; the ``time`` given is on the stream's own)."""
        buffer = bytearray(np.asarray(samples, dtype="<i2").tobytes())
        self.kwargs["callback"](buffer, len(buffer) // 2,
                                FakeTimeInfo(PA_EPOCH + captured, PA_EPOCH + now), self.sd.status)
        buffer[:] = b"\x55" * len(buffer)

    def stop(self) -> None:
        self.stopped = True

    def close(self) -> None:
        self.stopped = True
        self.sd.closed += 1


class _CtrlCAfterQueue(queue.Queue):  # type: ignore[type-arg]
    """The microphone's queue, raising KeyboardInterrupt on the first read after the last
    block once everything was fed (``fed_all``)."""

    fed_all = False

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if self.fed_all and self.empty():
            raise KeyboardInterrupt
        return super().get(block, timeout)


class FakeOutputStream:
    """Like OutputStream (blocking writes): keeps what is written; while the sound device's
    ``output_stuck`` is set, a write never returns until ``output_released`` is set, as a
    driver that stops taking sound without failing (a speaker pulled out, a stalled sound
    server) leaves PortAudio's blocking write. Once the sound device has ``replugged`` set,
    a device in PortAudio's list that is not plugged in now (not in ``replugged``: the very
    same entry, as a device plugged back in is a new one to the system) fails to open."""

    def __init__(self, sd: FakeSoundDevice, **kwargs: Any) -> None:
        if sd.open_error:
            raise FakePortAudioError(sd.open_error)
        if sd.replugged is not None:
            index = kwargs.get("device")
            listed = sd.devices[sd.default.device[1] if index is None else index]
            if not any(listed is plugged for plugged in sd.replugged):
                raise FakePortAudioError("Error opening OutputStream: Unanticipated host error "
                                         "[PaErrorCode -9999]: 'No such device' [ALSA error -19]")
        self.sd = sd
        self.kwargs = kwargs
        self.written: list[Any] = []
        sd.outputs.append(self)

    def __enter__(self) -> FakeOutputStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sd.closed += 1

    def write(self, data: Any) -> None:
        if self.sd.output_stuck:
            self.sd.writes_stuck.release()
            self.sd.output_released.wait()
        self.written.append(np.array(data))

    def abort(self) -> None:
        pass


class FakeSoundDevice(types.ModuleType):
    """``devices`` as query_devices() gives them; ``rates`` the sample rates the input accepts."""

    PortAudioError = FakePortAudioError

    def __init__(self, devices: list[dict[str, Any]], rates: tuple[int, ...] = (16000,),
                 default: tuple[int, int] = (0, 0), audio: Any = (),
                 open_error: str = "", interrupt_after: bool = False,
                 overrun: bool = False, manual: bool = False) -> None:
        super().__init__("sounddevice")
        self.devices = FakeDeviceList(devices)
        self.rates = rates
        self.default = types.SimpleNamespace(device=list(default))
        self.audio = audio
        self.open_error = open_error
        self.interrupt_after = interrupt_after
        self.overrun = overrun
        self.manual = manual
        #: (``manual``) Called with the stream when it starts, to hand over its first blocks.
        self.on_start: Callable[[FakeStream], None] | None = None
        self.status = None
        self.streams: list[FakeStream] = []
        self.closed = 0
        #: Output: every write blocks (until ``output_released``) while this is set; each
        #: write that blocks releases ``writes_stuck`` once.
        self.output_stuck = False
        self.output_released = threading.Event()
        self.writes_stuck = threading.Semaphore(0)
        self.outputs: list[FakeOutputStream] = []
        #: How many times PortAudio was made to read the device list again.
        self.reinitialised = 0
        #: The devices plugged in now, if not ``devices``: PortAudio lists them only once it
        #: has read the list again (``_initialize``)
        self.replugged: list[dict[str, Any]] | None = None
        #: What each new input stream feeds, in turn (then ``audio``)
        self.next_audio: list[Any] = []

    def query_devices(self, device: int | None = None, kind: str | None = None) -> Any:
        if device is None and kind is None:
            return self.devices
        index = self.default.device[0 if kind == "input" else 1] if device is None else device
        if not 0 <= index < len(self.devices):
            raise FakePortAudioError(f"Error querying device {index}")
        return self.devices[index]

    def check_input_settings(self, device: int | None = None, channels: int = 1,
                             dtype: str = "int16", samplerate: float | None = None) -> None:
        if samplerate not in self.rates:
            raise FakePortAudioError("Invalid sample rate [PaErrorCode -9997]")

    def RawInputStream(self, **kwargs: Any) -> FakeStream:  # noqa: N802 - sounddevice's name
        return FakeStream(self, **kwargs)

    def OutputStream(self, **kwargs: Any) -> FakeOutputStream:  # noqa: N802
        return FakeOutputStream(self, **kwargs)

    def _terminate(self) -> None:
        # PortAudio closes every open stream: a blocked write returns
        self.output_released.set()

    def _initialize(self) -> None:
        self.reinitialised += 1
        if self.replugged is not None:  # the devices as they are now
            self.devices = FakeDeviceList(self.replugged)
