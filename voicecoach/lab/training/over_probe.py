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

The tool in parts: reading the trials and the loops' looks (over_trials.py), replaying them at a
bar and measuring out of fold (over_replay.py); here, the looks, the probe's fit, writing it,
and the command line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voicecoach.config import number_in
from voicecoach.errors import VoicecoachError, report
from voicecoach.lab.training.data import speaker_fold
from voicecoach.lab.training.look_probe import DEFAULT_C, fit_probe
from voicecoach.lab.training.over_replay import _stop_scores, choose_bar, cross_validate, replay
from voicecoach.lab.training.over_trials import candidate_level, read_echo, read_trials
from voicecoach.listening.spotter.decide import STOP
from voicecoach.listening.spotter.look_probe import ARRAYS, FRAMES, LOOK_PROBE_FILE, OVER, WORDS, probe_probs
from voicecoach.listening.spotter.model import read_arrays

_LOGGER = logging.getLogger(__name__)

#: Importable from here as before the tool was split (its tests read them, and patch fit_probe
#: here: fit_over and out_of_fold stay beside it).
__all__ = ["ONSET_S", "_stop_scores", "candidate_level", "choose_bar", "cross_validate",
           "fit_over", "fit_probe", "main", "out_of_fold", "over_looks", "read_echo",
           "read_trials", "replay", "source_weights", "write"]

ONSET_S = 0.3
"""A look falls on a trial's word if it is taken this long after the word's start or later."""


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
