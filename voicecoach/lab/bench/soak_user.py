"""The soak's person in the room (starts sessions, answers the coach, says "stop" now and then,
chats), the speaker that forgets what it played long ago, and the scorer of false commands."""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from typing import Any

from voicecoach.audio.chunk import SAMPLE_RATE
from voicecoach.audio.samples import to_float
from voicecoach.audio.wav import read_wav_16k
from voicecoach.lab.room import FIXTURES, ClosedLoopSource, EchoWavSpeaker, UserClip, load_clip

_LOGGER = logging.getLogger(__name__)

#: What the user says to start a session: the first try, then each retry (a person not heard
#: says it in other words). All three are the grammar's own phrases for "start".
START_PHRASES = ("start", "begin", "start workout")
#: Clips and rendered speech older than this (audio seconds) are dropped by the harness, so
#: what grows, if anything, is the device loop's own memory.
KEEP_S = 60.0


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
