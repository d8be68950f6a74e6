"""Choosing the verifier's stop bar over the coach's own speech, on dev speakers' barge-in trials.

``python -m voicecoach.lab.bench.barge_bar TRIALS.jsonl [...]`` reads the traced trials of
``lab.bench.barge_in --speakers dev --json`` (never the locked speakers: it refuses rows of
locked ones) and replays each look the spotter's engine made over the coach's speech at every
bar of the second look's grid: a stop trial is caught in time if it was, or if one of its stop
looks over the coach reaches the bar no later than 0.5 s after the word; a go / yes / no trial
becomes a false stop if one of its stop looks over the coach reaches it; a look at the coach's
own echo (outside every word) that reaches it is a false stop from the coach's voice.

The bar is the one of least cost, the spotter's own costs (a missed stop ``MISS_COST``, a
false stop ``NEGATIVE_PRIOR`` x ``FALSE_COST`` as a rate of the other words), among the bars
that let no look at the coach's own voice through (the issue's target: 0 commands from the
coach's voice); ties go to the higher bar. Only looks at stop candidates count (a stop named
from another command's candidate must clear the default bar as before).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from voicecoach.lab.training.data import is_locked
from voicecoach.lab.training.second_look import VERIFY_GRID
from voicecoach.lab.training.thresholds import LATE_S, barge_cost, cheapest_bar
from voicecoach.listening.spotter.decide import STOP


def _stop_looks(looks: list[dict[str, Any]], over: bool = False) -> list[dict[str, Any]]:
    """Looks at stop candidates over the coach (the candidate is the first command asked);
    ``over``: for traces that did not record it per look, whether the word was over the
    coach's speech."""
    return [x for x in looks if x.get("over", over) and next(iter(x["scores"]), None) == STOP]


def replay(rows: list[dict[str, Any]], bar: float, card_bar: float) -> dict[str, Any]:
    """Outcome of the echo trials (``echo`` not "none") had the bar over the coach been ``bar``."""
    stops = caught = false_others = others = 0
    echo_false = 0
    for row in rows:
        if row.get("echo") == "none" or not row.get("placed"):
            continue
        lo, hi = row["word_s"]
        for x in _stop_looks(row.get("echo_looks", [])):
            if card_bar > x["scores"][STOP] >= bar:
                echo_false += 1
        looks = _stop_looks(row.get("looks", []), bool(row.get("over_speech")))
        if row["word"] == STOP:
            stops += 1
            ok = row.get("caught") and (row.get("latency_s") or 0.0) <= LATE_S
            ok = ok or any(x["scores"][STOP] >= bar and x["t"] - hi <= LATE_S for x in looks)
            caught += bool(ok)
        else:
            others += 1
            false_others += any(card_bar > x["scores"][STOP] >= bar for x in looks)
    return {"bar": float(bar), "stops": stops, "caught": caught, "others": others,
            "false_others": false_others, "echo_false": echo_false}


def choose(rows: list[dict[str, Any]], card_bar: float) -> tuple[float, list[dict[str, Any]]]:
    """The chosen bar (``card_bar`` if none does better) and the table of every grid bar."""
    table = [replay(rows, float(b), card_bar) for b in VERIFY_GRID if b <= card_bar]
    best = cheapest_bar(table)
    return (best["bar"] if best else card_bar), table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voicecoach.lab.bench.barge_bar",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("trials", type=Path, nargs="+", help="barge_in --speakers dev --json files")
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    for path in args.trials:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
            rows += [json.loads(x) for x in lines if x.strip()]
        except (OSError, ValueError) as exc:
            print(f"barge_bar: cannot read {path} ({exc}); give the JSON lines of "
                  "barge_in --json", file=sys.stderr)
            return 2
    bad = next((n for n, r in enumerate(rows, 1) if not isinstance(r, dict) or r.get("placed")
                and not {"word", "word_s", "looks"} <= r.keys()), None)
    if bad is not None:
        print(f"barge_bar: trial {bad} is not a traced barge-in row (no word, word_s or looks); "
              "give the JSON lines of barge_in --json", file=sys.stderr)
        return 2
    locked = sorted({r["speaker"] for r in rows if is_locked(r.get("speaker", ""))})
    if locked:
        print(f"barge_bar: {len(locked)} locked speakers in the trials (e.g. {locked[0]}); choose "
              "on dev speakers only: barge_in --speakers dev", file=sys.stderr)
        return 2
    from voicecoach.listening.spotter.model import load_model

    card_bar = float(load_model().card["verify"][STOP])
    bar, table = choose(rows, card_bar)
    for t in table:
        print(f"bar {t['bar']:.4f}: stops {t['caught']}/{t['stops']}, other words taken for stop "
              f"{t['false_others']}/{t['others']}, looks at the coach's voice let through "
              f"{t['echo_false']}, cost {barge_cost(t):.3f}")
    print(f"chosen over-speech stop bar: {bar:.4f} (the card's {card_bar:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
