"""Is the process that wrote a 'running' session (or a side file) still alive, and still the
same process? A pid alone cannot tell: after a reboot, or once pids wrap, it may be an
unrelated process's. So a writer is known by a token, this boot's id and the process's start
tick (Linux's /proc), and judged by the pid alone only where there is no /proc."""

from __future__ import annotations

import os
from pathlib import Path

#: Where the process table is read (Linux); tests point it at a folder that is not there to
#: stand for a system without one.
PROC = Path("/proc")


def boot_id(proc: Path | None = None) -> str:
    """This boot's id (Linux), '' if unknown."""
    try:
        return ((proc or PROC) / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def process_token(pid: int, proc: Path | None = None) -> str:
    """Boot id plus the process's start tick (Linux): tells a reused pid from ours, and a
    process of an earlier boot from one of this boot; '' if unknown. A zombie has no token:
    it is dead."""
    proc = proc or PROC
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return ""
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] == "Z":
        return ""
    return f"{boot_id(proc)}:{fields[19]}"


def pid_alive(pid: int, token: str = "", proc: Path | None = None) -> bool:
    """Whether process ``pid`` (on this host) is still the one that wrote ``token``
    (:func:`process_token` then): where there is no process table, or no token was written,
    whether ``pid`` is alive at all."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    proc = proc or PROC
    if token and proc.is_dir():
        return process_token(pid, proc) == token
    return True
