"""Helpers shared by the sub-commands: settings from arguments, plan choice, output sinks."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import FrameType

from voicecoach.config import load_settings, missing_config, number_in
from voicecoach.device.session import EventPrinter, JsonLines
from voicecoach.errors import VoicecoachError
from voicecoach.events import Priority
from voicecoach.grammar import Grammar
from voicecoach.history.db import HistoryDB
from voicecoach.history.progression import plan_next_session
from voicecoach.history.recorder import (
    SessionRecorder,
    sessions_for_plan,
    tidy_unless_locked,
)
from voicecoach.history.session_lock import one_session_at_a_time
from voicecoach.settings import Settings, TreadmillSettings
from voicecoach.treadmill.link import Treadmill
from voicecoach.workout.coach import Coach, Listener
from voicecoach.workout.plan import Plan, load_plan, programme_week


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Build the settings once: defaults, the config file, environment, then the command line."""
    overrides: dict[str, object] = {
        "data_dir": getattr(args, "data_dir", None),
        "speech.engine": getattr(args, "engine", None),
        "speech.language": getattr(args, "lang", None),
        "speech.model_path": getattr(args, "model", None),
        "speech.verify": getattr(args, "verify", None),
        "audio.input_device": getattr(args, "input_device", None),
        "audio.output_device": getattr(args, "output_device", None),
    }
    return load_settings(getattr(args, "config", None), overrides)


def session_settings(args: argparse.Namespace) -> Settings:
    """:func:`settings_from_args` for a command that runs a session: a ``$VOICECOACH_CONFIG``
    naming a file that does not exist is said in one line on stderr (the session goes on with
    the defaults, which are safe; ``doctor`` says it too)."""
    settings = settings_from_args(args)
    missing = None if getattr(args, "config", None) else missing_config()
    if missing is not None:
        print(f"voicecoach: warning: {missing[0]}; {missing[1]}", file=sys.stderr)
    driven = settings.treadmill.control == "drive" or getattr(args, "treadmill", None) == "sim"
    if driven and settings.treadmill.top_speed_mph < settings.coach.top_speed_mph:
        # the belt is never written above [treadmill] top_speed_mph: a plan that asks more would
        # be announced and recorded at speeds the belt never ran, so the coach's top is it too
        settings = replace(settings, coach=replace(
            settings.coach, top_speed_mph=settings.treadmill.top_speed_mph))
    return settings


#: The fastest a workout clock may run (a 20-minute session in about a millisecond).
MAX_SPEED_UP = 1_000_000.0


#: The slowest: a clock ten times slower than real time. Below it a session would take
#: days (1e-5: a demo of two years) or never end (1e-300: sleeps too long to represent).
MIN_SPEED_UP = 0.1

#: --speed-up: from MIN_SPEED_UP to MAX_SPEED_UP.
positive = number_in(MIN_SPEED_UP, MAX_SPEED_UP)


def choose_plan(args: argparse.Namespace, settings: Settings) -> Plan | None:
    """--plan FILE or --week N; None means: plan from history (progression)."""
    if getattr(args, "plan", None) and getattr(args, "week", None) is not None:
        raise VoicecoachError("--plan and --week were both given", "use one of them")
    if getattr(args, "plan", None):
        return load_plan(Path(args.plan), settings.coach)
    if getattr(args, "week", None) is not None:
        return programme_week(args.week, settings.coach)
    return None


def output_listener(args: argparse.Namespace, settings: Settings) -> Listener:
    """JSON lines with --json-events, else the readable console printer."""
    if getattr(args, "json_events", False):
        return JsonLines(sys.stdout)
    return EventPrinter(sys.stdout, settings.coach.units)


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """--engine, --lang and --model: which recogniser, language and vosk model."""
    from voicecoach.listening.engines import ENGINES

    parser.add_argument("--engine", choices=list(ENGINES), default=None,
                        help="recogniser (default: from settings); "
                             + "; ".join(f"{e.name}: {e.help}" for e in ENGINES.values()))
    parser.add_argument("--lang", default=None, help="grammar/model language (default: en)")
    parser.add_argument("--model", default=None, metavar="DIR", help="a vosk model folder")
    parser.add_argument("--verify", choices=["auto", "off"], default=None,
                        help="the spotter's second look with Whisper tiny.en (default: from "
                             "settings, auto: used when the 'verify' extra is installed)")


def add_plan_options(parser: argparse.ArgumentParser) -> None:
    """The options that choose what to walk."""
    parser.add_argument("--plan", metavar="FILE", help="a TOML plan file (see README)")
    parser.add_argument("--week", type=int, metavar="N",
                        help="a week of the default 6-week programme (1-6); default: "
                             "planned from your history")


#: Signals that end a session as stopped: SIGTERM (systemd, kill) and SIGHUP (the terminal or
#: SSH connection closed), where there is one
ENDING_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP")
                       if hasattr(signal, name))


class Terminated(SystemExit):
    """An ending signal (:data:`ENDING_SIGNALS`) arrived: unwinds like Ctrl-C, so the session
    is recorded as stopped. It carries the signal (``signum``); its exit code is 128 + the
    signal's number, as a shell shows a process that signal ended."""

    def __init__(self, signum: int) -> None:
        self.signum = signal.Signals(signum)
        super().__init__(128 + int(self.signum))


@contextmanager
def stopped_by_sigterm(recorders: Callable[[], Sequence[SessionRecorder]] = tuple
                       ) -> Iterator[None]:
    """While inside, an ending signal (SIGTERM or SIGHUP, :data:`ENDING_SIGNALS`) ends the
    session as stopped (recorded so) and the program exits 128 + the signal (143 for SIGTERM,
    129 for SIGHUP) with one line, instead of dying with the session left 'running'. ``recorders``: the
    sessions' recorders, closed as stopped (a second close does nothing) before the line is
    written, so that it says whether the record is whole."""
    def on_ending_signal(signum: int, frame: FrameType | None) -> None:
        raise Terminated(signum)

    try:
        previous = {sig: signal.signal(sig, on_ending_signal) for sig in ENDING_SIGNALS}
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    except Terminated as exc:
        lost, kept = 0, []
        for recorder in recorders():
            recorder.close("stopped")
            lost += recorder.incomplete and recorder.kept_in is None
            kept += [str(recorder.kept_in)] if recorder.kept_in is not None else []
        print(f"voicecoach: terminated ({exc.signum.name}); " + (
            "the session's record in the history is incomplete; `voicecoach history` shows "
            "it as interrupted" if lost else
            f"the history could not take the session's end; it is kept in {', '.join(kept)} "
            "and added to the history at its next opening" if kept else
            "the session was recorded as stopped"), file=sys.stderr, flush=True)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def recorded_session(settings: Settings, plan: Plan | None, source: str, *,
                     microphone: bool = True) -> Iterator[tuple[Plan, SessionRecorder]]:
    """Open the history, plan from it when no plan was chosen, and record the session as it
    goes. A session that did not end by itself is closed as stopped (Ctrl-C) or interrupted.
    The plan counts a session of this process whose end is not written yet (another program
    holds the history locked) as it ended (history.recorder.sessions_for_plan).
    ``microphone``: whether this process listens on it (the data folder's lock says so)."""
    with one_session_at_a_time(settings.data_dir, source, microphone=microphone), \
            HistoryDB.open(settings.data_dir, recover=False) as db:
        tidy_unless_locked(db)  # a history held locked does not hold the start up
        if plan is None:
            plan = plan_next_session(sessions_for_plan(db), settings.coach, dt.date.today(),
                                     language=settings.speech.language)
        with SessionRecorder.open(db, plan, source) as recorder:
            yield plan, recorder


#: Exit code of a session that ran but whose record in the history is incomplete.
INCOMPLETE_RECORD = 4


def print_history_problem(exc: Exception) -> None:
    """One line on stderr when the history stops taking the session."""
    detail = exc.one_line() if isinstance(exc, VoicecoachError) else str(exc)
    print(f"voicecoach: warning: {detail.rstrip('.')}; the session is kept in memory and "
          "written as soon as the disk allows", file=sys.stderr, flush=True)


def tell_history_problem(coach: Coach) -> Callable[[Exception], None]:
    """What a recorder calls (once) when the history stops taking the session: the coach
    says so and one line goes to stderr; the workout goes on."""
    def tell(exc: Exception) -> None:
        print_history_problem(exc)
        coach.say(coach.words.HISTORY_FAILING, "warning", Priority.URGENT, remember=False)
    return tell


def check_recorded(recorder: SessionRecorder) -> None:
    """After a session: one line and INCOMPLETE_RECORD when its record is incomplete."""
    if not recorder.incomplete:
        return
    problem = recorder.problem
    detail = (problem.message if isinstance(problem, VoicecoachError)
              else str(problem or "unknown error"))
    shown = ("the session shows as interrupted" if recorder.kept_in is None else
             f"the session, kept in {recorder.kept_in} meanwhile, is added to it then")
    raise VoicecoachError(
        f"the session ran but its record in the history is incomplete "
        f"({recorder.pending + recorder.dropped} events unwritten): {detail}",
        f"fix the cause, then run `voicecoach history`: {shown}",
        exit_code=INCOMPLETE_RECORD)


def make_coach(settings: Settings, plan: Plan, grammar: Grammar, recorder: SessionRecorder,
               *listeners: Listener, treadmill: Treadmill | None = None,
               treadmill_settings: TreadmillSettings | None = None) -> Coach:
    """A coach whose events go to ``listeners`` and the history, with the history heartbeat;
    with a ``treadmill`` link, a BeltController keeps the belt in step with it."""
    follow = []
    if treadmill is not None:
        from voicecoach.device.belt import BeltController

        follow.append(BeltController.follow(treadmill, treadmill_settings or settings.treadmill))
    coach = Coach(plan, settings.coach, grammar, [*listeners, recorder.on_event],
                  volume=settings.speech.volume, tick_hooks=[recorder.heartbeat],
                  followers=follow)
    recorder.on_problem = tell_history_problem(coach)
    recorder.log_level = logging.INFO  # the user gets one line from tell/check_recorded
    return coach
