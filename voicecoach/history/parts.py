"""Side files written whole or not at all: a session the end of a program gives up
(history/unwritten.py) is written under a part name that no reader lists and put in place,
synced, once complete (:func:`publish`); a part left by a writer cut off before that is taken
in at the next opening for writing (:func:`take_in_leftovers`), and said by a reader that
cannot (:func:`waiting`)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import secrets
import socket
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from voicecoach.history.liveness import pid_alive, process_token
from voicecoach.history.replaced import free_name
from voicecoach.history.schema import migrate

if TYPE_CHECKING:
    from voicecoach.history.db import HistoryDB

_LOGGER = logging.getLogger(__name__)

#: How a side file's name ends (``<history>.unwritten``, then ``-2``, ``-3``...).
SUFFIX = ".unwritten"
#: How the name of a side file still being written ends (:func:`part_name`).
PART_TAIL = ".part"
#: The session's id in the history (NULL: its row never reached it).
KEPT_DDL = "CREATE TABLE kept (history_id INTEGER)"


def create(history: Path, history_id: int | None) -> tuple[Path, sqlite3.Connection]:
    """A new part file beside ``history`` (:func:`part_name`: never listed as a side file)
    with the schema and ``kept`` filled in, and a connection to it that never waits (nobody
    else knows the file); :func:`publish` makes it a side file once complete. Raises OSError
    or sqlite3.Error."""
    part = part_name(history)
    os.close(os.open(part, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    conn = sqlite3.connect(str(part), isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA busy_timeout = 0")
        migrate(conn)
        conn.execute(KEPT_DDL)
        conn.execute("INSERT INTO kept (history_id) VALUES (?)", (history_id,))
    except BaseException:
        conn.close()
        raise
    return part, conn


def part_name(history: Path) -> Path:
    """A name no other file has for a side file being written: ``<history>.unwritten.<pid>~
    <boot id>~<start tick>.<8 hex>.<host>.part`` (the writer named so that a leftover can be
    told from a file still being filled, :func:`take_in_leftovers`, even once its pid is
    another process's, after a reboot or when pids wrap; ``<pid>`` alone where there is no
    process table to read the rest from, as before session 22)."""
    pid = os.getpid()
    token = process_token(pid)
    writer = f"{pid}~{token.replace(':', '~')}" if token else str(pid)
    return history.with_name(f"{history.name}{SUFFIX}.{writer}.{secrets.token_hex(4)}."
                             f"{socket.gethostname()}{PART_TAIL}")


def publish(part: Path, history: Path) -> Path:
    """Make the complete part file ``part`` a side file of ``history``: synced to the disk,
    then given the first free name (``.unwritten``, ``-2``...) by ``link()``, which fails on a
    name taken meanwhile (two processes giving up at once: the next name), never over a side
    file, and its part name removed; the folder synced. A file system without hard links
    (FAT) renames it instead, under a lock on the folder that every such publish takes.
    Returns the side file; raises OSError (the part is left)."""
    _sync(part)
    for _ in range(100):
        side = free_name(history, SUFFIX)
        try:
            os.link(part, side)
        except FileExistsError:
            continue  # taken between the look and the link: the next one
        except OSError as exc:
            if exc.errno not in _NO_LINKS:
                raise
            side = _rename_under_lock(part, history)
            break
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        break
    else:
        raise OSError(f"no free name beside {history}")
    with contextlib.suppress(OSError):  # in place already; a folder some systems cannot sync
        _sync(history.parent)
    return side


#: What link() answers on a file system that has no hard links.
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EMLINK}


def _rename_under_lock(part: Path, history: Path) -> Path:
    """:func:`publish` where link() cannot be used: the free name looked up and taken by a
    rename while holding a lock on the folder (flock), so that two such publishes cannot
    both take one name."""
    folder = os.open(history.parent, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        side = free_name(history, SUFFIX)
        os.rename(part, side)
        return side
    finally:
        os.close(folder)  # lets go of the lock


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _parts(history: Path) -> list[tuple[Path, int, str, str]]:
    """(part file, its writer's pid, its writer's token or '', its host) of each part file
    beside ``history``."""
    pattern = re.compile(re.escape(history.name + SUFFIX) + r"\.(\d+)(?:~([^.~]*)~(\d+))?"
                         r"\.[0-9a-f]{8}\.(.+)" + re.escape(PART_TAIL))
    try:
        names = [(p, pattern.fullmatch(p.name)) for p in history.parent.iterdir()]
    except OSError:
        return []
    return sorted((p, int(m.group(1)), f"{m.group(2)}:{m.group(3)}" if m.group(3) else "",
                   m.group(4)) for p, m in names if m)


def leftovers(history: Path) -> list[Path]:
    """The part files beside ``history`` left by a writer that is gone (killed or cut off
    while it wrote one, on this host: another host's cannot be told): what the next opening
    for writing takes in (:func:`take_in_leftovers`). Looked at by name alone: nothing is
    opened or written."""
    here = socket.gethostname()
    return [part for part, pid, token, host in _parts(history)
            if host == here and not pid_alive(pid, token)]


def waiting(history: Path) -> list[tuple[Path, int | None]]:
    """(leftover, the sessions it holds, None when that cannot be told without writing: a
    write cut off in it to roll back first) of each :func:`leftovers` that may hold one, for
    a reader (``voicecoach history``) to say what is waiting to be taken in. Read-only: never
    rolls anything back, creates or removes a file."""
    found: list[tuple[Path, int | None]] = []
    for part in leftovers(history):
        try:
            holds: int | None = _sessions_in(part, read_only=True)
        except (OSError, sqlite3.Error):
            holds = None
        if holds != 0:
            found.append((part, holds))
    return found


def take_in_leftovers(db: HistoryDB) -> None:
    """Part files left by a writer that ended before publishing them (a crash or a kill
    while it wrote one): one that holds the session is published as a side file (merged with
    the others: as it is, its row marked interrupted after); one that holds none (the end
    came before its row) is removed. A part of a writer still alive on this host (the same
    process: not merely one with its pid, :func:`part_name`), or of another host, is left
    alone: it is still being filled."""
    for part in leftovers(db.path):
        try:
            holds = _sessions_in(part)
        except (OSError, sqlite3.Error) as exc:
            _LOGGER.warning("history: %s, left by a program that ended while writing it, "
                            "cannot be read (%s); it is left as it is", part, exc)
            continue
        try:
            if holds:
                side = publish(part, db.path)
                _LOGGER.warning("history: %s, left by a program that ended while writing it, "
                                "holds a session; it is kept as %s", part, side)
            else:
                part.unlink()
                _LOGGER.info("history: %s, left empty by a program that ended while "
                             "writing it, is removed", part)
            with contextlib.suppress(FileNotFoundError):
                part.with_name(part.name + "-journal").unlink()
        except OSError as exc:
            _LOGGER.warning("history: %s, left by a program that ended while writing it, "
                            "cannot be taken in (%s); it is left as it is", part, exc)


def _sessions_in(part: Path, *, read_only: bool = False) -> int:
    """Sessions a part file holds (0: empty, or its schema not written yet), opened by its
    own name so that a write cut off is rolled back from its journal first (``read_only``:
    not, and an error instead when there is one to roll back)."""
    if part.stat().st_size == 0:
        return 0
    conn = (sqlite3.connect(f"{part.resolve().as_uri()}?mode=ro", uri=True,
                            isolation_level=None) if read_only
            else sqlite3.connect(str(part), isolation_level=None))
    try:
        conn.execute("PRAGMA busy_timeout = 0")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        if "sessions" not in tables:
            return 0
        return int(conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0])
    finally:
        conn.close()
