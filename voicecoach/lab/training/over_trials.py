"""Reading the over-the-coach look's training data: the traced barge-in trials and the closed
loops' looks, each checked line by line (one clear error naming the line and what is wrong),
the locked speakers refused (a part of ``python -m voicecoach.lab.training.over_probe``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voicecoach.errors import VoicecoachError
from voicecoach.lab.training.data import is_locked

_LOGGER = logging.getLogger(__name__)


def _json_lines(path: Path, what: str, how: str) -> list[tuple[int, Any]]:
    """The JSON values of a JSON-lines file, each with its line number; one
    :class:`VoicecoachError` (naming ``what`` it should hold, fixed by ``how``) if it cannot be
    read or parsed."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError) as exc:
        raise VoicecoachError(f"cannot read {what} {path} ({exc})", how) from None
    out = []
    for n, x in enumerate(lines, 1):
        if not x.strip():
            continue
        try:
            out.append((n, json.loads(x)))
        except ValueError as exc:  # the file's line, not json's line within it
            where = f" at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
            raise VoicecoachError(f"cannot read {what} {path}: line {n} is not JSON "
                                  f"({getattr(exc, 'msg', exc)}{where})", how) from None
    return out


def _number(value: Any) -> bool:
    """Whether a JSON value is a number (not true or false)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    """A JSON value's type as a message names it."""
    if isinstance(value, bool):
        return "true or false"
    return {dict: "an object", list: "a list", str: "a string", int: "a number",
            float: "a number"}.get(type(value), "null")


def _look_problem(look: Any) -> str | None:
    """What is wrong with the shape of one traced look (None: nothing); ``pooled``, if there,
    must be a list of numbers (its absence is the caller's to say: a run without states)."""
    if not isinstance(look, dict):
        return f"is {_kind(look)}, not an object"
    if not isinstance(look.get("over", False), bool):
        return f"has an 'over' that is {_kind(look['over'])}, not true or false"
    if not look.get("over"):
        return None
    if not _number(look.get("t")):
        return "has no 't' that is a number (its time)"
    scores = look.get("scores")
    if not isinstance(scores, dict) or not all(_number(v) for v in scores.values()):
        return "has no 'scores' that is an object of numbers"
    return _pooled_problem(look.get("pooled", [0.0]))


def _pooled_problem(pooled: Any) -> str | None:
    """What is wrong with a look's encoder output, ``pooled`` (None: nothing)."""
    if not isinstance(pooled, list) or not pooled or not all(_number(v) for v in pooled):
        return "has a 'pooled' that is not a list of numbers"
    return None


def _trial_problem(row: Any) -> str | None:
    """What is wrong with the shape of one traced trial (None: nothing): every field this module
    reads from it, of the type it reads it as (``word_s`` only where it is read: a placed trial
    with an echo)."""
    if not isinstance(row, dict):
        return f"it is {_kind(row)}, not an object"
    missing = [k for k in ("word", "speaker", "echo") if k not in row]
    if missing:
        return "it has no " + " or ".join(f"'{k}'" for k in missing)
    for key in ("word", "speaker", "echo"):
        if not isinstance(row[key], str):
            return f"its '{key}' is {_kind(row[key])}, not a string"
    for key in ("placed", "caught"):
        if key in row and not isinstance(row[key], bool):
            return f"its '{key}' is {_kind(row[key])}, not true or false"
    for key in ("over_candidate", "latency_s"):
        if row.get(key) is not None and not _number(row[key]):
            return f"its '{key}' is {_kind(row[key])}, not a number or null"
    for key in ("looks", "echo_looks"):
        if key in row and not isinstance(row[key], list):
            return f"its '{key}' is {_kind(row[key])}, not a list"
        for i, look in enumerate(row.get(key, []), 1):
            problem = _look_problem(look)
            if problem:
                return f"look {i} of its '{key}' {problem}"
    if row["echo"] != "none" and row.get("placed"):
        span = row.get("word_s")
        if not isinstance(span, list) or len(span) != 2 or not all(_number(v) for v in span):
            return "its 'word_s' is not a list of two numbers (the word's start and end)"
    return None


def read_trials(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """The traced trials of ``barge_in --states --json`` files; one :class:`VoicecoachError` for
    a file that is not one (naming the line and what is wrong with it: :func:`_trial_problem`),
    a trial of a locked speaker, or looks without encoder output."""
    lines: list[tuple[Path, int, Any]] = []
    how = ("make them: python -m voicecoach.lab.bench.barge_in --speakers dev --states "
           "--echo-only --json TRIALS.jsonl")
    for path in paths:
        lines += [(path, n, row) for n, row in _json_lines(path, "the barge-in trials", how)]
    if not lines:
        raise VoicecoachError("the barge-in trials hold no trial", how)
    rows: list[dict[str, Any]] = []
    width: int | None = None
    for path, n, row in lines:
        problem = _trial_problem(row)
        if problem:
            raise VoicecoachError(f"{path}: line {n} is not a traced barge-in trial ({problem})",
                                  how)
        if is_locked(row["speaker"]):
            raise VoicecoachError(f"{path}: line {n} is a trial of locked speaker "
                                  f"{row['speaker']}: the locked speakers are measured, never "
                                  "trained or chosen on", how)
        looks = [x for key in ("looks", "echo_looks") for x in row.get(key, []) if x.get("over")]
        if any("pooled" not in x for x in looks):
            raise VoicecoachError(f"{path}: line {n}'s looks hold no encoder output (run without "
                                  "--states)", how)
        for x in looks:
            width = len(x["pooled"]) if width is None else width
            if len(x["pooled"]) != width:
                raise VoicecoachError(f"{path}: line {n} is not a traced barge-in trial (a look "
                                      f"has a 'pooled' of {len(x['pooled'])} numbers, the first "
                                      f"look's {width})", how)
        rows.append(row)
    levels = {row.get("over_candidate") for row in rows}
    if len(levels) > 1:
        raise VoicecoachError("the barge-in trials were made at different stop candidate levels "
                              "over the coach (" + ", ".join(sorted(map(str, levels))) + ")",
                              "fit on trials made with one --over-candidate (or none)")
    return [r for r in rows if r.get("echo") != "none" and r.get("placed")]


def read_echo(paths: Sequence[Path], level: float | None, width: int | None = None) -> np.ndarray:
    """The pooled features of every look over the coach in ``barge_in --loop-states`` files
    (the coach's own echo in a closed loop: "anything else" to fit on, in every fold, never
    replayed); one :class:`VoicecoachError` for a file that is not one, looks without encoder
    output, or looks raised at another candidate level than the trials' (``level``) or of
    another width than theirs (``width``; None: the first look's)."""
    how = ("make them: python -m voicecoach.lab.bench.barge_in --stops 0 --others 0 --loop-talk "
           "--loop-seed 31 --cancellers nlms --cost-s 0 --loop-states LOOP.jsonl")
    feats: list[list[float]] = []
    whose = "the first look's" if width is None else "the trials' looks'"
    for path in paths:
        for n, row in _json_lines(path, "the closed loop's looks", how):
            if not isinstance(row, dict) or not row.get("loop") or \
                    not isinstance(row.get("echo_looks"), list):
                raise VoicecoachError(f"{path}: line {n} is not a closed loop's looks "
                                      "(--loop-states)", how)
            if row.get("over_candidate") != level:
                raise VoicecoachError(f"{path}'s looks were raised at candidate level "
                                      f"{row.get('over_candidate')}, the trials' at {level}",
                                      "make both with the same --over-candidate")
            for i, look in enumerate(row["echo_looks"], 1):
                if isinstance(look, dict) and "pooled" not in look:
                    raise VoicecoachError(f"{path}'s looks hold no encoder output", how)
                problem = f"is {_kind(look)}, not an object" if not isinstance(look, dict) \
                    else _pooled_problem(look["pooled"])
                if problem is None:
                    width = len(look["pooled"]) if width is None else width
                    if len(look["pooled"]) != width:
                        problem = (f"has a 'pooled' of {len(look['pooled'])} numbers, "
                                   f"{whose} {width}")
                if problem:
                    raise VoicecoachError(f"{path}: line {n} is not a closed loop's looks (look "
                                          f"{i} of its 'echo_looks' {problem})", how)
                feats.append(look["pooled"])
    return np.asarray(feats, np.float32)


def candidate_level(rows: list[dict[str, Any]]) -> float | None:
    """The stop candidate level over the coach the trials' looks were raised at (None: the
    model card's; ``barge_in --over-candidate``)."""
    level = rows[0].get("over_candidate") if rows else None
    return None if level is None else float(level)
