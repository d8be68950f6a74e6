"""Enrollments on disk: ``<data>/enrollment/<user>.npz`` (no pickles), written atomically,
read back checked against the spotter and grammar they were made for; forgetting them."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from voicecoach.errors import VoicecoachError
from voicecoach.listening.spotter.model import SpotterModel
from voicecoach.listening.spotter.voice import (
    LAST,
    CommandVoice,
    VoiceProfile,
    check_user,
    weights_sha256,
)

_LOGGER = logging.getLogger(__name__)

FORMAT = 1
FOLDER = "enrollment"


def enrollment_dir(data_dir: Path) -> Path:
    return Path(data_dir).expanduser() / FOLDER


def profile_path(data_dir: Path, user: str) -> Path:
    return enrollment_dir(data_dir) / f"{check_user(user)}.npz"


def save_profile(data_dir: Path, profile: VoiceProfile) -> Path:
    """Write ``<data>/enrollment/<user>.npz`` atomically (no pickles)."""
    folder = enrollment_dir(data_dir)
    path = profile_path(data_dir, profile.user)
    meta = {"format": FORMAT, "user": profile.user, "created": profile.created,
            "model_sha256": profile.model_sha256, "phrase_hash": profile.phrase_hash,
            "window": profile.window, "adapt_cpu_s": profile.adapt_cpu_s, **profile.meta,
            "commands": {c: {"phrase": v.phrase, "threshold": v.threshold, "takes": v.takes,
                             "own_low": v.own_low, "others_high": v.others_high}
                         for c, v in profile.commands.items()}}
    arrays: dict[str, Any] = {f"p_{c}": v.prototypes.astype(np.float16)
                              for c, v in profile.commands.items()}
    arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), np.uint8)
    tmp = folder / f".{profile.user}.{os.getpid()}.tmp.npz"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, **arrays)
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise VoicecoachError(f"cannot write the enrollment to {folder} ({exc.strerror or exc})",
                              "make the data folder writable or choose another with "
                              "--data-dir") from None
    return path


class StaleEnrollment(VoicecoachError):
    """An enrollment made for another version of the spotter or grammar."""


def load_profile(path: Path, model: SpotterModel | None = None,
                 phrase_hash: str | None = None) -> VoiceProfile:
    """Read one user's enrollment; :class:`StaleEnrollment` if it was made for another model."""
    user = path.stem
    redo = f"redo it: voicecoach enroll --user {user} (or remove it: voicecoach enroll " \
           f"--forget --user {user})"
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: np.asarray(npz[k]) for k in npz.files}
        meta = json.loads(arrays["meta"].tobytes().decode("utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("meta")
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, UnicodeDecodeError):
        raise VoicecoachError(f"the enrollment file {path} is unreadable (corrupt)",
                              redo) from None
    if meta.get("format") != FORMAT:
        raise StaleEnrollment(f"the enrollment of '{user}' is in format {meta.get('format')}, "
                              f"this voicecoach reads format {FORMAT}", redo)
    if model is not None and meta.get("model_sha256") != weights_sha256(model):
        raise StaleEnrollment(f"the enrollment of '{user}' was made for another version of "
                              "the command spotter", redo)
    if phrase_hash is not None and meta.get("phrase_hash") != phrase_hash:
        raise StaleEnrollment(f"the enrollment of '{user}' was made for other grammar "
                              "phrases", redo)
    try:
        commands = {c: CommandVoice(str(v["phrase"]), arrays[f"p_{c}"].astype(np.float32),
                                    float(v["threshold"]), int(v["takes"]), float(v["own_low"]),
                                    float(v["others_high"]))
                    for c, v in meta["commands"].items()}
        profile = VoiceProfile(str(meta["user"]), commands, str(meta["created"]),
                               str(meta["model_sha256"]), str(meta["phrase_hash"]),
                               int(meta["window"]), float(meta.get("adapt_cpu_s", 0.0)),
                               {k: meta[k] for k in ("takes_rejected", "audio_kept")
                                if k in meta})
    except (KeyError, TypeError, ValueError):
        raise VoicecoachError(f"the enrollment file {path} lacks a field it needs (corrupt)",
                              redo) from None
    for cmd, voice in commands.items():
        numbers = (voice.threshold, voice.own_low, voice.others_high)
        if not (np.all(np.isfinite(voice.prototypes)) and all(map(math.isfinite, numbers))):
            raise VoicecoachError(f"the enrollment of '{user}' holds values that are not "
                                  f"finite numbers (NaN or infinity) for '{cmd}': it would "
                                  "never fire", redo)
    if model is not None:
        dims = LAST * model.mean.size // model.window
        for cmd, voice in commands.items():
            if voice.prototypes.ndim != 2 or voice.prototypes.shape[1] != dims:
                raise StaleEnrollment(f"the enrollment of '{user}' has prototypes of another "
                                      f"shape for '{cmd}'", redo)
    return profile


def enrolled_files(data_dir: Path) -> list[Path]:
    folder = enrollment_dir(data_dir)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.npz") if not p.name.startswith("."))


def forget(data_dir: Path, user: str | None) -> list[str]:
    """Remove one user's enrollment (and kept audio), or everyone's; the users removed."""
    import shutil

    folder = enrollment_dir(data_dir)
    files = enrolled_files(data_dir)
    if user is not None:
        files = [p for p in files if p.stem == check_user(user)]
    removed = []
    try:
        for path in files:
            path.unlink()
            audio = folder / "audio" / path.stem
            if audio.is_dir():
                shutil.rmtree(audio)
            removed.append(path.stem)
    except OSError as exc:
        raise VoicecoachError(f"cannot remove the enrollment in {folder} "
                              f"({exc.strerror or exc})",
                              "make the data folder writable") from None
    return removed


def load_all(data_dir: Path, model: SpotterModel, phrase_hash: str
             ) -> tuple[list[VoiceProfile], list[str]]:
    """Every usable enrollment, and one line per enrollment that cannot be used (and why)."""
    profiles, problems = [], []
    for path in enrolled_files(data_dir):
        try:
            profiles.append(load_profile(path, model, phrase_hash))
        except VoicecoachError as exc:
            problems.append(exc.one_line())
    return profiles, problems
