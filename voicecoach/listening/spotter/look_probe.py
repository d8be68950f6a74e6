"""The learned look at stop: a small logistic probe on Whisper tiny.en's own encoder output.

The second look reads a candidate's window with Whisper (``verify``). Its stop score was the
probability that the transcript *opens* with stop; a model card with a ``look_probe`` entry
scores stop instead with this probe: the encoder's output over the look's first
:data:`FRAMES` frames, pooled (mean and maximum), standardised, then a multinomial logistic
regression over stop, go, yes, no and anything else (``lab.training.train --look-probe``: fitted
on the looks the decider takes at out-of-fold clips and running talk, by speaker folds). The
encoder pass is the one the look makes anyway, so the probe costs almost nothing.

Over the coach's own speech the clean probe is not read (it never saw such windows). A card
whose ``look_probe`` entry has an ``over`` part (its ``bar``) holds a second probe of the same
form in the same file (arrays prefixed :data:`OVER`), fitted on looks over the coach in dev
speakers' barge-in trials (``lab.training.over_probe``): stop over the coach is read through it
at that bar, and, if the part names a ``candidate`` level (the stop candidate level the looks it
was fitted on were raised at), the spotter raises stop candidates over the coach from that level
(``Decider.over_stop_candidate``). Without it the opening is read there, at
``engine.OVER_SPEECH_STOP_BAR``. An entry with ``"clean": false`` names a file with the
over-the-coach probe only: away from the coach the opening is read, at the card's bars, as
without a learned look.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from voicecoach.errors import VoicecoachError
from voicecoach.listening.spotter.model import read_arrays

FRAMES = 64
"""Encoder frames pooled (20 ms each): the look's 1.2 s and a little of the padding after it."""
WORDS = ("stop", "go", "yes", "no")
"""The probe's classes in order; one more, last, for anything else."""
ARRAYS = ("mean", "scale", "coef", "intercept")
OVER = "over_"
"""The prefix of the over-the-coach probe's arrays in the same file."""
LOOK_PROBE_FILE = "en_look_probe.npz"
"""The shipped probe's file, beside the spotter's weights (the card names it)."""


def pooled(states: np.ndarray) -> np.ndarray:
    """(n, frames, width) encoder states -> (n, 2 width): the mean and the maximum over the
    first :data:`FRAMES` frames."""
    x = np.asarray(states, np.float32)[:, :FRAMES]
    return np.concatenate([x.mean(axis=1), x.max(axis=1)], axis=1)


def probe_probs(arrays: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """(n, classes) probabilities of the probe ``arrays`` for pooled features ``x``."""
    z = ((x - arrays["mean"]) / arrays["scale"]) @ arrays["coef"].T + arrays["intercept"]
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


class LookProbe:
    """The shipped probe: ``stop(states)`` -> the probability that a look's window is a stop;
    with an over-the-coach probe (``over_bar`` not None), ``stop(states, over=True)`` reads
    that one."""

    def __init__(self, arrays: dict[str, np.ndarray], over_bar: float | None = None,
                 clean: bool = True, over_candidate: float | None = None) -> None:
        #: the stop candidate level over the coach the over-the-coach probe was fitted at (None:
        #: the card's)
        self.over_candidate = over_candidate if over_bar is not None else None
        self.arrays = {k: np.asarray(arrays[k], np.float64) for k in ARRAYS} if clean else None
        self.over_bar = over_bar
        self.over = None if over_bar is None else \
            {k: np.asarray(arrays[OVER + k], np.float64) for k in ARRAYS}

    def reads(self, over: bool) -> bool:
        """Whether this look has a probe for a look over the coach (``over``) or away from it."""
        return (self.over if over else self.arrays) is not None

    def describe(self) -> str:
        """What it reads, for the engine line and ``doctor``."""
        raised = "" if self.over_candidate is None else \
            f" (candidates from {self.over_candidate:g})"
        if self.arrays is None:
            return "stop over the coach by its learned look" + raised
        return "stop by its learned look" + (", over the coach by a second one" + raised
                                             if self.over is not None else "")

    def stop(self, states: np.ndarray, over: bool = False) -> float:
        """The stop probability of one look's encoder output, (frames, width); ``over``: a look
        over the coach's speech (read by the over-the-coach probe); it must have that probe
        (:meth:`reads`)."""
        arrays = self.over if over else self.arrays
        if arrays is None:
            raise ValueError("this learned look has no probe for a look "
                             + ("over the coach's speech" if over else "away from the coach"))
        return float(probe_probs(arrays, pooled(np.asarray(states)[None]))[0, 0])


def _bad(path: Path, what: str) -> VoicecoachError:
    return VoicecoachError(f"the spotter's learned look {path} {what}",
                           "reinstall voicecoach (pip install --force-reinstall voicecoach), or "
                           "retrain the model with its look (python -m voicecoach.lab.training.train)")


def load_look_probe(model_path: Path, card: dict[str, Any]) -> LookProbe | None:
    """The probe the model card names (a file beside the weights, pinned by sha256), None if
    the card names none; one :class:`VoicecoachError` if it is missing, damaged or of the wrong
    shape."""
    entry = card.get("look_probe")
    if not entry:
        return None
    try:
        path = model_path.parent / str(entry["file"])
        digest = str(entry["sha256"])
        width = int(entry["width"])
    except (KeyError, TypeError, ValueError):
        raise VoicecoachError(f"the spotter's model card {model_path.with_suffix('.json')} names "
                              "a learned look without its file, sha256 or width",
                              "reinstall voicecoach (pip install --force-reinstall voicecoach), or "
                              "retrain the model with its look (python -m "
                              "voicecoach.lab.training.train)") from None
    if not path.is_file():
        raise _bad(path, "is missing")
    if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
        raise _bad(path, "does not match its model card (sha256 differs): corrupt or replaced")
    arrays = read_arrays(path)
    if arrays is None:
        raise _bad(path, "is corrupt (not a readable .npz)")
    classes = len(WORDS) + 1
    shapes = {"mean": (2 * width,), "scale": (2 * width,), "coef": (classes, 2 * width),
              "intercept": (classes,)}
    over_bar = over_candidate = None
    if entry.get("over"):
        over = entry["over"] if isinstance(entry["over"], dict) else {}
        # a bar of 1 (or true, which float() reads as 1) would never let a stop over the coach
        # through: refused, as anything that is not a number below 1
        over_bar = _fraction(over.get("bar"))
        if over_bar is None:
            raise _bad(path, "is named with an over-the-coach part without a usable bar "
                             "(a number above 0 and below 1) in its model card")
        if over.get("candidate") is not None:
            over_candidate = _fraction(over["candidate"])
            if over_candidate is None:
                raise _bad(path, "is named with an over-the-coach candidate level that is not a "
                                 "number above 0 and below 1 in its model card")
        shapes.update({OVER + k: v for k, v in shapes.items()})
    clean = entry.get("clean", True) is not False
    if not clean:
        if over_bar is None:
            raise _bad(path, "is named with no probe at all (\"clean\": false and no over part) "
                             "in its model card")
        shapes = {k: v for k, v in shapes.items() if k.startswith(OVER)}
    for name, shape in shapes.items():
        if name not in arrays or arrays[name].shape != shape:
            raise _bad(path, f"has no '{name}' of shape {shape}")
        if not np.all(np.isfinite(arrays[name])) or (name == "scale" and np.any(arrays[name] <= 0)):
            raise _bad(path, f"holds values in '{name}' that are not usable numbers")
    return LookProbe(arrays, over_bar, clean, over_candidate)


def _fraction(raw: Any) -> float | None:
    """``raw`` if it is a number (not a bool) above 0 and below 1, else None."""
    if not isinstance(raw, (int, float)) or isinstance(raw, bool):
        return None
    value = float(raw)
    return value if 0.0 < value < 1.0 else None
