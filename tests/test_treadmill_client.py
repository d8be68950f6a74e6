"""BleakTreadmill's background link without Bluetooth: connect() replaced by a fake."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from bleak.exc import BleakError

from voicecoach.treadmill import client
from voicecoach.treadmill.link import LinkDown


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
