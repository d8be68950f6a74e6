"""The workout log (SQLite) and the progression planned from it."""

from __future__ import annotations

from voicecoach.history.db import DB_NAME, HistoryDB
from voicecoach.history.progression import plan_next_session
from voicecoach.history.recorder import SessionRecorder
from voicecoach.history.rows import SessionSummary

__all__ = ["DB_NAME", "HistoryDB", "SessionRecorder", "SessionSummary", "plan_next_session"]
