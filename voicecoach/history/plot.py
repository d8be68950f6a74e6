"""Draws backward minutes and speed per session over time (needs the optional ``plot`` extra)."""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from voicecoach.errors import VoicecoachError, write_fix
from voicecoach.history.rows import FAULT_OUTCOME, SessionSummary

_LOGGER = logging.getLogger(__name__)

#: The install command, as the README gives it (a test keeps them the same).
PLOT_INSTALL = "bash .ci/setup plot"
PLOT_HINT = (f"install the plot extra: {PLOT_INSTALL} (in the checkout), or "
             "pip install 'voicecoach[plot]' where voicecoach was installed from a wheel")
OUTCOME_COLOURS = {"finished": "tab:green", "stopped": "tab:orange",
                   "interrupted": "tab:grey", "running": "tab:blue", FAULT_OUTCOME: "tab:purple"}


@dataclass(frozen=True)
class PlotSeries:
    """What the plot draws against the date: the sessions whose date is known, in recorded
    order (which is date order for them), and how many of unknown date were left out."""

    dated: list[SessionSummary]
    left_out: int

    def note(self) -> str:
        """Why some sessions are not in the figure, in a few words ('' when none is left out)."""
        if not self.left_out:
            return ""
        many = "session" if self.left_out == 1 else "sessions"
        return (f"{self.left_out} {many} of unknown date left out: the clock was wrong when "
                "they were recorded")


def plot_series(sessions: Sequence[SessionSummary]) -> PlotSeries:
    """The sessions to place on the date axis. One whose date is unknown (voicecoach.history.
    dating: a clock never set, or one that contradicts the recorded order) is left out rather
    than drawn at its wrong date (1970 or years ahead squeezes every real session into one
    sliver and tells a false story of progress) or at a date guessed from its neighbours;
    `history` lists it in its place."""
    dated = [s for s in sessions if s.date_known]
    return PlotSeries(dated, len(sessions) - len(dated))


def plot_sessions(sessions: Sequence[SessionSummary], path: Path) -> PlotSeries:
    """Write a PNG: backward minutes (bars, coloured by outcome, pain marked) and the speed
    range per session (line and band), against the date, for the sessions whose date is known;
    the title says how many of unknown date were left out. Returns what was drawn."""
    try:
        from matplotlib.dates import DateFormatter
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
    except ImportError:
        raise VoicecoachError("--plot needs matplotlib, which is not installed",
                              PLOT_HINT) from None
    if not sessions:
        raise VoicecoachError("there are no sessions to plot",
                              "record a session first, or widen --weeks")
    series = plot_series(sessions)
    if not series.dated:
        raise VoicecoachError(
            "no session to plot has a known date (the clock was wrong when they were "
            "recorded), so none can be placed on the plot's date axis",
            "`voicecoach history` lists them in the order they were recorded; once the clock "
            "is set (NTP), new sessions are dated")
    sessions = series.dated
    # Figure (not pyplot): no GUI backend, no global state; savefig uses the Agg canvas.
    fig = Figure(figsize=(9, 5.5), layout="constrained")
    ax_min, ax_speed = fig.subplots(2, 1, sharex=True)
    when = [s.started_at for s in sessions]
    minutes = [s.backward_s / 60 for s in sessions]
    ax_min.bar(when, minutes, width=0.6, color=[OUTCOME_COLOURS.get(s.outcome, "tab:blue")
                                                for s in sessions])
    planned = [s for s in sessions if s.planned_backward_s]
    if planned:
        ax_min.plot([s.started_at for s in planned],
                    [(s.planned_backward_s or 0) / 60 for s in planned],
                    "k_", markersize=14, label="planned")
    pain = [s for s in sessions if s.pain_reports]
    if pain:
        ax_min.plot([s.started_at for s in pain], [s.backward_s / 60 for s in pain], "rv",
                    label="knee pain reported")
    ax_min.set_ylabel("minutes backward")
    ax_min.set_title("Backward walking per session"
                     + (f"\n{series.note()}" if series.left_out else ""))
    timed = [s for s in sessions if s.max_speed_mph is not None]
    if timed:
        dates = [s.started_at for s in timed]
        highs = [s.max_speed_mph or 0.0 for s in timed]
        ax_speed.vlines(dates, [s.min_speed_mph or 0.0 for s in timed], highs,
                        linewidth=8, alpha=0.35, label="speed range")
        ax_speed.plot(dates, [s.backward_speed_mph or s.max_speed_mph or 0.0 for s in timed],
                      "o-", label="mean speed")
    ax_speed.set_ylabel("speed (mph)")
    ax_speed.set_ylim(bottom=0)
    ax_speed.xaxis.set_major_formatter(DateFormatter("%d %b"))
    outcomes = [Patch(color=OUTCOME_COLOURS.get(status, "tab:blue"), label=status)
                for status in sorted({s.outcome for s in sessions})]
    for ax, extra in ((ax_min, outcomes), (ax_speed, [])):
        ax.grid(True, alpha=0.3)
        handles = ax.get_legend_handles_labels()[0] + extra
        if handles:
            ax.legend(handles=handles, loc="upper left", fontsize="small")
    kind = path.suffix[1:].lower() or "png"
    if kind not in fig.canvas.get_supported_filetypes():
        raise VoicecoachError(f"--plot {path}: matplotlib cannot write .{kind} files",
                              f"give a .png file name, e.g. --plot {path.with_suffix('.png')}")
    # drawn in memory first: a full disk is told at the write (matplotlib's own file
    # writing let a failed close pass), and no half-drawn image is left behind a failure
    image = io.BytesIO()
    fig.savefig(image, dpi=100, format=kind)
    try:
        path.write_bytes(image.getvalue())
    except OSError as exc:
        raise VoicecoachError(f"cannot write the plot {path} ({exc.strerror or exc})",
                              write_fix(exc)) from None
    _LOGGER.info("history: plotted %d sessions to %s", len(sessions), path)
    return series
