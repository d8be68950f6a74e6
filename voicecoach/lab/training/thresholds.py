"""The spotter's thresholds: each clip's streaming statistic, the cost of misses and false
accepts, the thresholds chosen on it, and the out-of-fold figures through the run-time
decision code."""

from __future__ import annotations

import logging
import statistics
from typing import Any

import numpy as np

from voicecoach.grammar import Grammar
from voicecoach.lab.corpus import FA_STATE, state_for
from voicecoach.lab.training.data import SILENCE
from voicecoach.listening.spotter.decide import STOP, Decider, Decision
from voicecoach.listening.spotter.model import phrases_of

_LOGGER = logging.getLogger(__name__)

#: What a mistake costs (the issue's order: a missed stop is the worst error, a false
#: "faster" the next). Misses are per command clip; false accepts per negative clip, times
#: NEGATIVE_PRIOR because other speech is far more common than a command.
MISS_COST = {STOP: 10.0}
FALSE_COST = {"faster": 5.0, STOP: 2.0, "incline_up": 3.0}
NEGATIVE_PRIOR = 20.0
LATE_S = 0.5
"""A stop acted on more than this after the word's end is late: counted as missed where the
barge-in trials are replayed (issue 16's worst word end -> belt stop)."""
GRID = np.round(np.arange(0.30, 0.995, 0.01), 3)


def statistic(probs: np.ndarray, classes: list[int], smooth: int, confirm: int) -> float:
    """The highest score a clip holds for ``confirm`` steps running, smoothed as the decider
    smooths (the mean of the last ``smooth`` steps): the clip fires iff this >= threshold."""
    raw = probs[:, classes].sum(axis=1)
    if not len(raw):
        return 0.0
    csum = np.concatenate([[0.0], np.cumsum(raw)])
    t = np.arange(len(raw))
    lo = np.maximum(0, t - smooth + 1)
    sm = (csum[t + 1] - csum[lo]) / (t + 1 - lo)
    if confirm > 1:
        if len(sm) < confirm:
            return 0.0
        sm = np.min(np.stack([sm[i:len(sm) - confirm + 1 + i] for i in range(confirm)]), axis=0)
    return float(sm.max())


def cost(curves: dict[str, Any], stop_t: float, t: float) -> float:
    total = 0.0
    for cmd, stats in curves["positive"].items():
        limit = stop_t if cmd == STOP else t
        miss = float(np.mean(np.asarray(stats) < limit)) if stats else 0.0
        total += MISS_COST.get(cmd, 1.0) * miss
    for cmd, stats in curves["negative"].items():
        limit = stop_t if cmd == STOP else t
        fa = float(np.mean(np.asarray(stats) >= limit)) if stats else 0.0
        total += NEGATIVE_PRIOR * FALSE_COST.get(cmd, 1.0) * fa
    return total


def choose(curves: dict[str, Any]) -> tuple[float, float]:
    """The stop threshold and the shared threshold of the other commands, at least cost.

    The two are independent terms of the cost, so each is a one-dimensional search."""
    def part(keep_stop: bool, t: float) -> float:
        sub = {"positive": {c: v for c, v in curves["positive"].items() if (c == STOP) == keep_stop},
               "negative": {c: v for c, v in curves["negative"].items() if (c == STOP) == keep_stop}}
        return cost(sub, t, t)
    stop_t = min(GRID, key=lambda t: (part(True, t), -t))
    other_t = min(GRID, key=lambda t: (part(False, t), -t))
    return float(stop_t), float(other_t)


def curves_for(clips: list[dict[str, Any]], grammar: Grammar, decision: Decision,
               classes: dict[str, list[int]]) -> dict[str, Any]:
    """Clip statistics: for command clips, of their own command; for negative clips, the
    highest of every command the walking state accepts."""
    pos: dict[str, list[float]] = {}
    neg: dict[str, list[float]] = {}
    for clip in clips:
        if clip["command"]:
            cmd = clip["command"]
            confirm = 1 if cmd == STOP else decision.confirm
            pos.setdefault(cmd, []).append(statistic(clip["probs"], classes[cmd],
                                                     decision.smooth, confirm))
        else:
            for cmd in grammar.commands_for(FA_STATE):
                confirm = 1 if cmd == STOP else decision.confirm
                neg.setdefault(cmd, []).append(statistic(clip["probs"], classes[cmd],
                                                         decision.smooth, confirm))
    return {"positive": pos, "negative": neg}


def run_decider(clip: dict[str, Any], grammar: Grammar, labels: list[str], decision: Decision
                ) -> list[tuple[str, float]]:
    """The run-time decision code over one clip's probabilities: (command, emitted_s)."""
    decider = Decider(labels, phrases_of(grammar), decision)
    state = state_for(grammar, clip["command"]) if clip["command"] else FA_STATE
    decider.set_commands(grammar.commands_for(state))
    out = []
    for j, p in enumerate(clip["probs"]):
        out += [(f.command, f.emitted_s) for f in decider.step(p, (j + 1) * 0.08)]
    return out


def figures(clips: list[dict[str, Any]], grammar: Grammar, labels: list[str],
            decision_of: dict[int, Decision]) -> dict[str, Any]:
    """Recall, false accepts and stop latency over clips, each fold with its own thresholds."""
    rec: dict[str, list[int]] = {}
    fa: dict[str, list[int]] = {}
    latency: list[float] = []
    for clip in clips:
        fired = run_decider(clip, grammar, labels, decision_of[clip["fold"]])
        if clip["command"]:
            hits = [t for c, t in fired if c == clip["command"]]
            rec.setdefault(clip["word"], []).append(1 if hits else 0)
            if hits and clip["command"] == STOP:
                latency.append(hits[0] - clip["end_s"])
        else:
            fa.setdefault(clip["word"], []).append(1 if fired else 0)
    words = [w for w in fa if w != SILENCE]
    fa_words = [v for w in words for v in fa[w]]
    return {
        "recall": {w: {"rate": round(float(np.mean(v)), 4), "heard": int(sum(v)), "clips": len(v)}
                   for w, v in rec.items()},
        "false_accepts": {w: {"rate": round(float(np.mean(v)), 4), "accepts": int(sum(v)),
                              "clips": len(v)} for w, v in fa.items()},
        "false_accepts_words": {"rate": round(float(np.mean(fa_words)), 4) if fa_words else 0.0,
                                "accepts": int(sum(fa_words)), "clips": len(fa_words)},
        "stop_latency_s": ({"median": round(statistics.median(latency), 3),
                            "max": round(max(latency), 3), "n": len(latency)} if latency else None),
    }


def curve_table(clips: list[dict[str, Any]], grammar: Grammar, decision: Decision,
                classes: dict[str, list[int]]) -> list[dict[str, float]]:
    """Threshold against recall and false accepts (out-of-fold statistics)."""
    c = curves_for(clips, grammar, decision, classes)
    rows = []
    for t in (0.05, 0.1, 0.2, 0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98):
        row: dict[str, float] = {"threshold": t}
        for cmd, stats in c["positive"].items():
            row[f"{cmd}_recall"] = round(float(np.mean(np.asarray(stats) >= t)), 4)
        neg = np.max(np.stack([np.asarray(v) for v in c["negative"].values()]), axis=0)
        row["fa_any"] = round(float(np.mean(neg >= t)), 4)
        row["fa_stop"] = round(float(np.mean(np.asarray(c["negative"][STOP]) >= t)), 4)
        rows.append(row)
    return rows


def barge_cost(out: dict[str, Any]) -> float:
    """A stop bar's cost over the coach's speech (``lab.bench.barge_bar``,
    ``lab.training.over_probe``): the spotter's costs, a missed stop and a false stop taken
    from another word said over the coach, as rates."""
    miss = 1.0 - out["caught"] / max(1, out["stops"])
    fa = out["false_others"] / max(1, out["others"])
    return MISS_COST[STOP] * miss + NEGATIVE_PRIOR * FALSE_COST[STOP] * fa


def cheapest_bar(table: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Of replayed bars over the coach's speech, the one of least :func:`barge_cost` that lets
    no look at the coach's own echo through (ties: the higher bar); None if every one does."""
    allowed = [t for t in table if t["echo_false"] == 0]
    return min(allowed, key=lambda t: (barge_cost(t), -t["bar"]), default=None)
