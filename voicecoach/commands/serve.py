"""``voicecoach serve``: the device loop, forever: listen for "start", coach, back to idle."""

from __future__ import annotations

import argparse
import getpass
import grp
import logging
import os
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from types import FrameType
from typing import Any

from voicecoach.audio.chunk import AudioChunk, AudioSource
from voicecoach.commands._common import (
    add_engine_options,
    add_plan_options,
    choose_plan,
    output_listener,
    recorded_session,
    settings_from_args,
)
from voicecoach.device import AudioClock, DeviceLoop
from voicecoach.errors import VoicecoachError
from voicecoach.grammar import load_grammar
from voicecoach.settings import Settings
from voicecoach.speech.speaker import Speaker
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
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Listen on the microphone forever: 'start' begins a session (the safety "
                    "briefing, then the belt part after 'yes'); afterwards it listens again.")
    add_device_options(parser)
    parser.add_argument("--audio-in", nargs="+", metavar="FILE.wav", default=None,
                        help="replay these recordings, one after another, instead of the "
                             "microphone (for tests); the coach's voice is simulated")
    parser.add_argument("--realtime", action="store_true",
                        help="with --audio-in: replay at real-time pace")
    parser.add_argument("--sessions", type=int, default=None, metavar="N",
                        help="exit after N sessions (default: never)")
    parser.add_argument("--print-unit", action="store_true",
                        help="print the systemd unit for this installation and exit")
    parser.set_defaults(func=run)


def unit_text(settings: Settings, options: str = "") -> str:
    """The packaged systemd unit filled in for this venv, user and data folder."""
    template = (resources.files("voicecoach") / "systemd" / "voicecoach.service").read_text()
    exe = Path(sys.executable).parent / "voicecoach"
    if not exe.exists():
        exe = Path(shutil.which("voicecoach") or exe)
    repo = Path(__file__).resolve().parents[2]
    user = getpass.getuser()
    try:
        group = grp.getgrgid(os.getgid()).gr_name
    except KeyError:
        group = user
    return template.format(exe=exe, user=user, group=group, home=settings.data_dir,
                           workdir=repo, repo=repo, options=options)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _replay(paths: list[str], realtime: bool) -> Callable[[], AudioSource | None]:
    from voicecoach.audio.wav import WavFileSource

    sources = [WavFileSource(p) for p in paths]  # every file checked before listening
    pending = iter(sources)

    class Paced:
        def __init__(self, source: WavFileSource) -> None:
            self.source = source

        def chunks(self) -> Iterator[AudioChunk]:
            began = time.monotonic()
            for chunk in self.source.chunks():
                wait = chunk.start_s - (time.monotonic() - began)
                if wait > 0:
                    time.sleep(wait)
                yield chunk

        def close(self) -> None:
            self.source.close()

    def next_source() -> AudioSource | None:
        source = next(pending, None)
        if source is None or not realtime:
            return source
        return Paced(source)
    return next_source


def _simulated_speaker(settings: Settings, clock: AudioClock) -> Speaker:
    from voicecoach.speech.render import EspeakNgRenderer
    from voicecoach.speech.timeline import WavSpeaker

    renderer = (EspeakNgRenderer(settings.speech.voice, settings.speech.rate)
                if shutil.which("espeak-ng") else None)
    return WavSpeaker(renderer, settings.speech.volume, settings.speech.rate, clock=clock)


def run_device(args: argparse.Namespace, settings: Settings, *, sessions: int | None,
               begin_at_once: bool) -> int:
    """Wire microphone (or replayed files), recogniser, speaker and coach; run the loop."""
    from voicecoach.speech.engines import make_recogniser

    grammar = load_grammar(settings.speech.language)
    chosen = choose_plan(args, settings)
    audio_in = getattr(args, "audio_in", None)
    clock = AudioClock(live=not audio_in or getattr(args, "realtime", False))
    speaker: Speaker
    canceller: str | None = None  # replayed files hold no echo of the simulated speaker
    if audio_in:
        open_source = _replay(audio_in, getattr(args, "realtime", False))
        speaker = _simulated_speaker(settings, clock)
    else:
        from voicecoach.audio.devices import refresh_devices
        from voicecoach.audio.mic import MicSource
        from voicecoach.speech.tts import make_speaker

        device = settings.audio.input_device
        first: list[MicSource] = [MicSource(device)]  # a missing device: one clear line now

        def open_source() -> AudioSource | None:
            if first:
                return first.pop()
            refresh_devices()  # after a loss: a re-plugged device is only seen after this
            return MicSource(device)

        speaker = make_speaker(settings)
        canceller = "auto"  # the device loop cleans the mic against what the speaker played
    recogniser = make_recogniser(settings.speech, grammar,
                                 announce=lambda line: print(line, file=sys.stderr, flush=True))
    treadmill, treadmill_settings = open_treadmill(settings.treadmill,
                                                   getattr(args, "treadmill", None),
                                                   live=clock.live)

    def open_session(plan: Any) -> Any:
        return recorded_session(settings, plan, "serve")

    loop = DeviceLoop(settings, grammar, recogniser, speaker, open_source, open_session,
                      plan=chosen, listeners=[output_listener(args, settings)],
                      sessions=sessions, begin_at_once=begin_at_once, clock=clock,
                      canceller=canceller, treadmill=treadmill,
                      treadmill_settings=treadmill_settings)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        if not begin_at_once:
            print("voicecoach: listening; say 'start' to begin a session", file=sys.stderr,
                  flush=True)
        loop.run()
        wait = getattr(speaker, "wait_idle", None)
        if callable(wait):
            wait(30.0)
    finally:
        speaker.close()  # SIGTERM: speech stops at once
        if treadmill is not None:
            treadmill.close()
        signal.signal(signal.SIGTERM, previous)
    return 0


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if args.print_unit:
        options = ""
        if args.input_device:
            options += f" --input-device {shlex.quote(args.input_device)}"
        if args.output_device:
            options += f" --output-device {shlex.quote(args.output_device)}"
        print(unit_text(settings, options), end="")
        return 0
    if args.list_devices:
        from voicecoach.audio.devices import list_devices

        print(list_devices())
        return 0
    if args.sessions is not None and args.sessions < 1:
        raise VoicecoachError(f"--sessions {args.sessions} is below 1", "give 1 or more")
    return run_device(args, settings, sessions=args.sessions, begin_at_once=False)
