"""Where a barge-in trial's stop went: the spotter's stop score, each second look, the gate.

:class:`Tracer` wraps a :class:`~voicecoach.listening.spotter.engine.SpotterRecogniser`'s
decider and verifier for one trial (without changing what they return) and
:func:`loss_reason` names where a stop that was not caught was lost, as the README's table:
``spotter`` (its stop score never reached the candidate level), ``look`` (looked at, the
verifier rejected every look), ``gate`` (a stop detection the duplex gate dropped),
``late`` (caught more than 0.5 s after the word), ``elsewhere`` (accepted, not written),
``no-look`` (a candidate score, but no look: refractory, or a run already looked at).
Lab code: the run time never imports it.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import numpy as np

from voicecoach.lab.training.thresholds import LATE_S

_LOGGER = logging.getLogger(__name__)


class Tracer:
    """Records, for one trial, every step's smoothed stop score and every second look."""

    def __init__(self, recogniser: Any, states: bool = False) -> None:
        """``states``: each look also records its window's pooled encoder output
        (``look_probe.pooled``, as a list) under ``"pooled"``: the over-the-coach look's
        training data (``lab.training.over_probe``)."""
        self.recogniser = recogniser
        self.scores: list[tuple[float, float]] = []
        self.looks: list[dict[str, Any]] = []
        self._undo: list[tuple[Any, str, Any]] = []
        decider = getattr(recogniser, "decider", None)
        if decider is None:
            return
        stop_idx = decider._classes.get("stop", [])
        recent: deque[np.ndarray] = deque(maxlen=max(1, decider.decision.smooth))
        step = decider.step
        self._last_end = 0.0

        def traced_step(probs: np.ndarray, end_s: float, **how: Any) -> Any:
            recent.append(np.asarray(probs, dtype=np.float64))
            smooth = np.mean(np.stack(recent), axis=0)
            self.scores.append((end_s, float(smooth[stop_idx].sum())))
            self._last_end = end_s
            return step(probs, end_s, **how)

        self._patch(decider, "step", traced_step)
        verifier = getattr(recogniser, "verifier", None)
        if verifier is not None:
            scores = verifier.scores

            def traced_scores(audio: np.ndarray, asked: Any, **how: Any) -> Any:
                mine: list[np.ndarray] | None = None
                if states and how.get("states") is None:
                    mine = how["states"] = []
                out = scores(audio, asked, **how)
                look = {"t": round(self._last_end, 2),
                        "over": bool(getattr(recogniser, "last_look_over", False)),
                        "scores": {c: round(float(p), 4) for c, p in out.items()},
                        "stop_score": round(self.scores[-1][1], 3) if self.scores else None}
                held = mine if mine is not None else how.get("states")
                if states and held:
                    from voicecoach.listening.spotter.look_probe import pooled

                    look["pooled"] = [round(float(v), 4) for v in pooled(held[-1][None])[0]]
                self.looks.append(look)
                return out

            self._patch(verifier, "scores", traced_scores)

    def _patch(self, obj: Any, name: str, fn: Any) -> None:
        self._undo.append((obj, name, obj.__dict__.get(name)))
        setattr(obj, name, fn)

    def close(self) -> None:
        for obj, name, old in reversed(self._undo):
            if old is None:
                delattr(obj, name)
            else:
                setattr(obj, name, old)
        self._undo.clear()

    def around(self, start_s: float, end_s: float) -> dict[str, Any]:
        """The trace over a word's window (0.3 s before it to 1.5 s after)."""
        lo, hi = start_s - 0.3, end_s + 1.5
        mine = [s for t, s in self.scores if lo <= t <= hi]
        return {"stop_max": round(max(mine), 3) if mine else None,
                "looks": [x for x in self.looks if lo <= x["t"] <= hi],
                # every other look of the trial: candidates the coach's own echo (or the
                # belt) raised, the false side of any bar over the coach's speech
                "echo_looks": [x for x in self.looks if not lo <= x["t"] <= hi]}


def loss_reason(row: dict[str, Any], decisions: list[Any], candidate: float) -> str | None:
    """Where a stop trial's stop was lost (None: caught in time, or not a stop trial)."""
    if row.get("word") != "stop" or not row.get("placed"):
        return None
    if row.get("caught"):
        return "late" if (row.get("latency_s") or 0.0) > LATE_S else None
    stops = [d for d in decisions if d.detection.command == "stop"]
    if any(not d.accepted for d in stops) and not any(d.accepted for d in stops):
        return "gate"
    if stops:
        return "elsewhere"
    if row.get("looks"):
        return "look"
    if row.get("stop_max") is not None and row["stop_max"] >= candidate:
        return "no-look"  # a candidate score, but no look (refractory, or looked already)
    return "spotter"
