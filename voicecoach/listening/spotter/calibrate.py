"""Enrollment's calibration: a user's checked takes become prototypes and thresholds.

A take is embedded by the run-time front end exactly as the spotter hears it (the ring
pre-filled with the silent embedding, half a second of silence after). The windows whose last
step ends just after the speech ends (the training convention, ``positive_after_end_s``) are
the prototypes (see voicecoach.listening.spotter.voice for how windows are compared). A
command's threshold is calibrated from the takes themselves (the best similarity of the
user's other-command takes, of noise and of the silent window, plus a margin) and never below
a fixed floor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from voicecoach.audio.samples import treadmill_noise
from voicecoach.listening.spotter.decide import STOP
from voicecoach.listening.spotter.features import SAMPLE_RATE, STEP_S, EmbeddingFrontEnd
from voicecoach.listening.spotter.model import SpotterModel
from voicecoach.listening.spotter.takes import speech_bounds
from voicecoach.listening.spotter.voice import (
    CONFIRM,
    CommandVoice,
    VoiceProfile,
    normalise,
    unit_windows,
    weights_sha256,
)

_LOGGER = logging.getLogger(__name__)

#: Windows ending this long after the speech ends are prototypes (as in training).
AFTER_END_S = (-0.04, 0.28)
#: Half a second of silence after a take lets its last windows be seen (as ``flush``).
TAIL_S = 0.48
#: No user threshold is ever below this cosine similarity (see README, Enrollment).
FLOOR = 0.72
#: A command's threshold sits this far above the best similarity of anything that is not it
#: (less for stop: a missed stop costs more than a false one, a false "faster" the most).
MARGIN = 0.14
STOP_MARGIN = 0.10
#: ... and no more than this below the worst match of one of the user's takes to the others.
OWN_SLACK = 0.1


@dataclass
class EmbeddedTake:
    """A take as the spotter hears it: every window of it and the prototype windows."""

    command: str
    phrase: str
    windows: np.ndarray
    """(steps, window * 96) standardised, unit-length windows of every step."""
    proto: np.ndarray
    """Indices of the windows that end just after the speech: the prototypes."""
    probs: np.ndarray
    """(steps, classes) the generic head's probabilities (for the different-word check)."""


def embed_take(fe: EmbeddingFrontEnd, model: SpotterModel, silence: np.ndarray,
               samples: np.ndarray, command: str, phrase: str,
               bounds: tuple[float, float] | None = None) -> EmbeddedTake:
    """Embed a checked take (int16, 16 kHz) as the engine would hear it."""
    start, end = bounds or speech_bounds(samples)
    audio = np.concatenate([np.asarray(samples, np.int16),
                            np.zeros(int(TAIL_S * SAMPLE_RATE), np.int16)])
    emb = fe.embed(audio)
    windows = unit_windows(model, emb, silence)
    times = (np.arange(len(emb)) + 1) * STEP_S
    lo, hi = AFTER_END_S
    proto = np.nonzero((times >= end + lo) & (times <= end + hi))[0]
    if proto.size == 0:
        proto = np.array([len(emb) - 1])
    w = model.window
    seq = np.concatenate([np.asarray(silence).reshape(-1, silence.shape[-1])[-(w - 1):], emb])
    idx = np.arange(len(emb))[:, None] + np.arange(w)[None, :]
    probs = model.probabilities(seq[idx])
    return EmbeddedTake(command, phrase, windows, proto, probs)


def run_statistic(sims: np.ndarray, confirm: int) -> float:
    """The highest similarity a stream holds for ``confirm`` steps running."""
    if sims.size < confirm or sims.size == 0:
        return -1.0
    if confirm > 1:
        sims = np.min(np.stack([sims[i:sims.size - confirm + 1 + i] for i in range(confirm)]),
                      axis=0)
    return float(sims.max())


def other_word(take: EmbeddedTake, phrases: Mapping[str, Sequence[str]], labels: Sequence[str],
               threshold: float) -> str | None:
    """The command the generic head clearly heard in a take instead of the one asked for."""
    index = {label: i for i, label in enumerate(labels)}
    scores = {}
    for cmd, ps in phrases.items():
        cls = [index[p] for p in ps if p in index]
        raw = take.probs[:, cls].sum(axis=1) if cls else np.zeros(len(take.probs))
        scores[cmd] = run_statistic(raw, 1)
    best = max(scores, key=lambda c: scores[c])
    if best != take.command and scores[best] >= threshold and scores[take.command] < 0.5 * threshold:
        return best
    return None


def odd_takes(takes: Sequence[EmbeddedTake]) -> list[tuple[int, str]]:
    """Takes that do not sound like the user's other takes of the same command (a different
    word, a cough, someone else talking): (index, why)."""
    out = []
    for cmd in sorted({t.command for t in takes}):
        idx = [i for i, t in enumerate(takes) if t.command == cmd]
        if len(idx) < 2:
            continue
        confirm = 1 if cmd == STOP else CONFIRM
        loo = {}
        for i in idx:
            rest = np.concatenate([takes[j].windows[takes[j].proto] for j in idx if j != i])
            loo[i] = run_statistic((takes[i].windows @ rest.T).max(axis=1), confirm)
        if len(idx) == 2 and max(loo.values()) < FLOOR:
            out += [(i, f"its two takes of '{takes[i].phrase}' do not sound alike") for i in idx]
        elif len(idx) > 2:
            out += [(i, f"it does not sound like the other takes of '{takes[i].phrase}'")
                    for i in idx if loo[i] < FLOOR]
    return out


# -- adaptation ----------------------------------------------------------------------------


def noise_windows(fe: EmbeddingFrontEnd, model: SpotterModel, silence: np.ndarray
                  ) -> np.ndarray:
    """Windows of belt, pink and brown noise at two levels, and of the quiet room the
    front end starts from (its warm-up)."""
    rng = np.random.default_rng(20261202)
    out = [normalise(model, np.asarray(silence)[-model.window:].reshape(1, -1))]
    n = int(2.0 * SAMPLE_RATE)
    for kind in range(3):
        if kind == 0:
            x = treadmill_noise(2.0, rng)[:n]
        else:
            spec = np.fft.rfft(rng.standard_normal(n))
            f = np.fft.rfftfreq(n)
            f[0] = f[1]
            x = np.fft.irfft(spec / f ** (kind / 2.0), n)
            x = x / (np.sqrt(np.mean(x ** 2)) + 1e-12)
        for dbfs in (-40.0, -20.0):
            audio = np.clip(x * 10 ** (dbfs / 20.0) * 32768.0, -32768, 32767).astype(np.int16)
            out.append(unit_windows(model, fe.embed(audio), silence))
    return np.concatenate(out)


def adapt(user: str, takes: Sequence[EmbeddedTake], model: SpotterModel,
          noise: np.ndarray, phrase_hash: str) -> VoiceProfile:
    """Prototypes and calibrated thresholds from a user's checked, embedded takes."""
    t0 = time.process_time()
    by_cmd: dict[str, list[EmbeddedTake]] = {}
    for take in takes:
        by_cmd.setdefault(take.command, []).append(take)
    commands: dict[str, CommandVoice] = {}
    for cmd, own in by_cmd.items():
        confirm = 1 if cmd == STOP else CONFIRM
        protos = [t.windows[t.proto] for t in own]
        allp = np.concatenate(protos)
        # leave one take out: how well a fresh take of this command matches the others
        loo = []
        for i, take in enumerate(own):
            rest = [p for j, p in enumerate(protos) if j != i]
            if rest:
                loo.append(run_statistic((take.windows @ np.concatenate(rest).T).max(axis=1),
                                         confirm))
        others = [run_statistic((t.windows @ allp.T).max(axis=1), confirm)
                  for t in takes if t.command != cmd]
        others.append(float((noise @ allp.T).max()))
        high = max(others)
        margin = STOP_MARGIN if cmd == STOP else MARGIN
        threshold = max(FLOOR, high + margin, (min(loo) if loo else 0.0) - OWN_SLACK)
        phrase = max({t.phrase for t in own}, key=lambda p: sum(t.phrase == p for t in own))
        commands[cmd] = CommandVoice(phrase, allp.astype(np.float32), round(threshold, 4),
                                     len(own), round(min(loo), 4) if loo else 1.0,
                                     round(high, 4))
    return VoiceProfile(user, commands, datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        weights_sha256(model), phrase_hash, model.window,
                        round(time.process_time() - t0, 4))
