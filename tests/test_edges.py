"""Issue 18, 3, 5 and 6: edge numbers, output errors, unusable paths and broken inputs are one
line on stderr and a non-zero exit, never a traceback, a hang or a silent success."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from config_helpers import empty_config
from conftest import REPO

from voicecoach import cli
from voicecoach.errors import BROKEN_PIPE_EXIT
from voicecoach.history import HistoryDB


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICECOACH_")}
    env.update(VOICECOACH_HOME=str(home), VOICECOACH_CONFIG=empty_config(home.parent))
    env.update(extra)
    return env


def vc(*args: str, home: Path, stdout: object = subprocess.PIPE, **extra: str
       ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "voicecoach", *args], cwd=REPO,
                          env=env_for(home, **extra), stdout=stdout, stderr=subprocess.PIPE,
                          stdin=subprocess.DEVNULL, text=True, timeout=300)


def one_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = [x for x in result.stderr.strip().splitlines()
             if not x.startswith(("WARNING ", "listening with"))]  # what the engine says
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli.main(list(args))
    return code, capsys.readouterr().err


# ---------------------------------------------------------------- numbers, small end too
@pytest.mark.parametrize("command", ["demo", "run"])
@pytest.mark.parametrize("value", ["1e-300", "1e-5", "0.05", "0", "-1", "nan", "inf", "1e7"])
def test_speed_up_is_range_checked_at_both_ends(capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path, command: str,
                                                value: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--data-dir", str(tmp_path), command, "--speed-up", value])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and "--speed-up" in err[0]
    assert not (tmp_path / "history.sqlite3").exists()  # no session was begun


# ---------------------------------------------------------------- output errors
def test_demo_into_a_pipe_closed_after_one_line(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "voicecoach", "demo", "--speed-up", "1000"],
                            cwd=REPO, env=env_for(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # `| head -1`
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=120) == BROKEN_PIPE_EXIT
    result = subprocess.CompletedProcess(proc.args, proc.returncode, "", err)
    one_line(result, "cannot write the output", "Broken pipe")
    with HistoryDB.open(tmp_path) as db:
        assert [s.status for s in db.sessions()] == ["stopped"]  # the session is recorded


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
@pytest.mark.parametrize("args", [("history",), ("history", "--json"),
                                  ("demo", "--speed-up", "100000"),
                                  ("listen", "--engine", "pocketsphinx",
                                   "audio_fixtures/streams")])
def test_output_to_a_full_disk_is_one_line(tmp_path: Path, args: tuple[str, ...]) -> None:
    if args[0] == "history":
        assert vc("demo", "--speed-up", "100000", home=tmp_path).returncode == 0
    with open("/dev/full", "w") as full:
        result = vc(*args, home=tmp_path, stdout=full)
    assert result.returncode == 1
    one_line(result, "cannot write the output", "No space left")


# ---------------------------------------------------------------- paths
@pytest.mark.parametrize("how", ["home-is-a-file", "dev-null", "empty"])
def test_a_data_folder_that_is_not_a_folder_is_one_line(tmp_path: Path, how: str) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    home, args = tmp_path / "home", ["history"]
    if how == "home-is-a-file":
        home = a_file
    elif how == "dev-null":
        args = ["--data-dir", "/dev/null", "history"]
    else:
        args = ["--data-dir", "", "history"]
    result = vc(*args, home=home)
    assert result.returncode == 2 and "No sessions" not in result.stdout
    one_line(result, "not a folder" if how != "empty" else "empty")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None,
                    reason="mounting a small tmpfs needs root")
def test_history_still_reads_on_a_full_disk(tmp_path: Path) -> None:
    from test_history_faults import tmpfs

    with tmpfs(tmp_path / "full", "1m") as home:
        assert vc("demo", "--speed-up", "100000", home=home).returncode == 0
        for name in ("filler", "tiny"):  # nothing more fits, not even SQLite's index file
            with contextlib.suppress(OSError), (home / name).open("wb") as handle:
                while True:
                    handle.write(b"\0" * (65536 if name == "filler" else 512))
                    handle.flush()
        (home / "history.sqlite3-shm").unlink(missing_ok=True)
        result = vc("history", "--json", home=home)
        assert result.returncode == 0, result.stderr
        assert [s["status"] for s in json.loads(result.stdout)["sessions"]] == ["finished"]


# ---------------------------------------------------------------- inputs
def _float_wav(path: Path, samples: np.ndarray) -> Path:
    raw = np.asarray(samples, "<f4").tobytes()
    header = (b"RIFF" + struct.pack("<I", 36 + len(raw)) + b"WAVEfmt "
              + struct.pack("<IHHIIHH", 16, 3, 1, 16000, 64000, 4, 32)
              + b"data" + struct.pack("<I", len(raw)))
    path.write_bytes(header + raw)
    return path


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float_wavs_holding_nan_or_inf_are_refused(tmp_path: Path, bad: float) -> None:
    samples = np.zeros(16000, np.float32)
    samples[8000] = bad
    wav = _float_wav(tmp_path / "x.wav", samples)
    result = vc("run", "--week", "1", "--audio-in", str(wav), "--engine", "pocketsphinx",
                home=tmp_path / "home")
    assert result.returncode != 0
    one_line(result, "not numbers (NaN or infinity)", "0.50 s")
    assert not (tmp_path / "home" / "history.sqlite3").exists()  # refused before any session


def test_a_missing_spotter_model_from_the_environment_says_so(tmp_path: Path) -> None:
    result = vc("listen", "audio_fixtures/streams", home=tmp_path,
                VOICECOACH_SPOTTER_MODEL=str(tmp_path / "nope.npz"))
    assert result.returncode != 0
    line = one_line(result, "VOICECOACH_SPOTTER_MODEL", "no such file")
    assert "reinstall" not in line


def test_a_missing_grammar_folder_says_so(tmp_path: Path) -> None:
    result = vc("demo", home=tmp_path, VOICECOACH_GRAMMARS="/nonexistent")
    assert result.returncode != 0
    line = one_line(result, "/nonexistent", "does not exist", "VOICECOACH_GRAMMARS")
    assert "grammar: none" not in line


def test_a_phase_typo_names_the_real_problem(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    plan = tmp_path / "p.toml"
    plan.write_text('name = "mine"\nphase = "warmup"\n')
    code, err = main(capsys, "--data-dir", str(tmp_path), "run", "--plan", str(plan))
    assert code == 2 and "no phases" not in err
    assert "'phase' is 'warmup', not a list of [[phase]] tables" in err


def test_control_characters_in_a_plan_name_are_escaped_by_history(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from voicecoach.history import SessionRecorder
    from voicecoach.workout.plan import programme_week

    plan = programme_week(1)
    with HistoryDB.open(tmp_path) as db:
        rec = SessionRecorder.open(db, type(plan)("evil\x1b[2J\rname\x07", plan.phases), "run")
        rec.close("stopped")
    code = cli.main(["--data-dir", str(tmp_path), "history"])
    out = capsys.readouterr().out
    assert code == 0 and "\x1b" not in out and "\r" not in out and "\x07" not in out
    assert "evil\\x1b[2J\\rname\\x07" in out


# ---------------------------------------------------------------- broken models (3)
def test_spotter_weights_holding_nan_are_one_clear_error(tmp_path: Path) -> None:
    from voicecoach.errors import VoicecoachError
    from voicecoach.listening.spotter.model import builtin_paths, load_model

    weights, card = builtin_paths()
    with np.load(weights, allow_pickle=False) as npz:
        arrays = {k: np.asarray(npz[k]) for k in npz.files}
    arrays["w0"] = arrays["w0"].copy()
    arrays["w0"].flat[3] = np.nan
    bad = tmp_path / "en_commands.npz"
    np.savez(bad, **arrays)
    meta = json.loads(Path(card).read_text())
    meta.pop("weights_sha256", None)  # a matching card
    bad.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(VoicecoachError) as err:
        load_model(bad)
    assert "not finite" in err.value.one_line() and "'w0'" in err.value.one_line()


def test_a_flac_recording_replays_through_the_device_loop_as_its_wav_does(tmp_path: Path) -> None:
    """``run --audio-in`` takes the FLAC a phone records as it takes a WAV: the same
    commands heard at the same audio times (FLAC is lossless)."""
    import soundfile

    wav = REPO / "audio_fixtures" / "commands" / "joe" / "normal" / "stop__stop.wav"
    flac = tmp_path / "stop.flac"
    data, rate = soundfile.read(str(wav), dtype="int16")
    soundfile.write(str(flac), data, rate, format="FLAC", subtype="PCM_16")
    runs = [vc("run", "--week", "1", "--audio-in", str(path), home=tmp_path / path.suffix)
            for path in (wav, flac)]
    assert "Traceback" not in runs[0].stderr + runs[1].stderr
    assert "heard: stop" in runs[0].stdout  # no 'start' in it: no session, the same exit
    assert runs[1].stdout == runs[0].stdout and runs[1].returncode == runs[0].returncode
    assert runs[1].stderr.replace(str(flac), "X") == runs[0].stderr.replace(str(wav), "X")
