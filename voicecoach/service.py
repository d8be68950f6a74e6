"""The systemd service: its unit filled in for this installation (``serve --print-unit``), and
an installed unit compared with what this version would write (``doctor``)."""

from __future__ import annotations

import getpass
import grp
import logging
import os
import re
import shlex
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from voicecoach.checks import FAIL, OK, WARN, Check
from voicecoach.settings import Settings

_LOGGER = logging.getLogger(__name__)

#: Exit code for a fault that restarting cannot fix (the history is damaged, read-only or
#: newer): the systemd unit lists it in RestartPreventExitStatus. A lock or a full disk is
#: never this: the device waits, retries and keeps listening.
NEEDS_A_PERSON = 3

#: Where the README installs the unit (`serve --print-unit | sudo tee ...`); doctor reads it.
UNIT_PATH = Path("/etc/systemd/system/voicecoach.service")
#: At most this many differences are named in doctor's one line; the rest are counted.
SHOWN_DIFFERENCES = 3
#: Names another unit file for doctor to compare (the tests point it at a temporary path).
UNIT_ENV = "VOICECOACH_UNIT"


def unit_escape(text: str, command: bool = False) -> str:
    """``text`` safe in a systemd unit line: specifiers (%) and, in ExecStart=, variables ($);
    Environment= and paths do not expand variables."""
    text = text.replace("%", "%%")
    return text.replace("$", "$$") if command else text


def unit_quote(text: str, command: bool = True) -> str:
    """One word of a systemd ExecStart= (``command``) or Environment= line, double-quoted
    (spaces, quotes and backslashes kept as they are)."""
    inner = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{unit_escape(inner, command)}"'


def unit_options(pairs: list[tuple[str, str]]) -> str:
    """`` --name "value"`` for each pair, quoted for systemd."""
    return "".join(f" {name} {unit_quote(value)}" for name, value in pairs)


def unit_exe() -> Path:
    """The ``voicecoach`` program of this installation (the one ExecStart= runs)."""
    exe = Path(sys.executable).parent / "voicecoach"
    return exe if exe.exists() else Path(shutil.which("voicecoach") or exe)


def _template() -> str:
    return (resources.files("voicecoach") / "systemd" / "voicecoach.service").read_text()


def unit_fields(settings: Settings, options: str = "") -> dict[str, object]:
    """The template's blanks for this venv, user and data folder, each quoted for systemd."""
    checkout = Path(__file__).resolve().parents[1]
    readme = checkout / "README.md"
    if readme.is_file() and (checkout / "pyproject.toml").is_file():  # run from a checkout
        workdir, docs = checkout, f"Documentation={unit_escape(readme.as_uri())}"
    else:  # installed from a wheel: no checkout; start in the data folder
        workdir, docs = settings.data_dir, "Documentation=man:voicecoach(1)"
    user = getpass.getuser()
    try:
        group = grp.getgrgid(os.getgid()).gr_name
    except KeyError:
        group = user
    return {"exe": unit_quote(str(unit_exe())), "user": user, "group": group,
            "home": unit_quote(f"VOICECOACH_HOME={settings.data_dir}", command=False),
            "workdir": unit_escape(str(workdir)), "documentation": docs,
            "options": options, "needs_a_person": NEEDS_A_PERSON}


def unit_text(settings: Settings, options: str = "") -> str:
    """The packaged systemd unit filled in for this venv, user and data folder. Every path is
    quoted for systemd, so a data folder or venv with spaces, quotes or % in it works."""
    return _template().format(**unit_fields(settings, options))


# ------------------------------------------------------------------ an installed unit

Entries = dict[tuple[str, str], list[str]]


def unit_entries(text: str) -> Entries:
    """(section, key) -> its values, as systemd reads the file: comments, blank lines and
    spacing around ``=`` do not count; a trailing backslash continues a line."""
    entries: Entries = {}
    section = ""
    for line in re.sub(r"\\\n", " ", text).splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif "=" in line:
            key, value = line.split("=", 1)
            entries.setdefault((section, key.strip()), []).append(value.strip())
    return entries


def _words(value: str, command: bool = True) -> list[str]:
    """A unit line's value split as systemd does (specifiers undone, in ExecStart= also
    variables, then shell-like quotes); [] if it cannot be split."""
    value = value.replace("%%", "%")
    try:
        return shlex.split(value.replace("$$", "$") if command else value)
    except ValueError:
        return []


_EXEC = re.compile(r'(?P<exe>"(?:[^"\\]|\\.)*"|\S+)\s+serve(?P<options>(?:\s.*)?)$')


@dataclass(frozen=True)
class Installed:
    """What an installed unit was filled in with: its program, options, user, data folder."""

    fields: dict[str, object]
    exe: str | None        # the program ExecStart= runs; None when it is not `... serve`
    options: list[str]     # serve's options, as words

    @classmethod
    def read(cls, entries: Entries, ours: dict[str, object]) -> Installed:
        """The installed unit's own blanks; a blank it lacks is this installation's, so the
        missing line shows up as a difference."""
        fields = dict(ours)
        one = {key: values[0] for (_, key), values in entries.items() if len(values) == 1}
        fields.update({name: one[key] for name, key in (("user", "User"), ("group", "Group"))
                       if key in one})
        if "WorkingDirectory" in one:
            fields["workdir"] = one["WorkingDirectory"].removeprefix("-")
        if "Documentation" in one:
            fields["documentation"] = f"Documentation={one['Documentation']}"
        for value in entries.get(("Service", "Environment"), []):
            if value.strip('"').startswith("VOICECOACH_HOME="):
                fields["home"] = value
        match = _EXEC.match(one.get("ExecStart", ""))
        if match is None:
            return cls(fields, None, [])
        fields.update(exe=match["exe"], options=match["options"])
        words = _words(one["ExecStart"])
        return cls(fields, words[0] if words else None, words[2:])


def _shown(key: str, values: list[str]) -> str:
    if key.startswith("Timeout") and values and all(v.isdigit() for v in values):
        return ", ".join(f"{v} s" for v in values)
    return ", ".join(values)


def unit_differences(installed: Entries, wanted: Entries) -> list[str]:
    """One clause per setting that differs, in the order this version's unit has them."""
    said = []
    for (section, key), values in wanted.items():
        have = installed.get((section, key))
        if have is None:
            said.append(f"{key} is not set, this version needs {_shown(key, values)}")
        elif sorted(have) != sorted(values):
            said.append(f"{key} is {_shown(key, have)}, this version needs {_shown(key, values)}")
    for (section, key), values in installed.items():
        if (section, key) not in wanted:
            said.append(f"{key}={', '.join(values)} is not in this version's unit")
    return said


def installed_unit_path(environ: Mapping[str, str] = os.environ) -> Path:
    """``$VOICECOACH_UNIT``, else where the README installs the unit."""
    named = environ.get(UNIT_ENV)
    return Path(named).expanduser() if named else UNIT_PATH


def check_unit(settings: Settings, path: Path) -> Check:
    """An installed unit against the one this version writes: a setting that differs (a stop
    timeout from before session 19 kills a session's end mid-write) is a FAIL with the command
    that rewrites it; a unit running another installation's program is a warning (doctor
    checked this one), or a FAIL when that program is gone (the service cannot start)."""
    name = "systemd unit"
    if not path.exists() and not path.is_symlink():
        return Check(name, OK, f"not installed at {path} (optional: README, 'Run it at boot "
                               "with systemd')")
    rewrite = (f"`{shlex.join([str(unit_exe()), 'serve', '--print-unit'])} | sudo tee "
               f"{shlex.quote(str(path))} && sudo systemctl daemon-reload` (with your device "
               "options)")
    try:
        text = path.read_text(encoding="utf-8")
    except PermissionError as exc:  # root's alone after `sudo tee` with a strict umask
        return Check(name, WARN, f"{path} cannot be read ({exc.strerror}): not compared with "
                     "this version's", f"run `sudo voicecoach doctor`, or `sudo chmod 644 {path}`")
    except OSError as exc:  # a folder, a symlink loop, an I/O error: systemd cannot read it
        return Check(name, FAIL, f"{path} cannot be read ({exc.strerror or exc}): the service "
                     "cannot start from it", f"write it again: {rewrite}")
    except UnicodeDecodeError:
        return Check(name, FAIL, f"{path} is not a text file (not UTF-8): not a unit systemd "
                     "can use", f"write it again: {rewrite}")
    entries = unit_entries(text)
    ours = unit_fields(settings)
    installed = Installed.read(entries, ours)
    wanted = unit_entries(_template().format(**installed.fields))
    said = unit_differences(entries, wanted)
    status = FAIL if said else OK
    exe = str(unit_exe())
    if installed.exe is not None and not Path(installed.exe).exists():
        said.insert(0, f"ExecStart runs {installed.exe}, which is not there (the service "
                       "cannot start)")
        status = FAIL
    elif installed.exe is not None and Path(installed.exe).resolve() != Path(exe).resolve():
        said.insert(0, f"the service runs {installed.exe}, not this installation's {exe} "
                       "(doctor checked this one)")
        status = status if status == FAIL else WARN
    if not said:
        return Check(name, OK, f"{path}: as this version writes it")
    # the unit's data folder, when it is not the one this shell's settings give
    home = (_words(str(installed.fields["home"]), command=False) or [""])[0]
    home = home.removeprefix("VOICECOACH_HOME=")
    env = "" if home in ("", str(settings.data_dir)) else f"VOICECOACH_HOME={shlex.quote(home)} "
    command = shlex.join([exe, "serve", "--print-unit", *installed.options])
    fix = (f"`{env}{command} | sudo tee {shlex.quote(str(path))} && sudo systemctl "
           "daemon-reload`")
    if len(said) > SHOWN_DIFFERENCES:  # one line a person can read: the first few, counted
        said = [*said[:SHOWN_DIFFERENCES], f"and {len(said) - SHOWN_DIFFERENCES} more settings "
                "differ"]
    return Check(name, status, f"{path}: {'; '.join(said)}", fix)
