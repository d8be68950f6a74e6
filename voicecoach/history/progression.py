"""Plans the next session from history (COACHING.md: one thing at a time, hold or step back
when it went badly), with the spoken reasons in ``Plan.notes`` (in the coach's language, from
grammars/phrases/<language>.json)."""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from voicecoach.history import dating
from voicecoach.history.db import HistoryDB
from voicecoach.history.rows import SessionSummary
from voicecoach.phrases import Phrases, load_phrases
from voicecoach.settings import MPH_PER_KMH, CoachSettings
from voicecoach.workout.plan import PROGRAMME, Plan, build_week_plan

_LOGGER = logging.getLogger(__name__)

#: Sessions that count as the user's own training (demo and replayed audio do not).
PROGRESSION_SOURCES = ("run", "serve")
MAX_MINUTES = 15.0           # backward minutes per session at most (COACHING.md: 10 to 15)
MINUTE_STEP = 1.0            # duration grows by a minute at a time
EARLY_STOP = 0.8             # stopped with less than this share of the planned time: early
BREAK_STEP_BACK_DAYS = 7     # more days than this since the last session: back one week
BREAK_RESTART_DAYS = 21      # more than this: start again at week 1
IGNORE_BELOW_S = 30.0        # sessions with less backward walking (and no pain) do not count
DAY_S = 24 * 3600.0          # a day of the boot clock, for counting days off
#: With no date to go by but the boot clock, this long after the start of the day's first
#: session (boot_day_began) is a new day for the ladder (rule_same_day). Not 24 h: the boot
#: clock cannot see midnight, and COACHING.md plans up to daily sessions, whose start drifts
#: from day to day (7:30, then 7:00 is 23.5 h); at 24 h such a walk would be held, every
#: other day for a walker who starts a little earlier each day. Two walks in one waking day
#: (about 17 h) are less than 20 h apart, so a second walk the same day still repeats the
#: dose, and two steps up are at least 20 h apart (by the calendar they may be minutes
#: apart: 23:59, then 00:01).
NEW_DAY_S = 20 * 3600.0
LAST_WEEK = max(PROGRAMME)


@dataclass(frozen=True)
class Dose:
    """What a session asks for: programme week, backward minutes, start speed, incline."""

    week: int
    minutes: float
    speed_mph: float
    incline_pct: float


@dataclass(frozen=True)
class Context:
    """What the rules look at: recent sessions (the last recorded first) and the settings."""

    recent: Sequence[SessionSummary]
    today: dt.date
    settings: CoachSettings
    max_minutes: float
    #: The coach's words: the notes are said in its language.
    words: Phrases
    #: This boot's id and the seconds since it (dating.boot_now; ("", 0.0): unknown).
    boot: tuple[str, float] = ("", 0.0)

    @property
    def last(self) -> SessionSummary:
        return self.recent[0]

    @property
    def calendar_gap_days(self) -> int | None:
        """Calendar days since the last session; None when the wall clock cannot tell: the
        last session's date is unknown, or today is before it (the clock is behind now)."""
        if not self.last.date_known:
            return None
        gap = (self.today - self.last.started_at.date()).days
        return gap if gap >= 0 else None

    @property
    def boot_gap_days(self) -> int | None:
        """Days since the last session by the boot clock, when it began in this boot: 0 less
        than NEW_DAY_S after its day began (boot_day_began), then whole days of 24 h since
        the last session (at least 1); else None."""
        elapsed = dating.elapsed_in_this_boot(self.last, self.boot)
        day_began = boot_day_began(self.recent, self.boot)
        if elapsed is None or day_began is None:
            return None
        if self.boot[1] - day_began < NEW_DAY_S:
            return 0
        return max(1, int(elapsed // DAY_S))

    @property
    def gap_days(self) -> int | None:
        """Days since the last session: by the calendar, or by the boot clock when the date
        cannot tell; None when neither can (a date unknown across a reboot)."""
        gap = self.calendar_gap_days
        return gap if gap is not None else self.boot_gap_days


def boot_day_began(recent: Sequence[SessionSummary], boot: tuple[str, float]) -> float | None:
    """The seconds since boot at which the last session's day began by the boot clock, as a
    calendar has days: this boot's first session begins one, and so does each session at
    least NEW_DAY_S after the one that began the day before it. Measured from the last
    session alone, a walk each morning and evening would never step up (each morning is
    12 h after an evening). None when the last session did not begin in this boot."""
    this_boot: list[float] = []  # seconds since boot at each start, the last session first
    for session in recent:
        if dating.elapsed_in_this_boot(session, boot) is None or session.boot_s is None:
            break
        this_boot.append(session.boot_s)
    if not this_boot:
        return None
    began = this_boot[-1]
    for start in reversed(this_boot[:-1]):
        if start - began >= NEW_DAY_S:
            began = start
    return began


def week_entry(week: int) -> Dose:
    """The programme's own session for ``week`` (its minutes, lowest speed and incline)."""
    minutes, lo, _hi, inc_lo, _inc_hi = PROGRAMME[week]
    return Dose(week, minutes, lo, inc_lo)


def walked_mph(session: SessionSummary) -> float | None:
    """The belt speed actually walked backward, as the treadmill measured it (None: no
    treadmill), rounded down to 0.1 mph."""
    if session.belt_speed_mph is None:
        return None
    return math.floor(session.belt_speed_mph * 10 + 1e-6) / 10


def dose_of(session: SessionSummary) -> Dose:
    """The dose a past session planned; its speed is what was walked when the treadmill
    measured less (progression goes on from the walked speed, never from above the plan)."""
    assert session.week is not None and session.planned_backward_s is not None
    speed = session.speed_mph or PROGRAMME[1][1]
    walked = walked_mph(session)
    if walked is not None and walked < speed - 0.05:
        speed = max(walked, PROGRAMME[1][1])
    return Dose(min(max(session.week, 1), LAST_WEEK), session.planned_backward_s / 60.0,
                speed, session.incline_pct or 0.0)


def step_up(d: Dose, s: CoachSettings, max_minutes: float = MAX_MINUTES) -> tuple[Dose, str]:
    """One step up the ladder: minutes to the week's target, then speed, then incline, then
    the next week. Returns the new dose and what changed ('' when at the very top)."""
    minutes, _lo, hi, _inc_lo, inc_hi = PROGRAMME[d.week]
    target = min(minutes, max_minutes)
    top = min(hi, s.top_speed_mph)
    if d.minutes < target:
        return replace(d, minutes=min(d.minutes + MINUTE_STEP, target)), "minutes"
    if d.speed_mph < top - 1e-6:
        return replace(d, speed_mph=round(min(d.speed_mph + s.speed_step_mph, top), 1)), "speed"
    if d.incline_pct < min(inc_hi, s.max_incline_pct):
        return replace(d, incline_pct=min(d.incline_pct + s.incline_step_pct, inc_hi)), "incline"
    if d.week < LAST_WEEK:
        nxt = week_entry(d.week + 1)
        lifted = Dose(nxt.week, d.minutes, round(min(max(d.speed_mph, nxt.speed_mph),
                                                     s.top_speed_mph), 1),
                      max(d.incline_pct, nxt.incline_pct))
        return step_up(lifted, s, max_minutes)
    if d.speed_mph < s.top_speed_mph - 1e-6:  # programme done: speed on to the top speed
        return replace(d, speed_mph=round(min(d.speed_mph + s.speed_step_mph,
                                              s.top_speed_mph), 1)), "speed"
    return d, ""


def ease_off(d: Dose, s: CoachSettings) -> Dose:
    """One step down, undoing the ladder in reverse: incline, then speed, then minutes."""
    if d.incline_pct > 0:
        return replace(d, incline_pct=max(d.incline_pct - s.incline_step_pct, 0.0))
    if d.speed_mph > PROGRAMME[1][1] + 1e-6:
        return replace(d, speed_mph=round(max(d.speed_mph - s.speed_step_mph,
                                              PROGRAMME[1][1]), 1))
    return replace(d, minutes=max(d.minutes - MINUTE_STEP, PROGRAMME[1][0]))


# ---------------------------------------------------------------- spoken text
def speed_text(mph: float, s: CoachSettings, w: Phrases) -> str:
    if s.units == "kmh":
        return w.PLAN_SPEED_KMH.format(number=f"{mph / MPH_PER_KMH:.1f}")
    return w.PLAN_SPEED_MPH.format(number=f"{mph:.1f}")


def minutes_text(minutes: float, w: Phrases) -> str:
    if minutes < 0.75:
        return w.PLAN_UNDER_A_MINUTE
    n = int(minutes + 0.5)
    return w.PLAN_ONE_MINUTE if n == 1 else w.PLAN_MINUTES.format(n=n)


def today_text(d: Dose, s: CoachSettings, w: Phrases) -> str:
    incline = w.PLAN_TODAY_INCLINE.format(pct=f"{d.incline_pct:g}") if d.incline_pct else ""
    return w.PLAN_TODAY.format(minutes=minutes_text(d.minutes, w),
                               speed=speed_text(d.speed_mph, s, w), incline=incline)


def did_text(last: SessionSummary, s: CoachSettings, w: Phrases) -> str:
    # The speed actually held (time-weighted), rounded down: "at 0.5" when it wandered to 0.56;
    # the belt's own measurement when a treadmill was connected.
    walked = walked_mph(last)
    speed = walked if walked is not None else \
        math.floor((last.backward_speed_mph or last.speed_mph or 0.0) * 10 + 1e-6) / 10
    return w.PLAN_DID.format(minutes=minutes_text(last.backward_s / 60, w),
                             speed=speed_text(speed, s, w))


def _early(session: SessionSummary) -> bool:
    """Whether the user ended the session early: not when the program was cut off (rule_cut_off)
    or a fault inside voicecoach ended it (SessionSummary.ended_on_fault)."""
    planned = session.planned_backward_s or 0.0
    return (session.status != "interrupted" and not session.ended_on_fault
            and session.backward_s < EARLY_STOP * planned)


def _hard(session: SessionSummary, w: Phrases) -> str:
    """Why a session went badly ('' if it did not): pain or an early stop."""
    if session.pain_reports:
        return w.PLAN_PAIN
    if _early(session):
        planned = minutes_text((session.planned_backward_s or 0) / 60, w)
        if session.backward_s < 45:
            return w.PLAN_ENDED_IN_FIRST_MINUTE.format(planned=planned)
        return w.PLAN_ENDED_AFTER.format(n=int(session.backward_s / 60 + 0.5), planned=planned)
    return ""


# ---------------------------------------------------------------- the rules, in order
Decision = tuple[Dose, list[str]]


def rule_first(c: Context) -> Decision | None:
    """No history: week 1 of the programme."""
    if c.recent:
        return None
    d = week_entry(1)
    return d, [c.words.PLAN_FIRST, today_text(d, c.settings, c.words)]


def rule_long_break(c: Context) -> Decision | None:
    """Over 21 days off: week 1 again; over 7: the previous week's session (never more).
    Days off measured by the boot clock (a date unknown, the device on since) are a real
    break too. (With no date nor boot clock to count the days, rule_same_day keeps the dose.)"""
    gap, last = c.gap_days, dose_of(c.last)
    if gap is None:
        return None
    if gap > BREAK_RESTART_DAYS:
        d = week_entry(1)
        return d, [c.words.PLAN_RESTART.format(days=gap), today_text(d, c.settings, c.words)]
    if gap > BREAK_STEP_BACK_DAYS:
        back = week_entry(max(last.week - 1, 1))
        d = Dose(back.week, min(back.minutes, last.minutes), min(back.speed_mph, last.speed_mph),
                 min(back.incline_pct, last.incline_pct))
        return d, [c.words.PLAN_STEP_BACK.format(days=gap),
                   today_text(d, c.settings, c.words)]
    return None


def rule_went_badly(c: Context) -> Decision | None:
    """Pain or an early stop: hold the dose; twice in a row: ease off one step."""
    why = _hard(c.last, c.words)
    if not why:
        return None
    last = dose_of(c.last)
    if len(c.recent) > 1 and _hard(c.recent[1], c.words):
        d = ease_off(last, c.settings)
        return d, [c.words.PLAN_HARD_TWICE.format(why=why), today_text(d, c.settings, c.words)]
    return last, [c.words.PLAN_HARD_ONCE.format(why=why), today_text(last, c.settings, c.words)]


def rule_cut_off(c: Context) -> Decision | None:
    """The program died or was killed well before the end: repeat the session."""
    last = c.last
    if last.status != "interrupted" or last.backward_s >= EARLY_STOP * (
            last.planned_backward_s or 0.0):
        return None
    d = dose_of(last)
    when = (c.words.PLAN_CUT_IN_FIRST_MINUTE if last.backward_s < 45
            else c.words.PLAN_CUT_AFTER.format(minutes=minutes_text(last.backward_s / 60, c.words)))
    return d, [c.words.PLAN_CUT_OFF.format(when=when), today_text(d, c.settings, c.words)]


def rule_same_day(c: Context) -> Decision | None:
    """A session already walked today that went well: the same dose again. The ladder steps
    up at most once a day (COACHING.md: three or four sessions a week, up to daily; short
    and easy beats long), so a second session on one day never speeds the programme up.
    With no date to go by, the boot clock decides when the last session began in this boot
    (less than NEW_DAY_S since: the same day, said without naming a day); when nothing can
    tell whether a day has passed (voicecoach.history.dating), the dose is kept too, and the
    note says why."""
    gap = c.gap_days
    if gap is not None and gap != 0:
        return None
    d = dose_of(c.last)
    if gap is None:
        why = c.words.PLAN_DATE_UNKNOWN
    else:
        why = c.words.PLAN_SAME_DAY if c.calendar_gap_days == 0 else c.words.PLAN_WITHIN_A_DAY
    return d, [why, today_text(d, c.settings, c.words)]


def rule_progress(c: Context) -> Decision:
    """It went well: one step up the ladder, saying what changed."""
    last = dose_of(c.last)
    d, changed = step_up(last, c.settings, c.max_minutes)
    w = c.words
    did = did_text(c.last, c.settings, w)
    if changed == "minutes":
        notes = [w.PLAN_MORE_MINUTES.format(did=did, n=int(d.minutes + 0.5))]
    elif changed == "speed":
        notes = [w.PLAN_MORE_SPEED.format(did=did, speed=speed_text(d.speed_mph, c.settings, w))]
    elif changed == "incline":
        notes = [w.PLAN_MORE_INCLINE.format(did=did, pct=f"{d.incline_pct:g}")]
    else:
        notes = [w.PLAN_AT_TOP.format(did=did)]
    if changed and d.week > last.week:
        notes.append(w.PLAN_NEW_WEEK.format(week=d.week))
    top = c.settings.top_speed_mph
    capped = top < PROGRAMME[d.week][2] and last.speed_mph >= top - 1e-6
    if changed and changed != "speed" and capped:
        notes.append(w.PLAN_TOP_SPEED.format(speed=speed_text(top, c.settings, w)))
    return d, notes


#: The rules in order, first match wins; when none matches, rule_progress. Each returns the
#: dose and the sentences that explain it.
RULES: tuple[Callable[[Context], Decision | None], ...] = (
    rule_first, rule_long_break, rule_went_badly, rule_cut_off, rule_same_day,
)


def _counts(session: SessionSummary) -> bool:
    """Whether a session is training to plan from. Never by its date: one dated after
    "today" was walked before a boot whose clock is not set yet (voicecoach.history.dating).
    A session a fault inside voicecoach ended (SessionSummary.ended_on_fault) before its
    cool-down tells nothing of the dose the user can take, neither walked nor given up: the
    next one is planned as if it had not happened, unless it holds a pain report, which is
    about the user and counts (safety first; as a session that went badly, never as an early
    stop: _early). One it ended in the cool-down (SessionSummary.fault_in_cooldown) had every
    backward block walked: it counts as the dose done."""
    return (session.week is not None and session.planned_backward_s is not None
            and session.status != "running"
            and (session.backward_s >= IGNORE_BELOW_S or session.pain_reports > 0)
            and (not session.ended_on_fault or session.fault_in_cooldown
                 or session.pain_reports > 0))


def _fault_note(sessions: Sequence[SessionSummary], recent: Sequence[SessionSummary],
                w: Phrases) -> str:
    """What the notes say first when the last session that ended was ended by a fault inside
    voicecoach, so that the user is not left to think they ended it, nor that the dose
    ignores the walk: PLAN_FAULT when it does not count (no pain in it, or no cool-down
    reached), PLAN_FAULT_COOLDOWN when it counts as walked; '' otherwise (a fault before the
    cool-down in a session that counts for its pain: the pain's note says why)."""
    ended = [s for s in sessions if s.status != "running"]
    if not ended or not ended[-1].ended_on_fault:
        return ""
    if ended[-1] not in recent:
        return w.PLAN_FAULT
    return w.PLAN_FAULT_COOLDOWN if ended[-1].fault_in_cooldown else ""


def plan_for(d: Dose, s: CoachSettings, notes: Sequence[str]) -> Plan:
    """Build the session for a dose, never above the top speed or the incline limit."""
    _minutes, lo, hi, inc_lo, inc_hi = PROGRAMME[d.week]
    speed = min(d.speed_mph, s.top_speed_mph)
    incline = min(d.incline_pct, s.max_incline_pct)
    plan = build_week_plan(d.week, d.minutes, min(lo, speed), max(hi, speed),
                           min(inc_lo, incline), min(max(inc_hi, incline), s.max_incline_pct),
                           s, tuple(notes))
    phases = tuple(replace(p, speed_mph=speed, incline_pct=incline) if p.kind == "backward"
                   else p for p in plan.phases)
    return replace(plan, phases=phases)


def plan_next_session(db_or_sessions: HistoryDB | Iterable[SessionSummary],
                      settings: CoachSettings, today: dt.date, *,
                      sources: Sequence[str] = PROGRESSION_SOURCES,
                      max_minutes: float = MAX_MINUTES, language: str = "en",
                      boot: tuple[str, float] | None = None) -> Plan:
    """The next session from history; ``Plan.notes`` are the sentences that explain it, in
    ``language`` (the coach's). Sessions count in the order they were recorded; ``today``
    is the wall clock's date, which may be wrong (voicecoach.history.dating); ``boot`` is
    this boot's id and the seconds since it (None: read now, dating.boot_now)."""
    if isinstance(db_or_sessions, HistoryDB):
        sessions = db_or_sessions.sessions(sources=sources)
    else:  # every session's date is checked against the others, whatever its source
        sessions = [x for x in dating.in_recorded_order(db_or_sessions) if x.source in sources]
    recent = [x for x in reversed(sessions) if _counts(x)]
    context = Context(recent, today, settings, max_minutes, load_phrases(language),
                      dating.boot_now() if boot is None else boot)
    for rule in RULES:
        decision = rule(context)
        if decision is not None:
            break
    else:
        decision = rule_progress(context)
    dose, notes = decision
    fault = _fault_note(sessions, recent, context.words)
    if fault:
        # said first; "your first session" would contradict PLAN_FAULT when the session
        # left out was the only one
        notes = [fault, *(note for note in notes if note != context.words.PLAN_FIRST)]
    _LOGGER.info("progression: %d past sessions -> %s", len(recent), dose)
    return plan_for(dose, settings, notes)
