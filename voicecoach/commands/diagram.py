"""``voicecoach diagram``: print the real workout state machine as a mermaid diagram."""

from __future__ import annotations

import argparse

from voicecoach.commands import DefaultsFormatter
from voicecoach.workout.machine import mermaid


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("diagram", help="print the workout state machine (mermaid)",
                            formatter_class=DefaultsFormatter)
    parser.add_argument("--internal", action="store_true",
                        help="also draw internal transitions (commands that keep the state)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(mermaid(include_internal=args.internal), end="")
    return 0
