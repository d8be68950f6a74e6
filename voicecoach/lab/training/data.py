"""Training sources (real Speech Commands clips, the synthetic corpus) in speaker-disjoint folds.

Real people come from two sets read in place: ``../shared/speech_commands`` (WAV, 104 speakers)
and ``../shared/speech_commands_train`` (FLAC, 1,632 more). Before anything else a fixed rule
locks a fifth of the speakers of both sets away (:func:`is_locked`: ``crc32(speaker) % 5 == 0``;
background-noise clips likewise, by ``noise-<name>``):
no training run, cross-validation, threshold or recipe choice ever reads them, and a run that
is handed one refuses (:func:`refuse_locked`). They are scored once per shipped model, end to
end through ``voicecoach listen`` (``voicecoach.lab.bench.locked``).

Every other source carries a fold tag. Real clips are tagged by speaker (the remaining four
values of the same hash); synthetic clips and background-noise clips by a hash of their name.
Cross-validation fold ``k`` trains on every source whose tag is not ``k`` and is scored on the
real clips tagged ``k``; a source only ever borrows background audio (room noise, the coach's
voice) from sources of its own tag, so no audio of a held-out fold reaches its model in any form.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voicecoach.audio.chunk import SAMPLE_RATE
from voicecoach.audio.wav import read_wav_16k
from voicecoach.errors import VoicecoachError

_LOGGER = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[3]
DEFAULT_SPEECH_COMMANDS = REPO.parent / "shared" / "speech_commands"
SPEECH_COMMANDS_ENV = "VOICECOACH_SPEECH_COMMANDS"
DEFAULT_SPEECH_COMMANDS_TRAIN = REPO.parent / "shared" / "speech_commands_train"
SPEECH_COMMANDS_TRAIN_ENV = "VOICECOACH_SPEECH_COMMANDS_TRAIN"
#: One speaker in LOCK_MODULUS is locked away (hash value 0); the other values are the folds.
LOCK_MODULUS = 5
AUDIO_SUFFIXES = (".wav", ".flac")

NOISE = "_noise_"
OTHER = "_other_"
#: Speech Commands folders whose words are grammar phrases (folder -> phrase).
REAL_POSITIVES = {"stop": "stop", "go": "go", "yes": "yes", "no": "no"}
#: Folders of words that must never fire a command.
REAL_NEGATIVES = ("up", "down", "left", "right", "on", "off", "_unknown_")
SILENCE = "_silence_"


@dataclass(frozen=True)
class Source:
    """One recording before augmentation."""

    path: Path
    label: str          # a grammar phrase, OTHER or NOISE
    kind: str           # real | real_noise | positive | negative | coach | sentence
    group: str          # speaker id (real), voice family (synthetic), clip name (noise)
    fold: int           # 0..folds-1
    word: str = ""      # the Speech Commands folder, for real clips

    @property
    def real(self) -> bool:
        return self.kind in ("real", "real_noise")


def fold_of(group: str, folds: int) -> int:
    """A stable fold for a synthetic voice or noise clip."""
    return zlib.crc32(group.encode("utf-8")) % folds


def is_locked(speaker: str) -> bool:
    """Whether a real speaker belongs to the locked test set (about a fifth of them)."""
    return zlib.crc32(speaker.encode("utf-8")) % LOCK_MODULUS == 0


def speaker_fold(speaker: str) -> int:
    """The cross-validation fold (0 to LOCK_MODULUS - 2) of a speaker who is not locked."""
    value = zlib.crc32(speaker.encode("utf-8")) % LOCK_MODULUS
    if value == 0:
        raise VoicecoachError(f"speaker {speaker} is in the locked test set",
                              "no training run may read the locked speakers")
    return value - 1


def curve_speaker(speaker: str) -> float:
    """Where a real speaker falls in [0, 1) for ``Recipe.speaker_share`` (a hash of the id with
    its own salt, so independent of :func:`speaker_fold` and :func:`is_locked`)."""
    return (zlib.crc32(f"curve:{speaker}".encode()) % 100_000) / 100_000


def refuse_locked(sources: Iterable[Source]) -> None:
    """One clear error if any real clip of a locked speaker is among ``sources``."""
    for s in sources:
        if s.real and is_locked(s.group):     # a noise clip's group is its noise_id
            raise VoicecoachError(f"{s.path} is a clip of a locked test speaker ({s.group}): "
                                  "training must never read the locked set",
                                  "build sources with real_sources(), which leaves them out")


def speaker_of(path: Path) -> str:
    """The anonymous speaker id in ``<speaker>_nohash_<n>.wav`` (``<word>_`` first in
    ``_unknown_``)."""
    head = path.stem.split("_nohash_")[0]
    return head.rsplit("_", 1)[-1]


def speech_commands_dir(given: Path | None = None) -> Path:
    """The real-speech folder: ``given``, else $VOICECOACH_SPEECH_COMMANDS, else ../shared."""
    env = os.environ.get(SPEECH_COMMANDS_ENV)
    return Path(given or env or DEFAULT_SPEECH_COMMANDS)


def speech_commands_train_dir(given: Path | None = None) -> Path:
    """The second real-speech folder: ``given``, else $VOICECOACH_SPEECH_COMMANDS_TRAIN, else
    ../shared/speech_commands_train."""
    env = os.environ.get(SPEECH_COMMANDS_TRAIN_ENV)
    return Path(given or env or DEFAULT_SPEECH_COMMANDS_TRAIN)


def add_real_data_options(parser: argparse.ArgumentParser) -> None:
    """The options that point at the two real-speech folders (defaults: beside the checkout)."""
    parser.add_argument("--speech-commands", type=Path, default=None,
                        help="real clips (default ../shared/speech_commands)")
    parser.add_argument("--speech-commands-train", type=Path, default=None,
                        help="more real clips, FLAC (default ../shared/speech_commands_train)")


def clips_in(root: Path, folder: str) -> list[Path]:
    """The audio clips (WAV or FLAC) of one word folder, sorted."""
    return sorted(p for p in (root / folder).glob("*") if p.suffix.lower() in AUDIO_SUFFIXES)


def all_real_clips(root: Path, option: str = "--speech-commands") -> list[tuple[Path, str, str]]:
    """(path, word folder, speaker) of every word clip in ``root``, locked speakers included
    (for the locked benchmark and the split's own checks); one clear error if it is absent,
    empty or holds no audio of the expected layout."""
    if not root.is_dir():
        raise VoicecoachError(f"no Speech Commands clips at {root}",
                              f"put the data set there, or pass {option} DIR")
    out = [(path, folder, speaker_of(path)) for folder in (*REAL_POSITIVES, *REAL_NEGATIVES)
           for path in clips_in(root, folder)]
    if not any(folder in REAL_POSITIVES for _, folder, _ in out):
        raise VoicecoachError(f"{root} holds no WAV or FLAC clips in stop/, go/, yes/ or no/",
                              f"point {option} at a Speech Commands folder "
                              "(word folders of 16 kHz clips named <speaker>_nohash_<n>)")
    return out


def read_audio(path: Path) -> np.ndarray:
    """A WAV or FLAC clip as 16 kHz mono int16; one clear error if it cannot be read, or is
    not 16 kHz mono (a data set in another format is not silently resampled)."""
    if path.suffix.lower() != ".flac":
        _check_wav_format(path)
        return read_wav_16k(path)
    try:
        import soundfile
    except ImportError:
        raise VoicecoachError("reading FLAC clips needs the package 'soundfile'",
                              "pip install -e '.[train]'") from None
    try:
        data, rate = soundfile.read(str(path), dtype="int16", always_2d=True)
    except (RuntimeError, OSError, ValueError) as exc:
        raise VoicecoachError(f"{path} is not a readable FLAC file ({exc})",
                              "delete it or restore it from the data set") from None
    if rate != SAMPLE_RATE:
        raise VoicecoachError(f"{path} is {rate} Hz, not {SAMPLE_RATE}",
                              "use the 16 kHz Speech Commands clips")
    return np.ascontiguousarray(data[:, 0])


def _check_wav_format(path: Path) -> None:
    import wave

    try:
        with wave.open(str(path), "rb") as wav:
            rate, channels = wav.getframerate(), wav.getnchannels()
    except (wave.Error, EOFError, OSError):
        return  # not plain PCM (float, or damaged): read_wav_16k says what is wrong
    if rate != SAMPLE_RATE or channels != 1:
        raise VoicecoachError(f"{path} is {rate} Hz with {channels} channel(s), not {SAMPLE_RATE} "
                              "Hz mono", "use the 16 kHz mono Speech Commands clips")


#: How a clip is heard in evaluation, as a user's audio reaches ``listen``: half a second of a
#: quiet room before and after it (the benches' deterministic floor near -60 dBFS, seeded by the
#: clip's name: ``lab.corpus.with_room_tone``), its edges faded so a clip cut out of a recording
#: does not click.
ROOM_LEAD_S = 0.5
ROOM_TAIL_S = 0.5
FADE_S = 0.02


def in_room(samples: np.ndarray, name: str, lead_s: float = ROOM_LEAD_S,
            tail_s: float = ROOM_TAIL_S) -> np.ndarray:
    """``samples`` (int16) with quiet room tone around them, as int16."""
    from voicecoach.lab.corpus import with_room_tone

    return with_room_tone(samples, name, lead_s, tail_s, FADE_S)


def locked_clips(roots: Sequence[Path]) -> list[tuple[Path, str, str]]:
    """(path, word folder, speaker) of every clip of a locked speaker in ``roots``, then each
    root's locked noise clips (speaker: their ``noise_id``): what only the benches may read."""
    out: list[tuple[Path, str, str]] = []
    for root in roots:
        out += [c for c in all_real_clips(root) if is_locked(c[2])]
        out += [(p, SILENCE, noise_id(p)) for p in clips_in(root, SILENCE) if is_locked(noise_id(p))]
    return out


def real_sources(root: Path, folds: int, option: str = "--speech-commands") -> list[Source]:
    """Every clip of a Speech Commands folder whose speaker is not locked, as a source, and its
    background-noise clips; one clear error if it is absent or empty. A speaker's fold is the
    hash's value (1 to 4) minus one, taken modulo ``folds`` (a smaller quick recipe)."""
    if not 1 <= folds <= LOCK_MODULUS - 1:
        raise VoicecoachError(f"real speakers fall into at most {LOCK_MODULUS - 1} folds, not {folds}",
                              f"use folds={LOCK_MODULUS - 1}")
    out: list[Source] = []
    for path, folder, speaker in all_real_clips(root, option):
        if is_locked(speaker):
            continue
        label = REAL_POSITIVES.get(folder, OTHER)
        out.append(Source(path, label, "real", speaker, speaker_fold(speaker) % folds, folder))
    for path in clips_in(root, SILENCE):
        group = noise_id(path)
        if is_locked(group):
            continue
        out.append(Source(path, NOISE, "real_noise", group, fold_of(group, folds), SILENCE))
    if not any(s.kind == "real" and s.label != OTHER for s in out):
        raise VoicecoachError(f"every stop, go, yes and no clip in {root} is a locked test "
                              "speaker's: training may not read them",
                              f"point {option} at the whole Speech Commands set")
    return out


def check_negatives(real: Sequence[Source], roots: Sequence[Path]) -> None:
    """The real sets together must hold clips of other words (the head's negatives): one clear
    error, before any work, if they do not."""
    if not any(s.kind == "real" and s.label == OTHER for s in real):
        raise VoicecoachError(f"{' and '.join(map(str, roots))} hold no clips of other words "
                              "(up/, down/, ... or _unknown_/) from speakers who are not "
                              "locked: the head needs them as negatives",
                              "point --speech-commands at the whole Speech Commands set")


def noise_id(path: Path) -> str:
    """The id a background-noise clip is locked by (the same rule as a speaker's)."""
    return f"noise-{path.stem}"


def synthetic_sources(root: Path, folds: int, phrases: Iterable[str],
                      holdout_families: Sequence[str] = ()) -> list[Source]:
    """The synthetic corpus listed in ``root/manifest.jsonl`` (see ``training.synth``),
    without the held-out voice families."""
    manifest = root / "manifest.jsonl"
    if not manifest.is_file():
        raise VoicecoachError(f"no synthetic corpus at {root} (manifest.jsonl is missing)",
                              f"make it: python -m voicecoach.lab.training.synth --out {root}")
    known = set(phrases)
    out: list[Source] = []
    skipped = 0
    with manifest.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                label, kind, family = row["label"], row["kind"], row["family"]
                path = root / row["path"]
            except (ValueError, KeyError, TypeError):
                raise VoicecoachError(f"{manifest}: line {n} is not a corpus entry",
                                      "delete the corpus folder and make it again") from None
            if family in holdout_families:
                continue
            if label not in known and label != OTHER:
                skipped += 1
                continue
            if not path.is_file():
                skipped += 1
                continue
            group = f"{family}/{row.get('voice', '')}/{row.get('text', '')}"
            out.append(Source(path, label, kind, family, fold_of(group, folds)))
    if skipped:
        _LOGGER.warning("synthetic corpus: %d entries skipped (file missing or a phrase the "
                        "grammar no longer has)", skipped)
    if not out:
        raise VoicecoachError(f"the synthetic corpus at {root} is empty",
                              f"make it: python -m voicecoach.lab.training.synth --out {root}")
    return out
