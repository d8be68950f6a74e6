"""Shared test fixtures: paths to the repository, the fixtures and ../shared."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
SPEECH_COMMANDS = SHARED / "speech_commands"
FIXTURES = REPO / "audio_fixtures"


@pytest.fixture
def speech_commands_dir() -> Path:
    """../shared/speech_commands, or skip: it is read-only data beside the checkout."""
    if not SPEECH_COMMANDS.is_dir():
        pytest.skip(f"{SPEECH_COMMANDS} is absent (the real-speech set lives beside the checkout)")
    return SPEECH_COMMANDS


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh VOICECOACH_HOME for the test."""
    monkeypatch.setenv("VOICECOACH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(autouse=True, scope="session")
def no_installed_unit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """doctor compares the installed systemd unit: in tests, one at a temporary path that no
    test writes (VOICECOACH_UNIT), never the machine's own in /etc."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VOICECOACH_UNIT", str(tmp_path_factory.mktemp("unit") / "voicecoach.service"))
        yield
