"""Shared test fixtures: paths to the repository, the fixtures and ../shared."""

from __future__ import annotations

import gc
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture()
def bluez() -> Iterator[Any]:
    """A mock BlueZ (bluezoo, two powered adapters) on a private dbus-daemon named as the
    system bus meanwhile; skipped where bluezoo or dbus-daemon is missing."""
    pytest.importorskip("bluezoo", reason="bluezoo is in the test extra")
    if shutil.which("dbus-daemon") is None:
        pytest.skip("dbus-daemon is not installed (Debian package dbus)")
    from bluez_bus import mock_bluez

    try:
        zoo = mock_bluez()
        running = zoo.__enter__()
    except RuntimeError as exc:
        pytest.skip(f"cannot start a private dbus-daemon with bluezoo: {exc}")
    try:
        yield running
    finally:
        zoo.__exit__(None, None, None)
        gc.collect()  # report bleak's unclosed sockets here, under the test's own filters


@pytest.fixture()
def fake(bluez: Any) -> Iterator[Any]:
    """A fake FTMS treadmill (fake_ftms.FakeTreadmill) on a fresh mock BlueZ; tests may
    change its model's quirks."""
    from fake_ftms import FakeTreadmill, run_in_thread

    from voicecoach.treadmill.sim import BeltModel

    treadmill = FakeTreadmill(BeltModel(accel_kmh_s=2.0))
    thread = run_in_thread(treadmill)
    try:
        yield treadmill
    finally:
        treadmill.close()
        thread.join(5)
