"""What the coach says: cue texts, spoken sentences, and the engine that spaces and rotates cues."""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

from voicecoach.settings import MPH_PER_KMH, CoachSettings

_LOGGER = logging.getLogger(__name__)

#: Technique and walking cues per cue set: (id, text). Short (one breath), own words, and
#: never a command phrase (tests check every text against every grammar).
CUE_SETS: dict[str, tuple[tuple[str, str], ...]] = {
    "technique": (
        ("reach", "Reach back with your leg, a real step."),
        ("toes", "Land on your toes first."),
        ("heel", "Then roll down onto your heel."),
        ("equal", "Keep both strides the same length."),
        ("upright", "Stand tall, chest lifted, core engaged."),
        ("rails", "Hands on the rails, eyes on your feet."),
        ("talk", "Keep a pace where you could still talk."),
        ("shoulders", "Relax your shoulders and breathe."),
        ("toe_heel", "Toe first, then heel, every step."),
        ("lean", "Do not lean forward; stay tall."),
    ),
    "warmup": (
        ("w_easy", "Easy forward walking to warm up."),
        ("w_breathe", "Breathe easily and let your arms relax."),
        ("w_posture", "Walk tall and let your knees warm up."),
    ),
    "cooldown": (
        ("c_easy", "Easy walking now; let your breathing settle."),
        ("c_shoulders", "Loosen your shoulders as you walk."),
        ("c_gentle", "Nice work. Keep it gentle."),
    ),
    "none": (),
}

# Spoken sentences the coach builds; all free of command phrases unless marked as a prompt.
# The barge-in word is never spoken by the coach (it would hear itself): it is spelled out.
STOP_SPELLED = "S, T, O, P"

BRIEFING_INTRO = "Safety first: three quick checks before we walk."
BRIEFING_STOP = f"To end at any moment, say {STOP_SPELLED}."
#: (question, what to say on "no") for each briefing check, in order. These are prompts.
BRIEFING_CHECKS: tuple[tuple[str, str], ...] = (
    ("Is the safety key clipped to your clothes? Say yes or no.",
     "Clip the key at hip height, then say yes."),
    ("Are both hands on the rails? Say yes or no.",
     "Hold both rails, then say yes."),
    ("Is the belt running very slowly? Say yes or no.",
     "Stand on the side rails, set the belt slow, step on, then say yes."),
)
TURN_TO_BACKWARD = ("Time to turn around: side rails, slow belt, then step back on "
                    "facing away. Say ready.")
TURN_TO_FORWARD = "Time to face forward: side rails, then step on. Say ready."
TURN_AGAIN = "Say ready when you are walking."
TURN_ASSUMED = "The clock is running now."
CHECKIN = "How are your knees? Say good or sore."
CHECKIN_GOOD = "Glad to hear it."
PAIN_SLOWER = "Sorry about the knee. Slowing to {speed}."
PAIN_OFFER_END = "Do you want to end the session? Say yes or no."
PAIN_CARRY_ON = "Okay, we carry on gently."
PAUSED = "Paused. Say resume when you want to carry on."
RESUMED = "Back to it."
ENDED_SAFE = "Session ended. Step onto the side rails and switch the belt off."
NOTHING_RUNNING = "Nothing is running."
LOST_INPUT = "I cannot hear you. The workout is paused until the microphone is back."
INPUT_BACK = "I can hear you again."
NOTHING_TO_REPEAT = "I have not said anything yet."
VOLUME_UP = "Volume raised."
VOLUME_DOWN = "Volume lowered."
VOLUME_MAX = "That is my loudest."
VOLUME_MIN = "That is my quietest."
NOT_ASKED = "I did not ask anything."

PHASE_NAMES = {"warmup": "Warm-up, easy forward walking", "backward": "Backward walking",
               "recovery": "Easy forward walking", "cooldown": "Cool-down, easy forward walking"}


def speed_number(mph: float, units: str) -> str:
    """A speed's number in the user's units, one decimal."""
    return f"{mph / MPH_PER_KMH:.1f}" if units == "kmh" else f"{mph:.1f}"


def speed_text(mph: float, units: str) -> str:
    """A speed as spoken, in the user's units."""
    unit = "kilometres per hour" if units == "kmh" else "miles per hour"
    return f"{speed_number(mph, units)} {unit}"


def duration_text(seconds: float) -> str:
    """A duration as spoken: '5 minutes', '1 minute 30', '40 seconds'."""
    seconds = int(round(seconds))
    minutes, secs = divmod(seconds, 60)
    if minutes == 0:
        return f"{secs} seconds"
    unit = "minute" if minutes == 1 else "minutes"
    return f"{minutes} {unit}" + (f" {secs}" if secs else "")


def phase_intro(kind: str, number: int, of: int, seconds: float, mph: float, units: str) -> str:
    """The announcement at the start of a phase."""
    name = PHASE_NAMES.get(kind, kind)
    block = f" {number} of {of}" if kind == "backward" and of > 1 else ""
    return f"{name}{block}: {duration_text(seconds)} at {speed_text(mph, units)}."


def summary_text(backward_s: float, lo: float, hi: float, units: str, outcome: str) -> str:
    """The spoken summary at the end of a session."""
    head = "Session complete." if outcome == "finished" else "Session ended early."
    if backward_s <= 0:
        return f"{head} No backward walking today."
    if abs(hi - lo) < 0.05:
        speeds = f"at {speed_text(lo, units)}"
    else:
        speeds = f"between {speed_number(lo, units)} and {speed_text(hi, units)}"
    return f"{head} {duration_text(backward_s)} backward, {speeds}."


@dataclass(frozen=True)
class Cue:
    """A technique cue chosen by the engine."""

    cue_id: str
    text: str


class CueEngine:
    """Rotates cues so none repeats too soon and spaces them so the user is not talked at."""

    def __init__(self, settings: CoachSettings) -> None:
        self.settings = settings
        self._recent: deque[str] = deque(maxlen=max(0, settings.cue_no_repeat))
        self._next_index: dict[str, int] = {}
        self._last_cue_t: float | None = None

    def due(self, now: float, quiet_since: float, cue_set: str) -> bool:
        """True when a cue may be spoken: enough quiet, and the interval since the last cue."""
        if not CUE_SETS.get(cue_set):
            return False
        if now - quiet_since < self.settings.min_gap_s:
            return False
        interval = self.settings.cue_interval_s * (1.0 if cue_set == "technique" else 1.5)
        return self._last_cue_t is None or now - self._last_cue_t >= interval

    def next(self, now: float, cue_set: str) -> Cue | None:
        """The next cue of ``cue_set`` in rotation that was not among the recent ones."""
        cues = CUE_SETS.get(cue_set, ())
        if not cues:
            return None
        start = self._next_index.get(cue_set, 0)
        for offset in range(len(cues)):
            cue_id, text = cues[(start + offset) % len(cues)]
            if cue_id not in self._recent:
                self._next_index[cue_set] = (start + offset + 1) % len(cues)
                self._recent.append(cue_id)
                self._last_cue_t = now
                return Cue(cue_id, text)
        return None

    def new_phase(self) -> None:
        """A new phase: its first cue may come as soon as there has been enough quiet."""
        self._last_cue_t = None
