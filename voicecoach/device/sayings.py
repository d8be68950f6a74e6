"""What the coach says about the treadmill it drives (checked against every grammar in tests)."""

from __future__ import annotations

#: The briefing when the coach drives the belt: it is not running yet, so no "belt slow?" check.
DRIVEN_CHECKS: tuple[tuple[str, str], ...] = (
    ("Is the safety key clipped to your clothes? Say yes or no.",
     "Clip the key at hip height, then say yes."),
    ("Are both hands on the rails? Say yes or no.",
     "Hold both rails, then say yes."),
    ("Are you standing on the side rails, feet off the belt? Say yes or no.",
     "Stand on the side rails with both feet, then say yes."),
)
READY_TO_START = "I will run the belt very slowly. Step on when it moves. Say ready."
BELT_STARTING = "Belt running now, very slowly."
SAFETY_KEY = "The safety key came out, so the belt is halted."
CONSOLE_HALTED = "The belt was halted on the console."
CONSOLE_PAUSED = "The belt was paused on the console."
CONSOLE_RESUMED = "The belt is moving again, as set on the console."
CONSOLE_ABOVE_PLAN = "The belt is at {speed}, set on the console, above today's plan of {top}."
LINK_LOST = ("I lost the treadmill link. Use the console for the belt; "
             "I will keep telling you the targets.")
LINK_BACK = "The treadmill link is back."
NO_SPEED_CONTROL = ("This treadmill does not take speed from me. "
                    "Set the speed on the console; I will keep telling you the targets.")
NOT_PERMITTED = ("The treadmill does not let me control it. "
                 "Use the console; I will keep telling you the targets.")
WINDING_DOWN = "Slowing the belt to a halt. Step onto the side rails when it is slow."
BELOW_RANGE = "This target is under the treadmill's slowest speed, so I keep it at its slowest."
TOO_FAST_FOR_PLAN = ("This treadmill's slowest speed is above today's plan, so I leave the belt "
                     "to you. Use the console with care.")
NOT_CONNECTED = ("The treadmill is not connected yet. Use the console for now; "
                 "I will run the belt when it connects.")
