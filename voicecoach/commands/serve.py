"""``voicecoach serve``: the device loop, forever: listen for "start", coach, back to idle."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

from voicecoach.commands import DefaultsFormatter
from voicecoach.commands._common import (
    ENDING_SIGNALS,
    add_engine_options,
    add_plan_options,
    choose_plan,
    number_in,
    output_listener,
    recorded_session,
    session_settings,
)
from voicecoach.commands._device import live, replayed
from voicecoach.device.loop import DeviceLoop
from voicecoach.device.loop_faults import DeviceFaults
from voicecoach.errors import VoicecoachError
from voicecoach.events import Priority
from voicecoach.grammar import load_grammar
from voicecoach.history.db import DB_NAME, HistoryDB
from voicecoach.history.faults import HistoryLocked, HistoryUnavailable
from voicecoach.history.health import write_lock_holder
from voicecoach.history.recorder import tidy_if_let_go
from voicecoach.history.session_lock import one_session_at_a_time
from voicecoach.phrases import load_phrases
from voicecoach.service import NEEDS_A_PERSON, unit_options, unit_text
from voicecoach.settings import Settings
from voicecoach.speaking.speaker import Speaker
from voicecoach.treadmill.wiring import open_treadmill

_LOGGER = logging.getLogger(__name__)


def add_device_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by serve and start: devices, engine, language, model, plan."""
    parser.add_argument("--input-device", default=None, metavar="D",
                        help="microphone: a device number or part of its name (default: settings, "
                             "else the system default)")
    parser.add_argument("--output-device", default=None, metavar="D",
                        help="speaker: a device number or part of its name")
    parser.add_argument("--list-devices", action="store_true", help="list sound devices and exit")
    add_engine_options(parser)
    parser.add_argument("--json-events", action="store_true", help="print events as JSON lines")
    add_plan_options(parser)
    parser.add_argument("--treadmill", choices=("sim",), default=None,
                        help="drive a simulated treadmill instead of the configured one "
                             "([treadmill] in the config)")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "serve", help="run the device: listen for 'start' all day (systemd runs this)",
        formatter_class=DefaultsFormatter,
        description="Listen on the microphone forever: 'start' begins a session (the safety "
                    "briefing, then the belt part after 'yes'); afterwards it listens again.")
    add_device_options(parser)
    parser.add_argument("--audio-in", nargs="+", metavar="FILE", default=None,
                        help="replay these recordings (WAV or FLAC), one after another, instead of the "
                             "microphone (for tests); the coach's voice is simulated")
    parser.add_argument("--realtime", action="store_true",
                        help="with --audio-in: replay at real-time pace")
    parser.add_argument("--sessions", type=number_in(1, 1_000_000, whole=True), default=None,
                        metavar="N",
                        help="exit after N sessions (default: never)")
    parser.add_argument("--print-unit", action="store_true",
                        help="print the systemd unit for this installation and exit")
    parser.set_defaults(func=run)


#: At start-up a history that is full or failing is tried this many times, this far apart
#: (seconds). A lock is not waited for (check_history_at_start).
START_TRIES, START_RETRY_S = 3, 5.0


def check_history_at_start(data_dir: Path, sleep: Callable[[float], None] = time.sleep
                           ) -> VoicecoachError | None:
    """None when the history can take a session; else why not. Another program's lock
    (HistoryLocked) is said at once, without waiting for it: the device listens meanwhile,
    "start" records anyway, and what the opening does (sessions cut off earlier marked,
    dated again) is done at the loop's heartbeats once the lock is let go
    (history.recorder.tidy_if_let_go). Another fault that can clear by itself
    (HistoryUnavailable: a full disk, an I/O error) is waited for and retried, bounded."""
    for attempt in range(START_TRIES):
        if attempt:
            sleep(START_RETRY_S)
        try:
            with HistoryDB.open(data_dir, recover=False) as db:
                db.busy_timeout(0)  # a lock is not waited for: the loop tidies later
                db.tidy()
            holder = write_lock_holder(data_dir / DB_NAME, 0.0)
            if holder:
                raise HistoryLocked(
                    f"history database {data_dir / DB_NAME} is locked by another program "
                    f"({holder})", "close it (a backup, an sqlite3 shell); the coach waits "
                    "for it and tries again")
            return None
        except HistoryLocked as exc:
            return exc
        except HistoryUnavailable as exc:
            _LOGGER.warning("history: %s (try %d of %d)", exc.one_line(), attempt + 1,
                            START_TRIES)
            last: VoicecoachError = exc
        except VoicecoachError as exc:
            return exc
    return last


def _wait_for_speech(speaker: Speaker, seconds: float) -> None:
    """Let what is being said finish (at most ``seconds``) before the speaker is closed."""
    wait = getattr(speaker, "wait_idle", None)
    if callable(wait):
        wait(seconds)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _offer_enrollment(settings: Settings, grammar: Any, recogniser: Any, speaker: Speaker
                      ) -> None:
    """The first time, offer by voice to learn the user's voice (voicecoach enroll)."""
    from voicecoach.device import enroll

    if not enroll.should_offer(settings, recogniser):
        return
    from voicecoach.audio.mic import MicSource

    source = MicSource(settings.audio.input_device)
    try:
        say, chunks = enroll.live_io(speaker, source.chunks())
        enroll.offer_by_voice(settings, grammar, recogniser, chunks, say)
    finally:
        source.close()


def run_device(args: argparse.Namespace, settings: Settings, *, sessions: int | None,
               begin_at_once: bool) -> int:
    """Hold the data folder, then wire microphone (or replayed files), recogniser, speaker
    and coach and run the loop. Another voicecoach holding the folder (a serve under systemd
    while one is started by hand) is said in one line before anything is opened: its
    microphone, speaker, treadmill and history are left alone, and nothing is said aloud
    over its session."""
    with one_session_at_a_time(settings.data_dir, "start" if begin_at_once else "serve",
                               microphone=not getattr(args, "audio_in", None)):
        return _run_device(args, settings, sessions=sessions, begin_at_once=begin_at_once)


def _run_device(args: argparse.Namespace, settings: Settings, *, sessions: int | None,
                begin_at_once: bool) -> int:
    from voicecoach.listening.engines import make_recogniser

    grammar = load_grammar(settings.speech.language)
    chosen = choose_plan(args, settings)
    audio_in = getattr(args, "audio_in", None)
    given = (replayed(settings, audio_in, getattr(args, "realtime", False)) if audio_in
             else live(settings))
    speaker, clock = given.speaker, given.clock
    problem = check_history_at_start(settings.data_dir)
    if problem is not None:
        speaker.say(load_phrases(grammar.language).NO_HISTORY, Priority.URGENT, 0.0)
        if not isinstance(problem, HistoryUnavailable):
            wait = getattr(speaker, "wait_idle", None)
            if callable(wait):
                wait(15.0)
            speaker.close()
            # systemd does not restart on this code (RestartPreventExitStatus): a damaged,
            # newer or read-only history needs a person
            raise VoicecoachError(problem.message, problem.hint,
                                  exit_code=NEEDS_A_PERSON) from None
        # locked, full or an I/O error: it may clear by itself; keep listening, and every
        # "start" tries again (and says so aloud if it still cannot record)
        later = (" Sessions cut off earlier are marked once it is let go."
                 if isinstance(problem, HistoryLocked) else "")
        print(f"voicecoach: warning: {problem.one_line()} Listening anyway; each 'start' "
              f"tries the history again.{later}", file=sys.stderr, flush=True)
    recogniser = make_recogniser(settings.speech, grammar,
                                 announce=lambda line: print(line, file=sys.stderr, flush=True),
                                 data_dir=settings.data_dir)
    if not audio_in and not begin_at_once:
        _offer_enrollment(settings, grammar, recogniser, speaker)
    treadmill, treadmill_settings = open_treadmill(settings.treadmill,
                                                   getattr(args, "treadmill", None),
                                                   live=clock.live)

    def open_session(plan: Any) -> Any:
        return recorded_session(settings, plan, "serve")

    from voicecoach.listening.health import driving_without_look

    unsafe = driving_without_look(recogniser, treadmill is not None and
                                  treadmill_settings.control == "drive")
    if unsafe:
        print(unsafe, file=sys.stderr, flush=True)
    loop = DeviceLoop(settings, grammar, recogniser, speaker, given.open_source, open_session,
                      plan=chosen, listeners=[output_listener(args, settings)],
                      sessions=sessions, begin_at_once=begin_at_once, clock=clock,
                      canceller=given.canceller, treadmill=treadmill,
                      treadmill_settings=treadmill_settings,
                      upkeep=(partial(tidy_if_let_go, settings.data_dir)
                              if isinstance(problem, HistoryLocked) else None))
    previous = {sig: signal.signal(sig, _on_sigterm) for sig in ENDING_SIGNALS}
    try:
        if not begin_at_once:
            print("voicecoach: listening; say 'start' to begin a session", file=sys.stderr,
                  flush=True)
        try:
            loop.run()
        except DeviceFaults:  # the loop gives up: its last sentence is said before the exit
            _wait_for_speech(speaker, 15.0)
            raise
        _wait_for_speech(speaker, 30.0)
    finally:
        speaker.close()  # SIGTERM: speech stops at once
        if treadmill is not None:
            treadmill.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def run(args: argparse.Namespace) -> int:
    settings = session_settings(args)
    if args.print_unit:
        pairs = [(name, value) for name, value in (("--input-device", args.input_device),
                                                   ("--output-device", args.output_device))
                 if value]
        print(unit_text(settings, unit_options(pairs)), end="")
        return 0
    if args.list_devices:
        from voicecoach.audio.devices import list_devices

        print(list_devices())
        return 0
    if args.sessions is not None and args.sessions < 1:
        raise VoicecoachError(f"--sessions {args.sessions} is below 1", "give 1 or more")
    return run_device(args, settings, sessions=args.sessions, begin_at_once=False)
