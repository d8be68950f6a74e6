"""Settings from the per-user TOML config file, the environment and the command line, checked."""

from __future__ import annotations

import argparse
import ast
import difflib
import inspect
import logging
import math
import os
import sys
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import platformdirs

from voicecoach import settings as settings_module
from voicecoach.errors import VoicecoachError
from voicecoach.grammar import grammar_dir
from voicecoach.settings import (
    HOME_ENV,
    AudioSettings,
    CoachSettings,
    Settings,
    SpeechSettings,
    TreadmillSettings,
    default_data_dir,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_LOGGER = logging.getLogger(__name__)

CONFIG_ENV = "VOICECOACH_CONFIG"
ENV_PREFIX = "VOICECOACH_"
TOP = ""  # the "section" of top-level keys (data_dir)
SECTIONS: dict[str, type] = {"coach": CoachSettings, "speech": SpeechSettings,
                             "audio": AudioSettings, "treadmill": TreadmillSettings}

#: Allowed ranges (inclusive) of the numeric settings.
RANGES: dict[tuple[str, str], tuple[float, float]] = {
    ("coach", "top_speed_mph"): (0.3, 6.0),
    ("coach", "speed_step_mph"): (0.05, 0.5),
    ("coach", "max_incline_pct"): (0.0, 15.0),
    ("coach", "incline_step_pct"): (0.5, 5.0),
    ("coach", "cue_interval_s"): (10.0, 600.0),
    ("coach", "min_gap_s"): (0.0, 300.0),
    ("coach", "cue_no_repeat"): (0, 20),
    ("coach", "checkin_interval_s"): (30.0, 3600.0),
    ("treadmill", "speed_step_mph"): (0.05, 0.5),
    ("treadmill", "top_speed_mph"): (0.3, 6.0),
    ("speech", "rate"): (80, 400),
    ("speech", "volume"): (0.0, 1.0),
}


def languages() -> list[str]:
    """Languages with a grammar file (grammars/<language>.json)."""
    return sorted(p.stem for p in grammar_dir().glob("*.json")) or ["en"]


def choices(section: str, key: str) -> list[str] | None:
    """The allowed values of a setting with a fixed set of them, else None."""
    if (section, key) == ("coach", "units"):
        return ["mph", "kmh"]
    if (section, key) == ("speech", "engine"):
        from voicecoach.listening.engines import engine_names

        return engine_names()
    if (section, key) == ("speech", "language"):
        return languages()
    if (section, key) == ("speech", "verify"):
        return ["auto", "off"]
    if (section, key) == ("audio", "echo_canceller"):
        from voicecoach.audio.cancellers import CHOICES

        return list(CHOICES)
    if (section, key) == ("treadmill", "control"):
        return ["off", "announce", "drive"]
    if (section, key) == ("treadmill", "target_units"):
        return ["kmh", "mph"]
    return None


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$VOICECOACH_CONFIG`` or <per-user config folder>/voicecoach/config.toml."""
    env = os.environ if environ is None else environ
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]).expanduser()
    return Path(platformdirs.user_config_dir("voicecoach", appauthor=False)) / "config.toml"


def missing_config(environ: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """What is wrong when ``$VOICECOACH_CONFIG`` names a file that does not exist (a typo would
    otherwise drop every setting unseen) and how to fix it; None when it names none, or one
    that is there."""
    env = os.environ if environ is None else environ
    if not env.get(CONFIG_ENV):
        return None
    path = config_path(env)
    if path.is_file():
        return None
    return (f"${CONFIG_ENV} names {path}, which does not exist: the defaults are used",
            f"check the path, unset {CONFIG_ENV} to read the per-user file, or write a starter "
            "file there with `voicecoach config init`")


def field_docs() -> dict[tuple[str, str], str]:
    """The docstring under each settings field, read from settings.py: (section, key) -> doc."""
    tree = ast.parse(inspect.getsource(settings_module))
    names = {cls.__name__: section for section, cls in SECTIONS.items()}
    names[Settings.__name__] = TOP
    docs: dict[tuple[str, str], str] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef) or node.name not in names:
            continue
        for stmt, nxt in zip(node.body, node.body[1:], strict=False):
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) \
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
                docs[(names[node.name], stmt.target.id)] = str(nxt.value.value).strip()
    return docs


def keys(section: str) -> list[str]:
    """The keys allowed in ``[section]`` (TOP: the top-level keys)."""
    if section == TOP:
        return ["data_dir"]
    return [f.name for f in fields(SECTIONS[section])]


def _kind(section: str, key: str) -> Any:
    if section == TOP:
        return Path
    return typing.get_type_hints(SECTIONS[section])[key]


def _where(section: str, key: str) -> str:
    return key if section == TOP else f"[{section}] {key}"


def convert(section: str, key: str, value: object, origin: str, base: Path | None = None) -> Any:
    """``value`` checked and converted for ``[section] key``; ``origin`` names where it came from.

    Strings (from the environment or the command line) are parsed for numeric settings.
    """
    kind = _kind(section, key)
    allowed = choices(section, key)
    lo_hi = RANGES.get((section, key))

    def bad(what: str) -> VoicecoachError:
        return VoicecoachError(f"{origin}: {_where(section, key)} = {value!r}; {what}",
                               "fix the value (see `voicecoach config init` for an example)")

    if isinstance(value, bool) or isinstance(value, (dict, list)):
        raise bad(f"expected {_describe(kind, allowed, lo_hi)}")
    if kind in (int, float):
        if isinstance(value, str):
            try:
                value = kind(value.strip())
            except ValueError:
                raise bad(f"expected {_describe(kind, allowed, lo_hi)}") from None
        if not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
            raise bad(f"expected {_describe(kind, allowed, lo_hi)}")
        try:
            finite = math.isfinite(value)
        except OverflowError:  # a whole number too large for a float
            finite = False
        if not finite or (lo_hi and not lo_hi[0] <= value <= lo_hi[1]):
            raise bad(f"allowed: {_describe(kind, allowed, lo_hi)}")
        return kind(value)
    if isinstance(value, int) and section == "audio":
        value = str(value)  # a device number
    if not isinstance(value, str):
        raise bad(f"expected {_describe(kind, allowed, lo_hi)}")
    if allowed is not None:
        if value not in allowed:
            raise bad(f"allowed: {', '.join(allowed)}")
        return value
    if kind == (str | None):
        return value.strip() or None
    if kind in (Path, Path | None):
        if "\0" in value:
            raise bad("a path cannot hold a NUL character")
        if not value.strip():
            if key == "data_dir":
                raise bad("it is empty; give a folder")
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() or base is None else base / path
    return value


def _describe(kind: Any, allowed: list[str] | None, lo_hi: tuple[float, float] | None) -> str:
    if allowed:
        return ", ".join(allowed)
    name = {int: "a whole number", float: "a number"}.get(kind, "a text string")
    return f"{name} from {lo_hi[0]} to {lo_hi[1]}" if lo_hi else name


@dataclass(frozen=True)
class LoadedConfig:
    """The settings in effect, where each came from (``"section.key"`` -> source) and the file."""

    settings: Settings
    sources: dict[str, str]
    path: Path
    file_found: bool


def _unknown(origin: str, what: str, name: str, allowed: list[str]) -> VoicecoachError:
    close = difflib.get_close_matches(name, allowed, n=1)
    hint = f"maybe you meant {close[0]!r}" if close else "remove or rename it"
    return VoicecoachError(f"{origin}: unknown {what} {name!r}; allowed: {', '.join(allowed)}",
                           hint)


def read_file(path: Path) -> dict[str, Any]:
    """Parse the TOML file at ``path``; one clear error if it cannot be read or parsed."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise VoicecoachError(f"config file {path} is not valid TOML: {exc}",
                              "fix the line named, or move the file away to use defaults") from None
    except UnicodeDecodeError:
        raise VoicecoachError(f"config file {path} is not UTF-8 text",
                              "save it as UTF-8") from None
    except OSError as exc:
        raise VoicecoachError(f"config file {path} cannot be read ({exc.strerror})",
                              "check its permissions") from None


def _flatten(data: Mapping[str, Any], origin: str) -> dict[tuple[str, str], Any]:
    """{(section, key): value} from a nested TOML-like dict, rejecting unknown names."""
    flat: dict[tuple[str, str], Any] = {}
    for name, value in data.items():
        if name in SECTIONS:
            if not isinstance(value, Mapping):
                raise VoicecoachError(f"{origin}: {name} must be a [{name}] section",
                                      f"write [{name}] on its own line, then its keys")
            for key, item in value.items():
                if key not in keys(name):
                    raise _unknown(origin, f"key in [{name}]:", key, keys(name))
                flat[(name, key)] = item
        elif name in keys(TOP):
            flat[(TOP, name)] = value
        else:
            raise _unknown(origin, "section or key", name,
                           [f"[{s}]" for s in SECTIONS] + keys(TOP))
    return flat


def _overrides(overrides: Mapping[str, Any]) -> dict[tuple[str, str], Any]:
    nested: dict[str, Any] = {}
    for name, value in overrides.items():
        if value is None:
            continue
        if "." in name:
            section, key = name.split(".", 1)
            nested.setdefault(section, {})[key] = value
        elif isinstance(value, Mapping):
            nested.setdefault(name, {}).update({k: v for k, v in value.items() if v is not None})
        else:
            nested[name] = value
    return _flatten(nested, "command line")


#: VOICECOACH_* variables that are not settings: the data, config, grammar and cache
#: folders, the systemd unit doctor compares, and the test suite's switch. Any other
#: VOICECOACH_* name is a typo.
OTHER_ENV = {HOME_ENV, CONFIG_ENV, "VOICECOACH_GRAMMARS", "VOICECOACH_CACHE",
             "VOICECOACH_FULL_FIXTURES", "VOICECOACH_SPOTTER_MODEL", "VOICECOACH_SPEECH_COMMANDS",
             "VOICECOACH_UNIT"}


def env_names() -> dict[str, tuple[str, str]]:
    """VOICECOACH_<SECTION>_<KEY> -> (section, key) for every setting."""
    return {f"{ENV_PREFIX}{section}_{key}".upper(): (section, key)
            for section in SECTIONS for key in keys(section)}


def _env(environ: Mapping[str, str]) -> dict[tuple[str, str], tuple[str, str]]:
    found: dict[tuple[str, str], tuple[str, str]] = {}
    names = env_names()
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        if name in names:
            found[names[name]] = (environ[name], name)
        elif name not in OTHER_ENV:
            known = [k[len(ENV_PREFIX):] for k in sorted(names) + sorted(OTHER_ENV)]
            close = difflib.get_close_matches(name.upper()[len(ENV_PREFIX):], known, n=1,
                                              cutoff=0.75)
            hint = (f"did you mean {ENV_PREFIX}{close[0]}? Rename it" if close else
                    "unset it; `voicecoach config show` lists the settings (variables are "
                    "VOICECOACH_<SECTION>_<KEY>, e.g. VOICECOACH_SPEECH_ENGINE)")
            raise VoicecoachError(f"environment variable {name} is not a voicecoach setting",
                                  hint)
    return found


def load_config(path: Path | str | None = None, overrides: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] | None = None, *,
                required: bool = False) -> LoadedConfig:
    """Defaults < config file < VOICECOACH_<SECTION>_<KEY> variables < ``overrides``.

    ``overrides`` maps ``"speech.engine"`` (or ``{"speech": {...}}``, or ``"data_dir"``) to
    values; None values are ignored. A missing file means defaults, unless it was named
    (``required``: ``--config FILE``), when it is an error. A VOICECOACH_* variable that is
    not a setting (a typo) is an error too.
    """
    env = os.environ if environ is None else environ
    path = Path(path).expanduser() if path is not None else config_path(env)
    values: dict[tuple[str, str], Any] = {}
    sources: dict[str, str] = {}
    found = path.is_file()
    if found:
        origin = f"config file {path}"
        for where, raw in _flatten(read_file(path), origin).items():
            values[where] = convert(*where, raw, origin, base=path.parent)
            sources[".".join(p for p in where if p)] = "file"
    elif path.exists():
        raise VoicecoachError(f"config file {path} is not a file", "remove it or point "
                              f"{CONFIG_ENV} at a file")
    elif required:
        raise VoicecoachError(f"config file {path} does not exist",
                              "check the path, or write a starter file there with "
                              f"`voicecoach config init --config '{path}'`")
    else:
        _LOGGER.debug("no config file at %s: using defaults", path)
    for where, (raw, name) in _env(env).items():
        values[where] = convert(*where, raw, f"environment variable {name}")
        sources[".".join(where)] = f"env {name}"
    for where, raw in _overrides(overrides or {}).items():
        values[where] = convert(*where, raw, "command line", base=Path.cwd())
        sources[".".join(p for p in where if p)] = "command line"
    parts = {}
    for section, cls in SECTIONS.items():
        given = {key: v for (s, key), v in values.items() if s == section}
        parts[section] = replace(cls(), **given)
    data_dir = values.get((TOP, "data_dir")) or default_data_dir()
    if "data_dir" not in sources and env.get(HOME_ENV):
        sources["data_dir"] = f"env {HOME_ENV}"
    check_folder(data_dir, sources.get("data_dir", "the default"))
    settings = Settings(coach=parts["coach"], speech=parts["speech"], audio=parts["audio"],
                        treadmill=parts["treadmill"], data_dir=data_dir)
    return LoadedConfig(settings, sources, path, found)


def check_folder(path: Path, origin: str) -> None:
    """A data folder must be a folder, or not exist yet (it is made at the first session)."""
    if path.exists() and not path.is_dir():
        raise VoicecoachError(f"the data folder {path} ({origin}) is not a folder",
                              "give a folder with --data-dir or VOICECOACH_HOME")


def load_settings(path: Path | str | None = None,
                  overrides: Mapping[str, Any] | None = None) -> Settings:
    """The settings in effect (see ``load_config``); a ``path`` given must exist."""
    return load_config(path, overrides, required=path is not None).settings


def number_in(low: float, high: float, *, above: bool = False,
              whole: bool = False) -> Callable[[str], float]:
    """argparse type: a finite number from ``low`` (or above it) to ``high``; ``whole`` for
    whole numbers. inf, nan and values out of range are one clear usage error."""
    def show(x: float) -> str:
        return str(int(x)) if x == int(x) else f"{x:g}"

    lowest = f"above {show(low)}" if above else f"from {show(low)}"
    wanted = f"a {'whole ' if whole else ''}number {lowest} to {show(high)}"

    def parse(text: str) -> float:
        try:
            value = float(int(text)) if whole else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {wanted}") from None
        if not math.isfinite(value) or value > high or value < low or (above and value == low):
            raise argparse.ArgumentTypeError(f"{text} is out of range: give {wanted}")
        return int(value) if whole else value

    parse.__name__ = "number"  # argparse names the type in its messages
    return parse
