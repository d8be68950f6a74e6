"""The engine that spaces and rotates cues, and the English texts by name (the texts themselves are
in grammars/phrases/<language>.json, read by voicecoach.phrases)."""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

from voicecoach.phrases import load_phrases
from voicecoach.settings import CoachSettings

_LOGGER = logging.getLogger(__name__)

#: The English texts (grammars/phrases/en.json), for the console, the lab and tests; the coach
#: speaks the phrases of its grammar's language (voicecoach.phrases).
ENGLISH = load_phrases("en")

#: Technique and walking cues per cue set: (id, text). Short (one breath), own words, and
#: never a command phrase (tests check every text against every grammar).
CUE_SETS: dict[str, tuple[tuple[str, str], ...]] = ENGLISH.cue_sets

# Spoken sentences the coach builds; all free of command phrases unless marked as a prompt.
# The barge-in word is never spoken by the coach (it would hear itself): it is spelled out.
STOP_SPELLED = ENGLISH.STOP_SPELLED
#: (question, what to say on "no") for each briefing check, in order. These are prompts.
BRIEFING_CHECKS: tuple[tuple[str, str], ...] = ENGLISH.briefing_checks
BRIEFING_INTRO = ENGLISH.BRIEFING_INTRO
BRIEFING_STOP = ENGLISH.BRIEFING_STOP
TURN_TO_BACKWARD = ENGLISH.TURN_TO_BACKWARD
TURN_TO_FORWARD = ENGLISH.TURN_TO_FORWARD
TURN_AGAIN = ENGLISH.TURN_AGAIN
TURN_ASSUMED = ENGLISH.TURN_ASSUMED
CHECKIN = ENGLISH.CHECKIN
CHECKIN_GOOD = ENGLISH.CHECKIN_GOOD
PAIN_SLOWER = ENGLISH.PAIN_SLOWER
PAIN_OFFER_END = ENGLISH.PAIN_OFFER_END
PAIN_CARRY_ON = ENGLISH.PAIN_CARRY_ON
PAUSED = ENGLISH.PAUSED
RESUMED = ENGLISH.RESUMED
ENDED_SAFE = ENGLISH.ENDED_SAFE
NOTHING_RUNNING = ENGLISH.NOTHING_RUNNING
LOST_INPUT = ENGLISH.LOST_INPUT
INPUT_BACK = ENGLISH.INPUT_BACK
NOTHING_TO_REPEAT = ENGLISH.NOTHING_TO_REPEAT
VOLUME_UP = ENGLISH.VOLUME_UP
VOLUME_DOWN = ENGLISH.VOLUME_DOWN
VOLUME_MAX = ENGLISH.VOLUME_MAX
VOLUME_MIN = ENGLISH.VOLUME_MIN
NOT_ASKED = ENGLISH.NOT_ASKED

PHASE_NAMES = ENGLISH.phase_names


def speed_number(mph: float, units: str) -> str:
    """A speed's number in the user's units, one decimal."""
    return ENGLISH.speed_number(mph, units)


def speed_text(mph: float, units: str) -> str:
    """A speed as spoken in English, in the user's units."""
    return ENGLISH.speed_text(mph, units)


def duration_text(seconds: float) -> str:
    """A duration as spoken in English: '5 minutes', '1 minute 30', '40 seconds'."""
    return ENGLISH.duration_text(seconds)


def phase_intro(kind: str, number: int, of: int, seconds: float, mph: float, units: str) -> str:
    """The English announcement at the start of a phase."""
    return ENGLISH.phase_intro(kind, number, of, seconds, mph, units)


def summary_text(backward_s: float, lo: float, hi: float, units: str, outcome: str) -> str:
    """The English spoken summary at the end of a session."""
    return ENGLISH.summary_text(backward_s, lo, hi, units, outcome)


@dataclass(frozen=True)
class Cue:
    """A technique cue chosen by the engine."""

    cue_id: str
    text: str


class CueEngine:
    """Rotates cues so none repeats too soon and spaces them so the user is not talked at."""

    def __init__(self, settings: CoachSettings,
                 cue_sets: dict[str, tuple[tuple[str, str], ...]] | None = None) -> None:
        self.settings = settings
        self.cue_sets = CUE_SETS if cue_sets is None else cue_sets
        self._recent: deque[str] = deque(maxlen=max(0, settings.cue_no_repeat))
        self._next_index: dict[str, int] = {}
        self._last_cue_t: float | None = None

    def due(self, now: float, quiet_since: float, cue_set: str) -> bool:
        """True when a cue may be spoken: enough quiet, and the interval since the last cue."""
        if not self.cue_sets.get(cue_set):
            return False
        if now - quiet_since < self.settings.min_gap_s:
            return False
        interval = self.settings.cue_interval_s * (1.0 if cue_set == "technique" else 1.5)
        return self._last_cue_t is None or now - self._last_cue_t >= interval

    def next(self, now: float, cue_set: str) -> Cue | None:
        """The next cue of ``cue_set`` in rotation that was not among the recent ones."""
        cues = self.cue_sets.get(cue_set, ())
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
