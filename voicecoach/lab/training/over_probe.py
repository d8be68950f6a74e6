"""The learned look at stop over the coach's own speech (session 15), from dev barge-in trials.

Over the coach the engine's second look read the transcript's opening at a bar of its own
(``engine.OVER_SPEECH_STOP_BAR``, 0.004): the window holds the coach's leftover echo, Whisper's
transcript opens on it, and most stops lost over the coach are lost there (README "Barge-in
with real people"). This fits a probe of the clean learned look's form
(``listening.spotter.look_probe``: Whisper tiny.en's encoder output over the look, pooled,
standardised, a class-balanced logistic regression) on the looks the engine takes over the
coach in traced barge-in trials of speakers who are not locked::

    VOICECOACH_SPOTTER_MODEL=DIR/en_commands.npz python -m voicecoach.lab.bench.barge_in \\
        --speakers dev --stops 1000 --others 150 --negatives 1000 --cancellers nlms \\
        --echo-only --states --loop-minutes 0 --cost-s 0 --json TRIALS.jsonl
    python -m voicecoach.lab.training.over_probe TRIALS.jsonl [--write DIR]

Trials made with ``--over-candidate LEVEL`` (the spotter raising stop candidates over the coach
from LEVEL rather than the card's level) record it; ``--write`` puts it in the card beside the
bar (``look_probe.over.candidate``), so the shipped spotter raises the looks the probe was fitted
on. Trials of different levels are not fitted together.

``--echo LOOP.jsonl`` adds the looks of a closed loop in which the coach talks throughout
(``barge_in --loop-talk --loop-seed N --loop-states LOOP.jsonl``, a seed other than the
benchmark's own loop) as anything else, fitted on in every fold and never replayed: the coach's
whole script, not only the briefing the trials are said over.

A look over the coach is labelled by its trial's word when it falls on the word (from
:data:`ONSET_S` after its start; stop, go, yes, no or anything else), anything else when it is
a look at the coach's own echo (outside every word); looks on a command's start are left out.

Its bar is chosen as ``lab.bench.barge_bar`` chooses the opening's: the least cost by the
spotter's own costs among the bars that let no look at the coach's own echo through. Both are
measured out of fold by the repository's speaker folds: each fold's looks are scored by a probe
fitted on the other folds' looks, at a bar chosen on the other folds' trials, and every echo
trial is replayed (:func:`replay`) against the opening at its bar on the same looks. ``--write
DIR`` adds the probe fitted on every look and the bar chosen on every trial to DIR's learned
look (``en_look_probe.npz``, arrays ``over_*``; the card's ``look_probe.over``). The locked
speakers are never read: a trial of one is refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voicecoach.config import number_in
from voicecoach.errors import VoicecoachError, report
from voicecoach.lab.training.data import is_locked, speaker_fold
from voicecoach.lab.training.look_probe import DEFAULT_C, fit_probe
from voicecoach.lab.training.second_look import VERIFY_GRID
from voicecoach.lab.training.thresholds import LATE_S, cheapest_bar
from voicecoach.listening.spotter.decide import STOP
from voicecoach.listening.spotter.look_probe import ARRAYS, FRAMES, LOOK_PROBE_FILE, OVER, WORDS, probe_probs
from voicecoach.listening.spotter.model import read_arrays

ONSET_S = 0.3
"""A look falls on a trial's word if it is taken this long after the word's start or later."""
OPENING_BAR = 0.004
"""The opening's bar over the coach that this replaces (``engine.OVER_SPEECH_STOP_BAR``)."""


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


def _label(row: dict[str, Any], look: dict[str, Any]) -> int | None:
    """A look on the trial's word: its class; on the word's start: None (left out)."""
    if look["t"] < row["word_s"][0] + ONSET_S:
        return None
    return WORDS.index(row["word"]) if row["word"] in WORDS else len(WORDS)


def over_looks(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Every look over the coach with its class, fold, trial and place: ``x`` (pooled
    features), ``y`` (class; -1: on a word's start, not fitted on), ``fold``, ``row``,
    ``echo`` (a look at the coach's own echo), ``t`` (its time), ``opening`` (the opening's stop
    score) and ``first`` (a look at a stop candidate: stop is the command asked first)."""
    cols: dict[str, list[Any]] = {k: [] for k in ("x", "y", "fold", "row", "echo", "t",
                                                   "opening", "first")}
    for i, row in enumerate(rows):
        for key in ("looks", "echo_looks"):
            for look in row.get(key, []):
                if not look.get("over"):
                    continue
                label = _label(row, look) if key == "looks" else len(WORDS)
                for name, value in (("x", look["pooled"]), ("y", -1 if label is None else label),
                                    ("fold", speaker_fold(str(row["speaker"]))), ("row", i),
                                    ("echo", key == "echo_looks"), ("t", float(look["t"])),
                                    ("opening", float(look["scores"].get(STOP, 0.0))),
                                    ("first", next(iter(look["scores"]), None) == STOP)):
                    cols[name].append(value)
    n = len(cols["y"])
    return {"x": np.asarray(cols["x"], np.float32).reshape(n, -1),
            **{k: np.asarray(cols[k], int) for k in ("y", "fold", "row")},
            **{k: np.asarray(cols[k], bool) for k in ("echo", "first")},
            **{k: np.asarray(cols[k], float) for k in ("t", "opening")}}


def source_weights(y: np.ndarray, at_echo: np.ndarray) -> np.ndarray:
    """Per look, a weight that makes the two sources of "anything else", the coach's own echo
    (``at_echo``) and other people's words, carry equal total weight within that class, so
    the many echo looks do not drown the few looks on a word that is not a command (session
    20); 1 for every other look, and for all when one source is absent."""
    weight = np.ones(len(y))
    other = y == len(WORDS)
    echo, words = other & at_echo, other & ~at_echo
    if echo.any() and words.any():
        weight[echo] = other.sum() / (2.0 * echo.sum())
        weight[words] = other.sum() / (2.0 * words.sum())
    return weight


def fit_over(x: np.ndarray, y: np.ndarray, c: float = DEFAULT_C,
             echo: np.ndarray | None = None, at_echo: np.ndarray | None = None,
             ) -> dict[str, np.ndarray]:
    """The probe fitted on looks ``x`` of classes ``y``, with the closed loop's echo looks
    ``echo`` (:func:`read_echo`) as anything else; with ``at_echo`` (which of ``x`` are looks
    at the coach's own echo) weighted by :func:`source_weights`."""
    if echo is not None and len(echo):
        x = np.concatenate([x, echo.reshape(len(echo), x.shape[1])])
        y = np.concatenate([y, np.full(len(echo), len(WORDS))])
        if at_echo is not None:
            at_echo = np.concatenate([at_echo, np.ones(len(echo), bool)])
    weight = None if at_echo is None else source_weights(y, at_echo)
    return fit_probe(x, y, c, weight)


def out_of_fold(looks: dict[str, np.ndarray], c: float = DEFAULT_C,
                echo: np.ndarray | None = None, balance: bool = False) -> np.ndarray:
    """Every look's stop probability from a probe fitted on the other folds' looks (and on
    every closed-loop echo look, ``echo``: it has no speaker, so no fold); ``balance``: the
    echo and other people's words weighed equally within anything else."""
    score = np.zeros(len(looks["y"]))
    fit = looks["y"] >= 0
    for k in sorted(set(looks["fold"].tolist())):
        mine = looks["fold"] == k
        probe = fit_over(looks["x"][fit & ~mine], looks["y"][fit & ~mine], c, echo,
                         looks["echo"][fit & ~mine] if balance else None)
        score[mine] = probe_probs(probe, looks["x"][mine])[:, 0]
    return score


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


def write(model_dir: Path, probe: dict[str, np.ndarray], bar: float, info: dict[str, Any]) -> str:
    """Add the over-the-coach probe (arrays ``over_*``) and its bar to ``model_dir``'s learned
    look and card; returns the probe file's new sha256."""
    card_path = model_dir / "en_commands.json"
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise VoicecoachError(f"{model_dir} holds no readable model card ({exc})",
                              "give the folder of a trained model (train --out DIR)") from None
    if not isinstance(card, dict) or not (model_dir / "en_commands.npz").is_file():
        raise VoicecoachError(f"{model_dir} holds no trained model (en_commands.npz and its card)",
                              "give the folder of a trained model (train --out DIR)")
    entry = card.get("look_probe")
    arrays: dict[str, np.ndarray] = {}
    if entry:
        path = model_dir / str(entry["file"])
        held = read_arrays(path)
        if held is None:
            raise VoicecoachError(f"{path}, the model's learned look, is missing or not a "
                                  "readable .npz", "retrain the model with its look (train "
                                  "--look-probe), or give a model without one")
        arrays = {k: v for k, v in held.items() if not k.startswith(OVER)}
    else:   # a model without a clean learned look: the file holds the over part only
        entry = card["look_probe"] = {"file": LOOK_PROBE_FILE, "clean": False,
                                      "width": int(np.asarray(probe["mean"]).size // 2),
                                      "frames": FRAMES, "classes": [*WORDS, "other"]}
        path = model_dir / LOOK_PROBE_FILE
    arrays.update({OVER + k: np.asarray(probe[k], np.float32) for k in ARRAYS})
    from voicecoach.lab.training.card import save_arrays, write_card

    digest = entry["sha256"] = save_arrays(path, arrays)
    entry["over"] = {"bar": float(bar), **info}
    write_card(card_path, card)
    return digest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voicecoach.lab.training.over_probe",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("trials", type=Path, nargs="+",
                        help="barge_in --speakers dev --states --json files")
    parser.add_argument("--c", type=number_in(0, 1e6, above=True), default=DEFAULT_C,
                        help="the probe's C (as the clean one)")
    parser.add_argument("--default", type=float, default=None,
                        help="the bar a stop named at another command's candidate must clear "
                             "too (default: the model's card, verify.default)")
    parser.add_argument("--echo", type=Path, nargs="+", default=[], metavar="LOOP",
                        help="closed loops' looks (barge_in --loop-states) to fit on as anything "
                             "else, in every fold")
    parser.add_argument("--balance-sources", action="store_true",
                        help="weigh the coach's own echo and other people's words equally "
                             "within anything else (session 20)")
    parser.add_argument("--write", type=Path, metavar="DIR",
                        help="add the probe and its bar to DIR's learned look (a trained model)")
    args = parser.parse_args(argv)
    try:
        rows = read_trials(args.trials)
        default = args.default
        if default is None:
            from voicecoach.listening.spotter.model import load_model

            default = float(load_model().card.get("verify", {}).get("default", 1.0))
        looks = over_looks(rows)
        if not (looks["y"] == 0).any() or not (looks["y"] > 0).any():
            raise VoicecoachError("the trials hold no look over the coach at a stop and at "
                                  "something else", "run more trials (--stops, --negatives)")
        echo = read_echo(args.echo, candidate_level(rows), looks["x"].shape[1]) \
            if args.echo else None
        score = out_of_fold(looks, args.c, echo, args.balance_sources)
        result = cross_validate(rows, looks, score, default)
        opening = _stop_scores(rows, looks, None)
        probe_scored = _stop_scores(rows, looks, score)
        bar = choose_bar(rows, probe_scored, default)
        counts = {name: int((looks["y"] == k).sum()) for k, name in
                  enumerate((*WORDS, "other"))}
        print(json.dumps({"trials": len(rows), "over_candidate": candidate_level(rows),
                          "loop_echo_looks": 0 if echo is None else len(echo),
                          "looks_over": len(looks["y"]),
                          "fitted": counts, "echo_looks": int(looks["echo"].sum()),
                          "chosen_bar": bar, "opening_bar_all": choose_bar(rows, opening, default),
                          **result}, indent=1))
        if args.write:
            fit = looks["y"] >= 0
            probe = fit_over(looks["x"][fit], looks["y"][fit], args.c, echo,
                             looks["echo"][fit] if args.balance_sources else None)
            level = candidate_level(rows)
            balanced = ("; the coach's echo and other people's words weighed equally within "
                        "anything else (--balance-sources)") if args.balance_sources else ""
            info = {"recipe": f"the clean learned look's form (C {args.c}) fitted on {int(fit.sum())} "
                              "looks over the coach's own speech in dev speakers' barge-in trials "
                              f"(lab.training.over_probe){balanced}",
                    "trials": len(rows), "looks": counts,
                    **({"loop_echo_looks": len(echo)} if echo is not None else {}),
                    "cross_validated": result["out_of_fold"],
                    **({} if level is None else {"candidate": level})}
            digest = write(args.write, probe, bar, info)
            print(f"over-the-coach look written to {args.write} (bar {bar}, sha256 {digest[:12]})")
    except VoicecoachError as exc:
        return report(exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
