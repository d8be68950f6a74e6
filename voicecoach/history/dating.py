"""When each session happened, on a device whose clock may be wrong.

A Raspberry Pi has no real-time clock. It boots with the time fake-hwclock saved at the last
shutdown (up to an hour earlier after a power cut; months earlier on an SD card restored
from an old image) or with 1970 when nothing was saved, and NTP sets it later, possibly
after a session has been recorded. A wrong date must not move a session, nor make
progression pass it over, so:

* **The order of sessions is the order they were recorded**: the row id (SQLite gives each
  new row one more than the highest), never their dates. ``history`` lists them so, and
  progression's "last session" is the last one recorded.
* **A date is believed when it agrees with that order.** The dates of the most sessions that
  never go back in time, in recorded order, are believed (a longest non-decreasing run; on a
  tie the earlier recorded date wins, as a clock that is behind is the usual fault); any
  other date, and any date before EARLIEST_START (the clock was never set), is *unknown*:
  ``SessionSummary.date_known`` is False. One date set ahead by mistake is the odd one out,
  not every date after it. The stored date is kept as it was, never rewritten from a guess.
* ``history`` shows such a session as "date unknown" in its place and totals it under no
  week; ``--weeks N`` keeps it unless a session recorded after it is already older than the
  window; ``--plot`` leaves it off its date axis and says so.
* **Progression counts it by its order** (its pain, an early stop, its dose all count).
  When the date cannot tell whether a day has passed (the last session's date is unknown, or
  "today" is before it: the clock is behind now) but that session began in this boot, the
  boot clock tells instead: the seconds since boot (CLOCK_BOOTTIME, counting suspend) at its
  start were stored, and the time since is real elapsed time whatever the wall clock says
  (:func:`elapsed_in_this_boot`). A Pi that never sets its clock and stays on between walks
  so still climbs the ladder. Across a reboot nothing tells the time between: the same dose
  is kept, as the ladder steps up at most once a day. A wrong clock so costs at most a held
  session, never a step skipped nor a user sent back a week.
* **A date the clock got wrong is put right when it can be.** A session whose start was read
  from the wall clock stores the boot id and the seconds since boot at that moment. Within
  one boot, the wall clock minus the seconds since boot only changes when the clock is set;
  when that difference has moved by more than CLOCK_SET_S since a session was recorded, the
  clock was set meanwhile and the later setting is trusted (NTP), as the recorder trusts it
  for a clock set during the session: each time the history is opened for writing (every
  `run`, every "start" of `serve`, `history`), this boot's sessions are dated again from it.
  A session of an earlier boot, or whose start the caller gave, is never moved.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from voicecoach.history.liveness import boot_id
from voicecoach.history.rows import SessionSummary, finite_or, parse_moment

if TYPE_CHECKING:
    from voicecoach.history.db import HistoryDB

_LOGGER = logging.getLogger(__name__)

#: No voicecoach session happened before this: an earlier date is a clock that was not set.
EARLIEST_START = datetime(2026, 1, 1, tzinfo=timezone.utc)
#: The wall clock and the elapsed time (monotonic) disagreeing by more than this means the
#: wall clock was set meanwhile (NTP after boot); seconds. Normal drift is well under a second
#: a session.
CLOCK_SET_S = 60.0


def believed(starts: list[float]) -> set[int]:
    """Indexes of a longest run of ``starts`` (in recorded order) that never goes back; on a
    tie, the earlier recorded ones. Patience sorting, run backwards: read from the end, a
    longest non-increasing run is a longest non-decreasing one forwards, and each pile keeps
    the last element it was given, which is the earliest recorded."""
    tops: list[float] = []  # per run length, the best last value (negated start) seen
    top_index: list[int] = []
    before: dict[int, int] = {}
    for i in reversed(range(len(starts))):
        key = -starts[i]
        pile = bisect.bisect_right(tops, key)
        if pile:
            before[i] = top_index[pile - 1]
        if pile == len(tops):
            tops.append(key)
            top_index.append(i)
        else:
            tops[pile], top_index[pile] = key, i
    run: set[int] = set()
    i = top_index[-1] if top_index else -1
    while i >= 0:
        run.add(i)
        i = before.get(i, -1)
    return run


def in_recorded_order(sessions: Iterable[SessionSummary]) -> list[SessionSummary]:
    """``sessions`` in the order they were recorded, each date that disagrees with that order
    (or comes before EARLIEST_START) marked unknown."""
    ordered = sorted(sessions, key=lambda s: s.id)
    candidates = [i for i, s in enumerate(ordered) if s.started_at >= EARLIEST_START]
    keep = {candidates[j] for j in believed([ordered[i].started_at.timestamp()
                                             for i in candidates])}
    out = []
    for i, session in enumerate(ordered):
        known = i in keep
        if session.date_known != known:
            session = replace(session, date_known=known)
        out.append(session)
    return out


def since(sessions: list[SessionSummary], start: datetime) -> list[SessionSummary]:
    """The sessions (in recorded order, dates checked) that may have happened from ``start``:
    a dated one by its date; one of unknown date unless a session recorded after it is
    dated before ``start`` (it happened before that one)."""
    out: list[SessionSummary] = []
    later: datetime | None = None  # the date of the first dated session recorded after
    for session in reversed(sessions):
        if session.date_known:
            later = session.started_at
            if session.started_at >= start:
                out.append(session)
        elif later is None or later >= start:
            out.append(session)
    return out[::-1]


def wall_now() -> datetime:
    """The wall clock, as dates are stored (local time with its offset)."""
    return datetime.now().astimezone()


def boot_now() -> tuple[str, float]:
    """This boot's id and the seconds since it (CLOCK_BOOTTIME: counting any suspend, as the
    wall clock does); ("", 0.0) where either is unknown."""
    clock = getattr(time, "CLOCK_BOOTTIME", None)
    ident = boot_id()
    if clock is None or not ident:
        return "", 0.0
    return ident, time.clock_gettime(clock)


def elapsed_in_this_boot(session: SessionSummary, boot: tuple[str, float]) -> float | None:
    """Seconds from ``session``'s start to now by the boot clock, when it began in this boot
    (``boot``: this boot's id and the seconds since it, as :func:`boot_now` gives them); None
    when it began in another boot, its start was given by the caller, or either boot is
    unknown: the seconds since one boot say nothing about another."""
    ident, since_boot = boot
    if not ident or session.boot_id != ident or session.boot_s is None \
            or session.boot_s > since_boot:
        return None
    return since_boot - session.boot_s


def redate_this_boot(db: HistoryDB) -> list[int]:
    """Date again the sessions recorded earlier in this boot if the wall clock has been set
    since (by more than CLOCK_SET_S): start and end moved by what the clock moved. Sessions
    still running are left to their recorder. Returns the ids moved."""
    ident, since_boot = boot_now()
    if db.read_only or not ident:
        return []
    offset = wall_now().timestamp() - since_boot  # the wall clock's reading at boot, now
    moved = []
    rows = db.query("SELECT id, started_at, ended_at, boot_s FROM sessions"
                    " WHERE boot_id = ? AND boot_s IS NOT NULL AND status != 'running'",
                    (ident,))
    for sid, started, ended, boot_s in rows:
        began, at = parse_moment(started), finite_or(boot_s, None, 0.0, since_boot)
        if began is None or at is None:
            continue
        shift = offset + at - began.timestamp()
        if abs(shift) <= CLOCK_SET_S:
            continue
        try:
            start = began + timedelta(seconds=shift)
            end = parse_moment(ended)
            end = end + timedelta(seconds=shift) if end is not None else None
        except OverflowError:
            continue
        with db.transaction() as conn:
            conn.execute("UPDATE sessions SET started_at = ?, ended_at = ? WHERE id = ?"
                         " AND started_at = ?",
                         (start.isoformat(timespec="seconds"),
                          end.isoformat(timespec="seconds") if end is not None else None,
                          sid, started))
        _LOGGER.warning("history: the clock was set since session %d began (by %+.0f s); "
                        "its start is recorded as %s", sid, shift,
                        start.isoformat(timespec="seconds"))
        moved.append(int(sid))
    return moved
