"""Training sources (real Speech Commands clips, the synthetic corpus) in speaker-disjoint folds.

Every source carries a fold tag. Real clips are tagged by speaker; synthetic clips and
background-noise clips by a hash of their name. Cross-validation fold ``k`` trains on every
source whose tag is not ``k`` and is scored on the real clips tagged ``k``; a source only
ever borrows background audio (room noise, the coach's voice) from sources of its own tag,
so no audio of a held-out fold reaches its model in any form.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from voicecoach.errors import VoicecoachError

_LOGGER = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[3]
DEFAULT_SPEECH_COMMANDS = REPO.parent / "shared" / "speech_commands"
SPEECH_COMMANDS_ENV = "VOICECOACH_SPEECH_COMMANDS"

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
    """A stable fold for a speaker or voice id."""
    return zlib.crc32(group.encode("utf-8")) % folds


def speaker_of(path: Path) -> str:
    """The anonymous speaker id in ``<speaker>_nohash_<n>.wav`` (``<word>_`` first in
    ``_unknown_``)."""
    head = path.stem.split("_nohash_")[0]
    return head.rsplit("_", 1)[-1]


def speech_commands_dir(given: Path | None = None) -> Path:
    """The real-speech folder: ``given``, else $VOICECOACH_SPEECH_COMMANDS, else ../shared."""
    env = os.environ.get(SPEECH_COMMANDS_ENV)
    return Path(given or env or DEFAULT_SPEECH_COMMANDS)


def real_sources(root: Path, folds: int) -> list[Source]:
    """Every clip of ../shared/speech_commands as a source; one clear error if it is absent."""
    if not root.is_dir():
        raise VoicecoachError(f"no Speech Commands clips at {root}",
                              f"put the data set there, or pass --speech-commands DIR "
                              f"(or set {SPEECH_COMMANDS_ENV})")
    out: list[Source] = []
    for folder in (*REAL_POSITIVES, *REAL_NEGATIVES):
        for path in sorted((root / folder).glob("*.wav")):
            speaker = speaker_of(path)
            label = REAL_POSITIVES.get(folder, OTHER)
            out.append(Source(path, label, "real", speaker, fold_of(speaker, folds), folder))
    for path in sorted((root / SILENCE).glob("*.wav")):
        group = f"noise-{path.stem}"
        out.append(Source(path, NOISE, "real_noise", group, fold_of(group, folds), SILENCE))
    if not any(s.label != OTHER and s.label != NOISE for s in out):
        raise VoicecoachError(f"{root} holds no clips in stop/, go/, yes/ or no/",
                              "point --speech-commands at the Speech Commands folder")
    return out


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
