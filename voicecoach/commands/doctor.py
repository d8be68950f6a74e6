"""``voicecoach doctor``: check sound devices, recognisers, models, voice, data and config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from voicecoach.commands import DefaultsFormatter
from voicecoach.doctor import doctor


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "doctor", help="check the sound devices, engines, models, voice and data folder",
        description="Prints one line per check (ok / warn / FAIL) with the fix for each "
                    "problem; exits 1 if anything FAILed.",
        formatter_class=DefaultsFormatter)
    parser.add_argument("--config", default=None, metavar="PATH",
                        help="config file (default: $VOICECOACH_CONFIG or the per-user one)")
    parser.add_argument("--no-render", action="store_true",
                        help="skip the test render of the voice")
    parser.add_argument("--unit", default=None, metavar="PATH",
                        help="the installed systemd unit to compare with the one this version "
                             "writes (default: $VOICECOACH_UNIT or "
                             "/etc/systemd/system/voicecoach.service)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    config = Path(args.config).expanduser() if args.config else None
    unit = Path(args.unit).expanduser() if args.unit else None
    return doctor(sys.stdout, config=config, data_dir=getattr(args, "data_dir", None),
                  render=not args.no_render, unit=unit)
