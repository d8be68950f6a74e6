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
import random
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from voicecoach.audio.chunk import SAMPLE_RATE
from voicecoach.audio.samples import to_float
from voicecoach.audio.wav import read_wav_16k
from voicecoach.lab.room import FIXTURES, ClosedLoopSource, EchoWavSpeaker, UserClip, load_clip
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
#: What the user says to start a session: the first try, then each retry (a person not heard
#: says it in other words). All three are the grammar's own phrases for "start".
START_PHRASES = ("start", "begin", "start workout")
#: Clips and rendered speech older than this (audio seconds) are dropped by the harness, so
#: what grows, if anything, is the device loop's own memory.
KEEP_S = 60.0


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


class SoakSpeaker(EchoWavSpeaker):
    """The simulated speaker, forgetting utterances that ended over KEEP_S ago (the harness's
    memory, not the device's: the live speaker keeps nothing it has played)."""

    def forget_before(self, t: float) -> None:
        placed = self._placed
        cut = 0
        while cut < len(placed) - 2 and placed[cut].end < t:  # the last two stay: in use
            cut += 1
        if cut:
            del placed[:cut]


@dataclass
class Truth:
    """One utterance of the simulated user (audio dropped once it has been played)."""

    command: str
    start_s: float
    end_s: float


@dataclass
class SoakUser:
    """The person in the room: starts a session every ``every_s``, answers the coach, says
    "stop" part-way through every third session, and chats (no commands; the fixtures'
    chatter and coach-like sentences) now and then."""

    loop: Any
    speaker: SoakSpeaker
    source: ClosedLoopSource
    every_s: float
    seed: int = 7
    said: list[Truth] = field(default_factory=list)
    chatter: list[UserClip] = field(default_factory=list)
    next_start_s: float = 30.0
    next_chat_s: float = 10.0
    stop_at_s: float | None = None
    starts_said: int = 0
    start_again_s: float | None = None
    """A "start" not heard is said again this long after (as a person would), twice at most,
    each time in other words (START_PHRASES in turn), as a person not heard rephrases."""
    _start_tries: int = 0
    _busy_until: float = 0.0
    _answered: dict[tuple[str, float, int], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.clips: dict[tuple[str, str], UserClip] = {}
        for entry in json.loads((FIXTURES / "manifest.json").read_text()):
            if entry["file"].startswith("negatives/") and entry["kind"] in ("chatter", "coach_cue"):
                audio = to_float(read_wav_16k(FIXTURES / entry["file"]))
                self.chatter.append(UserClip(0.0, audio, "", entry.get("text", "")))

    def _clip(self, command: str, phrase: str) -> UserClip:
        key = (command, phrase)
        if key not in self.clips:
            self.clips[key] = load_clip(command, phrase)
        return self.clips[key]

    def _place(self, t: float, clip: UserClip, command: str) -> None:
        placed = UserClip(t, clip.audio, command, clip.phrase, clip.speech_start_s,
                          clip.speech_end_s)
        self.source.add(placed)
        end = placed.at_s + clip.audio.size / SAMPLE_RATE
        self.said.append(Truth(command, placed.start_s if command else t,
                               placed.end_s if command else end))
        self._busy_until = t + clip.audio.size / SAMPLE_RATE + 0.5

    def _quiet_for(self, t: float) -> float:
        if self.speaker.is_speaking():
            return 0.0
        ends = [iv.end or t for iv in self.speaker.speaking_intervals()]
        return t - max(ends, default=0.0)

    def __call__(self, t: float) -> None:
        self._tidy(t)
        if t < self._busy_until:
            return
        coach = self.loop.coach
        state = coach.state.value
        resting = state in ("idle", "finished", "stopped")
        if not resting:
            self.start_again_s = None
        if (resting and self.start_again_s is not None and t >= self.start_again_s
                and self._quiet_for(t) > 1.0):
            self._start_tries += 1
            self.start_again_s = t + 8.0 if self._start_tries < 2 else None
            self.starts_said += 1
            phrase = START_PHRASES[self._start_tries % len(START_PHRASES)]
            self._place(t, self._clip("start", phrase), "start")
            return
        if resting and t >= self.next_start_s and self._quiet_for(t) > 1.0:
            self.next_start_s = t + self.every_s
            self.start_again_s, self._start_tries = t + 8.0, 0
            self.starts_said += 1
            self.stop_at_s = t + 150.0 if self.starts_said % 3 == 0 else None
            self._place(t, self._clip("start", "start"), "start")
            return
        if not resting and self.stop_at_s is not None and t >= self.stop_at_s:
            self.stop_at_s = t + 8.0  # not heard? said again a little later
            self._place(t, self._clip("stop", "stop"), "stop")
            return
        if t >= self.next_chat_s and self._quiet_for(t) > 0.5:
            # chatter: every 20 to 60 s while the coach waits, every 1 to 3 minutes in a session
            low, high = (20.0, 60.0) if resting else (60.0, 180.0)
            self.next_chat_s = t + self.rng.uniform(low, high)
            self._place(t, self.rng.choice(self.chatter), "")
            return
        if resting or coach.question is None or self._quiet_for(t) < 1.0:
            return
        key = (str(coach.question), round(coach.question_t, 3), coach.briefing_step)
        if t - self._answered.get(key, -1e9) < 6.0:
            return
        self._answered[key] = t
        answer = {"briefing": ("yes", "yes"), "turn": ("yes", "ready"),
                  "checkin": ("good", "good")}.get(coach.question)
        if answer:
            self._place(t, self._clip(*answer), answer[0])

    def _tidy(self, t: float) -> None:
        """Drop played clips and old speech: the harness must not grow with the audio."""
        clips = self.source.clips
        if clips and clips[0].at_s + clips[0].audio.size / SAMPLE_RATE < t - KEEP_S:
            self.source.clips = [c for c in clips
                                 if c.at_s + c.audio.size / SAMPLE_RATE >= t - KEEP_S]
        self.speaker.forget_before(t - KEEP_S)


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
    renderer = _CachedRenderer(EspeakNgRenderer(settings.speech.voice, settings.speech.rate))
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


class Scorer:
    """Commands acted on that no user utterance of the same command explains (said just
    before it). Scored every so often so that only the false ones are kept over hours."""

    def __init__(self, said: list[Truth], slack_s: float = 2.5) -> None:
        self.said = said
        self.slack_s = slack_s
        self.pending: list[Any] = []
        self.false: list[dict[str, Any]] = []
        self.total = 0
        self.coach_at: dict[int, str] = {}

    def add(self, event: Any, coach_speaking: bool) -> None:
        self.pending.append(event)
        if coach_speaking:
            self.coach_at[id(event)] = "coach speaking"
        self.total += 1
        if len(self.pending) >= 200:
            self.score(keep_s=30.0)

    def score(self, keep_s: float = 0.0) -> None:
        """Score the commands heard up to ``keep_s`` before the last one (a user utterance
        that explains a command is always placed before it)."""
        if not self.pending:
            return
        upto = self.pending[-1].t - keep_s
        ready = [e for e in self.pending if e.t <= upto]
        self.pending = [e for e in self.pending if e.t > upto]
        recent = [s for s in self.said if s.end_s + self.slack_s >= ready[0].t - 1.0] if ready else []
        for e in ready:
            if not any(s.command == e.command and s.start_s - 0.3 <= e.t <= s.end_s + self.slack_s
                       for s in recent):
                chatter = any(not s.command and s.start_s <= e.t <= s.end_s + self.slack_s
                              for s in recent)
                self.false.append({"t": round(e.t, 2), "command": e.command, "phrase": e.phrase,
                                   "during": "chatter" if chatter else self.coach_at.get(id(e),
                                                                                          "")})
        for e in ready:
            self.coach_at.pop(id(e), None)
        if ready:  # truths too old to explain anything still pending are dropped
            self.said[:] = [s for s in self.said if s.end_s + self.slack_s >= upto - 60.0]


class _CachedRenderer:
    """espeak-ng renders each (text, rate) once: cues repeat, the set of texts is bounded."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.cache: dict[tuple[str, int], Any] = {}

    @property
    def rate(self) -> int:
        return int(getattr(self.inner, "rate", 160))

    @rate.setter
    def rate(self, value: int) -> None:
        self.inner.rate = value

    def render(self, text: str) -> Any:
        key = (text, self.rate)
        if key not in self.cache:
            self.cache[key] = self.inner.render(text)
        return self.cache[key]

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()


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
