"""``voicecoach start``: one voice session from the microphone; the offline demo if there is none."""

from __future__ import annotations

import argparse
import logging
import sys

from voicecoach.commands import DefaultsFormatter, demo
from voicecoach.commands._common import choose_plan, positive, session_settings
from voicecoach.commands.serve import add_device_options, run_device
from voicecoach.errors import VoicecoachError
from voicecoach.settings import Settings

_LOGGER = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "start", help="run one session by voice now (the demo if there is no microphone)",
        formatter_class=DefaultsFormatter,
        description="One hands-free session from the microphone: the safety briefing starts "
                    "at once. With no microphone, sound card or PortAudio it says so in one "
                    "line and runs the offline demo instead.")
    add_device_options(parser)
    parser.add_argument("--speed-up", type=positive, default=120.0, metavar="N",
                        help="how much faster than real time the fallback demo runs")
    parser.set_defaults(func=run)


def no_microphone(settings: Settings) -> str | None:
    """Why no microphone can be used at all (no PortAudio, no input device), or None.

    A device *name* that matches nothing while microphones exist is not this: it is the
    user's mistake and stays an error.
    """
    from voicecoach.audio.devices import devices_of, sounddevice_module

    try:
        sd = sounddevice_module()
    except VoicecoachError as exc:
        return exc.message
    try:
        found = devices_of("input", sd)
    except VoicecoachError as exc:
        return exc.message
    except Exception as exc:  # noqa: BLE001 - PortAudio failing in any other way
        return f"cannot use sound devices: {exc}"
    return None if found else "no microphone found (there is no input sound device)"


#: Options that only mean something with a microphone: given with none, start refuses
#: rather than run the demo and ignore them.
DEVICE_OPTIONS = (("--input-device", "input_device"), ("--output-device", "output_device"),
                  ("--plan", "plan"), ("--week", "week"), ("--engine", "engine"),
                  ("--lang", "lang"), ("--model", "model"))


def run(args: argparse.Namespace) -> int:
    settings = session_settings(args)
    if args.list_devices:
        from voicecoach.audio.devices import list_devices

        print(list_devices())
        return 0
    choose_plan(args, settings)  # a bad --plan or --week is one line, microphone or not
    why = no_microphone(settings)
    if why is not None:
        given = [flag for flag, name in DEVICE_OPTIONS if getattr(args, name, None) is not None]
        if given:
            raise VoicecoachError(
                f"{why}, so {', '.join(given)} cannot be used",
                "plug in the microphone (`voicecoach doctor` checks it), or run "
                "`voicecoach demo` for the offline demo")
        if settings.audio.input_device:
            raise VoicecoachError(
                f"{why}, so the configured [audio] input_device "
                f"{settings.audio.input_device!r} cannot be used",
                "plug in the microphone (`voicecoach doctor` checks it), or run "
                "`voicecoach demo` for the offline demo")
        print(f"voicecoach: {why}; running the offline demo instead (not recorded in the "
              "history)", file=sys.stderr, flush=True)
        demo_args = argparse.Namespace(data_dir=getattr(args, "data_dir", None),
                                       speed_up=args.speed_up, json_events=args.json_events,
                                       config=getattr(args, "config", None))
        demo.play(demo_args, settings, record=False)
        return 0
    return run_device(args, settings, sessions=1, begin_at_once=True)
