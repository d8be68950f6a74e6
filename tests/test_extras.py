"""Engines the English default does not use are extras: asked for and missing, one line naming
the extra and a non-zero exit; doctor says the same (FAIL when asked for, ok when not)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from voicecoach import cli, doctor
from voicecoach.errors import VoicecoachError
from voicecoach.grammar import load_grammar
from voicecoach.listening.engines import engine_installed, make_recogniser
from voicecoach.settings import SpeechSettings

FIXTURE = Path(__file__).resolve().parent.parent / "audio_fixtures" / "commands" / "joe" / \
    "normal" / "stop__stop.wav"


@pytest.fixture(params=["vosk", "pocketsphinx"])
def missing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """An engine whose module cannot be imported (as in the user's default install)."""
    monkeypatch.setitem(sys.modules, request.param, None)  # find_spec -> None, import fails
    return str(request.param)


def test_a_missing_engine_is_one_error_naming_its_extra(missing: str) -> None:
    assert not engine_installed(missing)
    with pytest.raises(VoicecoachError) as err:
        make_recogniser(SpeechSettings(engine=missing), load_grammar("en"))
    line = err.value.one_line()
    assert f"voicecoach[{missing}]" in line and "\n" not in line


def test_the_spotter_needs_no_extra(missing: str) -> None:
    rec = make_recogniser(SpeechSettings(engine="auto"), load_grammar("en"),
                          announce=lambda line: None)
    assert type(rec).__name__ == "SpotterRecogniser"


def test_listen_with_a_missing_engine_exits_with_one_line(
        missing: str, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICECOACH_HOME", str(tmp_path))
    monkeypatch.setenv("VOICECOACH_CONFIG", str(tmp_path / "none.toml"))
    code = cli.main(["listen", "--engine", missing, str(FIXTURE)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 1 and f"voicecoach[{missing}]" in err[0], err


def test_doctor_fails_an_engine_asked_for_and_missing(missing: str, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[speech]\nengine = "{missing}"\n', encoding="utf-8")
    out = io.StringIO()
    doctor.doctor(out, config=config, data_dir=str(tmp_path / "data"), render=False)
    line = next(x for x in out.getvalue().splitlines() if x.split(":")[0].split()[-1] == missing)
    assert line.startswith("FAIL") and f"voicecoach[{missing}]" in line, line


def test_doctor_is_ok_without_an_engine_nobody_asked_for(missing: str, tmp_path: Path) -> None:
    out = io.StringIO()
    doctor.doctor(out, config=tmp_path / "none.toml", data_dir=str(tmp_path / "data"),
                  render=False)
    line = next(x for x in out.getvalue().splitlines() if x.split(":")[0].split()[-1] == missing)
    assert line.startswith("ok") and "not installed" in line and f"voicecoach[{missing}]" in line
