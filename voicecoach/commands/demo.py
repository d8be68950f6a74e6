"""``voicecoach demo``: a short scripted session at high speed; needs no microphone or sound card."""

from __future__ import annotations

import argparse
import tempfile
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from voicecoach.commands import DefaultsFormatter
from voicecoach.commands._common import (
    check_recorded,
    make_coach,
    output_listener,
    positive,
    recorded_session,
    session_settings,
    stopped_by_sigterm,
)
from voicecoach.device.belt import BeltController
from voicecoach.device.session import Scripted, run_script
from voicecoach.grammar import load_grammar
from voicecoach.settings import Settings
from voicecoach.treadmill.ftms import KMH_PER_MPH
from voicecoach.treadmill.sim import SimTreadmill
from voicecoach.workout.plan import COOLDOWN, RECOVERY, WARMUP, Phase, Plan

#: A compact session that still shows every part: two short backward blocks.
DEMO_PLAN = Plan("demo", (
    replace(WARMUP, duration_s=60.0),
    Phase("backward", 150.0, 0.6, 0.5, 0.8, 0.0, 1.0, "technique"),
    replace(RECOVERY, duration_s=30.0),
    Phase("backward", 150.0, 0.6, 0.5, 0.8, 0.0, 1.0, "technique"),
    replace(COOLDOWN, duration_s=60.0),
))

#: What the demo user says, at workout seconds.
DEMO_SCRIPT = (
    Scripted(2, "help"), Scripted(4, "yes"), Scripted(7, "no"), Scripted(9, "yes"),
    Scripted(12, "yes"), Scripted(40, "faster"), Scripted(95, "faster"), Scripted(100, "faster"),
    Scripted(104, "faster"), Scripted(125, "time_left"), Scripted(150, "pause"),
    Scripted(170, "resume"), Scripted(200, "incline_up"), Scripted(230, "pain"),
    Scripted(236, "no"), Scripted(280, "repeat"), Scripted(300, "louder"),
    Scripted(420, "slower"),
)

#: With --treadmill sim: the user sets 0.7 mph on the console during the second block.
DEMO_CONSOLE_S = 340.0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("demo", help="a short scripted session at high speed (no audio needed)",
                            formatter_class=DefaultsFormatter)
    parser.add_argument("--speed-up", type=positive, default=120.0, metavar="N",
                        help="how much faster than real time the demo runs")
    parser.add_argument("--json-events", action="store_true", help="print events as JSON lines")
    parser.add_argument("--lang", default=None, help="the grammar's language, which the coach "
                        "speaks too (grammars/phrases/<lang>.json; default: en)")
    parser.add_argument("--treadmill", choices=("sim",), default=None,
                        help="drive a simulated treadmill (belt physics, a console change); "
                             "prints 'belt: ...' each time the belt speed changes")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return play(args, session_settings(args))


def play(args: argparse.Namespace, settings: Settings, *, record: bool = True) -> int:
    """Run the demo; ``record=False`` keeps it out of the user's history (a throwaway one)."""
    grammar = load_grammar(getattr(args, "lang", None) or "en")
    with ExitStack() as stack:
        if not record:
            scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="voicecoach-demo-"))
            settings = replace(settings, data_dir=Path(scratch))
        with recorded_session(settings, DEMO_PLAN, "demo", microphone=False) as (plan, recorder), \
                stopped_by_sigterm(lambda: [recorder]):
            sim = _sim(args)
            coach = make_coach(settings, plan, grammar, recorder, output_listener(args, settings),
                               treadmill=sim,
                               treadmill_settings=replace(settings.treadmill, control="drive"))
            step = 0.5
            belt = coach.followers[0] if sim is not None else None
            assert belt is None or isinstance(belt, BeltController)
            run_script(coach, DEMO_SCRIPT, step_s=step, pace_s=step / args.speed_up)
            if belt is not None:  # the belt slows to a halt after the session
                t = coach.now
                while belt.belt_kmh and coach.now < t + 60:
                    coach.tick(coach.now + step)
    check_recorded(recorder)
    return 0 if coach.outcome == "finished" else 1


def _sim(args: argparse.Namespace) -> SimTreadmill | None:
    """With --treadmill sim: a simulated treadmill; the user nudges its speed on the console once."""
    if getattr(args, "treadmill", None) != "sim":
        return None
    sim = SimTreadmill()
    sim.schedule(DEMO_CONSOLE_S, "speed", 0.7 * KMH_PER_MPH)
    return sim
