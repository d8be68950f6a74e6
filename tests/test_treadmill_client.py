"""BleakTreadmill's background link without Bluetooth: connect() replaced by a fake."""

from __future__ import annotations

import asyncio
import logging
import threading
from types import SimpleNamespace
from typing import Any

import pytest
from bleak.exc import BleakError

from voicecoach.treadmill import client
from voicecoach.treadmill.ftms_data import Features
from voicecoach.treadmill.link import (
    DEFAULT_INCLINE_RANGE,
    DEFAULT_SPEED_RANGE,
    LinkDown,
    LinkUp,
    TreadmillInfo,
)

#: Only keeps a failing run from hanging; the bounds under test are the injected ones.
GUARD_S = 20.0


def test_a_bleak_error_while_setting_up_does_not_end_the_reconnecting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The link dropping while the treadmill is being set up (bleak raises its own error, not
    a TreadmillError) is one line and the link is tried again; it ended the reconnecting for
    the rest of the process, so no later stop was ever written."""
    calls: list[int] = []
    again = threading.Event()

    async def connect(*_args: Any, **_kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise BleakError("Not connected")
        again.set()
        raise client.TreadmillError("no Bluetooth device 'x' in range", "switch it on")

    monkeypatch.setattr(client, "connect", connect)
    link = client.BleakTreadmill("AA:BB:CC:DD:EE:FF", reconnect_s=0.01)
    try:
        assert again.wait(5.0), "the link was never tried again after bleak's error"
    finally:
        link.close()
    downs = [u for u in link.poll(0.0) if isinstance(u, LinkDown)]
    assert downs and "Not connected" in downs[0].reason and "\n" not in downs[0].reason


class _StuckClient:
    """A BleakClient whose disconnect BlueZ never answers."""

    address = "AA:BB:CC:DD:EE:FF"

    def __init__(self) -> None:
        self.disconnects = 0

    async def disconnect(self) -> None:
        self.disconnects += 1
        await asyncio.Event().wait()


def _info() -> TreadmillInfo:
    return TreadmillInfo("Pad", _StuckClient.address, Features(frozenset(), frozenset()),
                         DEFAULT_SPEED_RANGE, DEFAULT_INCLINE_RANGE)


def test_a_disconnect_that_never_ends_after_a_loss_does_not_stop_the_reconnecting(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The link drops and BlueZ never answers the disconnect that follows: it is given up
    (one line in the log) and the link is tried again. It waited for ever, so a stop to be
    written again when the link came back never was."""
    stuck = _StuckClient()
    calls: list[int] = []
    again = threading.Event()

    async def connect(_address: str, _on_update: Any, on_disconnect: Any, *_args: Any,
                      **_kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            asyncio.get_running_loop().call_later(0.05, on_disconnect)  # the link drops
            return stuck, SimpleNamespace(device=None), _info()
        again.set()
        raise client.TreadmillError("no Bluetooth device 'x' in range", "switch it on")

    monkeypatch.setattr(client, "connect", connect)
    caplog.set_level(logging.WARNING, logger="voicecoach.treadmill")
    link = client.BleakTreadmill(_StuckClient.address, reconnect_s=0.01, disconnect_timeout=0.2)
    try:
        assert again.wait(GUARD_S), "the link was never tried again after the stuck disconnect"
    finally:
        link.close()
    assert stuck.disconnects == 1
    given_up = [r.getMessage() for r in caplog.records if "disconnecting" in r.getMessage()]
    assert given_up == ["treadmill: Bluetooth did not finish disconnecting within 0.2 s; "
                        "given up"]
    updates = link.poll(0.0)
    assert [type(u) for u in updates][:2] == [LinkUp, LinkDown]


def test_close_gives_up_a_disconnect_that_never_ends(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The program ends (a session's end to write, the process to exit) and BlueZ never
    answers the disconnect: close gives it up with one line and its thread ends."""
    stuck = _StuckClient()
    up = threading.Event()

    async def connect(*_args: Any, **_kwargs: Any) -> Any:
        up.set()
        return stuck, SimpleNamespace(device=None), _info()

    monkeypatch.setattr(client, "connect", connect)
    caplog.set_level(logging.WARNING, logger="voicecoach.treadmill")
    link = client.BleakTreadmill(_StuckClient.address, disconnect_timeout=0.2)
    assert up.wait(GUARD_S)
    link.close()
    assert not link._thread.is_alive()
    assert stuck.disconnects == 1
    given_up = [r.getMessage() for r in caplog.records if "disconnecting" in r.getMessage()]
    assert given_up == ["treadmill: Bluetooth did not finish disconnecting within 0.2 s; "
                        "given up"]
