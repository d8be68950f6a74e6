"""Progress bars: drawn on a terminal, silent under --json, when stderr is not a TTY, in CI."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from voicecoach import cli, progress

FIXTURE = Path(__file__).resolve().parent.parent / "audio_fixtures" / "commands" / "joe" / \
    "normal" / "stop__stop.wav"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_wanted_only_on_a_terminal_without_json_or_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    assert progress.wanted(stream=Terminal())
    assert not progress.wanted(stream=io.StringIO())
    assert not progress.wanted(json_output=True, stream=Terminal())
    monkeypatch.setenv("CI", "true")
    assert not progress.wanted(stream=Terminal())


def test_a_bar_is_drawn_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    term = Terminal()
    with progress.bar(10.0, "listening", "audio s", stream=term) as b:
        b.update(5.0)
    assert "listening" in term.getvalue()


@pytest.mark.parametrize("json_flag", [True, False])
def test_listen_draws_a_bar_in_audio_seconds_unless_json(
        json_flag: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("VOICECOACH_HOME", str(tmp_path))
    monkeypatch.setenv("VOICECOACH_CONFIG", str(tmp_path / "none.toml"))
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    args = ["listen", *(["--json"] if json_flag else []), str(FIXTURE), str(FIXTURE)]
    assert cli.main(args) == 0
    drawn = "listening" in term.getvalue() and "audio s" in term.getvalue()
    assert drawn is not json_flag


def test_listen_to_a_pipe_draws_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("VOICECOACH_HOME", str(tmp_path))
    monkeypatch.setenv("VOICECOACH_CONFIG", str(tmp_path / "none.toml"))
    assert cli.main(["listen", str(FIXTURE)]) == 0
    assert "audio s" not in capsys.readouterr().err


def test_more_audio_than_the_header_said_raises_the_total(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with progress.bar(1.0, "listening", "audio s", stream=Terminal()) as b:
        progress.advance(b, 0.8)
        progress.advance(b, 0.4)  # no TqdmWarning (an error under pytest's filterwarnings)
        assert b.total == pytest.approx(1.2) and b.n == pytest.approx(1.2)
