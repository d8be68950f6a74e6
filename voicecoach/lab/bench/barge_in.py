"""Barge-in with real people: held-out speakers' stops said over the coach, through the device loop.

``python -m voicecoach.lab.bench.barge_in`` (one command; the last line is the summary). Real
speakers from ``../shared/speech_commands`` and ``../shared/speech_commands_train`` whose
``zlib.crc32(speaker.encode()) % 5 == 0`` (the locked test set: the spotter never trains on
them) say stop (and go / yes / no) over the coach's espeak-ng voice, played back through a
simulated room into the microphone (voicecoach.lab.room: the coach's samples delayed 20-60 ms,
through a room response with RT60 0.2-0.6 s, at the level the loopback room measures, about
-27 dBFS while it talks; the user at the same level; treadmill noise 10 dB under them), at
two moments: **cold** (1-8 s into the first briefing, the canceller converging from nothing)
and **settled** (20-30 s in, after 20 s of coach speech). Each trial runs the real device
loop (recogniser, echo canceller, duplex gate, coach, belt controller on a simulated FTMS
treadmill) in audio time, three times in the same room: with no echo (the coach's voice not
in the microphone), and with the echo through each canceller (``webrtc``, ``nlms``).

Reported: stops caught (session stopped and FTMS stop written after the word) with echo, as
a ratio of the same trials caught with no echo; word end -> FTMS stop written (audio time);
go / yes / no said over the coach heard by the recogniser (the gate drops them over speech
by design, so this is the canceller's effect on hearing them); commands from the coach's own
voice over a 30-minute closed loop with a polite user; the device loop's CPU per audio second
and peak RSS (a child process per canceller). Counts, ratios and audio time; not a test.
``--speakers dev`` runs the speakers that are not locked instead: choose settings on those.

The bench in parts: the held-out takes, the room and the settings (barge_takes.py), the trials
(barge_trials.py), the closed loop (barge_loop.py), the summary (barge_report.py), the cost
child (barge_cost.py) and where a stop was lost (barge_trace.py); here, the command line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

from voicecoach.config import number_in
from voicecoach.lab.bench.barge_cost import device_cost, device_cost_child
from voicecoach.lab.bench.barge_loop import LOOP_SEED, closed_loop_session, said_before
from voicecoach.lab.bench.barge_report import summarise, summary_lines
from voicecoach.lab.bench.barge_takes import (
    CANCELLERS,
    NEGATIVE_WORDS,
    NOISE_RMS,
    PLAN,
    SETS,
    SHARED,
    SPEAKER_SETS,
    VERIFY_CHOICES,
    Take,
    _settings,
    _spread,
    held_out_takes,
    load_take,
)
from voicecoach.lab.bench.barge_trials import moments, run_trials, trial

_LOGGER = logging.getLogger(__name__)

#: Importable from here as before the bench was split: the tests, and the cost child
#: (barge_cost reads NOISE_RMS, PLAN and _settings from here).
__all__ = ["CANCELLERS", "LOOP_SEED", "NEGATIVE_WORDS", "NOISE_RMS", "PLAN", "SETS", "SHARED",
           "SPEAKER_SETS", "VERIFY_CHOICES", "Take", "_settings", "closed_loop_session",
           "held_out_takes", "load_take", "main", "moments", "run_trials", "said_before",
           "summarise", "summary_lines", "trial"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stops", type=number_in(0, 100_000, whole=True), default=200,
                        help="held-out stop clips (at most; the locked set has 182), each said "
                             "cold and settled")
    parser.add_argument("--others", type=number_in(0, 100_000, whole=True), default=30,
                        help="held-out clips of each of go, yes, no")
    parser.add_argument("--negatives", type=number_in(0, 100_000, whole=True), default=0,
                        help="held-out clips of words that must fire nothing ("
                             + ", ".join(NEGATIVE_WORDS) + "), spread over them, each said once "
                             "over the coach with the echo")
    parser.add_argument("--cancellers", default=",".join(CANCELLERS),
                        help="comma-separated: webrtc, nlms, off")
    parser.add_argument("--loop-minutes", type=number_in(0, 24 * 60), default=30.0,
                        help="the closed loop per canceller (0: skip)")
    parser.add_argument("--loop-talk", action="store_true",
                        help="the closed loop's coach talks nearly all the time (a cue after "
                             "every second of quiet) instead of at its usual pace")
    parser.add_argument("--cost-s", type=number_in(0, 24 * 3600), default=120.0,
                        help="idle audio for the CPU/RSS child per canceller (0: skip)")
    parser.add_argument("--speakers", choices=SPEAKER_SETS, default="locked",
                        help="locked: the test set (report); dev: speakers not locked, to "
                             "choose settings on (--stops of them, spread evenly)")
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--json", type=Path, help="also write every trial's row here (JSON lines)")
    parser.add_argument("--states", action="store_true",
                        help="each look in --json also holds its pooled encoder output: the "
                             "over-the-coach look's training data (lab.training.over_probe; "
                             "dev speakers only)")
    parser.add_argument("--echo-only", action="store_true",
                        help="skip the no-echo trials (training data needs only the echo)")
    parser.add_argument("--over-candidate", type=float, metavar="LEVEL",
                        help="raise stop candidates over the coach's speech from LEVEL (training "
                             "data for an over-the-coach look; with --states)")
    parser.add_argument("--loop-seed", type=int, default=LOOP_SEED,
                        help="the closed loop's seed (its noise and voices; default the "
                             "benchmark's own)")
    parser.add_argument("--loop-states", type=Path, metavar="FILE",
                        help="write the closed loop's looks over the coach with their encoder "
                             "output to FILE (training data: over_probe --echo; with a "
                             "--loop-seed other than the benchmark's)")
    parser.add_argument("--verify", choices=VERIFY_CHOICES, default="auto",
                        help="the spotter's second look in the trials, closed loops and cost: "
                             "auto (as the verify extra gives it) or off (the default install, "
                             "no verifier)")
    parser.add_argument("--from-json", type=Path, help="summarise the trials of an earlier --json")
    parser.add_argument("--cost-child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cost_child:
        logging.basicConfig(level=logging.ERROR)
        print(json.dumps(device_cost_child(args.cost_child[0], float(args.cost_child[1]),
                                           *args.cost_child[2:3])))
        return 0
    logging.basicConfig(level=logging.ERROR)
    if not (args.shared / SETS[0]).is_dir():
        print(f"barge-in: no real speech at {args.shared} (../shared)", file=sys.stderr)
        return 2
    takes = held_out_takes(args.shared, ("stop", "go", "yes", "no", *NEGATIVE_WORDS),
                           speakers=args.speakers)
    chosen = _spread(takes["stop"], args.stops)
    for word in ("go", "yes", "no"):
        chosen += _spread(takes[word], args.others)
    if args.negatives > 0:
        chosen += _spread(sorted((t for w in NEGATIVE_WORDS for t in takes[w]),
                                 key=lambda t: t.path.name), args.negatives)
    cancellers = tuple(c for c in args.cancellers.split(",") if c)
    unknown = [c for c in cancellers if c not in (*CANCELLERS, "off")]
    if unknown or not cancellers:
        print(f"barge-in: --cancellers {args.cancellers!r}: give one or more of "
              f"{', '.join((*CANCELLERS, 'off'))}, comma-separated", file=sys.stderr)
        return 2
    if args.json and not args.json.parent.is_dir():
        print(f"barge-in: --json {args.json}: the folder {args.json.parent} does not exist",
              file=sys.stderr)
        return 2
    if args.from_json:
        try:
            rows = [json.loads(x) for x in
                    args.from_json.read_text(encoding="utf-8").splitlines() if x]
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            print(f"barge-in: --from-json {args.from_json}: cannot be read as the JSON lines "
                  f"of an earlier --json ({exc})", file=sys.stderr)
            return 2
        for line in summary_lines(summarise(rows), [], []):
            print(line, flush=True)
        return 0
    if args.verify == "off" and (args.states or args.loop_states or args.over_candidate is not None):
        print("barge-in: --states, --loop-states and --over-candidate record second looks: "
              "leave out --verify off", file=sys.stderr)
        return 2
    if args.states and (args.speakers != "dev" or not args.json):
        print("barge-in: --states makes training data: use it with --speakers dev and --json",
              file=sys.stderr)
        return 2
    if args.over_candidate is not None and not (args.states or args.loop_states):
        print("barge-in: --over-candidate makes an over-the-coach look's training data: a level "
              "above 0 and below 1, with --states or --loop-states", file=sys.stderr)
        return 2
    if args.loop_states and (args.loop_seed == LOOP_SEED or args.loop_minutes <= 0
                             or len(cancellers) != 1):
        print(f"barge-in: --loop-states makes training data from one canceller's closed loop: "
              f"give --loop-seed other than the benchmark's {LOOP_SEED}, --loop-minutes above 0 "
              "and one --cancellers", file=sys.stderr)
        return 2
    if args.over_candidate is not None and not 0 < args.over_candidate < 1:
        print("barge-in: --over-candidate must be above 0 and below 1", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="vc-barge-"))
    progress = sys.stderr.isatty() and not os.environ.get("CI")
    if args.json:
        args.json.write_text("", encoding="utf-8")
    echoes = cancellers if args.echo_only else (None, *cancellers)
    rows = run_trials(chosen, echoes, tmp, progress, args.json, states=args.states,
                      over_candidate=args.over_candidate, verify=args.verify)
    loops = [closed_loop_session(c, args.loop_minutes, tmp, args.loop_talk, seed=args.loop_seed,
                                 states=args.loop_states, over_candidate=args.over_candidate,
                                 verify=args.verify)
             for c in cancellers if args.loop_minutes > 0]
    looks = ("auto", "off") if args.verify == "auto" else ("off",)
    costs = [device_cost(c, args.cost_s, v) for c in cancellers for v in looks
             if args.cost_s > 0]
    for line in summary_lines(summarise(rows), loops, costs):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
