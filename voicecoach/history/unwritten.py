"""A session the end of a program could not write (another program held the history locked
past the exit's deadline, or it refused writes): kept in a file of its own beside the
history, and merged into the history at its next opening for writing.

``<history>.unwritten`` (``-2``, ``-3``... never over an earlier one) is a new SQLite file with
the history's schema, created by this process alone, so no lock on it can be held by anyone
else and nothing waits. It is written under a part name that no reader lists and put in
place once complete (history/parts.py), so no opening or read ever meets it half-written; a
part left by a writer that died before putting it in place is taken in at the next opening
for writing: published and merged when it holds the session, removed when it holds none.

It holds one session as the history would have held it: its row, with
its end, and the events the history did not take (with their phases, commands and pain
reports), plus one row in ``kept``: the session's id in the history when its row had reached it
(NULL when it never did).

At the next opening for writing (:meth:`HistoryDB.tidy`, before sessions cut off are marked):

- a session whose row never reached the history is added to it, as the last recorded (a new
  id, history/replaced.py's ``put``);
- a session whose row is there gets its end: the events are added to that row and its end
  columns set from the kept row. Sound because the recorder writes each event in its own
  transaction and keeps in memory exactly those not committed (``events`` is unique by
  session and seq), so the kept events are the ones the history lacks, never a second copy,
  and the kept row's figures come from every event of the session. Adding it as a new session
  instead would list the walk twice, once interrupted. When that row is gone (the history was
  replaced meanwhile) it is added as a new session.

The file is removed only once the merge has committed; one that cannot be read is left in
place, said in one line; one whose process is still filling it is left until it is done
(:func:`_being_written`). A lock held by another program fails the merge as it fails the
opening's other writes: tried again at the next opening. Until then every read of the
sessions (``HistoryDB.sessions``: ``history``, the plan, doctor's count) reads the files
alongside the history without writing either (:func:`as_merged`), so the session shows as
the merge will put it, not missing or 'running'.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shlex
import socket
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voicecoach.errors import VoicecoachError
from voicecoach.history.faults import check_file, corrupt_error, database_error, newer_error
from voicecoach.history.liveness import pid_alive
from voicecoach.history.parts import SUFFIX, take_in_leftovers
from voicecoach.history.recovery import cut_off, owner_gone, recovered
from voicecoach.history.replaced import Rows, put, take
from voicecoach.history.rows import SUMMARY_SQL, SessionSummary, summary_of
from voicecoach.history.schema import SCHEMA_VERSION

if TYPE_CHECKING:
    from voicecoach.history.db import HistoryDB

_LOGGER = logging.getLogger(__name__)

#: What the end of a session sets in its row (SessionRecorder._finish; the start only when
#: the clock was set during the session).
END_COLUMNS = ("started_at", "status", "ended_at", "backward_s", "total_s", "last_t", "min_speed_mph",
               "max_speed_mph", "backward_speed_mph", "belt_speed_mph", "belt_max_speed_mph",
               "belt_incline_pct", "belt_distance_m")
#: A read of the history: rows of ``sql`` with ``params``.
Query = Callable[[str, Sequence[Any]], list[Any]]


def side_files(history: Path) -> list[Path]:
    """The side files beside ``history``, oldest first (not their journals)."""
    pattern = re.compile(re.escape(history.name + SUFFIX) + r"(-\d+)?")
    try:
        found = [p for p in history.parent.iterdir() if pattern.fullmatch(p.name)]
    except OSError:
        return []

    def age(path: Path) -> tuple[int, int]:
        try:
            made = path.stat().st_mtime_ns
        except OSError:
            made = 0
        tail = path.name.rsplit("-", 1)[-1]
        return made, int(tail) if tail.isdigit() else 1

    return sorted(found, key=age)


def read(db: HistoryDB, side: Path) -> tuple[int | None, Rows]:
    """(the session's id in the history or None, its rows) from ``side``; raises
    VoicecoachError, OSError or sqlite3.Error when it cannot be read."""
    history_id, rows, _row = _read(db, side)
    return history_id, rows


def _read(db: HistoryDB, side: Path) -> tuple[int | None, Rows, Sequence[Any]]:
    """:func:`read`, and the session's row as the history's summary reads it (SUMMARY_SQL:
    its pain reports counted are the kept ones)."""
    conn = sqlite3.connect(str(side), isolation_level=None)
    try:
        version = check_file(side, conn)
        if version > SCHEMA_VERSION:
            raise newer_error(side, version)
        if not version:
            raise corrupt_error(side, "it holds no voicecoach schema")
        try:
            kept = conn.execute("SELECT history_id FROM kept").fetchall()
            ids = [int(r[0]) for r in conn.execute("SELECT id FROM sessions")]
            if len(kept) != 1 or len(ids) != 1:
                raise corrupt_error(side, f"it holds {len(ids)} sessions, not one")
            rows = take(conn, ids)
            [summary_row] = conn.execute(SUMMARY_SQL).fetchall()
        except sqlite3.DatabaseError as exc:
            raise database_error(side, exc, "read") from None
    finally:
        conn.close()
    history_id = kept[0][0]
    return (None if history_id is None else int(history_id)), rows, summary_row


def merge_all(db: HistoryDB) -> None:
    """Merge every side file beside ``db``'s history into it (see the module's docstring).
    Raises what a write to the history raises (a lock held: the next opening tries again)."""
    if db.read_only:
        return
    take_in_leftovers(db)
    for side in side_files(db.path):
        try:
            history_id, rows = read(db, side)
        except (VoicecoachError, OSError, sqlite3.Error) as exc:
            # the reason only: the history's own advice (start a new history) is not for this
            detail = exc.message if isinstance(exc, VoicecoachError) else str(exc)
            _LOGGER.error("history: %s cannot be read, so the session kept there is not in "
                          "the history; it is left as it is (%s); to stop this line, move it "
                          "aside (mv %s %s)", side, detail.rstrip("."),
                          shlex.quote(str(side)), shlex.quote(str(side) + ".broken"))
            continue
        if _being_written(rows):
            _LOGGER.debug("history: %s is still being written by its process", side)
            continue
        with db.transaction() as conn:
            what = _merge(conn, history_id, rows)
        try:
            side.unlink()
        except OSError as exc:
            _LOGGER.warning("history: %s is merged but cannot be removed (%s)", side, exc)
        with contextlib.suppress(FileNotFoundError):
            side.with_name(side.name + "-journal").unlink()
        _LOGGER.warning("history: the session kept in %s when the history could not take it "
                        "is merged into it: %s", side, what)


def _merge(conn: sqlite3.Connection, history_id: int | None, rows: Rows) -> str:
    """Put one kept session into the history (in the caller's transaction); what was done."""
    columns, [row] = rows["sessions"]
    kept_id, values = int(row[0]), dict(zip(columns, row[1:], strict=True))
    there, had = _place(lambda sql, params: conn.execute(sql, params).fetchall(),
                        history_id, rows)
    if had:
        return f"session {there} had it already"  # merged, then not removed
    if there is not None:
        put(conn, {**rows, "sessions": (columns, [])}, {kept_id: there})
        ends = [c for c in END_COLUMNS if c in values]
        conn.execute(f"UPDATE sessions SET {', '.join(f'{c} = ?' for c in ends)}"
                     " WHERE id = ?", [*(values[c] for c in ends), there])
        return (f"session {there} ended {values['status']} (its end and "
                f"{len(rows['events'][1])} events written)")
    new_id = put(conn, rows)[kept_id]
    return f"added as session {new_id}, {values['status']}"


def _being_written(rows: Rows) -> bool:
    """Whether the process that gives the session up is still filling its side file: its
    row is written first and its end last (the recorder's ``_keep_aside``), so a row still
    'running' of a process alive on this host is not merged yet, nor shown (merged then, its
    end and last events would be written into a file removed, and lost). A process gone
    left it so for good: merged as it is, then marked interrupted with the others. Since
    side files are put in place only once complete (:func:`publish`) this is a file an
    older version is still filling under its side file's name."""
    columns, [row] = rows["sessions"]
    values = dict(zip(columns, row[1:], strict=True))
    pid = values.get("pid")
    return (values.get("status") == "running" and values.get("host") == socket.gethostname()
            and isinstance(pid, int) and pid_alive(pid, str(values.get("proc_token") or "")))


def _place(query: Query, history_id: int | None, rows: Rows) -> tuple[int | None, bool]:
    """Where a kept session goes in the history, looked up without writing: (the id of the
    row whose end it is, or of the session that has it already; None: a new session) and
    whether the history has it already (merged, then not removed)."""
    columns, [row] = rows["sessions"]
    values = dict(zip(columns, row[1:], strict=True))
    events = rows["events"]
    if history_id is not None:
        there = query("SELECT proc_token, host FROM sessions WHERE id = ?", (history_id,))
        if there and tuple(there[0]) == (values["proc_token"], values["host"]):
            seqs = [r[events[0].index("seq")] for r in events[1]]
            had = bool(seqs) and bool(query("SELECT 1 FROM events WHERE session_id = ? AND"
                                            " seq = ?", (history_id, min(seqs))))
            return history_id, had
    # added as a new session: already, if the same row (every column) with the same events
    # is there (merged, then not removed); not merely a session of the same process and start
    # second: two sessions without events, one stopped at once, are not one
    logged = sorted((r[events[0].index("seq")], r[events[0].index("data")])
                    for r in events[1])
    for same, *stored in query(f"SELECT id, {', '.join(columns)} FROM sessions WHERE"
                               " proc_token = ? AND host = ? AND started_at = ?",
                               (values["proc_token"], values["host"], values["started_at"])):
        if stored != list(row[1:]):
            continue
        there = query("SELECT seq, data FROM events WHERE session_id = ? ORDER BY seq", (same,))
        if [tuple(r) for r in there] == logged:
            return int(same), True
    return None, False


def as_merged(db: HistoryDB, sessions: list[SessionSummary]) -> list[SessionSummary]:
    """``db``'s ``sessions`` (in recorded order) with the sessions kept beside it as the next
    merge will put them, read without writing a byte (a history held locked, or read where it
    cannot be written, is shown whole until that merge): a kept end on its session's row, with
    its figures and its pain reports added; a session whose row never got in after every
    recorded one, with the next id. A side file that cannot be read adds nothing (the
    opening that tries to merge it says so)."""
    sides = side_files(db.path)
    if not sides:
        return sessions
    out = {s.id: s for s in sessions}
    [(top,)] = db.query("SELECT COALESCE(MAX(id), 0) FROM sessions")
    top = max(int(top), *out, 0)
    for side in sides:
        try:
            history_id, rows, summary_row = _read(db, side)
            kept = summary_of(summary_row)
        except (VoicecoachError, OSError, sqlite3.Error, ValueError) as exc:
            _LOGGER.debug("history: %s is not read alongside the history: %s", side, exc)
            continue
        if kept is None or _being_written(rows):
            continue
        there, had = _place(db.query, history_id, rows)
        if had:
            continue
        if kept.status == "running":  # its process gone: marked interrupted after the merge
            kept = _as_marked(db, kept, there, rows)
        if there is None:
            top += 1
            out[top] = replace(kept, id=top)
            continue
        [(pains,)] = db.query("SELECT COUNT(*) FROM pain_reports WHERE session_id = ?",
                              (there,))
        # a fault recorded before the history was held is in its events there, not here;
        # the phases begun before it was held are there too, every one before those kept
        written = out.get(there)
        fault, phase = (written.fault, written.last_phase) if written else ("", "")
        if kept.fault or not fault:
            fault, phase = kept.fault or fault, kept.last_phase or phase
        out[there] = replace(kept, id=there, pain_reports=kept.pain_reports + int(pains),
                             fault=fault, last_phase=phase)
    return sorted(out.values(), key=lambda s: s.id)


def _as_marked(db: HistoryDB, kept: SessionSummary, there: int | None,
               rows: Rows) -> SessionSummary:
    """A kept session still 'running' (a part its exit never finished, taken in as it was)
    as the opening marks it once merged when its process is gone on this host: interrupted,
    its figures from every event it logged, in the history and kept (history/recovery.py)."""
    columns, [row] = rows["sessions"]
    values = dict(zip(columns, row[1:], strict=True))
    if (values.get("host") not in (db.host, "")
            or not owner_gone(values.get("pid"), values.get("proc_token"))):
        return kept
    events = db.events(there) if there is not None else []
    event_columns, event_rows = rows["events"]
    seq, data = event_columns.index("seq"), event_columns.index("data")
    for _seq, text in sorted((r[seq], r[data]) for r in event_rows):
        with contextlib.suppress(TypeError, ValueError, RecursionError):
            event = json.loads(text)
            if isinstance(event, dict):
                events.append(event)
    return cut_off(kept, recovered(values.get("started_at"), values.get("last_t"), events))
