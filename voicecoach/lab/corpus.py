"""Clips as the benches and training both read them: padding, noise floor, and which Speech
Commands words are our commands (in which state). Both the benches and training read them
from here, so training never imports a bench (benches may import training, not back)."""

from __future__ import annotations

import wave
import zlib
from pathlib import Path

import numpy as np

from voicecoach.audio.chunk import SAMPLE_RATE
from voicecoach.errors import VoicecoachError
from voicecoach.grammar import STOP, Grammar

LEAD_S = 0.25
"""Quiet audio before each clip."""
TAIL_S = 1.0
"""Quiet audio after each clip, so that a recogniser can finish the word."""
FADE_S = 0.05
"""Raised-cosine fade at both clip edges: a 1-second clip cut out of a recording would
otherwise start and end with a click that sounds like a plosive."""
FLOOR_RMS = 30.0
"""RMS of the deterministic noise floor (about -60 dBFS) over clip and padding: real
microphones never deliver digital silence."""


def read_clip(path: Path) -> np.ndarray:
    """A WAV file as 16 kHz mono int16 samples (stdlib ``wave``; the project reader
    for any other rate or layout)."""
    try:
        with wave.open(str(path), "rb") as wav:
            if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (SAMPLE_RATE, 1, 2):
                return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").copy()
    except (wave.Error, EOFError):
        pass
    from voicecoach.audio.wav import read_wav_16k

    return read_wav_16k(path)


def pad_clip(samples: np.ndarray, name: str) -> np.ndarray:
    """Lead, clip and tail with edge fades and a noise floor seeded by ``name``."""
    return with_room_tone(samples, name, LEAD_S, TAIL_S, FADE_S)


def with_room_tone(samples: np.ndarray, name: str, lead_s: float, tail_s: float,
                   fade_s: float) -> np.ndarray:
    """``samples`` (int16) faded at both edges over ``fade_s``, with ``lead_s`` and ``tail_s``
    of padding, over a deterministic floor of FLOOR_RMS seeded by ``name``, as int16."""
    clip = samples.astype(np.float64)
    fade = min(int(fade_s * SAMPLE_RATE), clip.size // 2)
    if fade:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, fade))
        clip[:fade] *= ramp
        clip[-fade:] *= ramp[::-1]
    out = np.concatenate([np.zeros(int(lead_s * SAMPLE_RATE)), clip,
                          np.zeros(int(tail_s * SAMPLE_RATE))])
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    out += rng.normal(0.0, FLOOR_RMS, out.size)
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


#: Folder -> the command it must produce; "go" is "resume", which only some states accept.
POSITIVES = {"stop": STOP, "go": "resume", "yes": "yes", "no": "no"}
FA_STATE = "backward"  # the state with the most commands: the hardest case for false accepts


def state_for(grammar: Grammar, command: str) -> str:
    """The state to measure ``command`` in: the walking state for stop (the most competing
    commands), else the first of paused/briefing/backward (or any) that accepts it."""
    order = (FA_STATE,) if command == STOP else ("paused", "briefing", FA_STATE)
    for state in (*order, *grammar.states):
        if command in grammar.commands_for(state):
            return state
    raise VoicecoachError(f"no state of the grammar accepts '{command}'", "check the grammar")
