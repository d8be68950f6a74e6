"""Soak benchmark: hours of replayed audio through the real device loop; memory, CPU, sessions.

``python -m voicecoach.lab.bench.soak --hours 2`` runs the device loop (voicecoach.device.loop) with the
default engine (``make_recogniser``, engine "auto"), the real coach, state machine and SQLite
history, on a simulated room (voicecoach.lab.room) in audio time: treadmill noise all along,
chatter and coach-like sentences with no command in them every so often, and a session every
``--session-every`` minutes: the user says "start", answers the briefing, turns and
check-ins, and every third session says "stop" part-way instead of finishing. The coach's own
voice (espeak-ng, each text rendered once) goes back into the microphone.

It prints what a device left on all day needs: RSS after the first ten minutes of audio and at
the end (growth, and its slope per hour), CPU seconds per audio second (the whole process:
recogniser, echo canceller, coach, history and the simulated room), sessions started and
ended, and false commands (acted on with no user utterance of that command just before).
Not a test: it prints one summary; ``--json`` prints it as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from voicecoach.lab.bench.soak_user import Scorer, SoakSpeaker, SoakUser, Truth
from voicecoach.lab.cached import CachedRenderer
from voicecoach.lab.room import ClosedLoopSource
from voicecoach.settings import Settings
from voicecoach.workout.plan import COOLDOWN, WARMUP, Phase, Plan

_LOGGER = logging.getLogger(__name__)

#: A compact session: 1 minute warm-up, 2 minutes backward, 1 minute cool-down.
SOAK_PLAN = Plan("soak", (
    replace(WARMUP, duration_s=60.0),
    Phase("backward", 120.0, 0.6, 0.5, 0.8, 0.0, 1.0, "technique"),
    replace(COOLDOWN, duration_s=60.0),
))
#: The noise under everything: treadmill noise 10 dB under the fixtures' speech (-20 dBFS).
NOISE_RMS = 10 ** (-30 / 20)


def rss_mb() -> float:
    """This process's resident set size now (MB), from /proc (peak RSS if unavailable)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def open_fds() -> int:
    """How many file handles this process holds now (from /proc; -1 where unavailable)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


@dataclass
class SoakResult:
    """The figures one soak run produced."""

    audio_s: float
    cpu_s: float
    wall_s: float
    engine: str
    rss_mb: list[tuple[float, float]]
    fds: list[tuple[float, int]]
    sessions_started: int
    sessions_ended: int
    outcomes: dict[str, int]
    starts_said: int
    commands_heard: int
    false_commands: list[dict[str, Any]]
    history_rows: int

    def summary(self) -> dict[str, Any]:
        after = [mb for t, mb in self.rss_mb if t >= 600.0] or [self.rss_mb[-1][1]]
        late = [(t, mb) for t, mb in self.rss_mb if t >= 600.0]
        fds_after = [n for t, n in self.fds if t >= 600.0] or [self.fds[-1][1]]
        slope = 0.0
        if len(late) >= 3:
            ts = np.array([t for t, _ in late]) / 3600.0
            slope = float(np.polyfit(ts, np.array([mb for _, mb in late]), 1)[0])
        return {
            "audio_h": round(self.audio_s / 3600, 3),
            "engine": self.engine,
            "rss_mb_at_10min": round(after[0], 1),
            "rss_mb_end": round(self.rss_mb[-1][1], 1),
            "rss_mb_max_after_10min": round(max(after), 1),
            "rss_growth_mb_after_10min": round(self.rss_mb[-1][1] - after[0], 1),
            "rss_slope_mb_per_h_after_10min": round(slope, 2),
            "open_fds_at_10min": fds_after[0],
            "open_fds_end": self.fds[-1][1],
            "open_fds_max_after_10min": max(fds_after),
            "cpu_s_per_audio_s": round(self.cpu_s / self.audio_s, 4) if self.audio_s else None,
            "sessions_started": self.sessions_started,
            "sessions_ended": self.sessions_ended,
            "outcomes": self.outcomes,
            "starts_said": self.starts_said,
            "commands_heard": self.commands_heard,
            "false_commands": len(self.false_commands),
            "false_by_command": _count(e["command"] for e in self.false_commands),
            "false_during": _count(e["during"] or "other" for e in self.false_commands),
            "history_sessions": self.history_rows,
            "false_detail": self.false_commands[:20],
        }


def _count(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return dict(sorted(out.items()))


def soak(hours: float, *, session_every_min: float = 20.0, engine: str = "auto",
         data_dir: Path | None = None, sample_every_s: float = 60.0, seed: int = 7,
         progress: Callable[[str], None] | None = None,
         log: Path | None = None) -> SoakResult:
    """Run ``hours`` of audio through the device loop; see the module docstring. ``log``, when
    given, gets one JSON line per sample (audio time, RSS, open handles, CPU so far, sessions),
    so a run stopped early still says how far it got and what it measured."""
    from contextlib import contextmanager

    from voicecoach.device.loop import AudioClock, DeviceLoop
    from voicecoach.events import CommandHeard, Event, StateChanged
    from voicecoach.grammar import load_grammar
    from voicecoach.history.db import HistoryDB
    from voicecoach.history.recorder import SessionRecorder
    from voicecoach.listening.engines import make_recogniser
    from voicecoach.speaking.render import EspeakNgRenderer

    folder = Path(data_dir or tempfile.mkdtemp(prefix="voicecoach-soak-"))
    settings = Settings(data_dir=folder)
    settings = replace(settings, speech=replace(settings.speech, engine=engine))
    grammar = load_grammar(settings.speech.language)
    chosen: list[str] = []
    recogniser = make_recogniser(settings.speech, grammar, announce=chosen.append)
    renderer = CachedRenderer(EspeakNgRenderer(settings.speech.voice, settings.speech.rate))
    clock = AudioClock(live=False)
    speaker = SoakSpeaker(renderer, settings.speech.volume, settings.speech.rate, clock=clock)
    total_s = hours * 3600.0
    source = ClosedLoopSource(speaker, total_s, noise_rms=NOISE_RMS, seed=seed)
    said: list[Truth] = []
    scorer = Scorer(said)
    started = [0]

    def listen(event: Event) -> None:
        if isinstance(event, CommandHeard) and event.source == "voice":
            scorer.add(event, speaker.is_speaking())
        if isinstance(event, StateChanged) and event.dest == "briefing":
            started[0] += 1

    @contextmanager
    def open_session(plan: Any) -> Any:
        with HistoryDB.open(settings.data_dir) as db, \
                SessionRecorder.open(db, plan, "serve") as recorder:
            yield plan, recorder

    sources = iter([source])
    loop = DeviceLoop(settings, grammar, recogniser, speaker, lambda: next(sources, None),
                      open_session, plan=SOAK_PLAN, listeners=[listen], clock=clock)
    user = SoakUser(loop, speaker, source, session_every_min * 60.0, seed, said)
    samples: list[tuple[float, float]] = [(0.0, rss_mb())]
    fds: list[tuple[float, int]] = [(0.0, open_fds())]
    next_sample = [sample_every_s]
    log_file = open(log, "a", encoding="utf-8") if log else None  # noqa: SIM115
    cpu_start = time.process_time()

    def react(t: float) -> None:
        user(t)
        if t >= next_sample[0]:
            next_sample[0] += sample_every_s
            samples.append((t, rss_mb()))
            fds.append((t, open_fds()))
            if log_file:
                log_file.write(json.dumps({
                    "audio_s": round(t, 1), "rss_mb": round(samples[-1][1], 2), "fds": fds[-1][1],
                    "cpu_s": round(time.process_time() - cpu_start, 2), "sessions": started[0],
                    "ended": loop.completed, "commands": scorer.total,
                    "false": len(scorer.false)}) + "\n")
                log_file.flush()
            if progress and int(t) % 600 < sample_every_s:
                progress(f"soak: {t / 60:.0f} min audio, RSS {samples[-1][1]:.1f} MB, "
                         f"{started[0]} sessions, {scorer.total} commands")

    source.react = react
    recogniser.reset()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    loop.run()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    samples.append((clock.audio_s, rss_mb()))
    fds.append((clock.audio_s, open_fds()))
    if log_file:
        log_file.close()
    speaker.close()
    scorer.score()
    with HistoryDB.open(folder) as db:
        rows = len(db.sessions())
    return SoakResult(clock.audio_s, cpu, wall, (chosen or [engine])[0], samples, fds, started[0],
                      loop.completed, _count(loop.outcomes), user.starts_said,
                      scorer.total, scorer.false, rows)


def main(argv: list[str] | None = None) -> int:
    from voicecoach.config import number_in

    parser = argparse.ArgumentParser(prog="python -m voicecoach.lab.bench.soak",
                                     description=__doc__.splitlines()[0] if __doc__ else None,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--hours", type=number_in(0.0, 48.0, above=True), default=2.0,
                        help="hours of audio to replay")
    parser.add_argument("--session-every", type=number_in(5.0, 600.0), default=20.0,
                        metavar="MIN", help="minutes between session starts")
    parser.add_argument("--engine", default="auto", help="recogniser (as --engine elsewhere)")
    parser.add_argument("--seed", type=int, default=7, help="the room's and the user's seed")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--log", type=Path, default=None,
                        help="append one JSON line per sample here (figures of a run cut short)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    result = soak(args.hours, session_every_min=args.session_every, engine=args.engine,
                  seed=args.seed, progress=lambda line: print(line, file=sys.stderr, flush=True),
                  log=args.log)
    summary = result.summary()
    summary["wall_s"] = round(result.wall_s, 1)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for key, value in summary.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
