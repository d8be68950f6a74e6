"""A simulated room for tests and the benchmark: the coach's voice goes back into the microphone.

``EchoWavSpeaker`` is the WavSpeaker (speech laid out in audio time) that can hand out what it
has played so far; ``ClosedLoopSource`` is an audio source that, chunk by chunk as the device
loop asks for them, mixes treadmill noise, the user's clips (placed at fixed times or by a
simulated user reacting to the coach) and the coach's speech, delayed and attenuated.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from voicecoach.audio.chunk import SAMPLE_RATE, AudioChunk
from voicecoach.audio.samples import to_float, to_int16, treadmill_noise
from voicecoach.audio.wav import read_wav_16k
from voicecoach.speaking.speaker import Speaker
from voicecoach.speaking.timeline import WavSpeaker

_LOGGER = logging.getLogger(__name__)


class EchoWavSpeaker(WavSpeaker):
    """A WavSpeaker whose played samples can be read back while the session runs."""

    def played(self, start_s: float, end_s: float) -> np.ndarray:
        """The coach's samples in [start_s, end_s) (float, -1..1), as placed and cut so far.

        Utterances due to start before ``end_s`` are placed first: the device loop only acts
        at chunk ends, so nothing said later could have changed them.
        """
        return to_float(self.played_audio(start_s, end_s))


@dataclass
class UserClip:
    """A user utterance in the stream: ``audio`` placed at ``at_s``; truth for scoring."""

    at_s: float
    audio: np.ndarray
    command: str
    phrase: str
    speech_start_s: float = 0.0  # the phrase inside the clip (seconds from its start)
    speech_end_s: float = 0.0

    @property
    def start_s(self) -> float:
        return self.at_s + self.speech_start_s

    @property
    def end_s(self) -> float:
        return self.at_s + self.speech_end_s


@dataclass
class ClosedLoopSource:
    """Noise + user clips + the coach's delayed, attenuated voice, generated as it is read.

    ``noise_rms`` is the noise level (0 for none; e.g. -30 dBFS is 10 dB under fixture speech
    at -20 dBFS). ``react`` is called before each chunk with its start time and may add clips.
    """

    speaker: EchoWavSpeaker
    total_s: float
    echo_delay_s: float = 0.03
    echo_gain_db: float = -6.0
    noise_rms: float = 0.0
    chunk_s: float = 0.1
    seed: int = 1
    react: Callable[[float], None] | None = None
    clips: list[UserClip] = field(default_factory=list)
    keep_mic: bool = False
    origin_s: float = 0.0  # audio time of the first sample (a microphone opened later)
    #: Room reverberation: RT60 in seconds (0: none) and direct-to-reverberant ratio (dB).
    rt60_s: float = 0.0
    drr_db: float = 6.0
    closed: bool = False
    mic: list[np.ndarray] = field(default_factory=list)
    _ir: np.ndarray | None = field(default=None, repr=False)

    def add(self, clip: UserClip) -> None:
        self.clips.append(clip)

    def _noise(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.noise_rms <= 0:
            return np.zeros(n, dtype=np.float32)
        return treadmill_noise(n / SAMPLE_RATE, rng) * np.float32(self.noise_rms)

    def echo(self, start_s: float, end_s: float) -> np.ndarray:
        """What the microphone picks up of the coach over [start_s, end_s): the speech
        delayed, through the room's response, attenuated."""
        if self._ir is None:
            self._ir = room_response(self.rt60_s, self.drr_db, self.seed)
        n = int(round((end_s - start_s) * SAMPLE_RATE))
        lag = (self._ir.size - 1) / SAMPLE_RATE
        played = self.speaker.played(start_s - self.echo_delay_s - lag, end_s - self.echo_delay_s)
        if self._ir.size > 1:
            played = np.convolve(played, self._ir, mode="valid")
        gain = 10.0 ** (self.echo_gain_db / 20.0)
        return (played[-n:] * gain).astype(np.float32) if n else np.zeros(0, np.float32)

    def chunks(self) -> Iterator[AudioChunk]:
        rng = np.random.default_rng(self.seed)
        step = int(round(self.chunk_s * SAMPLE_RATE))
        block = 30 * SAMPLE_RATE  # noise is made 30 s at a time
        noise = self._noise(block, rng)
        total = int(math.ceil(self.total_s * SAMPLE_RATE))
        pos = 0
        first = int(round(self.origin_s * SAMPLE_RATE))
        while pos < total and not self.closed:
            start = (first + pos) / SAMPLE_RATE
            if self.react is not None:
                self.react(start)
            end = start + step / SAMPLE_RATE
            if noise.size < step:
                noise = np.concatenate([noise, self._noise(block, rng)])
            mix = noise[:step].copy()
            noise = noise[step:]
            here = first + pos
            for clip in self.clips:
                a = int(round(clip.at_s * SAMPLE_RATE))
                lo, hi = max(a, here), min(a + clip.audio.size, here + step)
                if hi > lo:
                    mix[lo - here:hi - here] += clip.audio[lo - a:hi - a]
            mix += self.echo(start, end)[:step]
            if self.keep_mic:
                self.mic.append(mix)
            yield AudioChunk(to_int16(mix).tobytes(), pos / SAMPLE_RATE)
            pos += step

    def close(self) -> None:
        self.closed = True


def room_response(rt60_s: float, drr_db: float, seed: int = 1) -> np.ndarray:
    """An impulse response: the direct path (1.0) then an exponentially decaying noise tail
    (-60 dB at ``rt60_s``, from 2 ms on) whose energy is ``drr_db`` under the direct path's."""
    if rt60_s <= 0:
        return np.ones(1, dtype=np.float32)
    n = int(rt60_s * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = np.random.default_rng(seed).standard_normal(n) * 10.0 ** (-3.0 * t / rt60_s)
    tail[:int(0.002 * SAMPLE_RATE)] = 0.0
    tail *= math.sqrt(10.0 ** (-drr_db / 10.0) / float(np.dot(tail, tail)))
    tail[0] = 1.0
    return tail.astype(np.float32)


# ---------------------------------------------------------------------- a simulated user
FIXTURES = Path(__file__).resolve().parents[2] / "audio_fixtures"


def load_clip(command: str, phrase: str, voice: str = "joe", speed: str = "normal",
              root: Path = FIXTURES) -> UserClip:
    """A fixture clip of ``phrase`` (its times from the manifest), not yet placed."""
    rel = f"commands/{voice}/{speed}/{command}__{phrase.replace(' ', '_')}.wav"
    entry = _manifest(root).get(rel)
    if entry is None:
        raise FileNotFoundError(f"no fixture {rel} in {root}/manifest.json")
    truth = entry["expected"][0]
    audio = to_float(read_wav_16k(root / rel))
    return UserClip(0.0, audio, command, phrase, truth["start_s"], truth["end_s"])


_MANIFESTS: dict[Path, dict[str, dict[str, Any]]] = {}


def _manifest(root: Path) -> dict[str, dict[str, Any]]:
    if root not in _MANIFESTS:
        entries = json.loads((root / "manifest.json").read_text())
        _MANIFESTS[root] = {e["file"]: e for e in entries}
    return _MANIFESTS[root]


class PoliteUser:
    """Answers the coach the way a user on the belt would, once the coach has finished talking:
    "start" when idle, "yes" to each briefing check, "ready" to a turn, "good" to a check-in.

    Used as ``ClosedLoopSource.react``; ``said`` lists the placed clips (the truth).
    """

    def __init__(self, coach: Any, speaker: Speaker, source: ClosedLoopSource,
                 voices: tuple[str, ...] = ("joe",), reply_after_s: float = 1.0,
                 start_at_s: float | None = 1.0, gain: float = 1.0) -> None:
        self.coach = coach
        self.speaker = speaker
        self.source = source
        self.voices = voices
        self.reply_after_s = reply_after_s
        self.start_at_s = start_at_s
        self.gain = gain
        self.said: list[UserClip] = []
        self.repeat_after_s = 6.0
        self._answered: dict[tuple[str, float, int], float] = {}
        self._busy_until = 0.0
        self._started = False

    def _quiet_since(self, t: float) -> float | None:
        if self.speaker.is_speaking():
            return None
        intervals = self.speaker.speaking_intervals()
        return max((iv.end or t for iv in intervals), default=0.0)

    def _say(self, t: float, command: str, phrase: str) -> None:
        voice = self.voices[len(self.said) % len(self.voices)]
        clip = load_clip(command, phrase, voice)
        clip.audio = clip.audio * np.float32(self.gain)
        clip.at_s = t
        self.source.add(clip)
        self.said.append(clip)
        self._busy_until = t + clip.audio.size / SAMPLE_RATE + 0.5

    def __call__(self, t: float) -> None:
        if t < self._busy_until:
            return
        quiet = self._quiet_since(t)
        if quiet is None or t - quiet < self.reply_after_s:
            return
        coach = self.coach
        state = coach.state.value
        if state == "idle" and not self._started and self.start_at_s is not None \
                and t >= self.start_at_s:
            self._started = True
            self._say(t, "start", "start")
            return
        key = (str(coach.question), round(coach.question_t, 3), coach.briefing_step)
        if coach.question is None or t - self._answered.get(key, -1e9) < self.repeat_after_s:
            return
        self._answered[key] = t  # not heard? a user says it again a little later
        if coach.question == "briefing":
            self._say(t, "yes", "yes")
        elif coach.question == "turn":
            self._say(t, "yes", "ready")
        elif coach.question == "checkin":
            self._say(t, "good", "good")


class TypedAnswers(PoliteUser):
    """A PoliteUser whose answers reach the coach as typed commands, not as audio: the session
    moves on whatever the engine makes of the user's voice (for measuring something else)."""

    def _say(self, t: float, command: str, phrase: str) -> None:
        self._busy_until = t + 1.0
        self.coach.command(command, t, phrase=phrase, source="typed")


class StopOverSpeech:
    """Places ``clip`` in the stream once ``after_s`` has passed, over the middle of the next
    coach utterance with at least ``left_s`` still to play (``ClosedLoopSource.react``)."""

    def __init__(self, speaker: EchoWavSpeaker, source: ClosedLoopSource, clip: UserClip,
                 after_s: float, left_s: float = 1.0) -> None:
        self.speaker, self.source, self.clip = speaker, source, clip
        self.after_s, self.left_s = after_s, left_s
        self.placed = False

    def __call__(self, t: float) -> None:
        if self.placed or t < self.after_s:
            return
        for iv in self.speaker.speaking_intervals():
            if iv.start + 0.2 <= t and iv.end is not None and iv.end >= t + self.left_s:
                self.clip.at_s = t
                self.source.add(self.clip)
                self.placed = True
                return


@dataclass
class LoopRun:
    """What a closed-loop run produced: the loop, the room, the user and what was heard."""

    loop: Any
    source: ClosedLoopSource
    speaker: EchoWavSpeaker
    user: PoliteUser | None
    heard: list[Any] = field(default_factory=list)  # CommandHeard events from the voice

    def echo_commands(self, slack_s: float = 2.5) -> list[Any]:
        """False commands not made while the user was speaking: the coach's voice (or noise)."""
        said = (self.user.said if self.user else []) + list(self.source.clips)
        return [e for e in self.false_commands(slack_s)
                if not any(c.start_s - 0.3 <= e.t <= c.end_s + slack_s for c in said)]

    def false_commands(self, slack_s: float = 2.5) -> list[Any]:
        """Commands acted on that no user clip explains (same command, said just before)."""
        said = self.user.said if self.user else []
        said = said + [c for c in self.source.clips if c not in said]
        out = []
        for event in self.heard:
            if not any(c.command == event.command and c.start_s - 0.3 <= event.t <= c.end_s + slack_s
                       for c in said):
                out.append(event)
        return out


def closed_loop(recogniser: Any, settings: Any, plan: Any, total_s: float, *,
                renderer: Any, noise_rms: float = 0.0, echo_gain_db: float = -6.0,
                echo_delay_s: float = 0.03, user: bool = True, begin_at_once: bool = False,
                voices: tuple[str, ...] = ("joe",), seed: int = 1, chunk_s: float = 0.1,
                clips: tuple[UserClip, ...] = (), sessions: int | None = 1,
                tail_s: float | None = None, keep_mic: bool = False,
                echo_check: bool = True, aec: bool = True, rt60_s: float = 0.0,
                typed_answers: bool = False,
                stop_over_speech: tuple[UserClip, float] | None = None,
                treadmill: Any = None, treadmill_settings: Any = None,
                make_react: Any = None, listeners: tuple[Any, ...] = ()) -> LoopRun:
    """Run the real device loop on a simulated room (see the module docstring).

    ``typed_answers``: the user's answers are typed (TypedAnswers), not spoken.
    ``stop_over_speech``: (clip, after_s) placed by StopOverSpeech.
    ``treadmill``: a link the loop's BeltController drives (with ``treadmill_settings``).
    ``make_react``: (room) -> one more callable of workout time, run with the user's (e.g. to
    say more clips into the room). ``listeners`` get every coach event.
    ``rt60_s``: the room's reverberation (see ``room_response``). ``aec``: the microphone is
    cleaned by echo cancellation against what the speaker played
    before the recogniser hears it (as on the device); False feeds the raw mix.
    """
    from contextlib import contextmanager

    from voicecoach.device.duplex import ECHO_TAIL_S, DuplexGate
    from voicecoach.device.loop import AudioClock, DeviceLoop
    from voicecoach.events import CommandHeard, Event
    from voicecoach.grammar import load_grammar
    from voicecoach.history.db import HistoryDB
    from voicecoach.history.recorder import SessionRecorder

    clock = AudioClock(live=False)
    speaker = EchoWavSpeaker(renderer, settings.speech.volume, settings.speech.rate, clock=clock)
    source = ClosedLoopSource(speaker, total_s, echo_delay_s, echo_gain_db, noise_rms, chunk_s,
                              seed, keep_mic=keep_mic, rt60_s=rt60_s)
    for clip in clips:
        source.add(clip)
    heard: list[Any] = []

    def listen(event: Event) -> None:
        if isinstance(event, CommandHeard) and event.source == "voice":
            heard.append(event)

    @contextmanager
    def open_session(chosen: Any) -> Iterator[tuple[Any, Any]]:
        with HistoryDB.open(settings.data_dir) as db, \
                SessionRecorder.open(db, chosen, "serve") as recorder:
            yield chosen, recorder

    # the loop's own gate (as on the device) unless a test changes its margin or check
    gate = None if tail_s is None and echo_check else DuplexGate(
        speaker, ECHO_TAIL_S if tail_s is None else tail_s,
        reference=speaker.played if echo_check else None)
    sources = iter([source])
    canceller = "auto" if aec else None  # "auto": against speaker.played_audio
    loop = DeviceLoop(settings, load_grammar(settings.speech.language), recogniser, speaker,
                      lambda: next(sources, None), open_session, plan=plan,
                      listeners=[listen, *listeners],
                      sessions=sessions, begin_at_once=begin_at_once, clock=clock, gate=gate,
                      canceller=canceller, treadmill=treadmill,
                      treadmill_settings=treadmill_settings)
    kind = TypedAnswers if typed_answers else PoliteUser
    polite = kind(loop.coach, speaker, source, voices) if user else None
    placer = StopOverSpeech(speaker, source, *stop_over_speech) if stop_over_speech else None

    react = make_react(source) if make_react is not None else None

    def react_all(t: float) -> None:
        for part in (polite, placer, react):
            if part is not None:
                part(t)

    source.react = react_all
    recogniser.reset()
    loop.run()
    return LoopRun(loop, source, speaker, polite, heard)
