"""Everything the coach says, per language: grammars/phrases/<language>.json, loaded and checked.

A phrase file holds fixed texts (``phrases.PAUSED``), templates filled in here (speeds,
durations, phase announcements, the summary), the briefing checks, the phase names and the cue
sets. Statements and cues never contain a command phrase of any grammar; prompts (listed in
the file) may name the answers, never the stop phrases (tests check every file against every
grammar).
"""

from __future__ import annotations

import json
import logging
from functools import cache
from pathlib import Path
from typing import Any

from voicecoach.errors import VoicecoachError
from voicecoach.grammar import bundled_grammar_dir, grammar_dir
from voicecoach.settings import MPH_PER_KMH

_LOGGER = logging.getLogger(__name__)

Checks = tuple[tuple[str, str], ...]


def phrases_dir() -> Path:
    """Where the phrase files are: beside the grammars (grammars/phrases/)."""
    return grammar_dir() / "phrases"


def _folders() -> list[Path]:
    """Beside the grammars in use, then the bundled ones (grammars of one's own, set with
    $VOICECOACH_GRAMMARS, are still coached in the shipped words of their language)."""
    return list(dict.fromkeys([phrases_dir(), bundled_grammar_dir() / "phrases"]))


def _fail(path: Path, what: str) -> VoicecoachError:
    return VoicecoachError(f"phrase file {path}: {what}", "see grammars/phrases/en.json for the layout")


def _pairs(data: Any, path: Path, what: str) -> Checks:
    if not isinstance(data, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p) for p in data):
        raise _fail(path, f"'{what}' is not a list of [text, text] pairs")
    return tuple((p[0], p[1]) for p in data)


class Phrases:
    """One language's texts. Fixed texts read as attributes (``phrases.BRIEFING_INTRO``)."""

    def __init__(self, data: Any, path: Path) -> None:
        if not isinstance(data, dict) or not isinstance(data.get("language"), str):
            raise _fail(path, "'language' is missing")
        texts = data.get("texts")
        if not isinstance(texts, dict) or not all(isinstance(v, str) for v in texts.values()):
            raise _fail(path, "'texts' is not an object of strings")
        self.language: str = data["language"]
        self.path = path
        self.texts: dict[str, str] = dict(texts)
        self.prompts: frozenset[str] = frozenset(data.get("prompts", ()))
        unknown = self.prompts - set(self.texts)
        if unknown:
            raise _fail(path, f"'prompts' names unknown texts: {sorted(unknown)}")
        self.briefing_checks: Checks = _pairs(data.get("briefing_checks"), path, "briefing_checks")
        self.driven_checks: Checks = _pairs(data.get("driven_checks"), path, "driven_checks")
        names = data.get("phase_names")
        if not isinstance(names, dict):
            raise _fail(path, "'phase_names' is missing")
        self.phase_names: dict[str, str] = dict(names)
        cues = data.get("cues")
        if not isinstance(cues, dict):
            raise _fail(path, "'cues' is missing")
        self.cue_sets: dict[str, Checks] = {k: _pairs(v, path, f"cues.{k}") for k, v in cues.items()}

    def __getattr__(self, name: str) -> str:
        texts = self.__dict__.get("texts", {})
        if name in texts:
            return str(texts[name])
        raise AttributeError(f"{self.__dict__.get('path')}: no text {name!r}")

    # ---------------------------------------------------------------- built sentences
    def speed_number(self, mph: float, units: str) -> str:
        """A speed's number in the user's units, one decimal."""
        return f"{mph / MPH_PER_KMH:.1f}" if units == "kmh" else f"{mph:.1f}"

    def unit(self, units: str) -> str:
        return self.UNIT_KMH if units == "kmh" else self.UNIT_MPH

    def speed_text(self, mph: float, units: str) -> str:
        """A speed as spoken, in the user's units."""
        return self.SPEED.format(number=self.speed_number(mph, units), unit=self.unit(units))

    def incline_text(self, pct: float) -> str:
        """The incline as announced: 'Incline now 2 percent.'"""
        return self.INCLINE_NOW.format(pct=f"{pct:g}")

    def duration_text(self, seconds: float) -> str:
        """A duration as spoken: '5 minutes', '1 minute 30', '40 seconds'."""
        seconds = int(round(seconds))
        minutes, secs = divmod(seconds, 60)
        if minutes == 0:
            return self.SECONDS.format(s=secs)
        text = (self.MINUTE if minutes == 1 else self.MINUTES).format(m=minutes)
        return self.MINUTES_SECONDS.format(minutes=text, s=secs) if secs else text

    def phase_intro(self, kind: str, number: int, of: int, seconds: float, mph: float,
                    units: str) -> str:
        """The announcement at the start of a phase."""
        name = self.phase_names.get(kind, kind)
        block = self.PHASE_BLOCK.format(number=number, of=of) if kind == "backward" and of > 1 else ""
        return self.PHASE_INTRO.format(name=name, block=block, duration=self.duration_text(seconds),
                                       speed=self.speed_text(mph, units))

    def summary_text(self, backward_s: float, lo: float, hi: float, units: str,
                     outcome: str) -> str:
        """The spoken summary at the end of a session."""
        head = self.SUMMARY_FINISHED if outcome == "finished" else self.SUMMARY_EARLY
        if backward_s <= 0:
            return self.SUMMARY_NO_BACKWARD.format(head=head)
        if abs(hi - lo) < 0.05:
            speeds = self.SPEEDS_AT.format(speed=self.speed_text(lo, units))
        else:
            speeds = self.SPEEDS_BETWEEN.format(lo=self.speed_number(lo, units),
                                                hi=self.speed_number(hi, units),
                                                unit=self.unit(units),
                                                hi_speed=self.speed_text(hi, units))
        return self.SUMMARY.format(head=head, duration=self.duration_text(backward_s),
                                   speeds=speeds)


@cache
def load_phrases(language: str = "en") -> Phrases:
    """The phrase file of ``language`` (its base language if a regional one has none)."""
    folder = phrases_dir()
    for path in (f / f"{name}.json" for f in _folders()
                 for name in (language, language.split("-")[0].lower())):
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise _fail(path, f"cannot be read ({exc})") from None
            return Phrases(data, path)
    raise VoicecoachError(f"no phrase file for the language '{language}' in {folder}",
                          f"add {folder / (language + '.json')} beside the grammar "
                          "(copy en.json and translate it)")
