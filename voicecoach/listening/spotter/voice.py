"""A user's voice for the spotter: each command's prototypes and the threshold they must
clear, and how a window of the front end is compared with them (standardised with the head's
own feature mean and scale, L2-normalised: a cosine similarity)."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voicecoach.errors import VoicecoachError
from voicecoach.listening.spotter.model import SpotterModel

_LOGGER = logging.getLogger(__name__)

#: Prototypes compare the last this many steps of the head's window (the spoken word and a
#: little context; the whole window's older steps are mostly what came before the word).
LAST = 6
#: Steps a non-stop command must stay above its threshold (stop fires on the first).
CONFIRM = 2

_USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")


def weights_sha256(model: SpotterModel) -> str:
    return hashlib.sha256(model.path.read_bytes()).hexdigest()


def check_user(name: str) -> str:
    if not _USER_RE.match(name):
        raise VoicecoachError(f"user name '{name}' is not usable",
                              "use 1-32 letters, digits, '-' or '_', starting with a letter "
                              "or digit")
    return name


def unit_windows(model: SpotterModel, emb: np.ndarray, silence: np.ndarray) -> np.ndarray:
    """(steps, LAST * 96): each step's window as the engine forms it, see :func:`normalise`."""
    w = model.window
    seq = np.concatenate([np.asarray(silence).reshape(-1, silence.shape[-1])[-(w - 1):], emb])
    idx = np.arange(len(emb))[:, None] + np.arange(w)[None, :]
    x = seq[idx].reshape(len(emb), -1).astype(np.float32)
    return normalise(model, x)


def normalise(model: SpotterModel, flat: np.ndarray) -> np.ndarray:
    """Raw windows (n, window * 96) -> their last :data:`LAST` steps, standardised with the
    head's mean and scale, unit length (n, LAST * 96)."""
    dims = LAST * flat.shape[1] // model.window
    x = (flat[:, -dims:] - model.mean[-dims:]) / model.scale[-dims:]
    return (x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-6)).astype(np.float32)


@dataclass
class CommandVoice:
    """One command's prototypes for one user and the threshold they must clear."""

    phrase: str
    prototypes: np.ndarray
    threshold: float
    takes: int
    own_low: float
    """The lowest leave-one-take-out score of the takes (how well a new take should match)."""
    others_high: float
    """The highest score of anything that was not this command (other takes, noise, silence)."""


@dataclass
class VoiceProfile:
    """Everything enrollment keeps about one user."""

    user: str
    commands: dict[str, CommandVoice]
    created: str
    model_sha256: str
    phrase_hash: str
    window: int
    adapt_cpu_s: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
