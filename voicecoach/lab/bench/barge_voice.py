"""Is a stop look over the coach a user's voice or the echo's leftover? The echo canceller's
output against its input, recorded at every such look of the barge-in bench and replayed as a
rule offline (session 24, experiments 16 and 17; README "Barge-in with real people").

Over the coach, Whisper's opening scores a user's stop under the echo as low as the echo's own
leftover (session 23). The canceller removes what the reference explains and passes the rest:
where a user speaks about as loud as the echo, its output's loudest stretch is about as loud as
the microphone's; where only the coach's echo is there, the output's loudest stretch is the
leftover, well under the microphone's (:func:`voice_over_echo_db`).

``record OUT -- <lab.bench.barge_in arguments>`` runs the barge-in bench unchanged and writes,
for every stop look over the coach, the last 3 s of the raw microphone, the canceller's output
and the reference (``OUT/lookNNNNN.npz``) and a line of ``OUT/looks.jsonl`` (its trial, audio
time, the candidate's command, Whisper's scores); with ``--json`` the trials name themselves
(``diag_trial``). ``replay`` scores a rule on such recordings: over the coach, a stop
candidate's look (or the gate's look again at a confident stop) whose Whisper stop is at least
``--bar`` and whose window reads at least ``--min-db`` is a stop. A rule that only adds stops is
replayed exactly: a trial the shipped run lost is caught at its first passing look at the user's
word. Lab code: the run time never imports it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

RATE = 16000
#: Length and hop of the stretches compared (s): a short word's loud part.
SEG_S, HOP_S = 0.25, 0.05
#: Added to every stretch's mean power (int16 scale squared): silence reads as very quiet.
FLOOR_POWER = 1e-3
#: The look's window over the coach (the engine's OVER_SPEECH_LOOK_S) and what is recorded.
WINDOW_S, KEEP_S = 1.2, 3.0
#: A look at the user's word: ending from this long after its start to LATE_S after its end.
WORD_AFTER_S, LATE_S = 0.1, 0.5


def loudest_power(audio: np.ndarray) -> float | None:
    """The highest mean power (int16 scale squared) of SEG_S stretches every HOP_S; None if
    ``audio`` is shorter than one."""
    x = np.asarray(audio, dtype=np.float64)
    seg, hop = int(round(SEG_S * RATE)), int(round(HOP_S * RATE))
    if x.size < seg:
        return None
    power = np.concatenate([[0.0], np.cumsum(x * x)])
    starts = np.arange(0, x.size - seg + 1, hop)
    return float(((power[starts + seg] - power[starts]) / seg).max()) + FLOOR_POWER


def voice_over_echo_db(heard: np.ndarray, mic: np.ndarray) -> float | None:
    """10 log10 of the loudest stretch of the canceller's output over the loudest of its input
    (same window, int16 scale): about 0 dB where an unexplained voice is the loudest thing, well
    below where the loudest is the coach's echo. None if either is too short."""
    out, into = loudest_power(heard), loudest_power(mic)
    return None if out is None or into is None else float(10.0 * np.log10(out / into))


def window_db(rec: dict[str, Any], look: dict[str, Any]) -> float | None:
    """:func:`voice_over_echo_db` over a recorded look's own window (the WINDOW_S ending at
    its audio time; the recording ends at its chunk's end)."""
    clean, mic = rec["clean"], rec["mic"]
    end = clean.size - int(round((look["chunk_end"] - look["end_s"]) * RATE))
    start = max(0, end - int(round(WINDOW_S * RATE)))
    return voice_over_echo_db(clean[start:end], mic[start:end])


@contextmanager
def recording(out: Path) -> Iterator[dict[str, Any]]:
    """Record every stop look over the coach into ``out`` while the bench runs (see the
    module's docstring); the patched methods are restored on leaving."""
    from voicecoach.device import loop as loopmod
    from voicecoach.lab.bench import barge_trials
    from voicecoach.listening.spotter import looks

    out.mkdir(parents=True, exist_ok=True)
    keep = int(KEEP_S * RATE)
    state: dict[str, Any] = {"loop": None, "mic": deque(), "clean": deque(), "end": 0.0,
                             "trial": -1, "n": 0, "fired": None}
    undo: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, name: str, new: Any) -> None:
        undo.append((owner, name, getattr(owner, name)))
        setattr(owner, name, new)

    cancel, look = loopmod.DeviceLoop._cancel_echo, looks.SecondLook._look

    def _cancel_echo(self: Any, chunk: Any) -> Any:
        heard = cancel(self, chunk)
        if state["loop"] is not self:
            state.update(loop=self, mic=deque(), clean=deque())
        state["mic"].append(np.frombuffer(chunk.audio, np.int16).copy())
        state["clean"].append(np.frombuffer(heard.audio, np.int16).copy())
        while sum(a.size for a in state["mic"]) > keep + RATE // 4:
            state["mic"].popleft()
            state["clean"].popleft()
        state["end"] = chunk.end_s
        return heard

    def _look(self: Any, verifier: Any, end: int, end_s: float, asked: Any) -> Any:
        score, over = look(self, verifier, end, end_s, asked)
        if over and "stop" in asked and state["mic"]:
            loop, chunk_end = state["loop"], state["end"]
            ref = np.zeros(0, np.int16)
            if loop is not None and loop.played is not None:
                ref = np.asarray(loop.played(chunk_end - KEEP_S, chunk_end), np.int16)
            k = state["n"]
            state["n"] += 1
            np.savez_compressed(out / f"look{k:05d}.npz",
                                mic=np.concatenate(list(state["mic"]))[-keep:],
                                clean=np.concatenate(list(state["clean"]))[-keep:], ref=ref)
            row = {"k": k, "trial": state["trial"], "end_s": end_s, "chunk_end": chunk_end,
                   "fired": state["fired"], "stop": float(score.get("stop", 0.0)),
                   "scores": {c: float(p) for c, p in score.items()}}
            with (out / "looks.jsonl").open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
        return score, over

    def naming(method: Any, label: Any) -> Any:
        def named(self: Any, what: Any) -> Any:
            state["fired"] = label(what)
            try:
                return method(self, what)
            finally:
                state["fired"] = None
        return named

    trial = barge_trials.trial

    def counted(*args: Any, **kwargs: Any) -> Any:
        state["trial"] += 1
        row = trial(*args, **kwargs)
        row["diag_trial"] = state["trial"]
        return row

    patch(loopmod.DeviceLoop, "_cancel_echo", _cancel_echo)
    patch(looks.SecondLook, "_look", _look)
    patch(looks.SecondLook, "_second_look",
          naming(looks.SecondLook._second_look, lambda fired: fired.command))
    patch(looks.SecondLook, "look_again",
          naming(looks.SecondLook.look_again, lambda det: f"again:{det.command}"))
    patch(barge_trials, "trial", counted)
    try:
        yield state
    finally:
        for owner, name, old in reversed(undo):
            setattr(owner, name, old)


def load_looks(folder: Path) -> list[dict[str, Any]]:
    """A recording's looks, each with its window's reading (``db``)."""
    rows = []
    for line in (folder / "looks.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        with np.load(folder / f"look{row['k']:05d}.npz") as rec:
            row["db"] = window_db(dict(rec), row)
        rows.append(row)
    return rows


def passes(look: dict[str, Any], bar: float, min_db: float, shipped_bar: float) -> bool:
    """The rule adds this look: a stop candidate's (or a look again at a confident stop), its
    stop at least ``bar`` but under the shipped bar, its window read at least ``min_db``."""
    return (look.get("fired") in ("stop", "again:stop") and bar <= look["stop"] < shipped_bar
            and look["db"] is not None and look["db"] >= min_db)


def replay(looks: list[dict[str, Any]], trials: list[dict[str, Any]] | None, bar: float,
           min_db: float, shipped_bar: float = 0.004,
           exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The rule over recorded looks: with ``trials`` (the bench's ``--json`` rows), stops caught
    in time by the shipped run and by the rule, looks at the coach it passes before a user's
    word, other words it takes for stop; without, every passing look (a closed loop's: all the
    coach's)."""
    if trials is None:
        extra = [lk for lk in looks if passes(lk, bar, min_db, shipped_bar)]
        return {"looks": len(looks), "coach_passed": len(extra),
                "passed": [(round(lk["end_s"], 2), lk["stop"], lk["db"]) for lk in extra]}
    by_trial: dict[int, list[dict[str, Any]]] = {}
    for lk in looks:
        by_trial.setdefault(lk["trial"], []).append(lk)
    out: dict[str, Any] = {"stops": 0, "shipped": 0, "rule": 0, "coach_passed": 0,
                           "others": 0, "others_taken": 0}
    for row in trials:
        if row["file"] in exclude or not row.get("placed", True):
            continue
        mine = by_trial.get(row["diag_trial"], [])
        if row["word"] != "stop":
            out["others"] += 1
            out["others_taken"] += any(passes(lk, bar, min_db, shipped_bar) for lk in mine)
            continue
        start, end = row["word_s"]
        in_time = bool(row["caught"]) and row["latency_s"] is not None \
            and row["latency_s"] <= LATE_S
        out["stops"] += 1
        out["shipped"] += in_time
        out["coach_passed"] += sum(passes(lk, bar, min_db, shipped_bar) for lk in mine
                                   if lk["end_s"] < start + WORD_AFTER_S)
        out["rule"] += in_time or any(
            passes(lk, bar, min_db, shipped_bar) for lk in mine
            if start + WORD_AFTER_S <= lk["end_s"] <= end + LATE_S)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m voicecoach.lab.bench.barge_voice",
                                     description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    rec = sub.add_parser("record", help="run lab.bench.barge_in, recording every stop look "
                                        "over the coach (its arguments after --)")
    rec.add_argument("out", type=Path)
    rep = sub.add_parser("replay", help="score a rule on recordings")
    rep.add_argument("folder", type=Path, help="a record OUT folder")
    rep.add_argument("--trials", type=Path, help="the bench's --json rows of that run")
    rep.add_argument("--exclude", type=Path, help="--json rows whose files to leave out")
    rep.add_argument("--bar", type=float, default=0.001)
    rep.add_argument("--min-db", type=float, default=-6.0)
    bench_args: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, bench_args = argv[:at], argv[at + 1:]
    args = parser.parse_args(argv)
    if args.what == "record":
        from voicecoach.lab.bench import barge_in

        with recording(args.out):
            return barge_in.main(bench_args)
    try:
        looks = load_looks(args.folder)
        trials = None if args.trials is None else [
            json.loads(x) for x in args.trials.read_text(encoding="utf-8").splitlines()]
        exclude = frozenset() if args.exclude is None else frozenset(
            json.loads(x)["file"] for x in args.exclude.read_text(encoding="utf-8").splitlines())
    except (OSError, ValueError, KeyError) as exc:
        print(f"barge-voice: cannot read the recording ({exc}); give a folder written by "
              f"'record' and that run's --json rows", file=sys.stderr)
        return 2
    print(json.dumps(replay(looks, trials, args.bar, args.min_db, exclude=exclude)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
