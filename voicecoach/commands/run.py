"""``voicecoach run``: a whole session, commands typed on stdin or replayed from a WAV file."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

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
    print_history_problem,
    recorded_session,
    session_settings,
    stopped_by_sigterm,
)
from voicecoach.commands._device import replayed
from voicecoach.device.belt import stop_belts
from voicecoach.device.loop import DeviceLoop
from voicecoach.device.session import run_typed
from voicecoach.errors import VoicecoachError
from voicecoach.grammar import Grammar, load_grammar
from voicecoach.history.db import HistoryDB
from voicecoach.history.recorder import SessionRecorder
from voicecoach.history.session_lock import one_session_at_a_time
from voicecoach.settings import Settings
from voicecoach.treadmill.wiring import open_treadmill
from voicecoach.workout.machine import AT_REST, State
from voicecoach.workout.plan import Plan

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
    parser.add_argument("--audio-in", metavar="FILE",
                        help="replay a recording (WAV or FLAC) through the device loop, as serve --audio-in "
                             "does: a session begins at 'start' (workout time = audio time)")
    add_engine_options(parser)
    parser.add_argument("--treadmill", choices=("sim",), default=None,
                        help="drive a simulated treadmill (on workout time) instead of the "
                             "configured one")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = session_settings(args)
    grammar = load_grammar(settings.speech.language)
    chosen = choose_plan(args, settings)
    # held before the treadmill is opened: a serve holding the folder keeps its belt's link;
    # typed or replayed, a run never opens the microphone: a listen on it is heard beside it
    with one_session_at_a_time(settings.data_dir, "run", microphone=False):
        return _run(args, settings, grammar, chosen)


def _run(args: argparse.Namespace, settings: Settings, grammar: Grammar,
         chosen: Plan | None) -> int:
    """A typed session, or a replayed one; the data folder is held."""
    if args.audio_in:
        return replay_session(args, settings, grammar, chosen)
    treadmill, treadmill_settings = open_treadmill(settings.treadmill, args.treadmill,
                                                   live=args.speed_up == 1)
    with recorded_session(settings, chosen, "run") as (plan, recorder), \
            stopped_by_sigterm(lambda: [recorder]):
        coach = make_coach(settings, plan, grammar, recorder, output_listener(args, settings),
                           treadmill=treadmill, treadmill_settings=treadmill_settings)
        if sys.stdin.isatty():
            print("Type commands (e.g. yes, faster, pause, resume, time left, stop); "
                  "Ctrl-D ends input.", file=sys.stderr)
        try:
            ended = run_typed(coach, grammar, RealClock(args.speed_up), sys.stdin)
            if ended == "input-ended":
                coach.command("stop", source="system")
        except BaseException:
            stop_belts(coach)  # Ctrl-C, SIGTERM, a fault: nobody coaches the belt any more
            raise
        finally:
            if treadmill is not None:
                treadmill.close()  # what is queued (that stop) is written first
    check_recorded(recorder)
    if ended == "input-ended":
        print(INPUT_ENDED, file=sys.stderr)
        return 1
    return 0


#: The input ended while the coach still waited for the safety answers.
INPUT_ENDED = ("voicecoach: input ended before the safety checks were answered; "
               "the session was stopped")


def replay_session(args: argparse.Namespace, settings: Settings, grammar: Grammar,
                   chosen: Plan | None) -> int:
    """One session from a recording through the device loop, as ``serve --audio-in`` replays
    it: the loop listens for "start", the coach's voice is simulated on audio time, the
    duplex gate weighs what is heard against it; the session is recorded as "replay"."""
    from voicecoach.listening.engines import make_recogniser

    given = replayed(settings, [args.audio_in])  # the file is checked before anything else
    HistoryDB.open(settings.data_dir).close()  # a history that cannot record: said now
    recogniser = make_recogniser(settings.speech, grammar,
                                 announce=lambda line: print(line, file=sys.stderr),
                                 data_dir=settings.data_dir)
    treadmill, treadmill_settings = open_treadmill(settings.treadmill, args.treadmill,
                                                   live=False)
    recorders: list[SessionRecorder] = []
    refused: list[VoicecoachError] = []

    @contextmanager
    def open_session(plan: Plan | None) -> Iterator[tuple[Plan, SessionRecorder]]:
        with ExitStack() as stack:
            try:
                plan, recorder = stack.enter_context(recorded_session(settings, plan, "replay"))
            except VoicecoachError as exc:
                refused.append(exc)
                raise
            recorder.on_problem = print_history_problem  # the loop adds the spoken warning
            recorder.log_level = logging.INFO  # the user gets one line from it/check_recorded
            recorders.append(recorder)
            yield plan, recorder

    loop = DeviceLoop(settings, grammar, recogniser, given.speaker, given.open_source,
                      open_session, plan=chosen, listeners=[output_listener(args, settings)],
                      sessions=1, clock=given.clock, canceller=given.canceller,
                      treadmill=treadmill, treadmill_settings=treadmill_settings)
    try:
        with stopped_by_sigterm(lambda: recorders):
            loop.run()
    finally:
        given.speaker.close()
        if treadmill is not None:
            treadmill.close()
    if not recorders:
        if refused:
            raise refused[0]
        print(f"voicecoach: {args.audio_in} ended before 'start' was heard; no session was run",
              file=sys.stderr)
        return 1
    check_recorded(recorders[0])
    if loop.input_ended_in in (*AT_REST, State.BRIEFING):
        print(INPUT_ENDED, file=sys.stderr)
        return 1
    return 0
