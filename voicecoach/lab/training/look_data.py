"""The looks the learned look is fitted on and compared with: clips of speakers not locked in
room tone, each looked at by the pinned verifier (its opening scores and pooled encoder output,
in worker processes), and the talk's candidates, as :class:`Looks` (a part of
``python -m voicecoach.lab.training.look_probe``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voicecoach.grammar import load_grammar
from voicecoach.lab.corpus import POSITIVES
from voicecoach.lab.training.data import ROOM_LEAD_S, Source, in_room, read_audio, refuse_locked
from voicecoach.listening.spotter.decide import STOP
from voicecoach.listening.spotter.look_probe import WORDS, pooled
from voicecoach.listening.spotter.model import phrases_of
from voicecoach.listening.spotter.verify import SAMPLE_RATE, WhisperVerifier, look_window

_LOGGER = logging.getLogger(__name__)

CLIP_TAIL_S = 0.2
"""A clip is looked at with the window ending this long after it (session 12's setting)."""


def clip_window(samples: np.ndarray, name: str) -> np.ndarray:
    """A clip in room tone, float, cut as a look at a candidate :data:`CLIP_TAIL_S` after it."""
    audio = in_room(samples, name).astype(np.float32) / 32768.0
    end = int(round((ROOM_LEAD_S + CLIP_TAIL_S) * SAMPLE_RATE)) + samples.size
    return look_window(audio, min(end, audio.size))


def look(verifier: WhisperVerifier, window: np.ndarray, phrases: dict[str, list[str]]
         ) -> tuple[list[float], np.ndarray]:
    """The shipped look's opening probability of each command word (:data:`WORDS` order) and
    the pooled encoder output (``look_probe.pooled``), from one encoder pass."""
    asked = {POSITIVES[w]: phrases[POSITIVES[w]] for w in WORDS}
    opening: dict[str, float] = {}
    states: list[np.ndarray] = []
    verifier.scores(window, asked, opening=opening, states=states)
    return [opening.get(POSITIVES[w], 0.0) for w in WORDS], \
        pooled(states[0][None])[0].astype(np.float16)


@dataclass
class Looks:
    """Looks at clips or talk candidates: pooled encoder output, the opening's stop score, class
    and fold."""

    feats: np.ndarray       # (n, 2 width) float16, look_probe.pooled
    stop: np.ndarray        # (n,) the opening's stop probability
    label: np.ndarray       # index into WORDS, or len(WORDS) for anything else
    fold: np.ndarray

    def save(self, to: Path) -> None:
        to.parent.mkdir(parents=True, exist_ok=True)
        tmp = to.with_suffix(".tmp.npz")
        np.savez(tmp, feats=self.feats, stop=self.stop, label=self.label, fold=self.fold)
        tmp.replace(to)


def _look_at(clips: Sequence[Source], verifier: WhisperVerifier | None = None
             ) -> tuple[list[list[float]], list[np.ndarray]]:
    """Looks at ``clips`` (with the pinned verifier unless one is given: a worker loads its own)."""
    from voicecoach.listening.spotter.verify import load_verifier

    verifier = verifier or load_verifier()
    phrases = phrases_of(load_grammar("en"))
    states, opening = [], []
    t0 = time.process_time()
    for n, s in enumerate(clips, 1):
        o, st = look(verifier, clip_window(read_audio(s.path), s.path.name), phrases)
        opening.append(o)
        states.append(st)
        if n % 1000 == 0:
            _LOGGER.warning("look probe: %d/%d clips of a worker, %.0f CPU s", n, len(clips),
                            time.process_time() - t0)
    return opening, states


def clip_looks(sources: Sequence[Source], verifier: WhisperVerifier | None = None,
               jobs: int = 1) -> Looks:
    """A look at every real word clip of ``sources`` (``jobs`` processes, in order)."""
    clips = [s for s in sources if s.kind == "real"]
    refuse_locked(clips)
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        parts = [clips[i::jobs] for i in range(jobs)]
        with ProcessPoolExecutor(jobs) as pool:
            done = list(pool.map(_look_at, parts))
        opening: list[list[float]] = [[] for _ in clips]
        states: list[np.ndarray] = [np.zeros(0)] * len(clips)
        for i, (o, st) in enumerate(done):
            for j, (oj, sj) in enumerate(zip(o, st, strict=True)):
                opening[i + j * jobs] = oj
                states[i + j * jobs] = sj
    else:
        opening, states = _look_at(clips, verifier)
    return Looks(np.array(states).reshape(len(clips), -1),
                 np.array([o[0] for o in opening], np.float32),
                 np.array([_word_class(s.word) for s in clips], int),
                 np.array([s.fold for s in clips], int))


def talk_table(data: dict[str, Any]) -> tuple[Looks, dict[str, Any]]:
    """The looks of ``training.talk.talk_events(states=True)`` as :class:`Looks` (a look on a
    stop said there is stop, any other one anything else), and where each falls: ``at`` the
    index of the stop, or -1."""
    at = talk_at_stop(data)
    feats = np.asarray(data["feats"], np.float16)
    looks = Looks(feats.reshape(len(at), -1) if len(at) else np.zeros((0, 0), np.float16),
                  np.array([e["opening"].get(STOP, 0.0) for e in data["events"]], np.float32),
                  np.where(at >= 0, 0, len(WORDS)), np.array([e["fold"] for e in data["events"]], int))
    where = {"at": at, "time": np.array([e["emitted_s"] for e in data["events"]]),
             "name": np.array([e["file"] for e in data["events"]]), "stops": len(data["stops"]),
             "audio_s": float(data["audio_s"])}
    return looks, where


def _word_class(word: str) -> int:
    return WORDS.index(word) if word in WORDS else len(WORDS)


def talk_at_stop(data: dict[str, Any], after_s: float = 1.0) -> np.ndarray:
    """For each talk event (``training.talk.talk_events``), the index of the stop said there
    that it falls on (from its start to ``after_s`` after its end), or -1."""
    def at(e: dict[str, Any]) -> int:
        return next((i for i, stop in enumerate(data["stops"]) if stop["file"] == e["file"]
                     and stop["start_s"] <= e["emitted_s"] <= stop["end_s"] + after_s), -1)

    return np.array([at(e) for e in data["events"]], int)
