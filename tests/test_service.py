"""doctor compares an installed systemd unit with the one this version writes: a stop timeout
from before session 19 (15 s; a session's end waiting for a locked history was killed
mid-write) is one FAIL line naming the setting and the command that rewrites the unit."""

from __future__ import annotations

import io
import os
import shlex
from pathlib import Path

import pytest
from test_doctor import by_name, check_shape, fake_sounddevice

from voicecoach import cli, doctor
from voicecoach.commands.serve import unit_text
from voicecoach.settings import Settings

STOP_COMMENT = ("# the belt is stopped first", "# locked is waited for", "# is given up")


def session_18_unit(home: Path, options: str = "") -> str:
    """The unit `serve --print-unit` wrote before session 19: the same but for its stop
    timeout (15 s) and the comment that explains the new one."""
    lines = [line for line in unit_text(Settings(data_dir=home), options).splitlines()
             if not line.startswith(STOP_COMMENT)]
    return "\n".join(line.replace("TimeoutStopSec=60", "TimeoutStopSec=15")
                     for line in lines) + "\n"


def unit_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str | None
              ) -> tuple[int, str, list[str]]:
    """doctor's exit code and its systemd unit line, with ``text`` installed (None: nothing)
    at a temporary path named by VOICECOACH_UNIT, as the tests' own environment does."""
    unit = tmp_path / "etc" / "voicecoach.service"
    if text is not None:
        unit.parent.mkdir(parents=True, exist_ok=True)
        unit.write_text(text, encoding="utf-8")
    monkeypatch.setenv("VOICECOACH_UNIT", str(unit))
    out = io.StringIO()
    code = doctor.doctor(out, config=tmp_path / "none.toml", data_dir=str(tmp_path / "home"),
                         sd=fake_sounddevice(["Jabra Speak 510"]), render=False)
    lines = out.getvalue().splitlines()
    check_shape(code, lines)
    return code, by_name(lines).get("systemd unit", ""), lines


def test_a_unit_from_before_the_longer_stop_timeout_is_a_problem_with_the_fix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = session_18_unit(tmp_path / "home", ' --input-device "Jabra Speak 510"')
    code, line, lines = unit_line(tmp_path, monkeypatch, text)
    assert code == 1 and line.startswith("FAIL"), line
    assert "TimeoutStopSec is 15 s, this version needs 60 s" in line
    assert line.count(" is ") == 1  # the comments that changed too are no difference
    fix = line.split(" -> fix: ", 1)[1].strip("`")
    # the command rewrites it with the options it was installed with, at the path it is at
    words = shlex.split(fix.split(" | ")[0])
    assert words[1:] == ["serve", "--print-unit", "--input-device", "Jabra Speak 510"]
    assert Path(words[0]).name == "voicecoach"
    assert f"sudo tee {tmp_path / 'etc' / 'voicecoach.service'}" in fix
    assert "daemon-reload" in fix
    assert lines[-1].endswith("problem(s) to fix")


def test_a_unit_as_this_version_writes_it_is_ok_whatever_its_comments_and_spacing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    text = unit_text(Settings(data_dir=home), ' --output-device "USB 100% $x"')
    _, line, _ = unit_line(tmp_path, monkeypatch, text)
    assert line.startswith("ok") and "as this version writes it" in line, line
    spaced = "# edited by hand\n\n" + "\n".join(
        line.replace("=", " = ", 1) if "=" in line and not line.startswith("#") else line
        for line in text.splitlines() if not line.startswith("#"))
    _, line, _ = unit_line(tmp_path, monkeypatch, spaced)
    assert line.startswith("ok"), line


def test_no_unit_installed_is_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, line, _ = unit_line(tmp_path, monkeypatch, None)
    assert line.startswith("ok") and "not installed at" in line, line


def test_a_unit_that_cannot_be_read_is_one_line(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder (or a symlink loop) at the unit's path: systemd cannot start the service from
    it, so a FAIL whose fix writes the unit again (chmod would not mend it)."""
    (tmp_path / "etc" / "voicecoach.service").mkdir(parents=True)  # unreadable, even as root
    code, line, lines = unit_line(tmp_path, monkeypatch, None)
    assert line.startswith("FAIL") and "cannot be read (Is a directory)" in line, line
    assert "write it again" in line and "--print-unit" in line and "chmod" not in line
    assert sum("systemd unit" in x for x in lines) == 1 and "Traceback" not in "".join(lines)


def test_a_unit_only_root_can_read_is_a_warning_to_run_doctor_as_root(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`sudo tee` with a strict umask leaves it root's alone, and systemd reads it as root:
    not a problem, but not compared either (the tests run as root: the refusal is made)."""
    real = Path.read_text

    def refuse(self: Path, *args: object, **kwargs: object) -> str:
        if self.name == "voicecoach.service":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", refuse)
    code, line, lines = unit_line(tmp_path, monkeypatch, "[Service]\n")
    assert line.startswith("warn") and "cannot be read (Permission denied)" in line, line
    assert "sudo voicecoach doctor" in line and "chmod 644" in line


def test_a_unit_that_is_not_text_or_not_ours_is_one_short_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bytes that are not UTF-8: one FAIL line that says so; an empty unit (every setting
    differs): the first three named and the rest counted, not a line of twenty settings."""
    unit = tmp_path / "etc" / "voicecoach.service"
    unit.parent.mkdir(parents=True)
    unit.write_bytes(bytes(range(128, 256)) * 4)
    monkeypatch.setenv("VOICECOACH_UNIT", str(unit))
    out = io.StringIO()
    code = doctor.doctor(out, config=tmp_path / "none.toml", data_dir=str(tmp_path / "home"),
                         sd=fake_sounddevice(["Jabra Speak 510"]), render=False)
    line = by_name(out.getvalue().splitlines())["systemd unit"]
    assert line.startswith("FAIL") and "is not a text file (not UTF-8)" in line, line
    assert "write it again" in line and code != 0
    code, line, _lines = unit_line(tmp_path, monkeypatch, "")
    assert line.startswith("FAIL") and line.count(" is not set, this version needs ") == 3, line
    assert "more settings differ" in line and len(line) < 700


def test_a_unit_running_another_installation(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The unit's program is another venv's: a warning while it is there (doctor checked this
    installation, not that one), a failure once it is gone (the service cannot start)."""
    other = tmp_path / "old venv" / "bin" / "voicecoach"
    other.parent.mkdir(parents=True)
    other.write_text("#!/bin/sh\n", encoding="utf-8")
    text = unit_text(Settings(data_dir=tmp_path / "home"))
    [exec_line] = [x for x in text.splitlines() if x.startswith("ExecStart=")]
    text = text.replace(exec_line, f'ExecStart="{other}" serve')
    code, line, _ = unit_line(tmp_path, monkeypatch, text)
    assert line.startswith("warn") and f"the service runs {other}, not this installation" in line
    assert "TimeoutStopSec" not in line
    other.unlink()
    code, line, _ = unit_line(tmp_path, monkeypatch, text)
    assert code == 1 and line.startswith("FAIL"), line
    assert f"ExecStart runs {other}, which is not there (the service cannot start)" in line
    # an old unit of a moved venv: both in the one line
    code, line, _ = unit_line(tmp_path, monkeypatch, text.replace("TimeoutStopSec=60",
                                                                  "TimeoutStopSec=15"))
    assert "which is not there" in line and "TimeoutStopSec is 15 s" in line


def test_a_unit_for_another_data_folder_is_rewritten_for_that_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fix keeps the unit's own data folder (VOICECOACH_HOME) when doctor's is another."""
    theirs = tmp_path / "the unit's data"
    _, line, _ = unit_line(tmp_path, monkeypatch, session_18_unit(theirs))
    fix = line.split(" -> fix: ", 1)[1].strip("`")
    assert shlex.split(fix)[0] == f"VOICECOACH_HOME={theirs}", fix


def test_cli_doctor_unit_option(tmp_path: Path, home: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    """--unit names the file to compare; a line that is in neither is named as extra."""
    unit = tmp_path / "voicecoach.service"
    unit.write_text(unit_text(Settings(data_dir=home)) + "Nice=-5\n", encoding="utf-8")
    cli.main(["--data-dir", str(home), "doctor", "--config", str(tmp_path / "none.toml"),
              "--no-render", "--unit", str(unit)])
    [line] = [x for x in capsys.readouterr().out.splitlines() if "systemd unit:" in x]
    assert line.startswith("FAIL") and "Nice=-5 is not in this version's unit" in line, line
    assert os.environ["VOICECOACH_UNIT"] != str(unit)
