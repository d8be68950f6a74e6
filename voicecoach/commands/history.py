"""``voicecoach history``: past sessions and weekly totals as a table or JSON, CSV, PNG."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from voicecoach.commands import DefaultsFormatter
from voicecoach.commands._common import settings_from_args
from voicecoach.errors import VoicecoachError, write_fix
from voicecoach.history import parts
from voicecoach.history.db import BUSY_TIMEOUT_MS, DB_NAME, HistoryDB
from voicecoach.history.faults import HistoryUnavailable
from voicecoach.history.progression import PROGRESSION_SOURCES
from voicecoach.history.rows import SessionSummary
from voicecoach.history.session_lock import SESSION_LOCK

_LOGGER = logging.getLogger(__name__)

CSV_FIELDS = ("id", "started_at", "ended_at", "plan", "week", "source", "status",
              "backward_min", "total_min", "min_speed_mph", "max_speed_mph",
              "backward_speed_mph", "pain_reports", "belt_speed_mph", "belt_distance_m",
              "date_known", "fault", "fault_phase")
#: A session whose date disagrees with the order it was recorded in (voicecoach.history.dating)
#: is shown and totalled under these.
UNKNOWN_DATE, UNKNOWN_WEEK = "date unknown", "unknown"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "history", help="past sessions and weekly totals; export CSV or plot PNG",
        description="Show the sessions recorded in the history database, with weekly totals.",
        formatter_class=DefaultsFormatter)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--weeks", metavar="N", default=None,
                        help="only the last N weeks (a whole number from 1); all if not given")
    parser.add_argument("--export", metavar="FILE.csv", type=Path, default=None,
                        help="also write the sessions to a CSV file")
    parser.add_argument("--plot", metavar="FILE.png", type=Path, default=None,
                        help="also draw minutes and speed per session (needs the plot extra)")
    parser.set_defaults(func=run)


def parse_weeks(value: str | None) -> int | None:
    """--weeks as a positive whole number (checked here so a bad value is one clear line)."""
    if value is None:
        return None
    try:
        weeks = int(value)
    except ValueError:
        weeks = 0
    if weeks < 1 or weeks > 5200:
        raise VoicecoachError(f"--weeks {value!r} is not a number of weeks",
                              "give a whole number from 1, e.g. --weeks 6")
    return weeks


def load_sessions(data_dir: Path, weeks: int | None) -> tuple[Path, list[SessionSummary]]:
    """Read the sessions (none if there is no database yet: reading never creates one)."""
    path = data_dir / DB_NAME
    if not path.exists():
        return path, []
    since = datetime.now().astimezone() - timedelta(weeks=weeks) if weeks else None
    with HistoryDB.open_file(path, recover=False, read_only_ok=True) as db:
        tidy_without_waiting(db)
        return path, db.sessions(since=since)


def waiting_lines(history: Path) -> list[str]:
    """One line for each part file an exit cut off while keeping a session left beside the
    history and no opening has taken in yet (history/parts.py's ``waiting``): what it is
    and what takes it in. Only looked at: the read never writes it."""
    lines = []
    for part, holds in parts.waiting(history):
        what = "holds a session" if holds else "may hold a session"
        lines.append(f"note: {part} {what} not in the history yet (its program was cut off "
                     "while keeping it there); the next voicecoach history, run or serve "
                     "that can write the history takes it in")
    return lines


def tidy_without_waiting(db: HistoryDB) -> None:
    """What an opening writes (:meth:`HistoryDB.tidy`: side files merged, sessions cut off
    marked, dated again), done only if the history takes it at once: held by another program
    (or a full disk), it is left to the next opening, and the sessions are read as they are
    with the side files alongside (``HistoryDB.sessions``), which needs no lock. It waited for
    the lock as any opening does (10 s), then read the same."""
    if db.read_only:
        return
    db.busy_timeout(0)
    try:
        db.tidy()
    except HistoryUnavailable as exc:
        _LOGGER.info("history: read as it is; what an opening writes is left to the next one "
                     "(%s)", exc.one_line())
    finally:
        db.busy_timeout(BUSY_TIMEOUT_MS)


def weekly_totals(sessions: list[SessionSummary]) -> list[dict[str, Any]]:
    """Per ISO week: sessions, backward minutes, finished sessions, pain reports. Only the
    user's own training counts (as in progression): demo and replayed sessions are listed
    but not totalled. Sessions of unknown date (the clock was wrong) are totalled last,
    under "unknown", never in the week their wrong date falls in."""
    weeks: OrderedDict[str, dict[str, Any]] = OrderedDict()
    for s in sorted(sessions, key=lambda s: not s.date_known):
        if s.source not in PROGRESSION_SOURCES:
            continue
        year, week, _ = s.started_at.isocalendar()
        key = f"{year}-W{week:02d}" if s.date_known else UNKNOWN_WEEK
        row = weeks.setdefault(key, {"week": key, "sessions": 0, "backward_min": 0.0,
                                     "finished": 0, "pain_reports": 0})
        row["sessions"] += 1
        row["backward_min"] = round(row["backward_min"] + s.backward_s / 60, 1)
        row["finished"] += s.status == "finished"
        row["pain_reports"] += s.pain_reports
    return list(weeks.values())


def _speed_range(s: SessionSummary) -> str:
    if s.min_speed_mph is None or s.max_speed_mph is None:
        return "-"
    if abs(s.max_speed_mph - s.min_speed_mph) < 0.05:
        return f"{s.min_speed_mph:.1f}"
    return f"{s.min_speed_mph:.1f}-{s.max_speed_mph:.1f}"


def printable(text: str) -> str:
    """``text`` safe on a terminal: control characters (escape sequences, carriage
    returns, bells) shown as escapes, never sent raw."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def format_table(sessions: list[SessionSummary], weeks: list[dict[str, Any]]) -> str:
    """Sessions, then weekly totals, as aligned plain-text tables."""
    rows = [("date", "plan", "source", "min back", "speed mph", "outcome", "pain")]
    for s in sessions:
        when = s.started_at.strftime("%Y-%m-%d %H:%M") if s.date_known else UNKNOWN_DATE
        rows.append((when, printable(s.plan), s.source,
                     f"{s.backward_s / 60:.1f}", _speed_range(s), s.outcome,
                     str(s.pain_reports) if s.pain_reports else "-"))
    lines = _align(rows)
    lines.append("")
    totals = [("week", "sessions", "min back", "finished", "pain")]
    totals += [(w["week"], str(w["sessions"]), f"{w['backward_min']:.1f}", str(w["finished"]),
                str(w["pain_reports"]) if w["pain_reports"] else "-") for w in weeks]
    lines += _align(totals)
    if sessions and not weeks:
        lines.append("(no training sessions to total: demo and replayed sessions are listed "
                     "but not counted)")
    return "\n".join(lines)


def _align(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows]


def export_csv(sessions: list[SessionSummary], path: Path) -> None:
    """One row per session, in CSV_FIELDS order."""
    try:
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
            writer.writeheader()
            for s in sessions:
                data = s.to_dict()
                data["backward_min"] = round(s.backward_s / 60, 2)
                data["total_min"] = round(s.total_s / 60, 2)
                writer.writerow({key: data[key] for key in CSV_FIELDS})
    except OSError as exc:
        raise VoicecoachError(f"cannot write {path} ({exc.strerror or exc})",
                              write_fix(exc)) from None


def check_destination(path: Path, flag: str, data_dir: Path | None = None) -> None:
    """One clear error before anything is printed when ``path`` cannot be written: its folder
    missing or not writable, a folder of that name in the way, or one of the data folder's own
    files (the history itself, its journal, the session lock, an enrollment): writing a CSV or
    a PNG over the history would lose every session."""
    folder = path.parent  # Path("x.csv").parent is Path(".")
    name = "sessions.csv" if flag == "--export" else "progress.png"  # for the examples
    if data_dir is not None and _owned(path, data_dir):
        raise VoicecoachError(f"{flag} {path}: that is voicecoach's own data ({data_dir}); "
                              "writing there would destroy it",
                              f"give another file name, e.g. {flag} {name}")
    if path.is_dir():
        raise VoicecoachError(f"{flag} {path}: that is a folder, not a file",
                              f"give a file name, e.g. {flag} {path / name}")
    if folder.exists() and not folder.is_dir():
        raise VoicecoachError(f"{flag} {path}: {folder} is a file, not a folder",
                              f"give a path in a folder, e.g. {flag} {name}")
    if not folder.is_dir():
        raise VoicecoachError(f"{flag} {path}: the folder {folder} does not exist",
                              "create it first, or give a path in an existing folder")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise VoicecoachError(f"{flag} {path}: not writable",
                              "give a path in a folder you can write to")


def _owned(path: Path, data_dir: Path) -> bool:
    """Whether ``path`` is (or is a link to) a file voicecoach keeps in ``data_dir``."""
    try:
        target, home = path.resolve(), data_dir.resolve()
    except (OSError, RuntimeError):
        return False
    if target.parent == home and (target.name.startswith(DB_NAME)
                                  or target.name == SESSION_LOCK):
        return True
    return home / "enrollment" in target.parents


def run(args: argparse.Namespace) -> int:
    weeks = parse_weeks(args.weeks)
    # Same data folder as run/demo: --data-dir, else the config file, else VOICECOACH_HOME
    # or the per-user folder.
    data_dir = settings_from_args(args).data_dir
    for flag, dest in (("--export", args.export), ("--plot", args.plot)):
        if dest is not None:
            check_destination(dest, flag, data_dir)
    path, sessions = load_sessions(data_dir, weeks)
    for line in waiting_lines(path):
        print(printable(line), file=sys.stderr)
    totals = weekly_totals(sessions)
    if args.json:
        print(json.dumps({"database": str(path), "weeks_shown": weeks,
                          "sessions": [s.to_dict() for s in sessions], "weekly": totals},
                         indent=2))
    elif sessions:
        print(format_table(sessions, totals))
    else:
        span = f" in the last {weeks} weeks" if weeks else ""
        print(f"No sessions recorded{span} (history: {path}).")
    if args.export:
        export_csv(sessions, args.export)
        print(f"wrote {len(sessions)} sessions to {args.export}", file=sys.stderr)
    if args.plot:
        from voicecoach.history.plot import plot_sessions

        drawn = plot_sessions(sessions, args.plot)
        left_out = (f"; {drawn.note()} (`voicecoach history` lists them in order)"
                    if drawn.left_out else "")
        print(f"plotted {len(drawn.dated)} sessions to {args.plot}{left_out}", file=sys.stderr)
    return 0
