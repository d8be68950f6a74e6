"""The barge-in bench's held-out takes (real speakers' clips, levelled), its room, plan and
settings (a part of ``python -m voicecoach.lab.bench.barge_in``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from voicecoach.audio.chunk import SAMPLE_RATE
from voicecoach.audio.samples import active_bounds, to_float
from voicecoach.lab.room import UserClip
from voicecoach.settings import AudioSettings, Settings, TreadmillSettings
from voicecoach.workout.plan import COOLDOWN, WARMUP, Phase, Plan

_LOGGER = logging.getLogger(__name__)

SHARED = Path(__file__).resolve().parents[3].parent / "shared"
SETS = ("speech_commands", "speech_commands_train")
def held_out(speaker: str) -> bool:
    """The locked test set (voicecoach.lab.training.data.is_locked): never trained on."""
    from voicecoach.lab.training.data import is_locked

    return is_locked(speaker)


#: Levels (dBFS of the active speech) and the room.
USER_DBFS = -27.0
NOISE_RMS = 10 ** ((USER_DBFS - 10.0) / 20)   # treadmill noise 10 dB under the user
RT60S = (0.2, 0.3, 0.45, 0.6)
DELAYS_S = (0.02, 0.03, 0.045, 0.06)
CANCELLERS = ("webrtc", "nlms")
DRIVE = TreadmillSettings(control="drive")
PLAN = Plan("bench-barge-in", (replace(WARMUP, duration_s=240.0),
                               Phase("backward", 600.0, 0.8, 0.6, 1.2, 0.0, 1.0, "technique"),
                               replace(COOLDOWN, duration_s=120.0)))


@dataclass(frozen=True)
class Take:
    """One held-out real clip: its word, speaker, file."""

    word: str
    speaker: str
    path: Path


#: ``--negatives``: words that must fire nothing, said over the coach (a stop acted on from one
#: is a false stop over the coach's speech).
NEGATIVE_WORDS = ("up", "down", "off", "on", "left", "right", "_unknown_")

#: ``--speakers``: the locked test set, or the others (for choosing anything; never the locked).
SPEAKER_SETS = ("locked", "dev")
#: ``--verify``: the second look as the ``verify`` extra gives it, or the default install's
#: spotter alone.
VERIFY_CHOICES = ("auto", "off")


def held_out_takes(root: Path = SHARED, words: tuple[str, ...] = ("stop", "go", "yes", "no"),
                   speakers: str = "locked") -> dict[str, list[Take]]:
    """Every held-out speaker's clips of ``words`` from both shared sets, sorted by file;
    ``speakers="dev"``: every speaker *not* locked instead (to choose settings on)."""
    if speakers not in SPEAKER_SETS:
        raise ValueError(f"speakers must be one of {', '.join(SPEAKER_SETS)}, not {speakers!r}")
    out: dict[str, list[Take]] = {w: [] for w in words}
    for name in SETS:
        for word in words:
            folder = root / name / word
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                if path.suffix not in (".wav", ".flac"):
                    continue
                speaker = path.name.split("_nohash_")[0]
                if held_out(speaker) == (speakers == "locked"):
                    out[word].append(Take(word, speaker, path))
    return out


def load_take(take: Take) -> UserClip:
    """The clip at :data:`USER_DBFS` (active speech), with its speech bounds (energy, clean)."""
    if take.path.suffix == ".flac":
        import soundfile

        data, rate = soundfile.read(str(take.path), dtype="int16", always_2d=False)
        if rate != SAMPLE_RATE:
            raise ValueError(f"{take.path}: {rate} Hz")
        audio = to_float(np.asarray(data))
    else:
        from voicecoach.lab.corpus import read_clip

        audio = to_float(read_clip(take.path))
    a, b = active_bounds(audio, -30.0)
    active = audio[a:b] if b > a else audio
    rms = float(np.sqrt(np.mean(active.astype(np.float64) ** 2))) or 1e-9
    audio = (audio * np.float32(10 ** (USER_DBFS / 20) / rms)).astype(np.float32)
    command = {"go": "resume"}.get(take.word, take.word)
    return UserClip(0.0, audio, command, take.word, a / SAMPLE_RATE, b / SAMPLE_RATE)


def _settings(tmp: Path, canceller: str, verify: str = "auto") -> Settings:
    base = Settings(data_dir=tmp, audio=AudioSettings(echo_canceller=canceller))
    return replace(base, speech=replace(base.speech, verify=verify))


def _spread(takes: list[Take], n: int) -> list[Take]:
    """``n`` takes spread evenly over the sorted list (one speaker's clips are adjacent)."""
    if n >= len(takes):
        return list(takes)
    idx = np.linspace(0, len(takes) - 1, n).round().astype(int)
    return [takes[i] for i in sorted(set(idx.tolist()))]
