"""From per-step class probabilities to commands: smoothing, thresholds, a second look, refractory.

Each 80 ms step gives probabilities over the phrase classes; a command's score is the sum over
its phrases, smoothed over the last ``smooth`` steps. "stop" fires on the first step its
smoothed score reaches its threshold, whatever else is going on. Any other command must be one
the current state accepts, be the best of them, and stay above its threshold for
``confirm`` consecutive steps, and nothing fires within ``refractory_s`` of the last command
(stop excepted: it is never held back).

With a verifier (``verifying``), the decider also raises *candidates* that the engine must have
looked at before acting (``Fired.needs_look``): every non-stop command, and a stop whose score
passed ``stop_candidate`` but not ``stop_threshold`` (looked at once its score stops rising, or
``look_after`` steps after it crossed). A confident stop never waits for a look. A run of
scores that was looked at and rejected is not looked at again until the score falls back under
the candidate level, but a run the spotter is sure of (``sure_stop_threshold``) whose look
leaned to stop (``sure_stop_bar``, told by :meth:`Decider.looked_at_stop`) is a stop, and a
turned-down stop candidate is looked at once more ``relook_after`` steps later, or once its word
has ended (``relook_end_s``: the engine, which hears the loudness, says when). Refractory
periods start only when the engine accepts a command (:meth:`Decider.accept`).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

_LOGGER = logging.getLogger(__name__)

STOP = "stop"
RIVALS = 2
"""How many runner-up commands a candidate carries to the second look (each costs the
verifier a little decoding; the spotter's top three hold the right command far more often than
its top one)."""


@dataclass(frozen=True)
class Decision:
    """The decision settings; the model card carries the ones chosen by cross-validation."""

    stop_threshold: float
    threshold: float
    smooth: int = 2
    confirm: int = 2
    refractory_s: float = 1.0
    stop_candidate: float | None = None
    """With a verifier: a stop score from here up to the confident threshold is looked at."""
    verified_stop_threshold: float | None = None
    """With a verifier: the confident stop threshold, acted on without a look (default
    ``stop_threshold``)."""
    verified_threshold: float | None = None
    """With a verifier: the spotter threshold of the other commands (default ``threshold``)."""
    look_after: int = 2
    """A stop candidate is looked at by this many steps after it crossed, at the latest."""
    peak_look: bool = False
    """With a verifier: a stop candidate looked at while its score was still rising (at
    ``look_after``, before the word may have ended) is looked at once more when the score stops
    rising, if the first look rejected it."""
    sure_stop_threshold: float | None = None
    """With a verifier: a stop run whose score reaches this (under the confident threshold)
    needs only :attr:`sure_stop_bar` from the verifier's look, not the card's stop bar (None:
    no such rule). The two evidences add up: a run the spotter is sure of, with a look that
    leans to stop, is a stop."""
    sure_stop_bar: float | None = None
    """The verifier's stop score that is enough for a run reaching :attr:`sure_stop_threshold`."""
    relook_after: int = 0
    """With a verifier: a stop candidate whose look was turned down is looked at once more this
    many steps later, whatever its score then (0: never). The first look often comes before
    the word has ended (its last sound is the one that makes it "stop")."""
    relook_end_s: float | None = None
    """With a verifier: a turned-down stop candidate is looked at once more when its word has
    been over this long (the engine's loudness envelope: :meth:`Decider.relook_waiting`,
    :meth:`Decider.relook_now`), not at a fixed delay, unless the first look already came that
    long after the word's end (None: no such re-look)."""

    @classmethod
    def from_card(cls, data: Mapping[str, object]) -> Decision:
        def opt(key: str) -> float | None:
            value = data.get(key)
            return None if value is None else float(value)  # type: ignore[arg-type]

        return cls(stop_threshold=float(data["stop_threshold"]),  # type: ignore[arg-type]
                   threshold=float(data["threshold"]),  # type: ignore[arg-type]
                   smooth=int(data.get("smooth", 2)),  # type: ignore[call-overload]
                   confirm=int(data.get("confirm", 2)),  # type: ignore[call-overload]
                   refractory_s=float(data.get("refractory_s", 1.0)),  # type: ignore[arg-type]
                   stop_candidate=opt("stop_candidate"),
                   verified_stop_threshold=opt("verified_stop_threshold"),
                   verified_threshold=opt("verified_threshold"),
                   look_after=int(data.get("look_after", 2)),  # type: ignore[call-overload]
                   peak_look=bool(data.get("peak_look", False)),
                   sure_stop_threshold=opt("sure_stop_threshold"),
                   sure_stop_bar=opt("sure_stop_bar"),
                   relook_after=int(data.get("relook_after", 0)),  # type: ignore[call-overload]
                   relook_end_s=opt("relook_end_s"))

    def problem(self) -> str | None:
        """What is wrong with these settings, in a few words (None: nothing): a card edited by
        hand or damaged would otherwise decide with a threshold no score can reach or pass."""
        for name in ("stop_threshold", "threshold", "stop_candidate", "verified_stop_threshold",
                     "verified_threshold", "sure_stop_threshold", "sure_stop_bar"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:  # NaN fails too
                return f"{name} is {value}, not a score between 0 and 1"
        if self.smooth < 1 or self.confirm < 1:
            return f"smooth and confirm must be 1 or more steps (they are {self.smooth} and " \
                   f"{self.confirm})"
        if not self.refractory_s >= 0.0:
            return f"refractory_s is {self.refractory_s}, not 0 or more seconds"
        if self.relook_after < 0:
            return f"relook_after is {self.relook_after}, not 0 or more steps"
        if self.relook_end_s is not None and not 0.0 <= self.relook_end_s <= 1.0:
            return f"relook_end_s is {self.relook_end_s}, not between 0 and 1 s"
        return None

    def threshold_for(self, command: str, verifying: bool = False) -> float:
        if command == STOP:
            if verifying and self.verified_stop_threshold is not None:
                return self.verified_stop_threshold
            return self.stop_threshold
        if verifying and self.verified_threshold is not None:
            return self.verified_threshold
        return self.threshold

    def candidate_for(self, command: str, verifying: bool) -> float:
        """The score from which a command is a candidate (stop: looked at; others: as fired)."""
        if command == STOP and verifying and self.stop_candidate is not None:
            return min(self.stop_candidate, self.threshold_for(STOP, verifying))
        return self.threshold_for(command, verifying)


def sure_enough(rule: tuple[float, float] | None, spotter: float, verifier: float) -> bool:
    """Whether a look clears a sure rule (``rule``: the spotter's score, the verifier's bar; None:
    no rule): the spotter was at least that sure and the verifier leaned at least that far."""
    return rule is not None and spotter >= rule[0] and verifier >= rule[1]


@dataclass(frozen=True)
class Fired:
    """A command decided at the end of one step."""

    command: str
    phrase: str
    score: float
    rose_s: float
    """When the score first passed half the threshold in this run (about the phrase's end)."""
    emitted_s: float
    needs_look: bool = False
    """A candidate: act on it only if the verifier agrees (then :meth:`Decider.accept` it)."""
    rivals: tuple[str, ...] = ()
    """For a candidate: the next best commands the state accepts, by the spotter's score (at
    most ``RIVALS``); the second look may name one of them instead."""
    relook: bool = False
    """A stop candidate looked at once more (``Decision.relook_after``)."""


class Decider:
    """Turns a stream of probability vectors into commands for the current state."""

    def __init__(self, labels: Sequence[str], phrases: Mapping[str, Sequence[str]],
                 decision: Decision, *, verifying: bool = False) -> None:
        index = {label: i for i, label in enumerate(labels)}
        self.decision = decision
        self.verifying = verifying
        self._classes = {cmd: [index[p] for p in ps if p in index] for cmd, ps in phrases.items()}
        self._labels = list(labels)
        self._active: tuple[str, ...] = tuple(self._classes)
        #: With a verifier: the stop candidate level while the coach's own speech is in the
        #: audio (told per step, :meth:`step`'s ``over``), when lower than the card's (None: the
        #: card's everywhere). Set from the over-the-coach learned look that was fitted on the
        #: looks raised at that level (``look_probe.over.candidate``).
        self.over_stop_candidate: float | None = None
        self.reset()

    def set_commands(self, commands: Collection[str]) -> None:
        """Accept only these commands from now on (stop is always accepted)."""
        self._active = tuple(c for c in self._classes if c in commands or c == STOP)

    @property
    def active(self) -> tuple[str, ...]:
        """The commands accepted now (stop always among them)."""
        return self._active

    def reset(self) -> None:
        """Forget scores, pending second looks and the refractory period."""
        self._history: deque[np.ndarray] = deque(maxlen=max(1, self.decision.smooth))
        self._above: dict[str, int] = {}
        self._rose: dict[str, float] = {}
        self._quiet_until = -1e9
        self._stop_quiet_until = -1e9
        self._looked: set[str] = set()
        #: commands other than stop acted on in their current run of scores (one run is one
        #: utterance: a "faster" held past the refractory second is not a second "faster")
        self._said: set[str] = set()
        self._last_stop = 0.0
        self._stop_steps = 0
        self._stop_said = False
        self._peak_due = False
        self._stop_run_max = 0.0
        self._sure_due = False
        #: when the turned-down stop candidate's second look is due (inf: when its word has
        #: ended, relook_end_s; the run's rise is kept in _relook_rose)
        self._relook_at: float | None = None
        self._relook_rose = 0.0
        self._over = False

    @property
    def stop_run_max(self) -> float:
        """The highest stop score of the current run (kept while a re-look is due)."""
        return self._stop_run_max

    def relook_waiting(self) -> float | None:
        """The rise (audio s) of a turned-down stop candidate whose second look waits for its
        word to end (:attr:`Decision.relook_end_s`), or None."""
        return self._relook_rose if self._relook_at == float("inf") else None

    def relook_now(self, end_s: float) -> None:
        """The waiting candidate's word has ended (:meth:`relook_waiting`): look at the step
        ending at ``end_s``."""
        if self._relook_at == float("inf"):
            self._relook_at = end_s

    def drop_relook(self) -> None:
        """No second look for the waiting candidate (its first look saw the whole word, or its
        word never ended: not a short command)."""
        self._relook_at = None

    def stop_candidate(self, over: bool | None = None) -> float:
        """The stop candidate level: the card's, or over the coach's speech (``over``; None: as
        at the last step) :attr:`over_stop_candidate` if that is lower."""
        level = self.decision.candidate_for(STOP, self.verifying)
        if (self._over if over is None else over) and self.verifying \
                and self.over_stop_candidate is not None:
            return min(level, self.over_stop_candidate)
        return level

    def step(self, probs: np.ndarray, end_s: float, over: bool = False) -> list[Fired]:
        """Feed one step's probabilities (ending at audio time ``end_s``); ``over``: the coach's
        own speech is in the audio (see :attr:`over_stop_candidate`)."""
        self._over = over
        self._history.append(np.asarray(probs, dtype=np.float64))
        smooth = np.mean(np.stack(self._history), axis=0)
        d = self.decision
        verifying = self.verifying
        best_cmd, best = "", -1.0
        scores: dict[str, float] = {}
        for cmd in self._active:
            idx = self._classes[cmd]
            score = scores[cmd] = float(smooth[idx].sum())
            limit = d.threshold_for(cmd, verifying)
            if score >= 0.5 * limit:
                self._rose.setdefault(cmd, end_s - (len(self._history) - 1) * 0.08)
            else:
                self._rose.pop(cmd, None)
            level = self.stop_candidate() if cmd == STOP else d.candidate_for(cmd, verifying)
            if score < level:
                self._looked.discard(cmd)
            if score < 0.5 * level:
                self._said.discard(cmd)
            self._above[cmd] = self._above.get(cmd, 0) + 1 if score >= limit else 0
            if cmd != STOP and score > best:
                best_cmd, best = cmd, score
        if STOP in self._active and end_s >= self._stop_quiet_until:
            stop = self._stop(scores[STOP], smooth, end_s)
            if stop is not None:
                return [stop]
        if (best_cmd and self._above.get(best_cmd, 0) >= max(1, d.confirm)
                and end_s >= self._quiet_until and best_cmd not in self._looked
                and best_cmd not in self._said):
            fired = self._fire(best_cmd, smooth, end_s, needs_look=verifying)
            if verifying:
                self._looked.add(best_cmd)
            else:
                self.accept(fired)
            return [fired]
        return []

    def _stop(self, score: float, smooth: np.ndarray, end_s: float) -> Fired | None:
        """A confident stop (acted on at once) or, with a verifier, a stop candidate to look at.
        One run of stop scores is one word: once a stop of the run was acted on, the run fires
        nothing more (a score that stays high past the refractory second is the same stop, not a
        second one); the run ends when the score falls under half the candidate level."""
        d = self.decision
        candidate = self.stop_candidate()
        if score < 0.5 * candidate:
            self._stop_said = False
        if self._stop_said:
            self._last_stop = score
            return None
        if self._relook_at is not None and end_s >= self._relook_at - 1e-9:
            # the turned-down candidate's second look, now that its word has surely ended
            self._relook_at = None
            self._last_stop = score
            self._stop_run_max = max(self._stop_run_max, score)
            return replace(self._fire(STOP, smooth, end_s, needs_look=True), relook=True)
        if self._above.get(STOP, 0) >= 1:
            fired = self._fire(STOP, smooth, end_s)
            self.accept(fired)
            return fired
        rising = score > self._last_stop
        self._last_stop = score
        if not self.verifying or score < candidate:
            self._stop_steps = 0
            self._peak_due = False
            if self._relook_at is None:
                self._stop_run_max = 0.0
                self._sure_due = False
            return None
        self._stop_run_max = max(self._stop_run_max, score)
        if STOP in self._looked:
            # a look that leaned to stop, and the run has now reached the sure level
            if self._sure_due and d.sure_stop_threshold is not None and \
                    score >= d.sure_stop_threshold:
                fired = self._fire(STOP, smooth, end_s)
                self.accept(fired)
                return fired
            # the run's second look, at its peak, if the first was taken while it still rose
            if self._peak_due and not rising:
                self._peak_due = False
                return self._fire(STOP, smooth, end_s, needs_look=True)
            return None
        self._stop_steps += 1
        if rising and self._stop_steps < max(1, d.look_after):
            return None
        self._looked.add(STOP)
        self._stop_steps = 0
        self._peak_due = d.peak_look and rising
        return self._fire(STOP, smooth, end_s, needs_look=True)

    def looked_at_stop(self, fired: Fired, verifier_stop: float) -> Fired | None:
        """The engine's look at stop candidate ``fired`` did not clear the stop bar but scored
        ``verifier_stop``: if that reaches :attr:`Decision.sure_stop_bar`, the run is a stop as
        soon as its score reaches :attr:`Decision.sure_stop_threshold` -- now (``fired``, accepted,
        is returned) if it already has, else at that step of the run (:meth:`step`). A first
        look turned down is looked at once more :attr:`Decision.relook_after` steps later, or when
        its word has ended (:attr:`Decision.relook_end_s`)."""
        d = self.decision
        if fired.command != STOP:
            return None
        if d.relook_end_s is not None and not fired.relook:
            self._relook_at, self._relook_rose = float("inf"), fired.rose_s
        elif d.relook_after and not fired.relook:
            self._relook_at = fired.emitted_s + d.relook_after * 0.08
        if d.sure_stop_bar is None or d.sure_stop_threshold is None or \
                verifier_stop < d.sure_stop_bar:
            return None
        if self._stop_run_max >= d.sure_stop_threshold:
            self.accept(fired)
            return fired
        self._sure_due = True
        return None

    def release_stop(self) -> None:
        """The stop just acted on was not the user's (the duplex gate dropped it as the coach's
        own voice): the next run of stop scores may fire at once, without waiting out the
        refractory second. The dropped run itself still fires nothing more."""
        self._stop_quiet_until = -1e9

    def accept(self, fired: Fired) -> None:
        """Act on ``fired``: its refractory period starts (the verifier agreed, or none asked)."""
        d = self.decision
        if fired.command == STOP:
            self._stop_quiet_until = fired.emitted_s + d.refractory_s
            self._stop_said = True
        self._quiet_until = fired.emitted_s + d.refractory_s
        self._looked.discard(fired.command)
        if fired.command != STOP:
            self._said.add(fired.command)
        if fired.command == STOP:
            self._sure_due = False
            self._relook_at = None

    def _fire(self, cmd: str, smooth: np.ndarray, end_s: float, *, needs_look: bool = False) -> Fired:
        idx = self._classes[cmd]
        phrase = self._labels[idx[int(np.argmax(smooth[idx]))]]
        self._above[cmd] = 0
        rose = self._rose.get(cmd, end_s) if needs_look else self._rose.pop(cmd, end_s)
        rivals: tuple[str, ...] = ()
        if needs_look:
            others = sorted((c for c in self._active if c != cmd),
                            key=lambda c: -float(smooth[self._classes[c]].sum()))
            rivals = tuple(others[:RIVALS])
        return Fired(cmd, phrase, float(smooth[idx].sum()), rose, end_s, needs_look, rivals)
