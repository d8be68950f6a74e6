"""Enrollment at run time: an enrolled user's command adds a detection.

A command's user score is the best cosine similarity of the current window to its prototypes
(voicecoach.listening.spotter.voice). It turns into a detection only when it clears the
command's calibrated threshold (voicecoach.listening.spotter.calibrate). The generic head's
decisions are left exactly as they are: enrollment only adds detections. Takes are checked in
``takes``, enrollments stored in ``profiles``.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voicecoach.listening.spotter.decide import STOP
from voicecoach.listening.spotter.model import SpotterModel
from voicecoach.listening.spotter.profiles import load_all
from voicecoach.listening.spotter.voice import CONFIRM, LAST, VoiceProfile, normalise

_LOGGER = logging.getLogger(__name__)

REFRACTORY_S = 1.0


@dataclass(frozen=True)
class UserHit:
    """A detection that an enrolled user's prototypes added."""

    command: str
    phrase: str
    score: float
    user: str
    rose_s: float
    emitted_s: float


class EnrolledScorer:
    """Per-step user scores over every enrolled voice; detections the generic head missed."""

    def __init__(self, profiles: Sequence[VoiceProfile], model: SpotterModel) -> None:
        self.profiles = list(profiles)
        self._model = model
        rows, owners, thresholds = [], [], []
        self._slots: list[tuple[str, str, str]] = []
        for profile in self.profiles:
            for cmd, voice in profile.commands.items():
                rows.append(voice.prototypes)
                owners += [len(self._slots)] * len(voice.prototypes)
                thresholds.append(voice.threshold)
                self._slots.append((cmd, voice.phrase, profile.user))
        self._protos = (np.concatenate(rows) if rows
                        else np.zeros((0, LAST * model.mean.size // model.window), np.float32))
        self._owner = np.asarray(owners, dtype=np.int64)
        self._threshold = np.asarray(thresholds, dtype=np.float32)
        self._active: set[str] = {slot[0] for slot in self._slots}
        self._all = set(self._active)
        self.reset()

    def __bool__(self) -> bool:
        return bool(self._slots)

    def set_commands(self, commands: Collection[str]) -> None:
        self._active = {c for c in self._all if c in commands or c == STOP}

    def reset(self) -> None:
        self._above = np.zeros(len(self._slots), np.int64)
        self._rose = np.full(len(self._slots), np.nan)
        self._quiet_until = -1e9
        self._stop_quiet_until = -1e9
        self._last: dict[str, float] = {}

    def scores(self, flat_window: np.ndarray) -> np.ndarray:
        """Each slot's (user, command) best similarity for one raw window (window * 96,)."""
        if not self._slots:
            return np.zeros(0, np.float32)
        x = normalise(self._model, flat_window.reshape(1, -1))[0]
        sims = self._protos @ x
        best = np.full(len(self._slots), -1.0, np.float32)
        np.maximum.at(best, self._owner, sims)
        return best

    def scores_many(self, unit: np.ndarray) -> np.ndarray:
        """(steps, slots) best similarities of already normalised windows (see
        :func:`unit_windows`)."""
        out = np.full((len(unit), len(self._slots)), -1.0, np.float32)
        if self._slots and len(unit):
            sims = unit @ self._protos.T
            for k in range(len(self._slots)):
                out[:, k] = sims[:, self._owner == k].max(axis=1)
        return out

    def step(self, flat_window: np.ndarray, end_s: float, generic: Sequence[str]
             ) -> tuple[list[UserHit], list[str]]:
        """Feed one step's raw window and the commands the generic head fired at this step.

        Returns the detections to add and the generic ones to pass on: all of them, except a
        non-stop command this scorer already emitted within the refractory period (the same
        utterance heard once, earlier; stop always passes)."""
        return self.decide(self.scores(flat_window), end_s, generic)

    def decide(self, best: np.ndarray, end_s: float, generic: Sequence[str]
               ) -> tuple[list[UserHit], list[str]]:
        """:meth:`step` on the slots' scores of this step."""
        passed = [c for c in generic
                  if c == STOP or end_s - self._last.get(c, -1e9) > REFRACTORY_S]
        for c in generic:
            self._last[c] = end_s
            self._quiet_until = max(self._quiet_until, end_s + REFRACTORY_S)
            if c == STOP:
                self._stop_quiet_until = end_s + REFRACTORY_S
        if not self._slots:
            return [], passed
        above = best >= self._threshold
        self._above = np.where(above, self._above + 1, 0)
        rising = best >= 0.5 * self._threshold
        self._rose = np.where(rising, np.where(np.isnan(self._rose), end_s, self._rose), np.nan)
        hits: list[UserHit] = []
        stop_slots = [i for i, s in enumerate(self._slots) if s[0] == STOP and self._above[i] >= 1]
        if stop_slots and STOP not in generic and end_s >= self._stop_quiet_until:
            i = max(stop_slots, key=lambda k: best[k])
            hits.append(self._hit(i, best, end_s))
            self._stop_quiet_until = self._quiet_until = end_s + REFRACTORY_S
            return hits, passed
        if generic or end_s < self._quiet_until:
            return hits, passed
        ready = [i for i, s in enumerate(self._slots)
                 if s[0] != STOP and s[0] in self._active and self._above[i] >= CONFIRM]
        if ready:
            i = max(ready, key=lambda k: best[k] - self._threshold[k])
            hits.append(self._hit(i, best, end_s))
            self._quiet_until = end_s + REFRACTORY_S
        return hits, passed

    def release_stop(self) -> None:
        """See :meth:`Decider.release_stop`: a stop dropped as the coach's voice holds back no
        other stop."""
        self._stop_quiet_until = -1e9

    def withdraw(self, hit: UserHit) -> None:
        """``hit`` was not acted on (the second look did not hear it): the spotter's own
        detection of that command is not held back as its repeat. Enrollment's own quiet period
        stands, so the same utterance is not looked at again."""
        if self._last.get(hit.command) == hit.emitted_s:
            del self._last[hit.command]

    def _hit(self, i: int, best: np.ndarray, end_s: float) -> UserHit:
        cmd, phrase, user = self._slots[i]
        self._above[i] = 0
        self._last[cmd] = end_s
        rose = float(self._rose[i]) if not np.isnan(self._rose[i]) else end_s
        return UserHit(cmd, phrase, float(best[i]), user, rose, end_s)

    @property
    def users(self) -> list[str]:
        return [p.user for p in self.profiles]


def scorer_for(model: SpotterModel, phrases: Mapping[str, Sequence[str]],
               data_dir: Path | None = None, warn: bool = True
               ) -> tuple[EnrolledScorer, list[str]]:
    """The scorer of every usable enrollment in ``data_dir`` (default: $VOICECOACH_HOME or the
    per-user data folder), and one line per enrollment that was skipped and why (also logged
    as a warning unless ``warn`` is False: the caller says them)."""
    from voicecoach.listening.spotter.model import phrase_hash
    from voicecoach.settings import default_data_dir

    folder = Path(data_dir) if data_dir is not None else default_data_dir()
    profiles, problems = load_all(folder, model, phrase_hash({c: list(p)
                                                              for c, p in phrases.items()}))
    for line in problems if warn else ():
        _LOGGER.warning("enrollment skipped: %s", line)
    return EnrolledScorer(profiles, model), problems
