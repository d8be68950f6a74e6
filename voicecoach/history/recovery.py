"""Sessions whose process died while they ran: marked interrupted, their totals recomputed."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from voicecoach.history.liveness import pid_alive
from voicecoach.history.rows import (
    MAX_INCLINE_PCT,
    finite_or,
    logged_end,
    parse_moment,
    safe_tally,
    speed_or_none,
)

if TYPE_CHECKING:
    from voicecoach.history.db import HistoryDB

_LOGGER = logging.getLogger(__name__)


def recover_interrupted(db: HistoryDB) -> list[int]:
    """Mark sessions left 'running' by a process on this host that has died as
    interrupted, with their totals recomputed from the events they logged. (Rows from
    schema v1 have no host: they are taken to be from this one.)"""
    if db.read_only:
        return []
    with db.lock:
        rows = db.query("SELECT id, pid, proc_token, started_at, last_t FROM sessions "
                        "WHERE status = 'running' AND host IN (?, '')", (db.host,))
        dead = [row for row in rows
                if not pid_alive(int(finite_or(row[1], 0, 0, 2**31) or 0), str(row[2] or ""))]
        for sid, _pid, _token, started, last_t in dead:
            # Whatever a crash or an older version left in the row, this must not fail:
            # a value that is not a believable number of seconds counts as unknown.
            events = db.events(sid)
            tally = safe_tally(events)
            stored = finite_or(last_t, 0.0) or 0.0
            tally.advance(stored)
            total = max(finite_or(tally.last_t, 0.0) or 0.0, stored)
            backward = min(finite_or(tally.backward_s, 0.0) or 0.0, total)
            status = "interrupted"
            ended_event = logged_end(events)
            if ended_event is not None:
                # The session did end (a row set back to 'running' by hand, or a crash
                # between the two writes): its own figures stand, nothing is added.
                status = ended_event[0]
                total = ended_event[2] or total
                backward = min(ended_event[1], total)
            began = parse_moment(started)
            try:
                ended = (began + timedelta(seconds=total)) if began else None
            except OverflowError:  # a start near the year 9999, or an absurd length
                ended = None
            with db.transaction() as conn:
                conn.execute(
                    "UPDATE sessions SET status = ?, ended_at = ?, backward_s = ?,"
                    " total_s = ?, min_speed_mph = ?, max_speed_mph = ?,"
                    " backward_speed_mph = ?, belt_speed_mph = ?, belt_max_speed_mph = ?,"
                    " belt_incline_pct = ?, belt_distance_m = ?"
                    " WHERE id = ? AND status = 'running'",
                    (status, ended.isoformat(timespec="seconds") if ended else None,
                     backward, total,
                     speed_or_none(tally.min_speed_mph), speed_or_none(tally.max_speed_mph),
                     speed_or_none(tally.mean_backward_speed_mph), speed_or_none(tally.belt_speed_mph),
                     speed_or_none(tally.belt_max_mph),
                     finite_or(tally.belt_incline_pct, None, -MAX_INCLINE_PCT, MAX_INCLINE_PCT),
                     finite_or(tally.belt_distance_m, None, 0.0, 1e7), sid))
            if ended_event is None:
                _LOGGER.warning("history: session %d was cut off after %.0f s; marked "
                                "interrupted", sid, total)
            else:
                _LOGGER.warning("history: session %d had ended (%s) but was still marked "
                                "running; its own figures are kept", sid, status)
        return [row[0] for row in dead]
