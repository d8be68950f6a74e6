"""Microphone source and device lookup, with a fake sounddevice module (no sound card here)."""

from __future__ import annotations

import builtins
import itertools
import logging
import sys
from typing import Any

import numpy as np
import pytest
from fake_sounddevice import FakeSoundDevice, FakeTimeInfo, device

from voicecoach.audio.devices import list_devices, resolve_device
from voicecoach.audio.mic import MAX_BACKLOG_S, MicSource, capture_age
from voicecoach.errors import VoicecoachError

DEVICES = [device("HDA Intel PCH: ALC3246 Analog", 2, 2), device("HDMI 0", 0, 8),
           device("USB PnP Sound Device: Audio", 1, 0), device("USB Headset Mic", 1, 2)]


@pytest.fixture
def fake_sd(monkeypatch: pytest.MonkeyPatch) -> FakeSoundDevice:
    t = np.arange(16000) / 16000
    sd = FakeSoundDevice(DEVICES, audio=np.round(8000 * np.sin(2 * np.pi * 300 * t)))
    monkeypatch.setitem(sys.modules, "sounddevice", sd)
    return sd


class Untouchable:
    """A status argument the callback must not look at."""

    def __bool__(self) -> bool:
        raise AssertionError("the callback inspected its status")

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the callback read .{name}")


def take(source: MicSource, n_samples: int) -> bytes:
    out = b""
    for chunk in source.chunks():
        out += chunk.audio
        if len(out) >= 2 * n_samples:
            source.close()
    return out


def test_callback_only_stamps_copies_and_enqueues(fake_sd: FakeSoundDevice) -> None:
    """The block is stamped with when its first sample was captured, on the caller's clock:
    PortAudio's stamps are on its own, so only how long ago (currentTime minus the ADC time)
    is taken from them."""
    mic = MicSource(clock=lambda: 7.0)
    buffer = bytearray(b"\x01\x02" * 80)
    mic._callback(buffer, 80, FakeTimeInfo(1000.0, 1000.03), Untouchable())
    buffer[:] = b"\x00" * len(buffer)
    data, captured = mic._queue.get_nowait()
    assert data == b"\x01\x02" * 80  # a copy, taken at once
    assert captured == pytest.approx(6.97)
    assert mic._queue.empty() and not fake_sd.streams  # nothing else happened


def test_a_host_api_without_adc_times_stamps_a_block_by_its_length() -> None:
    """Some host APIs leave inputBufferAdcTime 0: the block is taken as just captured."""
    assert capture_age(FakeTimeInfo(0.0, 123.4), 0.1) == 0.1
    assert capture_age(FakeTimeInfo(123.5, 123.4), 0.1) == 0.1  # captured after its callback
    assert capture_age(FakeTimeInfo(100.0, 123.4), 0.1) == 0.1  # 23 s: nonsense
    assert capture_age(None, 0.05) == 0.05
    assert capture_age(FakeTimeInfo(123.35, 123.4), 0.1) == pytest.approx(0.05)


def test_a_reader_behind_real_time_keeps_the_newest_audio(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """10 s of audio all arrive before the reader takes any: it finds the newest
    MAX_BACKLOG_S of it (a stop said now), the rest is dropped, counted and logged once.
    Audio time counts the samples kept; each chunk still says when it was captured."""
    blocks = np.repeat(np.arange(100), 1600)  # 0.1 s blocks, each holding its own number
    sd = FakeSoundDevice(DEVICES, audio=blocks, overrun=True)
    monkeypatch.setitem(sys.modules, "sounddevice", sd)
    ends = itertools.count(1)  # the callback runs as its block ends, in real time
    mic = MicSource(chunk_s=0.1, clock=lambda: 300.0 + next(ends) / 10)
    kept = round(MAX_BACKLOG_S / 0.1)
    got = []
    with caplog.at_level(logging.INFO, logger="voicecoach.audio.mic"):
        for chunk in mic.chunks():
            got.append(int(np.frombuffer(chunk.audio, "<i2")[0]))
            assert chunk.start_s == pytest.approx((len(got) - 1) / 10)
            assert chunk.captured == pytest.approx(300.0 + got[-1] / 10)
            if len(got) == kept:
                mic.close()
    assert got == list(range(100 - kept, 100))  # the newest, in order
    assert mic.dropped == 100 - kept and mic.dropped_frames == (100 - kept) * 1600
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "behind real time" in warnings[0].getMessage()
    assert any(f"{100 - kept} block(s)" in r.getMessage() for r in caplog.records)


def test_close_on_a_full_queue_keeps_its_end_mark(fake_sd: FakeSoundDevice) -> None:
    """Nobody reads: close() does not wait for room, and blocks PortAudio still delivers
    before the stream stops never push the end mark out."""
    mic = MicSource(chunk_s=0.1)
    block = bytearray(3200)
    size = round(MAX_BACKLOG_S / 0.1)
    for _ in range(size + 5):
        mic._callback(block, 1600, None, None)
    assert mic._queue.full() and mic.dropped == 5
    mic.close()
    for _ in range(3 * size):
        mic._callback(block, 1600, None, None)
    held = [mic._queue.get_nowait() for _ in range(mic._queue.qsize())]
    assert len(held) == size and held.count(None) == 1


def test_streams_16k_chunks_with_audio_time(fake_sd: FakeSoundDevice) -> None:
    mic = MicSource(chunk_s=0.1)
    chunks = []
    for chunk in mic.chunks():
        chunks.append(chunk)
        if len(chunks) == 10:
            mic.close()
    stream = fake_sd.streams[0]
    assert stream.kwargs["samplerate"] == 16000 and stream.kwargs["channels"] == 1
    assert stream.kwargs["dtype"] == "int16"
    assert [c.start_s for c in chunks] == pytest.approx([i / 10 for i in range(10)])
    got = np.frombuffer(b"".join(c.audio for c in chunks), "<i2")
    assert np.array_equal(got, np.asarray(fake_sd.audio, dtype=np.int16))
    assert fake_sd.closed == 1


def test_resampled_chunks_say_when_their_first_sample_was_captured(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """0.1 s blocks at 44.1 kHz resampled into 0.1 s chunks at 16 kHz: soxr holds back 33 ms
    of its first block's output, so the chunks' samples straddle the blocks they came out
    with; each chunk's capture time is still that of the device frame it was made from."""
    sd = FakeSoundDevice([device("Built-in", 1, 0, rate=44100.0)], rates=(44100,),
                         audio=np.zeros(44100, np.int16))
    monkeypatch.setitem(sys.modules, "sounddevice", sd)
    ends = itertools.count(1)
    mic = MicSource(chunk_s=0.1, clock=lambda: 50.0 + next(ends) / 10)
    chunks = []
    for chunk in mic.chunks():
        chunks.append(chunk)
        if len(chunks) == 8:
            mic.close()
    assert [c.captured - 50.0 - c.start_s for c in chunks] == pytest.approx([0.0] * 8, abs=1e-9)


def test_resamples_when_16k_is_not_supported(monkeypatch: pytest.MonkeyPatch) -> None:
    t = np.arange(44100) / 44100
    sd = FakeSoundDevice([device("Built-in", 1, 0, rate=44100.0)], rates=(44100,),
                         audio=np.round(8000 * np.sin(2 * np.pi * 440 * t)))
    monkeypatch.setitem(sys.modules, "sounddevice", sd)
    mic = MicSource(chunk_s=0.05)
    got = np.frombuffer(take(mic, 14000), "<i2")
    assert sd.streams[0].kwargs["samplerate"] == 44100
    spectrum = np.abs(np.fft.rfft(got[2000:14000].astype(float)))
    peak = np.fft.rfftfreq(12000, 1 / 16000)[int(np.argmax(spectrum))]
    assert abs(peak - 440) < 3


def test_device_by_number_and_by_name(fake_sd: FakeSoundDevice) -> None:
    assert resolve_device("2", "input") == 2
    assert resolve_device("pnp", "input") == 2
    assert resolve_device("hdmi", "output") == 1
    assert resolve_device(None, "input") is None  # the default (device 0) has inputs
    assert MicSource(device="headset").device == 3


@pytest.mark.parametrize("spec, words", [("bluetooth", "no input device matches 'bluetooth'"),
                                         ("usb", "matches several input devices"),
                                         ("7", "input device 7 does not exist"),
                                         ("hdmi", "no input device matches 'hdmi'")])
def test_bad_device_names_list_what_exists(fake_sd: FakeSoundDevice, spec: str,
                                           words: str) -> None:
    with pytest.raises(VoicecoachError) as info:
        MicSource(device=spec)
    line = info.value.one_line()
    assert words in line
    if "several" not in words:
        assert "0: HDA Intel PCH" in line and "3: USB Headset Mic" in line


def test_no_input_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", FakeSoundDevice([device("HDMI", 0, 2)]))
    with pytest.raises(VoicecoachError, match="no microphone found") as info:
        MicSource()
    assert "WAV" in info.value.hint


def test_open_failure_is_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    sd = FakeSoundDevice(DEVICES, open_error="Device unavailable [PaErrorCode -9985]")
    monkeypatch.setitem(sys.modules, "sounddevice", sd)
    with pytest.raises(VoicecoachError, match="cannot open the microphone: Device unavailable"):
        next(MicSource().chunks())


def test_a_silent_device_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", FakeSoundDevice(DEVICES, audio=()))
    with pytest.raises(VoicecoachError, match="sent no audio"):
        next(MicSource(chunk_s=0.01, stall_s=0.05).chunks())


def test_missing_portaudio(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def failing(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(builtins, "__import__", failing)
    with pytest.raises(VoicecoachError, match="PortAudio library not found") as info:
        MicSource()
    assert "apt-get install libportaudio2" in info.value.one_line()


def test_list_devices(fake_sd: FakeSoundDevice) -> None:
    text = list_devices()
    assert "USB Headset Mic" in text and "HDMI 0" in text


def test_real_sounddevice_without_a_sound_card_is_one_clear_error() -> None:
    sd = pytest.importorskip("sounddevice")
    if any(d["max_input_channels"] > 0 for d in sd.query_devices()):
        pytest.skip("this machine has a microphone")
    with pytest.raises(VoicecoachError, match="no microphone found"):
        MicSource()
