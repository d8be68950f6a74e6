"""Settings as frozen dataclasses, built once (CLI + config file) and passed in."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

HOME_ENV = "VOICECOACH_HOME"
MPH_PER_KMH = 0.621371


@dataclass(frozen=True)
class CoachSettings:
    """How the coach runs a session."""

    units: str = "mph"
    """Units spoken and shown: "mph" or "kmh"."""
    top_speed_mph: float = 2.5
    """Highest belt speed the coach will ever ask for, in mph (COACHING.md: about 2.5)."""
    speed_step_mph: float = 0.1
    """One "faster"/"slower" step in mph (0.1 mph, about 0.2 km/h)."""
    max_incline_pct: float = 5.0
    """Highest incline the coach will ask for, in percent."""
    incline_step_pct: float = 1.0
    """One "incline up"/"incline down" step, in percent."""
    cue_interval_s: float = 45.0
    """Aim for one technique cue about this often while walking backwards."""
    min_gap_s: float = 15.0
    """Seconds of quiet after anything the coach says before a technique cue may follow."""
    cue_no_repeat: int = 4
    """A technique cue is not repeated until this many other cues were spoken."""
    checkin_interval_s: float = 180.0
    """Seconds of backward walking between knee check-ins ("How are your knees?")."""


@dataclass(frozen=True)
class SpeechSettings:
    """Recogniser and voice."""

    engine: str = "auto"
    """Recogniser: "auto" or an engine of the table (voicecoach.listening.engines.ENGINES)."""
    language: str = "en"
    """Grammar and model language (grammars/<language>.json)."""
    model_path: Path | None = None
    """A vosk model folder; None means search VOSK_MODEL_PATH and vosk's cache folders."""
    verify: str = "auto"
    """The spotter's second look (Whisper tiny.en, the 'verify' extra): "auto" uses it when
    installed, "off" never."""
    voice: str | None = None
    """TTS voice id or name; None for the engine's default."""
    rate: int = 160
    """TTS words per minute."""
    volume: float = 0.8
    """TTS volume from 0.0 to 1.0; "louder"/"quieter" move it in steps of 0.1."""


@dataclass(frozen=True)
class AudioSettings:
    """Sound devices (number or name; None for the system default)."""

    input_device: str | None = None
    """Microphone: a device number or part of its name."""
    output_device: str | None = None
    """Speaker: a device number or part of its name."""
    echo_canceller: str = "auto"
    """The coach's own voice taken out of the microphone: auto (nlms), nlms (ours, numpy
    only), webrtc (AEC3 from pywebrtc-audio) or off."""


@dataclass(frozen=True)
class TreadmillSettings:
    """The treadmill link (Bluetooth FTMS)."""

    address: str | None = None
    """The treadmill's Bluetooth address (AA:BB:CC:DD:EE:FF) or part of its name; None: none."""
    control: str = "off"
    """"off" (no link), "announce" (read the belt, never write) or "drive" (set the belt)."""
    speed_step_mph: float = 0.1
    """One belt step in mph; the next step waits until the belt shows the last one."""
    top_speed_mph: float = 2.5
    """Highest speed ever written to the belt, in mph (the [coach] top speed also caps it)."""
    target_units: str = "kmh"
    """How the treadmill reads a target speed: "kmh" (the FTMS standard) or "mph" (some pads)."""


def default_data_dir() -> Path:
    """``$VOICECOACH_HOME`` if set, else the per-user data folder (e.g. ~/.local/share)."""
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("voicecoach", appauthor=False))


@dataclass(frozen=True)
class Settings:
    """Everything the program needs to know, in one place."""

    coach: CoachSettings = field(default_factory=CoachSettings)
    speech: SpeechSettings = field(default_factory=SpeechSettings)
    audio: AudioSettings = field(default_factory=AudioSettings)
    treadmill: TreadmillSettings = field(default_factory=TreadmillSettings)
    data_dir: Path = field(default_factory=default_data_dir)
    """Where the history database and logs are kept (VOICECOACH_HOME or --data-dir)."""
