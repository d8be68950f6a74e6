"""The two looks compared at each target stop recall on clips: the bar, false accepts on clips of
other words, stops caught and false stops an hour in talk (a part of
``python -m voicecoach.lab.training.look_probe``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from voicecoach.lab.training.look_data import Looks

_LOGGER = logging.getLogger(__name__)

TARGETS = (0.93, 0.94, 0.95, 0.96, 0.97, 0.975)
"""Stop recalls on clips at which the two looks are compared."""


def bar_for(scores: np.ndarray, target: float) -> float:
    """The highest bar at which at least ``target`` of ``scores`` (the stop clips') pass."""
    ordered = np.sort(scores)
    return float(ordered[int(np.floor((1.0 - target) * ordered.size))])


def talk_outcome(score: np.ndarray, bar: float, where: dict[str, Any],
                 refractory_s: float = 1.0) -> tuple[int, int]:
    """(stops caught, false stops) in the talk at ``bar``: a stop is caught when a look at it
    passes; false stops are passing looks away from any stop, one per ``refractory_s``."""
    passed = score >= bar
    at = where["at"]
    caught = len(set(at[passed & (at >= 0)].tolist()))
    false = 0
    last: tuple[str, float] | None = None
    for i in sorted(np.flatnonzero(passed & (at < 0)), key=lambda i: (where["name"][i], where["time"][i])):
        f, t = str(where["name"][i]), float(where["time"][i])
        if last is None or last[0] != f or t - last[1] >= refractory_s:
            false += 1
        last = (f, t)
    return caught, false


def compare(clips: Looks, talk: Looks, where: dict[str, Any], probe_clip: np.ndarray,
            probe_talk: np.ndarray, targets: Sequence[float] = TARGETS) -> list[dict[str, Any]]:
    """Both looks at each target stop recall on clips: the bar, false accepts on clips of other
    words, stops caught and false stops an hour in talk."""
    pos = clips.label == 0
    hours = where["audio_s"] / 3600.0
    rows = []
    for target in targets:
        for method, cs, ts in (("opening", clips.stop, talk.stop),
                               ("probe", probe_clip, probe_talk)):
            bar = bar_for(cs[pos], target)
            caught, false = talk_outcome(ts, bar, where)
            rows.append({"target": target, "look": method, "bar": round(bar, 4),
                         "stop_recall": round(float((cs[pos] >= bar).mean()), 4),
                         "stops_missed": int((cs[pos] < bar).sum()),
                         "fa_clips": int((cs[~pos] >= bar).sum()), "clips_other": int((~pos).sum()),
                         "talk_caught": caught, "talk_stops": where["stops"], "talk_false": false,
                         "talk_false_per_hour": round(false / max(hours, 1e-9), 2)})
    return rows
