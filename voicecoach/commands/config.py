"""`voicecoach config show|path|init`: the settings in effect, the file path, a starter file."""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from voicecoach.commands import DefaultsFormatter
from voicecoach.config import (
    CONFIG_ENV,
    RANGES,
    SECTIONS,
    TOP,
    LoadedConfig,
    choices,
    config_path,
    field_docs,
    keys,
    load_config,
)
from voicecoach.errors import VoicecoachError
from voicecoach.settings import Settings

_LOGGER = logging.getLogger(__name__)


def toml_value(value: Any) -> str:
    """A setting as a TOML value (None as the empty string, which means "default")."""
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)


def _values(settings: Settings) -> dict[tuple[str, str], Any]:
    data = asdict(settings)
    out: dict[tuple[str, str], Any] = {(TOP, "data_dir"): settings.data_dir}
    for section in SECTIONS:
        for key in keys(section):
            out[(section, key)] = data[section][key]
    return out


def show_text(loaded: LoadedConfig) -> str:
    """The effective settings as TOML, each line commented with where its value came from."""
    state = "found" if loaded.file_found else "not found: defaults"
    lines = [f"# voicecoach settings in effect; config file: {loaded.path} ({state})"]
    values = _values(loaded.settings)
    current = None
    for (section, key), value in values.items():
        if section != current and section != TOP:
            lines += ["", f"[{section}]"]
        current = section
        name = f"{section}.{key}" if section else key
        lines.append(f"{key} = {toml_value(value)}  # {loaded.sources.get(name, 'default')}")
    return "\n".join(lines) + "\n"


def _allowed(section: str, key: str) -> str:
    options = choices(section, key)
    if options:
        return "allowed: " + ", ".join(options)
    if (section, key) in RANGES:
        lo, hi = RANGES[(section, key)]
        return f"allowed: {lo} to {hi}"
    return ""


def init_text() -> str:
    """A config file with every setting at its default, commented out, with its description."""
    docs = field_docs()
    defaults = _values(Settings())
    lines = ["# voicecoach settings. Remove the '# ' before a key to change it.",
             f"# This file is read from {config_path()} (or ${CONFIG_ENV}).",
             "# Check it with `voicecoach config show` and `voicecoach doctor`.", ""]
    for section in [TOP, *SECTIONS]:
        if section:
            lines += [f"[{section}]", ""]
        for key in keys(section):
            doc = docs.get((section, key), "").replace("None", '""')
            extra = _allowed(section, key)
            for text in [doc, extra]:
                if text:
                    lines += [f"# {line}".rstrip() for line in text.splitlines()]
            value = defaults[(section, key)]
            if section == TOP:
                value = ""
            lines += [f"# {key} = {toml_value(value)}", ""]
    return "\n".join(lines)


def write_init(path: Path) -> Path:
    """Write ``init_text()`` to ``path``; never overwrite an existing file."""
    if path.exists():
        raise VoicecoachError(f"config file {path} already exists; not overwriting it",
                              "edit it, or move it away and run `voicecoach config init` again")
    if path.is_symlink():   # a dangling link: exists() is False, yet open("x") finds it there
        raise VoicecoachError(f"config file {path} is a link to {os.readlink(path)}, which does "
                              "not exist", "remove the link, or make it point at a config file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("x", encoding="utf-8") as fh:
            fh.write(init_text())
    except OSError as exc:
        raise VoicecoachError(f"cannot write config file {path} ({exc.strerror})",
                              "check the folder's permissions or set " + CONFIG_ENV) from None
    return path


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "config", help="show the settings, where the config file is, or write a starter file",
        description="Settings come from defaults, the TOML config file, VOICECOACH_<SECTION>_"
                    "<KEY> environment variables and the command line, in that order.",
        formatter_class=DefaultsFormatter)
    parser.add_argument("action", choices=["show", "path", "init"], nargs="?", default="show",
                        help="show: the settings in effect and where each came from; path: "
                             "the config file's path; init: write a commented default file")
    parser.add_argument("--config", default=None, metavar="PATH",
                        help=f"config file (default: ${CONFIG_ENV} or the per-user config folder)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    path = Path(args.config).expanduser() if getattr(args, "config", None) else config_path()
    if args.action == "path":
        print(path)
        return 0
    if args.action == "init":
        write_init(path)
        print(f"wrote {path}")
        return 0
    overrides = {"data_dir": args.data_dir} if getattr(args, "data_dir", None) else {}
    print(show_text(load_config(path, overrides, required=bool(getattr(args, "config", None)))),
          end="")
    return 0
