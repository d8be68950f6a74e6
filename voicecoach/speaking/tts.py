"""Speech out for the coach: a queue-fed speaker thread that renders with pyttsx3 and plays.

Design. ``TtsSpeaker.say`` only pushes onto a priority queue and returns. One speaker thread
takes the most urgent utterance (oldest first within a priority), has it rendered to audio by
pyttsx3 running in its own *process* (voicecoach.speaking.render.Pyttsx3Renderer), then plays
the audio itself through an AudioSink in 50 ms blocks. Why not pyttsx3's ``say``:

* pyttsx3 2.99's espeak driver plays with ``os.system("aplay ...")``: it cannot be cut off
  mid-utterance, ignores the configured output device, and on a machine with no sound card
  (or no ``aplay``) fails with nothing but a shell message. Playing the samples ourselves
  makes URGENT pre-emption and ``interrupt()`` immediate (one block), uses the chosen device,
  turns a missing device into one log line, and tells the duplex gate exactly when the coach
  spoke (``speaking_intervals()`` / ``add_listener``).
* A process rather than a thread with a watchdog, because a hung run loop (#126, #131)
  cannot be killed from another thread; the process is killed after its time limit and a
  new one started for the next utterance, while a tone is played in place of the lost one.

Failures never stop the workout: a failed or hung render becomes a tone (logged once); a
failed device becomes silence of the same length (logged once; retried every
``sink_retry_s`` seconds, and at the next utterance after anyone re-read the device list,
which is what a speaker plugged back in needs: the device loop reopens the microphone for that
while the workout is at rest or paused, voicecoach.device.speaker_search). A device that stops taking
sound without failing (a write that never returns) is given up ``play_grace_s`` after the
utterance should have ended: the coach is no longer taken to be speaking (the duplex gate
drops every command but stop while it speaks), and the device is tried again once that
write returns.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from voicecoach.audio.chunk import SAMPLE_RATE
from voicecoach.audio.devices import PORTAUDIO_STREAMS
from voicecoach.audio.playback import AudioSink, SilentSink, SinkError, SoundDeviceSink
from voicecoach.events import Priority
from voicecoach.settings import Settings
from voicecoach.speaking.render import (
    EspeakNgRenderer,
    FallbackRenderer,
    Pyttsx3Renderer,
    Rendered,
    Renderer,
    RenderError,
    tone,
)
from voicecoach.speaking.speaker import (
    ConsoleSpeaker,
    MultiSpeaker,
    NullSpeaker,
    Speaker,
    SpeechInterval,
    SpeechListener,
    VoiceControls,
    clamp_volume,
    format_time,
)
from voicecoach.speaking.timeline import WavSpeaker

_LOGGER = logging.getLogger(__name__)

#: Seconds an utterance may go on playing past its own length before the output device is
#: taken to have stopped taking sound (a write that never returns).
PLAY_GRACE_S = 10.0

__all__ = [
    "ConsoleSpeaker", "EspeakNgRenderer", "MultiSpeaker", "NullSpeaker", "Pyttsx3Renderer",
    "RenderError", "Rendered", "Renderer", "Speaker", "SpeechInterval", "SpeechListener",
    "TtsSpeaker", "WavSpeaker", "format_time", "make_renderer", "make_speaker", "tone",
]


@dataclass(order=True)
class _Item:
    sort_key: tuple[int, int]
    text: str = field(compare=False)
    priority: Priority = field(compare=False)
    t: float = field(compare=False)
    stop: threading.Event = field(compare=False, default_factory=threading.Event)


class TtsSpeaker(VoiceControls):
    """The real voice: see the module docstring. Thread-safe; ``say`` never blocks."""

    def __init__(self, renderer: Renderer | None, sink: AudioSink | None = None,
                 volume: float = 0.8, rate: int = 160,
                 clock: Callable[[], float] = time.monotonic, sink_retry_s: float = 30.0,
                 give_up_after: int = 3, keep_intervals: int = 1000,
                 play_grace_s: float = PLAY_GRACE_S) -> None:
        self._engine = FallbackRenderer(renderer, give_up_after)
        self._sink = sink if sink is not None else SoundDeviceSink()
        self._silent = SilentSink()
        self._sink_failed_at: float | None = None
        #: PORTAUDIO_STREAMS.rereads when the device failed: a re-read since makes it due
        self._list_at_failure = 0
        self._sink_warned = False
        self._clock = clock
        self.sink_retry_s = sink_retry_s
        self.play_grace_s = play_grace_s
        #: The play given up while the device still held it (it may never return): the
        #: device is not tried again until it has.
        self._stuck: threading.Thread | None = None
        self.volume = clamp_volume(volume)
        self.rate = self.set_rate(rate)
        self._queue: list[_Item] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._current: _Item | None = None
        self._closed = False
        self._intervals: deque[SpeechInterval] = deque(maxlen=keep_intervals)
        #: (start stamp, samples, end stamp or None) of recent utterances: the AEC reference
        self._played: deque[tuple[float, np.ndarray, float | None]] = deque(maxlen=8)
        self._listeners: list[SpeechListener] = []
        self._thread = threading.Thread(target=self._run, name="voicecoach-speaker", daemon=True)
        self._thread.start()

    # -- the Speaker interface ------------------------------------------------------------
    def say(self, text: str, priority: Priority = Priority.CUE, t: float = 0.0) -> None:
        text = text.strip()
        if not text:
            _LOGGER.debug("not saying empty text")
            return
        with self._cond:
            if self._closed:
                return
            item = _Item((-int(priority), next(self._seq)), text, Priority(priority), t)
            heapq.heappush(self._queue, item)
            current = self._current
            if priority >= Priority.URGENT and current is not None \
                    and current.priority < Priority.URGENT:
                current.stop.set()
            self._cond.notify_all()

    def cancel_queued(self) -> int:
        with self._cond:
            dropped = len(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        return dropped

    def interrupt(self) -> None:
        with self._cond:
            if self._current is not None:
                self._current.stop.set()

    def is_speaking(self) -> bool:
        with self._cond:
            return self._current is not None or bool(self._queue)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is playing or queued; False if ``timeout`` ran out first."""
        with self._cond:
            return self._cond.wait_for(lambda: self._current is None and not self._queue,
                                       timeout)

    def speaking_intervals(self) -> list[SpeechInterval]:
        with self._cond:
            return list(self._intervals)

    def add_listener(self, listener: SpeechListener) -> None:
        self._listeners.append(listener)

    def played_audio(self, start: float, end: float) -> np.ndarray:
        """What was sent to the speaker over [start, end) of its clock, as int16 samples.

        The far-end reference for echo cancellation: an utterance's samples laid out from
        the moment its playback began (``on_start``), up to where it was cut off, if it was.
        Only the last few utterances are kept.
        """
        n = max(0, int(round((end - start) * SAMPLE_RATE)))
        out = np.zeros(n, dtype=np.int16)
        with self._cond:
            played = list(self._played)
        for began, audio, stopped in played:
            count = audio.size if stopped is None else \
                min(audio.size, max(0, int(round((stopped - began) * SAMPLE_RATE))))
            offset = int(round((began - start) * SAMPLE_RATE))
            lo, hi = max(0, offset), min(n, offset + count)
            if hi > lo:
                out[lo:hi] = audio[lo - offset:hi - offset]
        return out

    @property
    def output_lost(self) -> bool:
        """True while the output device is given up (it failed, or stopped taking sound): it
        is tried again every ``sink_retry_s`` and after a re-read of the device list."""
        return self._sink_failed_at is not None

    @property
    def engine_working(self) -> bool:
        """False once the speech engine was given up (only tones are played)."""
        return self._engine.working

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._queue.clear()
            if self._current is not None:
                self._current.stop.set()
            self._cond.notify_all()
        self._thread.join(5.0)
        self._engine.close()
        self._sink.close()

    # -- the speaker thread ---------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or bool(self._queue))
                if self._closed:
                    return
                item = heapq.heappop(self._queue)
                self._current = item
            try:
                self._speak(item)
            except Exception:  # noqa: BLE001 - the speaker thread must outlive any bug
                _LOGGER.exception("speaker: unexpected error")
            finally:
                with self._cond:
                    self._current = None
                    self._cond.notify_all()

    def _speak(self, item: _Item) -> None:
        rendered, is_tone = self._engine.render(item.text, item.priority >= Priority.URGENT)
        if item.stop.is_set() or not rendered.audio.size:
            return
        gain = self.volume
        audio = np.clip(rendered.audio.astype(np.float32) * gain, -32768, 32767)
        audio = audio.astype(np.int16)
        started: list[SpeechInterval] = []

        def on_start() -> None:
            interval = SpeechInterval(self._clock(), None, item.text, item.priority, item.t,
                                      False, is_tone)
            started.append(interval)
            with self._cond:
                self._played.append((interval.start, audio, None))
            self._record(interval)

        completed = self._play(audio, item.stop, on_start)
        if not started:
            on_start()
        ended = self._clock()
        with self._cond:
            if self._played and self._played[-1][0] == started[0].start:
                self._played[-1] = (started[0].start, audio, None if completed else ended)
        self._record(replace(started[0], end=ended, completed=completed), final=True)

    def _play(self, audio: np.ndarray, stop: threading.Event,
              on_start: Callable[[], None]) -> bool:
        now = time.monotonic()
        if self._stuck is not None and not self._stuck.is_alive():
            self._stuck = None  # the write came back at last: the device may be tried again
        # the device list re-read since the failure (by the device loop's microphone reopen,
        # voicecoach.device.speaker_search, or a microphone loss): tried again at once
        fresh = self._sink_failed_at is not None \
            and PORTAUDIO_STREAMS.rereads != self._list_at_failure
        due = self._sink_failed_at is None or fresh \
            or now - self._sink_failed_at >= self.sink_retry_s
        if due and self._sink_failed_at is not None:
            # tried again after a failure or a stuck write: the device list is read again
            # first (a speaker plugged back in is only seen so), by the microphone's path;
            # skipped while the microphone listens (it would be pulled away)
            reread = fresh or self._reread_devices()
            if self._stuck is not None:
                if reread:
                    self._stuck = None  # PortAudio closed its stream: try the device again
                else:  # not opened again on the old list (another write to hang)
                    self._failed(now)
                    due = False
        use_real = due and self._stuck is None
        if use_real:
            started: list[bool] = []

            def mark() -> None:
                started.append(True)
                on_start()

            try:
                completed = self._play_watched(audio, stop, mark)
            except SinkError as exc:
                self._failed(now)
                if not self._sink_warned:
                    self._sink_warned = True
                    _LOGGER.warning("speaker: %s; the session goes on without sound", exc)
                if started:  # the device went away mid-utterance
                    return False
            else:
                if self._sink_failed_at is not None:
                    _LOGGER.warning("speaker: the output device works again")
                    self._sink_failed_at = None
                    self._sink_warned = False
                return completed
        return self._silent.play(audio, stop, on_start)

    def _failed(self, now: float) -> None:
        """The output device failed (or is not tried) at ``now``: tried again after
        ``sink_retry_s``, or after the next re-read of the device list."""
        self._sink_failed_at = now
        self._list_at_failure = PORTAUDIO_STREAMS.rereads

    def _reread_devices(self) -> bool:
        """Have the sink's sound library read its device list again (at once, or not at all
        while another stream is open); True if it did. A sink that keeps no list: False."""
        refresh = getattr(self._sink, "refresh_devices", None)
        return bool(refresh(0.0)) if refresh is not None else False

    def _play_watched(self, audio: np.ndarray, stop: threading.Event,
                      on_start: Callable[[], None]) -> bool:
        """The sink's play, in a thread of its own, waited for as long as the audio lasts
        plus ``play_grace_s``. One that outlasts that (the device stopped taking sound
        without failing: before, the coach was taken to be speaking for good, so no "start"
        was heard again until a restart) is left behind, told to stop should it ever return,
        and is one log line and SinkError: the session goes on without sound."""
        outcome: list[bool | BaseException] = []
        guard = threading.Lock()
        given_up: list[bool] = []

        def started() -> None:
            with guard:
                if not given_up:  # a play given up must not open the coach's speech again
                    on_start()

        def play() -> None:
            try:
                outcome.append(self._sink.play(audio, stop, started))
            except BaseException as exc:  # noqa: BLE001 - handed to the speaker thread
                outcome.append(exc)

        player = threading.Thread(target=play, name="voicecoach-output", daemon=True)
        player.start()
        seconds = audio.size / SAMPLE_RATE
        player.join(seconds + self.play_grace_s)
        if player.is_alive():
            with guard:
                given_up.append(True)
            stop.set()
            self._stuck = player
            PORTAUDIO_STREAMS.let_go(player)  # a re-read of the devices no longer waits for it
            _LOGGER.warning("speaker: the output device stopped taking sound (an utterance of "
                            "%.1f s still playing after %.1f s); the session goes on without "
                            "sound: plug the speaker in again, or restart voicecoach (sudo "
                            "systemctl restart voicecoach)", seconds, seconds + self.play_grace_s)
            self._sink_warned = True
            raise SinkError("the output device stopped taking sound")
        result = outcome[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def _record(self, interval: SpeechInterval, final: bool = False) -> None:
        with self._cond:
            if final and self._intervals and self._intervals[-1].start == interval.start \
                    and self._intervals[-1].end is None:
                self._intervals[-1] = interval
            else:
                self._intervals.append(interval)
        for listener in list(self._listeners):
            try:
                listener(interval)
            except Exception:  # noqa: BLE001
                _LOGGER.exception("speaker: a speech listener failed")


def make_renderer(voice: str | None = None, rate: int = 160) -> Renderer | None:
    """pyttsx3 in a worker process if pyttsx3 is installed, else espeak-ng, else None."""
    try:
        import pyttsx3  # noqa: F401
    except Exception:  # noqa: BLE001 - ImportError, or its driver failing to load
        import shutil

        if shutil.which("espeak-ng"):
            _LOGGER.warning("speech: pyttsx3 is not installed; using espeak-ng directly")
            return EspeakNgRenderer(voice, rate)
        return None
    renderer = Pyttsx3Renderer(voice, rate)
    try:
        renderer.start()
    except RenderError as exc:
        _LOGGER.debug("speech worker did not start (%s); it is retried per utterance", exc)
    return renderer


def make_speaker(settings: Settings) -> TtsSpeaker:
    """The real voice as settings say: pyttsx3 (or espeak-ng) and the configured speaker.

    A configured output device that matches nothing is one clear VoicecoachError now; a
    missing sound card is not an error: it is logged once when speech is first played.
    """
    device = None
    if settings.audio.output_device is not None:
        from voicecoach.audio.devices import devices_of, resolve_device

        try:
            present = bool(devices_of("output"))
        except Exception:  # noqa: BLE001 - no PortAudio at all
            present = False
        if present:
            device = resolve_device(settings.audio.output_device, kind="output")
        else:
            _LOGGER.warning("speaker: no output device at all; %r is ignored and the session "
                            "goes on without sound", settings.audio.output_device)
    speech = settings.speech
    sink = SoundDeviceSink(device, spec=settings.audio.output_device if device is not None
                           else None)
    return TtsSpeaker(make_renderer(speech.voice, speech.rate), sink,
                      volume=speech.volume, rate=speech.rate)
