"""WAV source: every format reads as 16 kHz mono, bad files give one clear error, chunking."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from voicecoach.audio.wav import AudioFileSource, read_header, read_wav_16k, write_wav
from voicecoach.errors import VoicecoachError


def riff(path: Path, data: bytes, *, tag: int, channels: int, rate: int, bits: int,
         extensible: bool = False, extra_chunk: bool = False) -> Path:
    """Write a WAV file by hand (the stdlib cannot write float or extensible headers)."""
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 0xFFFE if extensible else tag, channels, rate, rate * align,
                      align, bits)
    if extensible:
        guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", tag) + guid_tail
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    if extra_chunk:  # an odd-sized LIST chunk before the data, padded to even length
        body += b"LIST" + struct.pack("<I", 5) + b"INFOx" + b"\x00"
    body += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def tone(rate: int, seconds: float = 1.0, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return amp * np.sin(2 * np.pi * freq * t)


def peak_freq(samples: np.ndarray, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[int(np.argmax(spectrum))])


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean((samples.astype(np.float64) / 32768.0) ** 2)))


def check_tone(path: Path, amp: float = 0.5, seconds: float = 1.0) -> None:
    out = read_wav_16k(path)
    assert out.dtype == np.int16
    assert abs(out.size - 16000 * seconds) <= 2
    assert abs(peak_freq(out) - 440.0) <= 2.0
    assert rms(out) == pytest.approx(amp / np.sqrt(2), rel=0.03)


def interleave(mono: np.ndarray, channels: int) -> np.ndarray:
    return np.repeat(mono[:, None], channels, axis=1).reshape(-1)


def test_16k_mono_int16_round_trip_is_exact(tmp_path: Path) -> None:
    samples = np.random.default_rng(1).integers(-32768, 32767, 16000, dtype=np.int16)
    write_wav(tmp_path / "a.wav", samples)
    assert np.array_equal(read_wav_16k(tmp_path / "a.wav"), samples)


@pytest.mark.parametrize("bits", [8, 16, 24, 32])
def test_integer_widths(tmp_path: Path, bits: int) -> None:
    x = tone(22050)
    if bits == 8:
        raw = np.round(x * 127 + 128).astype(np.uint8).tobytes()
    elif bits == 24:
        ints = np.round(x * 8388607).astype("<i4")
        raw = np.frombuffer(ints.tobytes(), np.uint8).reshape(-1, 4)[:, :3].tobytes()
    else:
        raw = np.round(x * (2 ** (bits - 1) - 1)).astype(f"<i{bits // 8}").tobytes()
    check_tone(riff(tmp_path / f"{bits}.wav", raw, tag=1, channels=1, rate=22050, bits=bits))


@pytest.mark.parametrize("bits", [32, 64])
def test_float(tmp_path: Path, bits: int) -> None:
    raw = tone(48000).astype(f"<f{bits // 8}").tobytes()
    check_tone(riff(tmp_path / "f.wav", raw, tag=3, channels=1, rate=48000, bits=bits))


def test_stereo_44k1_is_downmixed(tmp_path: Path) -> None:
    left = tone(44100)
    stereo = np.stack([left, np.zeros_like(left)], axis=1).reshape(-1)
    raw = np.round(stereo * 32767).astype("<i2").tobytes()
    path = riff(tmp_path / "s.wav", raw, tag=1, channels=2, rate=44100, bits=16)
    check_tone(path, amp=0.25)  # the mean of a tone and silence


def test_extensible_float_six_channels(tmp_path: Path) -> None:
    raw = interleave(tone(32000), 6).astype("<f4").tobytes()
    path = riff(tmp_path / "x.wav", raw, tag=3, channels=6, rate=32000, bits=32,
                extensible=True, extra_chunk=True)
    check_tone(path)


def test_silent_wav_is_fine(tmp_path: Path) -> None:
    write_wav(tmp_path / "quiet.wav", np.zeros(8000, dtype=np.int16))
    chunks = list(AudioFileSource(tmp_path / "quiet.wav").chunks())
    assert sum(c.samples for c in chunks) == 8000
    assert all(set(c.audio) == {0} for c in chunks)


@pytest.mark.parametrize("chunk_s", [0.01, 0.1, 0.5])
def test_chunks_cover_the_file_in_order(tmp_path: Path, chunk_s: float) -> None:
    raw = np.round(tone(44100, 1.23) * 32767).astype("<i2").tobytes()
    path = riff(tmp_path / "t.wav", raw, tag=1, channels=1, rate=44100, bits=16)
    chunks = list(AudioFileSource(path, chunk_s=chunk_s).chunks())
    step = round(chunk_s * 16000)
    assert all(c.samples == step for c in chunks[:-1])
    assert 0 < chunks[-1].samples <= step
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert after.start_s == pytest.approx(before.end_s)
    assert chunks[0].start_s == 0.0
    joined = b"".join(c.audio for c in chunks)
    assert joined == read_wav_16k(path).tobytes()  # the same samples whatever the chunk size


def bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = tmp_path / "good.wav"
    write_wav(good, np.round(tone(16000) * 32767).astype(np.int16))
    data = good.read_bytes()
    cases = {
        "empty": (b"", "empty"),
        "text": (b"this is not audio at all, just some words\n", "not a WAV or FLAC file"),
        "truncated": (data[: len(data) // 2], "truncated"),
        "half_frame": (data[:-1], "truncated"),
        "corrupt": (data[:12] + b"\xff" * 40, "corrupt"),
        "no_samples": (data[:40] + struct.pack("<I", 0), "no audio"),
        "mp3_codec": (data[:20] + struct.pack("<H", 0x55) + data[22:], "MP3"),
    }
    out = {}
    for name, (content, words) in cases.items():
        path = tmp_path / f"{name}.wav"
        path.write_bytes(content)
        out[name] = (path, words)
    out["missing"] = (tmp_path / "nope.wav", "no such file")
    out["folder"] = (tmp_path, "folder")
    return out


@pytest.mark.parametrize("case", ["empty", "text", "truncated", "half_frame", "corrupt",
                                  "no_samples", "mp3_codec", "missing", "folder"])
def test_bad_files_give_one_clear_error(tmp_path: Path, case: str) -> None:
    path, words = bad_files(tmp_path)[case]
    with pytest.raises(VoicecoachError) as info:
        AudioFileSource(path)
    line = info.value.one_line()
    assert str(path) in line and words in line
    assert "\n" not in line and info.value.hint


def test_header_reports_format(tmp_path: Path) -> None:
    raw = interleave(tone(8000, 0.5), 2).astype("<f4").tobytes()
    info = read_header(riff(tmp_path / "h.wav", raw, tag=3, channels=2, rate=8000, bits=32))
    assert (info.channels, info.rate, info.bits, info.frames) == (2, 8000, 32, 4000)
    assert info.seconds == pytest.approx(0.5)


def test_write_wav_rejects_stereo_arrays(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_wav(tmp_path / "x.wav", np.zeros((10, 2), dtype=np.int16))


def test_bad_chunk_length(tmp_path: Path) -> None:
    write_wav(tmp_path / "a.wav", np.zeros(100, dtype=np.int16))
    with pytest.raises(VoicecoachError, match="chunk length"):
        AudioFileSource(tmp_path / "a.wav", chunk_s=0)


@pytest.mark.parametrize("placeholder", [0, 0x7FFFF000, 0xFFFFFFFF])
def test_streamed_wav_without_a_data_size_reads_to_the_end(tmp_path: Path,
                                                            placeholder: int) -> None:
    """Writers that stream to a pipe (espeak-ng --stdout, ffmpeg) cannot fill in the size."""
    raw = np.round(tone(22050) * 32767).astype("<i2").tobytes()
    path = riff(tmp_path / "pipe.wav", raw, tag=1, channels=1, rate=22050, bits=16)
    data = bytearray(path.read_bytes())
    data[40:44] = struct.pack("<I", placeholder)
    path.write_bytes(bytes(data) + b"\x00")  # and a stray half frame at the end
    check_tone(path)


@pytest.mark.parametrize("chunk_s", [0.01, 0.1, 0.37])
def test_a_flac_file_streams_as_the_same_audio_in_a_wav_does(tmp_path: Path,
                                                               chunk_s: float) -> None:
    """A FLAC file goes through the WAV file's path after decoding (channels mixed, the same
    resampler, the same chunks): 44.1 kHz stereo 16-bit FLAC and WAV of the same samples give
    the same chunks, whatever the chunk size, and the file is told by its bytes, not its name."""
    import soundfile

    left = np.round(tone(44100, 1.23) * 32767).astype("<i2")
    stereo = np.stack([left, left // 2], axis=1)
    wav = riff(tmp_path / "t.wav", stereo.tobytes(), tag=1, channels=2, rate=44100, bits=16)
    flac = tmp_path / "t.flac"
    soundfile.write(str(flac), stereo, 44100, format="FLAC", subtype="PCM_16")
    named_wav = tmp_path / "flac_named.wav"
    named_wav.write_bytes(flac.read_bytes())
    expected = [(c.start_s, c.audio) for c in AudioFileSource(wav, chunk_s=chunk_s).chunks()]
    for path in (flac, named_wav):
        source = AudioFileSource(path, chunk_s=chunk_s)
        assert source.seconds == pytest.approx(1.23, abs=1 / 44100)
        assert [(c.start_s, c.audio) for c in source.chunks()] == expected


def test_a_flac_file_gone_after_it_was_opened_is_one_line(tmp_path: Path) -> None:
    import soundfile

    path = tmp_path / "gone.flac"
    soundfile.write(str(path), np.zeros(16000, np.int16), 16000, format="FLAC")
    source = AudioFileSource(path)
    path.unlink()
    with pytest.raises(VoicecoachError) as info:
        list(source.chunks())
    assert info.value.one_line() == (f"audio file {path}: is gone (moved or deleted while being "
                                     "read); check the path.")


def test_an_empty_flac_is_told_to_give_a_wav_or_flac_file(tmp_path: Path) -> None:
    """A phone app that saved nothing leaves a 0-byte .flac: the line names the empty file
    and asks for a WAV or FLAC file, not a WAV only."""
    path = tmp_path / "take.flac"
    path.write_bytes(b"")
    with pytest.raises(VoicecoachError) as info:
        AudioFileSource(path)
    line = info.value.one_line()
    assert str(path) in line and "empty (0 bytes)" in line and "WAV or FLAC" in line
