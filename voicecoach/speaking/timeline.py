"""A speaker that renders into a WAV timeline: the coach's voice placed at its workout time.

``WavSpeaker`` is a deterministic, simulated-time twin of TtsSpeaker for tests, replays and
the duplex benchmark: the same priority queue, URGENT pre-emption, ``interrupt`` and
``cancel_queued``, with rendering taking no time. Its time is ``clock.now()`` if a clock is
given, else the latest ``t`` passed to ``say``.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voicecoach.audio.chunk import SAMPLE_RATE
from voicecoach.clock import Clock
from voicecoach.events import Priority
from voicecoach.speaking.render import FallbackRenderer, Rendered, Renderer
from voicecoach.speaking.speaker import (
    SpeechInterval,
    SpeechListener,
    VoiceControls,
    clamp_volume,
)

_LOGGER = logging.getLogger(__name__)


@dataclass(order=True)
class _Pending:
    sort_key: tuple[int, int]
    t: float = field(compare=False)
    text: str = field(compare=False)
    priority: Priority = field(compare=False)
    audio: np.ndarray = field(compare=False)
    tone: bool = field(compare=False)


@dataclass
class _Placed:
    start: float
    audio: np.ndarray
    item: _Pending
    cut_at: float | None = None
    end_told: bool = False

    @property
    def end(self) -> float:
        full = self.start + self.audio.size / SAMPLE_RATE
        return full if self.cut_at is None else min(full, self.cut_at)

    def interval(self) -> SpeechInterval:
        return SpeechInterval(self.start, self.end, self.item.text, self.item.priority,
                              self.item.t, self.cut_at is None, self.item.tone)


class WavSpeaker(VoiceControls):
    """Speech rendered off-line and laid out on a 16 kHz timeline (see the module docstring)."""

    def __init__(self, renderer: Renderer | None, volume: float = 0.8, rate: int = 160,
                 clock: Clock | None = None, give_up_after: int = 3) -> None:
        self._engine = FallbackRenderer(renderer, give_up_after)
        self._clock = clock
        self._now = 0.0
        self.volume = clamp_volume(volume)
        self.rate = self.set_rate(rate)
        self._cache: dict[tuple[str, int, bool], tuple[Rendered, bool]] = {}
        self._pending: list[_Pending] = []
        self._placed: list[_Placed] = []
        self._seq = itertools.count()
        self._listeners: list[SpeechListener] = []

    @property
    def clock(self) -> Clock | None:
        """The clock its speech is timed by (None: the times it is given)."""
        return self._clock

    def _time(self, t: float | None = None) -> float:
        if self._clock is not None:
            self._now = max(self._now, self._clock.now())
        elif t is not None:
            self._now = max(self._now, t)
        return self._now

    def _render(self, text: str, urgent: bool) -> tuple[Rendered, bool]:
        key = (text, self.rate, urgent)
        if key not in self._cache:
            self._cache[key] = self._engine.render(text, urgent)
        return self._cache[key]

    def _advance(self, now: float) -> None:
        """Start, in queue order, every pending utterance that would have started before now."""
        self._tell_ends(now)
        while self._pending:
            free_at = self._placed[-1].end if self._placed else -math.inf
            start = max(free_at, min(p.t for p in self._pending))
            if start >= now:
                return
            ready = [p for p in self._pending if p.t <= start]
            item = min(ready)
            self._pending.remove(item)
            heapq.heapify(self._pending)
            placed = _Placed(start, item.audio, item)
            self._placed.append(placed)
            self._notify(SpeechInterval(start, None, item.text, item.priority, item.t,
                                        False, item.tone))
            self._tell_ends(now)

    def _tell_ends(self, now: float) -> None:
        for placed in self._placed[-2:]:
            if not placed.end_told and placed.end <= now:
                placed.end_told = True
                self._notify(placed.interval())

    def _notify(self, interval: SpeechInterval) -> None:
        for listener in list(self._listeners):
            listener(interval)

    def _current(self, now: float) -> _Placed | None:
        if self._placed and self._placed[-1].start <= now < self._placed[-1].end:
            return self._placed[-1]
        return None

    def _cut(self, placed: _Placed, now: float) -> None:
        placed.cut_at = now
        placed.end_told = True
        self._notify(placed.interval())

    def say(self, text: str, priority: Priority = Priority.CUE, t: float = 0.0) -> None:
        text = text.strip()
        if not text:
            return
        now = self._time(t)
        self._advance(now)
        urgent = priority >= Priority.URGENT
        rendered, is_tone = self._render(text, urgent)
        if not rendered.audio.size:
            return
        gain = self.volume
        audio = np.clip(rendered.audio.astype(np.float32) * gain, -32768, 32767).astype(np.int16)
        current = self._current(now)
        if urgent and current is not None and current.item.priority < Priority.URGENT:
            self._cut(current, now)
        heapq.heappush(self._pending, _Pending((-int(priority), next(self._seq)), max(t, now),
                                               text, Priority(priority), audio, is_tone))

    def cancel_queued(self) -> int:
        self._advance(self._time())
        dropped = len(self._pending)
        self._pending.clear()
        return dropped

    def interrupt(self) -> None:
        now = self._time()
        self._advance(now)
        current = self._current(now)
        if current is not None:
            self._cut(current, now)

    def is_speaking(self) -> bool:
        now = self._time()
        self._advance(now)
        return self._current(now) is not None or bool(self._pending)

    def speaking_intervals(self) -> list[SpeechInterval]:
        """Utterances started by now (the speaker's time), oldest first."""
        self._advance(self._time())
        return [p.interval() for p in self._placed]

    def add_listener(self, listener: SpeechListener) -> None:
        self._listeners.append(listener)

    def finish(self) -> list[SpeechInterval]:
        """Play out everything still queued; return all the intervals."""
        self._advance(math.inf)
        return [p.interval() for p in self._placed]

    def played_audio(self, start_s: float, end_s: float) -> np.ndarray:
        """What the speaker plays over [start_s, end_s) of its time, as int16 samples.

        The far-end reference for echo cancellation. Utterances due to start before
        ``end_s`` are placed first; speech cut off later does not change what came before.
        """
        n = max(0, int(round((end_s - start_s) * SAMPLE_RATE)))
        out = np.zeros(n, dtype=np.int32)
        if n == 0:
            return out.astype(np.int16)
        self._advance(max(self._time(), end_s))
        base = int(round(start_s * SAMPLE_RATE))
        for placed in self._placed:
            if placed.end <= start_s or placed.start >= end_s:
                continue
            begin = int(round(placed.start * SAMPLE_RATE))
            part = placed.audio[:int(round((placed.end - placed.start) * SAMPLE_RATE))]
            lo, hi = max(begin, base), min(begin + part.size, base + n)
            if hi > lo:
                out[lo - base:hi - base] += part[lo - begin:hi - begin]
        return np.clip(out, -32768, 32767).astype(np.int16)

    def audio(self, total_s: float | None = None) -> np.ndarray:
        """The whole timeline from time 0 as int16 samples (after ``finish``)."""
        intervals = self.finish()
        end = max([i.end or 0.0 for i in intervals] + [total_s or 0.0])
        out = np.zeros(int(math.ceil(end * SAMPLE_RATE)), dtype=np.int32)
        for placed in self._placed:
            begin = int(round(placed.start * SAMPLE_RATE))
            count = int(round((placed.end - placed.start) * SAMPLE_RATE))
            part = placed.audio[:count].astype(np.int32)[: max(0, out.size - begin)]
            out[begin:begin + part.size] += part
        return np.clip(out, -32768, 32767).astype(np.int16)

    def write(self, path: str | Path, total_s: float | None = None) -> Path:
        """Write the timeline as a 16 kHz mono 16-bit WAV file."""
        path = Path(path)
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(SAMPLE_RATE)
            wav.writeframes(self.audio(total_s).astype("<i2").tobytes())
        return path

    def close(self) -> None:
        self._engine.close()
