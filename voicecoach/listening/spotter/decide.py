"""From per-step class probabilities to commands: smoothing, thresholds, a second look, refractory.

Each 80 ms step gives probabilities over the phrase classes; a command's score is the sum over
its phrases, smoothed over the last ``smooth`` steps. "stop" fires on the first step its
smoothed score reaches its threshold, whatever else is going on. Any other command must be one
the current state accepts, be the best of them, and stay above its threshold for
``confirm`` consecutive steps (a second look before acting), and nothing fires within
``refractory_s`` of the last command (stop excepted: it is never held back).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

_LOGGER = logging.getLogger(__name__)

STOP = "stop"


@dataclass(frozen=True)
class Decision:
    """The decision settings; the model card carries the ones chosen by cross-validation."""

    stop_threshold: float
    threshold: float
    smooth: int = 2
    confirm: int = 2
    refractory_s: float = 1.0

    @classmethod
    def from_card(cls, data: Mapping[str, object]) -> Decision:
        return cls(stop_threshold=float(data["stop_threshold"]),  # type: ignore[arg-type]
                   threshold=float(data["threshold"]),  # type: ignore[arg-type]
                   smooth=int(data.get("smooth", 2)),  # type: ignore[call-overload]
                   confirm=int(data.get("confirm", 2)),  # type: ignore[call-overload]
                   refractory_s=float(data.get("refractory_s", 1.0)))  # type: ignore[arg-type]

    def threshold_for(self, command: str) -> float:
        return self.stop_threshold if command == STOP else self.threshold


@dataclass(frozen=True)
class Fired:
    """A command decided at the end of one step."""

    command: str
    phrase: str
    score: float
    rose_s: float
    """When the score first passed half the threshold in this run (about the phrase's end)."""
    emitted_s: float


class Decider:
    """Turns a stream of probability vectors into commands for the current state."""

    def __init__(self, labels: Sequence[str], phrases: Mapping[str, Sequence[str]],
                 decision: Decision) -> None:
        index = {label: i for i, label in enumerate(labels)}
        self.decision = decision
        self._classes = {cmd: [index[p] for p in ps if p in index] for cmd, ps in phrases.items()}
        self._labels = list(labels)
        self._active: tuple[str, ...] = tuple(self._classes)
        self.reset()

    def set_commands(self, commands: Collection[str]) -> None:
        """Accept only these commands from now on (stop is always accepted)."""
        self._active = tuple(c for c in self._classes if c in commands or c == STOP)

    def reset(self) -> None:
        """Forget scores, pending second looks and the refractory period."""
        self._history: deque[np.ndarray] = deque(maxlen=max(1, self.decision.smooth))
        self._above: dict[str, int] = {}
        self._rose: dict[str, float] = {}
        self._quiet_until = -1e9
        self._stop_quiet_until = -1e9

    def step(self, probs: np.ndarray, end_s: float) -> list[Fired]:
        """Feed one step's probabilities (ending at audio time ``end_s``)."""
        self._history.append(np.asarray(probs, dtype=np.float64))
        smooth = np.mean(np.stack(self._history), axis=0)
        d = self.decision
        fired: list[Fired] = []
        best_cmd, best = "", -1.0
        for cmd in self._active:
            idx = self._classes[cmd]
            score = float(smooth[idx].sum())
            limit = d.threshold_for(cmd)
            if score >= 0.5 * limit:
                self._rose.setdefault(cmd, end_s - (len(self._history) - 1) * 0.08)
            else:
                self._rose.pop(cmd, None)
            self._above[cmd] = self._above.get(cmd, 0) + 1 if score >= limit else 0
            if cmd != STOP and score > best:
                best_cmd, best = cmd, score
        if STOP in self._active and self._above.get(STOP, 0) >= 1 and end_s >= self._stop_quiet_until:
            fired.append(self._fire(STOP, smooth, end_s))
            self._stop_quiet_until = end_s + d.refractory_s
            self._quiet_until = end_s + d.refractory_s
            return fired
        if (best_cmd and self._above.get(best_cmd, 0) >= max(1, d.confirm)
                and end_s >= self._quiet_until):
            fired.append(self._fire(best_cmd, smooth, end_s))
            self._quiet_until = end_s + d.refractory_s
        return fired

    def _fire(self, cmd: str, smooth: np.ndarray, end_s: float) -> Fired:
        idx = self._classes[cmd]
        phrase = self._labels[idx[int(np.argmax(smooth[idx]))]]
        self._above[cmd] = 0
        return Fired(cmd, phrase, float(smooth[idx].sum()), self._rose.pop(cmd, end_s), end_s)
