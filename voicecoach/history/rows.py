"""Session rows as read back: every stored value checked, so a row written by a crash, an
older version or a bug never breaks a read."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from voicecoach.events import fault_device
from voicecoach.history.tally import Tally

_LOGGER = logging.getLogger(__name__)

SOURCES = ("run", "demo", "replay", "serve")
STATUSES = ("running", "finished", "stopped", "interrupted")
#: What ``history`` shows as the outcome of a session a fault inside voicecoach ended (stored
#: as stopped, its DeviceProblem in its events: SessionSummary.ended_on_fault).
FAULT_OUTCOME = "device fault"
#: Longest believable session: a stored duration beyond it (or not finite) is read as unknown.
MAX_SESSION_S = 24 * 3600.0
#: Highest believable belt speed and incline: stored values beyond them are read as unknown.
MAX_SPEED_MPH, MAX_INCLINE_PCT = 30.0, 40.0
#: Longest believable time since boot (a century): a stored boot_s beyond it is unknown.
MAX_BOOT_S = 100 * 365.25 * 86400.0


def finite_or(value: object, default: float | None, low: float = 0.0,
              high: float = MAX_SESSION_S) -> float | None:
    """A stored number if it is a finite number in [low, high], else ``default``: rows written
    by a crash, an older version or a bug never break a read."""
    if isinstance(value, bool):
        return default
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return default
    if not math.isfinite(number) or number < low or number > high:
        return default
    return number


def parse_moment(value: object) -> datetime | None:
    """A stored ISO time, or None when it is missing or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
        # a time without its offset (a hand-edited or imported row) is local time, as the
        # recorder's own are: every moment read back compares with every other
        return moment if moment.tzinfo is not None else moment.astimezone()
    except (ValueError, OverflowError, OSError):
        return None


@dataclass(frozen=True)
class SessionSummary:
    """One row of the sessions table, with its pain-report count."""

    id: int
    started_at: datetime
    plan: str
    week: int | None
    source: str
    status: str
    ended_at: datetime | None
    backward_s: float
    total_s: float
    min_speed_mph: float | None
    max_speed_mph: float | None
    planned_backward_s: float | None
    speed_mph: float | None
    incline_pct: float | None
    backward_speed_mph: float | None
    pain_reports: int
    notes: str = ""
    #: Whether a stored value was unreadable or impossible and was read as unknown.
    repaired: bool = False
    belt_speed_mph: float | None = None
    """Measured by the treadmill: time-weighted belt speed while walking backward (mph)."""
    belt_max_speed_mph: float | None = None
    belt_incline_pct: float | None = None
    belt_distance_m: float | None = None
    #: Whether ``started_at`` agrees with the order the sessions were recorded in (see
    #: voicecoach.history.dating): False when the clock was wrong, the date is unknown.
    date_known: bool = True
    #: The boot the session began in and the seconds since that boot at its start (schema
    #: v4; '' and None for a start the caller gave and every earlier session): progression
    #: counts the time since it by the boot clock when the date cannot tell.
    boot_id: str = ""
    boot_s: float | None = None
    #: The part of voicecoach whose internal fault is recorded in the session (one of
    #: events.FAULT_DEVICES; '' for none: events.fault_device; not looked for in a finished
    #: one): whether it ended the session is :attr:`ended_on_fault`.
    fault: str = ""
    #: The kind of the last plan phase the session began before that fault (with none, before
    #: its end): its last phase_started event recorded before the fault's ('' for none; not
    #: looked for in a finished session). Where the fault came: :attr:`fault_phase`.
    last_phase: str = ""

    @property
    def ended_on_fault(self) -> bool:
        """Whether a fault inside voicecoach ended the session (the device loop halts the belt
        and ends it as stopped; a crash right after it leaves it interrupted), not the user:
        progression does not read it as an early stop, nor, before its cool-down, as a dose
        walked (voicecoach.history.progression)."""
        return bool(self.fault) and self.status in ("stopped", "interrupted")

    @property
    def fault_phase(self) -> str:
        """The kind of plan phase the fault that ended the session came in ("warmup",
        "backward", "recovery", "cooldown"; '' before the first, or for no such fault)."""
        return self.last_phase if self.ended_on_fault else ""

    @property
    def fault_in_cooldown(self) -> bool:
        """Whether the fault that ended the session came once it had reached its cool-down:
        a cool-down's phase_started is the last recorded before the fault. A phase begins only
        when the one before it has run its whole time (walked time: pauses and the wait for
        "ready" after a turn do not count), and a programme session's cool-down follows its
        last backward block, so every backward block was walked: progression counts it as
        the dose done. A fault as the last block ends, before the cool-down's start is
        recorded, is before it. (A plan file's cool-down may come before a backward phase;
        such sessions have no programme week and progression counts none of them.)"""
        return self.fault_phase == "cooldown"

    @property
    def outcome(self) -> str:
        """How the session ended, as ``history`` shows it: its status, or FAULT_OUTCOME."""
        return FAULT_OUTCOME if self.ended_on_fault else self.status

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        for internal in ("repaired", "boot_id", "boot_s"):
            data.pop(internal)
        data.pop("last_phase")
        data["fault"] = self.fault if self.ended_on_fault else None
        data["fault_phase"] = self.fault_phase if self.ended_on_fault else None
        data["started_at"] = self.started_at.isoformat()
        data["ended_at"] = self.ended_at.isoformat() if self.ended_at else None
        return data


SUMMARY_SQL = """
SELECT s.id, s.started_at, s.plan, s.week, s.source, s.status, s.ended_at, s.backward_s,
       s.total_s, s.min_speed_mph, s.max_speed_mph, s.planned_backward_s, s.speed_mph,
       s.incline_pct, s.backward_speed_mph,
       (SELECT COUNT(*) FROM pain_reports p WHERE p.session_id = s.id), s.notes,
       s.belt_speed_mph, s.belt_max_speed_mph, s.belt_incline_pct, s.belt_distance_m,
       s.boot_id, s.boot_s,
       CASE WHEN s.status != 'finished' THEN
           (SELECT e.data FROM events e WHERE e.session_id = s.id AND e.type = 'device_problem'
            AND e.data LIKE '%internal fault%' ORDER BY e.seq LIMIT 1) END,
       CASE WHEN s.status != 'finished' THEN
           (SELECT p.data FROM events p WHERE p.session_id = s.id AND p.type = 'phase_started'
            AND p.seq < COALESCE(
                (SELECT e.seq FROM events e WHERE e.session_id = s.id
                 AND e.type = 'device_problem' AND e.data LIKE '%internal fault%'
                 ORDER BY e.seq LIMIT 1), 9223372036854775807)
            ORDER BY p.seq DESC LIMIT 1) END
FROM sessions s
"""
#: (The last two columns: the event that records a fault inside voicecoach, read by fault_in,
#: and the last phase_started before it (or at all, with none), read by phase_in; only looked
#: for in a session not finished, the only kind a fault can end: reading every event of every
#: session made each read of a long history several times slower.)


def speed_or_none(value: object) -> float | None:
    return finite_or(value, None, 0.0, MAX_SPEED_MPH)


def _logged(data: object) -> dict[str, Any] | None:
    """A logged event's JSON text as its fields; None for anything else, unreadable JSON
    included."""
    if not isinstance(data, str):
        return None
    try:
        event = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return event if isinstance(event, dict) else None


def fault_in(data: object) -> str:
    """The device of a logged event's JSON text that records a fault inside voicecoach
    (events.fault_device); '' for anything else, unreadable JSON included."""
    event = _logged(data)
    return "" if event is None else fault_device(event)


def phase_in(data: object) -> str:
    """The phase kind of a logged phase_started event's JSON text; '' for anything else,
    unreadable JSON included."""
    kind = (_logged(data) or {}).get("kind")
    return kind if isinstance(kind, str) else ""


def logged_end(events: list[dict[str, Any]]) -> tuple[str, float, float] | None:
    """(outcome, backward_s, total_s) of a logged session_ended event, checked; else None."""
    for event in reversed(events):
        if event.get("type") != "session_ended":
            continue
        outcome = event.get("outcome")
        if outcome not in ("finished", "stopped"):
            return None
        return (str(outcome), finite_or(event.get("backward_s"), 0.0) or 0.0,
                finite_or(event.get("total_s"), 0.0) or 0.0)
    return None


def safe_tally(events: list[dict[str, Any]]) -> Tally:
    """The tally of ``events``, skipping any event whose fields cannot be read."""
    tally = Tally()
    for event in events:
        try:
            tally.feed(event)
        except (KeyError, TypeError, ValueError, OverflowError):
            _LOGGER.debug("history: event skipped in the tally: %r", event)
    return tally


def summary_of(row: Sequence[Any]) -> SessionSummary | None:
    """A session row as read back, every value checked: None without a readable start."""
    started = parse_moment(row[1])
    if started is None:
        return None
    cleaned: list[Any] = []
    repaired = False

    def keep(value: object, clean: object) -> None:
        nonlocal repaired
        repaired = repaired or (value is not None and (clean is None or clean != value))
        cleaned.append(clean)

    week = finite_or(row[3], None, 1, 1000)
    keep(row[3], int(week) if week is not None else None)
    backward = finite_or(row[7], 0.0)
    total = finite_or(row[8], 0.0)
    keep(row[7], backward)
    keep(row[8], total)
    for i in (9, 10):
        keep(row[i], speed_or_none(row[i]))
    keep(row[11], finite_or(row[11], None))
    keep(row[12], speed_or_none(row[12]))
    keep(row[13], finite_or(row[13], None, -MAX_INCLINE_PCT, MAX_INCLINE_PCT))
    keep(row[14], speed_or_none(row[14]))
    status = str(row[5]) if row[5] in STATUSES else "interrupted"
    source = str(row[4]) if row[4] in SOURCES else "run"
    repaired = repaired or status != row[5] or source != row[4]
    ended = parse_moment(row[6])
    repaired = repaired or (row[6] is not None and ended is None)
    pains = int(finite_or(row[15], 0, 0, 1e9) or 0)
    belt = list(row[17:21]) + [None] * (4 - len(row[17:21]))
    keep(belt[0], speed_or_none(belt[0]))
    keep(belt[1], speed_or_none(belt[1]))
    keep(belt[2], finite_or(belt[2], None, -MAX_INCLINE_PCT, MAX_INCLINE_PCT))
    keep(belt[3], finite_or(belt[3], None, 0.0, 1e7))
    boot = list(row[21:23]) + [None] * (2 - len(row[21:23]))
    boot_id = boot[0] if isinstance(boot[0], str) else ""
    boot_s = finite_or(boot[1], None, 0.0, MAX_BOOT_S) if boot_id else None
    keep(boot[1], boot_s)
    return SessionSummary(int(row[0]), started, str(row[2] or ""), cleaned[0], source, status,
                          ended, cleaned[1] or 0.0, cleaned[2] or 0.0, cleaned[3], cleaned[4],
                          cleaned[5], cleaned[6], cleaned[7], cleaned[8], pains,
                          str(row[16] or ""), repaired, belt_speed_mph=cleaned[9],
                          belt_max_speed_mph=cleaned[10], belt_incline_pct=cleaned[11],
                          belt_distance_m=cleaned[12], boot_id=boot_id if boot_s is not None else "",
                          boot_s=boot_s, fault=fault_in(row[23] if len(row) > 23 else None),
                          last_phase=phase_in(row[24] if len(row) > 24 else None))
