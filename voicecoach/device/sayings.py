"""What the coach says about the treadmill it drives, in English by name (the texts are in
grammars/phrases/<language>.json; the belt controller speaks its coach's language)."""

from __future__ import annotations

from voicecoach.phrases import load_phrases

_EN = load_phrases("en")

#: The briefing when the coach drives the belt: it is not running yet, so no "belt slow?" check.
DRIVEN_CHECKS: tuple[tuple[str, str], ...] = _EN.driven_checks
READY_TO_START = _EN.READY_TO_START
BELT_STARTING = _EN.BELT_STARTING
BELT_NOT_TAKEN = _EN.BELT_NOT_TAKEN
BELT_NOT_STARTED = _EN.BELT_NOT_STARTED
SAFETY_KEY = _EN.SAFETY_KEY
CONSOLE_HALTED = _EN.CONSOLE_HALTED
CONSOLE_PAUSED = _EN.CONSOLE_PAUSED
CONSOLE_RESUMED = _EN.CONSOLE_RESUMED
CONSOLE_ABOVE_PLAN = _EN.CONSOLE_ABOVE_PLAN
LINK_LOST = _EN.LINK_LOST
LINK_BACK = _EN.LINK_BACK
LINK_BACK_AT = _EN.LINK_BACK_AT
STOP_UNCONFIRMED = _EN.STOP_UNCONFIRMED
STOP_UNCONFIRMED_STILL = _EN.STOP_UNCONFIRMED_STILL
NO_SPEED_CONTROL = _EN.NO_SPEED_CONTROL
NOT_PERMITTED = _EN.NOT_PERMITTED
WINDING_DOWN = _EN.WINDING_DOWN
BELOW_RANGE = _EN.BELOW_RANGE
TOO_FAST_FOR_PLAN = _EN.TOO_FAST_FOR_PLAN
NOT_CONNECTED = _EN.NOT_CONNECTED
TURN_NOT_SLOWED = _EN.TURN_NOT_SLOWED
TURN_SLOW_GIVEN_UP = _EN.TURN_SLOW_GIVEN_UP
