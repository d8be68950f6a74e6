"""Test helpers for replayed sessions: a polite user's track as a WAV (the remembering renderer
they replay it with is voicecoach.lab.cached.CachedRenderer)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from voicecoach.audio.chunk import SAMPLE_RATE
from voicecoach.audio.wav import write_wav
from voicecoach.commands._common import recorded_session
from voicecoach.device.loop import AudioClock, DeviceLoop
from voicecoach.events import Event
from voicecoach.grammar import load_grammar
from voicecoach.lab.room import ClosedLoopSource, EchoWavSpeaker, PoliteUser, load_clip
from voicecoach.settings import Settings
from voicecoach.speaking.render import Renderer
from voicecoach.speaking.speaker import SpeechInterval
from voicecoach.workout.plan import COOLDOWN, WARMUP, Phase, Plan

#: A short plan: 30 s warm-up, 60 s backward, 30 s cool-down.
PLAN = Plan("tiny", (replace(WARMUP, duration_s=30.0),
                     Phase("backward", 60.0, 0.6, 0.5, 0.8, 0.0, 1.0, "technique"),
                     replace(COOLDOWN, duration_s=30.0)))


@dataclass
class UserTrack:
    """The user's side of a polite session as a WAV, and what the coach said against it."""

    path: Path
    seconds: float
    coach: list[SpeechInterval]
    events: list[Event]


def user_track(tmp_path: Path, recogniser: Any, renderer: Renderer,
               total_s: float = 230.0) -> UserTrack:
    """Record a polite user (start, yes..., ready) answering the simulated coach, no echo in it.

    Runs the real device loop in a closed simulated room (voicecoach.lab.room), keeping the
    microphone: the user's clips only, placed when a user would have said them.
    """
    settings = Settings(data_dir=tmp_path / "prep")
    clock = AudioClock()
    speaker = EchoWavSpeaker(renderer, clock=clock)
    room = ClosedLoopSource(speaker, total_s, echo_gain_db=-200.0, keep_mic=True)
    sources = iter([room])
    events: list[Event] = []
    loop = DeviceLoop(settings, load_grammar("en"), recogniser, speaker,
                      lambda: next(sources, None),
                      lambda plan: recorded_session(settings, plan, "serve"), plan=PLAN,
                      listeners=[events.append], clock=clock, sessions=1)
    room.react = PoliteUser(loop.coach, speaker, room)
    recogniser.reset()
    loop.run()
    path = tmp_path / "user.wav"
    mic = np.concatenate([*room.mic, np.zeros(5 * 16000, dtype=np.float32)])  # a margin
    write_wav(path, mic)
    return UserTrack(path, mic.size / 16000, speaker.speaking_intervals(), events)


def start_wav(path: Path, seconds: float, start_at: float | None = None) -> Path:
    """``seconds`` of silence written to ``path``, with the fixture voice saying "start" at
    ``start_at`` if given."""
    audio = np.zeros(int(seconds * 16000), dtype=np.float32)
    if start_at is not None:
        clip = load_clip("start", "start").audio
        at = int(start_at * 16000)
        audio[at:at + clip.size] += clip
    write_wav(path, audio)
    return path


def clips_audio(seconds: float, clips: list[tuple[float, str, str]]) -> np.ndarray:
    """``seconds`` of silence with the fixture voice's commands in it: (when, command, phrase)."""
    mic = np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)
    for at_s, command, phrase in clips:
        audio = load_clip(command, phrase).audio
        first = int(at_s * SAMPLE_RATE)
        mic[first:first + audio.size] += audio
    return np.clip(mic, -1.0, 1.0)


def clips_track(path: Path, seconds: float, clips: list[tuple[float, str, str]]) -> Path:
    """:func:`clips_audio` written to ``path``."""
    write_wav(path, clips_audio(seconds, clips))
    return path
