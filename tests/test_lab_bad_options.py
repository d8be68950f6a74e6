"""The lab's tools refuse bad option values in one clear error before any work (an audit found
tracebacks after whole runs, and values that silently meant something else)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from conftest import SPEECH_COMMANDS


@pytest.mark.parametrize(("module", "args", "needle"), [
    ("voicecoach.lab.training.train", ["--jobs", "0"], "argument --jobs: 0 is out of range"),
    ("voicecoach.lab.training.train", ["--seed", "-1"], "argument --seed: -1 is out of range"),
    ("voicecoach.lab.training.train", ["--verify-per-word", "-5"], "--verify-per-word"),
    ("voicecoach.lab.training.over_probe", ["x.jsonl", "--c", "nan"], "argument --c: nan"),
    ("voicecoach.lab.training.over_probe", ["x.jsonl", "--c", "0"], "argument --c: 0"),
    ("voicecoach.lab.training.look_probe", ["--c", "-1"], "argument --c: -1"),
    ("voicecoach.lab.bench.barge_in", ["--stops", "-1"], "argument --stops: -1"),
    ("voicecoach.lab.bench.barge_in", ["--loop-minutes", "inf"], "argument --loop-minutes"),
    ("voicecoach.lab.bench.enroll", ["--speakers", "-1"], "argument --speakers: -1"),
    ("voicecoach.lab.bench.locked", ["--limit", "-1"], "argument --limit: -1"),
])
def test_a_bad_value_is_a_usage_error_before_any_work(
        module: str, args: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        importlib.import_module(module).main(args)
    err = capsys.readouterr().err
    assert info.value.code == 2 and needle in err and "Traceback" not in err


def _one_line(code: int, err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and "Traceback" not in err, err
    assert all(n in lines[0] for n in needles), lines[0]


@pytest.mark.skipif(not SPEECH_COMMANDS.is_dir(), reason="../shared/speech_commands is absent")
@pytest.mark.parametrize(("args", "needles"), [
    (["--cancellers", "bogus"], ("--cancellers 'bogus'", "webrtc, nlms, off")),
    (["--from-json", "/nonexistent/trials.jsonl"], ("--from-json", "cannot be read")),
    (["--json", "/nonexistent/x.jsonl"], ("--json", "does not exist")),
])
def test_barge_in_refuses_what_it_cannot_use_in_one_line(
        args: list[str], needles: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    from voicecoach.lab.bench import barge_in

    code = barge_in.main(["--shared", str(SPEECH_COMMANDS.parent), *args])
    _one_line(code, capsys.readouterr().err, *needles)


def test_the_enroll_bench_checks_its_json_folder_before_the_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from voicecoach.lab.bench import enroll

    code = enroll.main(["--speech-commands", str(tmp_path), "--json",
                        str(tmp_path / "no" / "r.json")])
    _one_line(code, capsys.readouterr().err, "--json", "does not exist")


def test_the_locked_bench_with_no_locked_speaker_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np

    from voicecoach.audio.wav import write_wav
    from voicecoach.lab.bench import locked
    from voicecoach.lab.training.data import is_locked

    free = [s for s in (f"{k:08x}" for k in range(100)) if not is_locked(s)][:3]
    for word in ("stop", "up"):
        for speaker in free:
            write_wav(tmp_path / "sc" / word / f"{speaker}_nohash_0.wav", np.zeros(8000, np.int16))
    code = locked.main(["--speech-commands", str(tmp_path / "sc"), "--speech-commands-train",
                        str(tmp_path / "sc"), "--verify", "off"])
    _one_line(code, capsys.readouterr().err, "no clip of a locked test speaker")
