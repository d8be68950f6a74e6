"""Replaying the echo trials with stop over the coach read at a bar: the least-cost bar that
lets no look at the coach's own echo through, and both looks (the probe, the opening) measured
out of fold (a part of ``python -m voicecoach.lab.training.over_probe``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from voicecoach.lab.training.data import speaker_fold
from voicecoach.lab.training.second_look import VERIFY_GRID
from voicecoach.lab.training.thresholds import LATE_S, cheapest_bar
from voicecoach.listening.spotter.decide import STOP

_LOGGER = logging.getLogger(__name__)

OPENING_BAR = 0.004
"""The opening's bar over the coach that this replaces (``engine.OVER_SPEECH_STOP_BAR``)."""


def _stop_scores(rows: list[dict[str, Any]], looks: dict[str, np.ndarray],
                 score: np.ndarray | None) -> list[dict[str, list[tuple[float, float, bool]]]]:
    """Per trial, its over-the-coach looks (:func:`over_looks`) as (time, stop score, at a stop
    candidate), on the word (``looks``) and at the echo (``echo_looks``); ``score`` None: the
    opening's."""
    out: list[dict[str, list[tuple[float, float, bool]]]] = [{"looks": [], "echo_looks": []}
                                                             for _ in rows]
    scores = looks["opening"] if score is None else score
    for n, i in enumerate(looks["row"]):
        key = "echo_looks" if looks["echo"][n] else "looks"
        out[i][key].append((float(looks["t"][n]), float(scores[n]), bool(looks["first"][n])))
    return out


def replay(rows: list[dict[str, Any]], scored: list[dict[str, list[tuple[float, float, bool]]]],
           bar: float, default: float) -> dict[str, Any]:
    """The echo trials had stop over the coach been read at ``bar`` (``default``: the bar a
    stop named at another command's candidate must clear as well): a stop trial is caught in
    time if a look over the coach on it passes no later than 0.5 s after the word, or it was
    caught in time with no look over the coach; another word's trial is a false stop if one
    passes; a passing look at the coach's own echo is a false stop from the coach's voice."""
    stops = caught = others = false_others = echo_false = 0

    def passes(s: float, first: bool) -> bool:
        return s >= (bar if first else max(bar, default))

    for row, mine in zip(rows, scored, strict=True):
        echo_false += sum(passes(s, f) for _t, s, f in mine["echo_looks"])
        hi = row["word_s"][1]
        if row["word"] == STOP:
            stops += 1
            ok = any(passes(s, f) and t - hi <= LATE_S for t, s, f in mine["looks"])
            ok = ok or (not mine["looks"] and bool(row.get("caught"))
                        and (row.get("latency_s") or 0.0) <= LATE_S)
            caught += ok
        else:
            others += 1
            false_others += any(passes(s, f) for _t, s, f in mine["looks"])
    return {"bar": float(bar), "stops": stops, "caught": caught, "others": others,
            "false_others": false_others, "echo_false": echo_false}


def choose_bar(rows: list[dict[str, Any]], scored: list[dict[str, Any]], default: float,
               grid: Sequence[float] = tuple(VERIFY_GRID)) -> float:
    """The least-cost bar that lets no look at the coach's own echo through (ties: the
    higher); the highest of the grid if none does."""
    best = cheapest_bar([replay(rows, scored, float(b), default) for b in grid])
    return float(best["bar"]) if best else float(max(grid))


def cross_validate(rows: list[dict[str, Any]], looks: dict[str, np.ndarray], score: np.ndarray,
                   default: float) -> dict[str, Any]:
    """Both looks out of fold: each fold's trials replayed at the bar chosen on the other
    folds' (the probe's scores out of fold too); the opening also at its shipped bar."""
    folds = np.array([speaker_fold(str(r["speaker"])) for r in rows])
    probe = _stop_scores(rows, looks, score)
    opening = _stop_scores(rows, looks, None)
    total: dict[str, dict[str, int]] = {}
    bars: dict[str, list[float]] = {"probe": [], "opening": []}
    for k in sorted(set(folds.tolist())):
        inside = [i for i in range(len(rows)) if folds[i] != k]
        mine = [i for i in range(len(rows)) if folds[i] == k]
        for name, scored in (("probe", probe), ("opening", opening)):
            bar = choose_bar([rows[i] for i in inside], [scored[i] for i in inside], default)
            bars[name].append(bar)
            out = replay([rows[i] for i in mine], [scored[i] for i in mine], bar, default)
            acc = total.setdefault(name, {})
            for key in ("stops", "caught", "others", "false_others", "echo_false"):
                acc[key] = acc.get(key, 0) + int(out[key])
    total["opening at 0.004"] = {k: int(v) for k, v in replay(rows, opening, OPENING_BAR,
                                                               default).items() if k != "bar"}
    return {"out_of_fold": total, "bars": bars}
