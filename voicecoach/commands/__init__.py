"""Sub-commands of the CLI, one module each (``add_parser`` + ``run``)."""

from __future__ import annotations

import argparse


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default once: not after a help text that already names it, and
    not for flags and options without one (no "(default: None)" or "(default: False)")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action) or text
