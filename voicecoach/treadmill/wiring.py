"""Which treadmill link a session uses: none, the simulated one, or the configured BLE one."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from voicecoach.errors import VoicecoachError
from voicecoach.settings import TreadmillSettings

if TYPE_CHECKING:
    from voicecoach.treadmill.link import Treadmill

_LOGGER = logging.getLogger(__name__)


def open_treadmill(settings: TreadmillSettings, choice: str | None = None,
                   *, live: bool = True) -> tuple[Treadmill | None, TreadmillSettings]:
    """The link for a session and the settings to drive it with.

    ``choice`` "sim" is the simulated treadmill (driven); otherwise the configured one when
    ``[treadmill] control`` is not off. ``live`` False (a replay faster than real time) never
    opens a real treadmill: its belt runs on wall time.
    """
    if choice == "sim":
        from dataclasses import replace

        from voicecoach.treadmill.sim import SimTreadmill

        control = settings.control if settings.control != "off" else "drive"
        return SimTreadmill(), replace(settings, control=control)
    if settings.control == "off":
        return None, settings
    if not settings.address:
        raise VoicecoachError(f"[treadmill] control = {settings.control} but no address is set",
                              "run `voicecoach treadmill scan` and set [treadmill] address")
    if not live:
        _LOGGER.warning("treadmill: not used for a replay faster than real time")
        return None, settings
    from voicecoach.treadmill.client import BleakTreadmill

    return BleakTreadmill(settings.address), settings
