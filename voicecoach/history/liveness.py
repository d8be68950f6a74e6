"""Is the process that wrote a 'running' session still alive (and still the same process)?"""

from __future__ import annotations

import os
from pathlib import Path


def boot_id() -> str:
    """This boot's id (Linux), '' if unknown."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def process_token(pid: int) -> str:
    """Boot id plus the process's start tick (Linux): tells a reused pid from ours; '' if
    unknown. A zombie has no token: it is dead."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] == "Z":
        return ""
    return f"{boot_id()}:{fields[19]}"


def pid_alive(pid: int, token: str = "") -> bool:
    """Whether process ``pid`` (on this host) is still the one that wrote the session."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    if token and Path("/proc").is_dir():
        return process_token(pid) == token
    return True
