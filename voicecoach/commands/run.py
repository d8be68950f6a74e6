"""``voicecoach run``: a whole session, commands typed on stdin or replayed from a WAV file."""

from __future__ import annotations

import argparse
import logging
import sys

from voicecoach.clock import RealClock
from voicecoach.commands import DefaultsFormatter
from voicecoach.commands._common import (
    add_engine_options,
    add_plan_options,
    check_recorded,
    choose_plan,
    make_coach,
    output_listener,
    positive,
    recorded_session,
    settings_from_args,
    stopped_by_sigterm,
)
from voicecoach.device.session import run_audio, run_typed
from voicecoach.grammar import load_grammar
from voicecoach.treadmill.wiring import open_treadmill

_LOGGER = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "run", help="run a session (type commands, or replay a recording with --audio-in)",
        formatter_class=DefaultsFormatter,
        description="Run a backward-walking session. Type commands (faster, pause, stop, ...) "
                    "one per line; or replay a WAV recording through the recogniser.")
    add_plan_options(parser)
    parser.add_argument("--speed-up", type=positive, default=1.0, metavar="N",
                        help="run the workout clock N times faster than real time")
    parser.add_argument("--json-events", action="store_true",
                        help="print events as JSON lines (time, type, state, text, command)")
    parser.add_argument("--audio-in", metavar="FILE.wav",
                        help="replay a recording through the real recogniser "
                             "(workout time = audio time)")
    add_engine_options(parser)
    parser.add_argument("--treadmill", choices=("sim",), default=None,
                        help="drive a simulated treadmill (on workout time) instead of the "
                             "configured one")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    grammar = load_grammar(settings.speech.language)
    chosen = choose_plan(args, settings)
    recogniser = source = None
    if args.audio_in:  # check the input and load the model before a session is recorded
        from voicecoach.audio.wav import WavFileSource
        from voicecoach.listening.engines import make_recogniser

        source = WavFileSource(args.audio_in)
        recogniser = make_recogniser(settings.speech, grammar,
                                     announce=lambda line: print(line, file=sys.stderr),
                                     data_dir=settings.data_dir)
    treadmill, treadmill_settings = open_treadmill(settings.treadmill, args.treadmill,
                                                   live=source is None and args.speed_up == 1)
    with recorded_session(settings, chosen, "replay" if source else "run") as (plan, recorder), \
            stopped_by_sigterm():
        coach = make_coach(settings, plan, grammar, recorder, output_listener(args, settings),
                           treadmill=treadmill, treadmill_settings=treadmill_settings)
        if source is not None and recogniser is not None:
            try:
                ended = run_audio(coach, source.chunks(), recogniser)
            finally:
                source.close()
        else:
            if sys.stdin.isatty():
                print("Type commands (e.g. yes, faster, pause, resume, time left, stop); "
                      "Ctrl-D ends input.", file=sys.stderr)
            ended = run_typed(coach, grammar, RealClock(args.speed_up), sys.stdin)
        if ended == "input-ended":
            coach.command("stop", source="system")
        if treadmill is not None:
            treadmill.close()
    check_recorded(recorder)
    if ended == "input-ended":
        print("voicecoach: input ended before the safety checks were answered; "
              "the session was stopped", file=sys.stderr)
        return 1
    return 0
