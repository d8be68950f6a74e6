"""The device loop: listen all day, start a session by voice, speak through a queue, survive faults.

Audio time drives everything: the coach's clock is the microphone's sample count (plus the
time spent waiting for a lost microphone), and the duplex gate compares it with the times
the speaker reports. Speech goes to the Speaker, which never blocks this loop.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack
from dataclasses import replace
from typing import Any

import numpy as np

from voicecoach.audio.chunk import AudioChunk, AudioSource
from voicecoach.device.belt import BeltController, stop_belts
from voicecoach.device.duplex import Decision, DuplexGate
from voicecoach.errors import VoicecoachError
from voicecoach.events import CueSpoken, Event, Priority, VolumeChanged
from voicecoach.grammar import Grammar
from voicecoach.history import recorder as history_recorder
from voicecoach.listening.recogniser import Detection, Recogniser
from voicecoach.phrases import load_phrases
from voicecoach.settings import Settings, TreadmillSettings
from voicecoach.speaking.speaker import PlaysBack, Speaker
from voicecoach.treadmill.link import Treadmill
from voicecoach.workout.coach import Coach, Listener
from voicecoach.workout.machine import AT_REST, State
from voicecoach.workout.plan import Plan, programme_week

_LOGGER = logging.getLogger(__name__)

#: Seconds between attempts to reopen a microphone that went away.
RETRY_S = 3.0
#: Chunks over which AudioClock takes the least offset between audio and capture time (10 s
#: of 0.1 s chunks).
LAG_CHUNKS = 100
#: A chunk captured this much later against audio time than that least offset (seconds): the
#: microphone dropped audio before it (whole blocks, 0.1 s each by default).
GAP_S = 0.05
#: Echo path the live canceller covers: the speaker's output latency (its speech is stamped as
#: its stream opens, not as the sound leaves it), the room (the loopback room needs 30 ms
#: plus its tail) and what the capture stamps miss.
LIVE_ECHO_S = 0.3
#: Seconds of audio between two tries of the loop's upkeep (DeviceLoop ``upkeep``).
UPKEEP_S = 1.0

#: Said when a session cannot be recorded (no command phrase in it: a test checks).
NO_HISTORY_SPEECH = load_phrases("en").NO_HISTORY  # (in English; the loop says its language's)

#: Opens one session's history record: (plan or None) -> context giving (plan, recorder).
SessionOpener = Callable[[Plan | None], AbstractContextManager[tuple[Plan, Any]]]


class AudioClock:
    """Audio time: the end of the last chunk heard, plus (live only) wall time since then.

    Live, audio time (the samples heard) is tied to the wall clock the speaker stamps its
    speech with (``time.monotonic()``) by the offset between a chunk's audio time and the
    wall time it was *captured* (``AudioChunk.captured``, from PortAudio's ADC times): the
    least over the last ``LAG_CHUNKS`` chunks, so it does not jitter with the callback's
    scheduling (a late callback only adds). It does not move when the loop runs behind real
    time (the microphone's queue holds up to voicecoach.audio.mic.MAX_BACKLOG_S): pairing by
    when a chunk was taken instead put the echo canceller's reference off by that delay. When
    the microphone drops its oldest blocks, audio time skips what was dropped and the offset
    jumps up by as much: a rise over ``GAP_S`` starts the window again from the new offset.
    A chunk with no capture time (a replay paced in real time) counts from when it arrived.
    ``speaker_to_audio`` and ``audio_to_speaker`` map a speaker stamp to audio time and back
    (the duplex gate's spans, the echo canceller's and the gate's reference).
    """

    def __init__(self, live: bool = False, wall: Callable[[], float] = time.monotonic) -> None:
        self.live = live
        self._wall = wall
        self.audio_s = 0.0
        self._at = wall()
        self._lags: deque[float] = deque(maxlen=LAG_CHUNKS)

    def note(self, audio_s: float, captured: float | None = None) -> None:
        """The loop has heard up to ``audio_s``; ``captured``: when that sample was captured
        on the wall clock, if the source knows it."""
        self.audio_s = max(self.audio_s, audio_s)
        self._at = self._wall()
        lag = (self._at if captured is None else captured) - audio_s
        if captured is not None and self._lags and lag > min(self._lags) + GAP_S:
            self._lags.clear()  # audio was dropped: the offset jumps with it
        self._lags.append(lag)

    def now(self) -> float:
        if not self.live:
            return self.audio_s
        return self.audio_s + max(0.0, self._wall() - self._at)

    def _lag(self) -> float:
        return min(self._lags) if self._lags else self._at - self.audio_s

    def speaker_to_audio(self, stamp: float) -> float:
        return stamp - self._lag()

    def audio_to_speaker(self, t: float) -> float:
        return t + self._lag()


class DeviceLoop:
    """Idle -> "start" -> briefing -> ... -> idle again, for ``sessions`` sessions (None: ever).

    ``open_source`` returns the next audio source, or None when there is no more input
    (replayed files); if it raises, or the source raises mid-stream, the microphone is taken
    as gone: the coach says so, and the loop retries every ``retry_s`` seconds.
    """

    def __init__(self, settings: Settings, grammar: Grammar, recogniser: Recogniser,
                 speaker: Speaker, open_source: Callable[[], AudioSource | None],
                 open_session: SessionOpener, *, plan: Plan | None = None,
                 listeners: Iterable[Listener] = (), sessions: int | None = None,
                 begin_at_once: bool = False, clock: AudioClock | None = None,
                 gate: DuplexGate | None = None, retry_s: float = RETRY_S,
                 sleep: Callable[[float], None] = time.sleep,
                 on_decision: Callable[[Decision], None] | None = None,
                 canceller: Callable[[AudioChunk], AudioChunk] | None | str = "auto",
                 treadmill: Treadmill | None = None,
                 treadmill_settings: TreadmillSettings | None = None,
                 upkeep: Callable[[], bool] | None = None) -> None:
        self.settings = settings
        self.recogniser = recogniser
        self.speaker = speaker
        self.open_source = open_source
        self.open_session = open_session
        self.chosen_plan = plan
        self.sessions = sessions
        self.begin_at_once = begin_at_once
        self.clock = clock or AudioClock()
        #: What the speaker played, on the microphone's audio clock (None: it cannot say).
        self.played = self._played_on_audio_clock()
        self.gate = gate or self._duplex_gate()
        # a recogniser that reads its audio differently while the coach speaks is told when
        # (the spotter's second look: voicecoach.listening.spotter.engine)
        hear_coach = getattr(recogniser, "hear_coach", None)
        if hear_coach is not None:
            hear_coach(self.gate.echo_spans)
        # ... and one that can look again at a stop it acted on without a look is asked before
        # the gate drops that stop as the coach's own voice (voicecoach.device.duplex)
        look_again = getattr(recogniser, "look_again", None)
        if look_again is not None and self.gate.second_look is None:
            self.gate.second_look = look_again
        self.retry_s = retry_s
        self.sleep = sleep
        self.on_decision = on_decision
        #: Echo cancellation before recognition (voicecoach.audio.aec); "auto": against what
        #: the speaker played, if it can say (speaking.speaker.PlaysBack); None: off.
        self.canceller = self._echo_canceller() if isinstance(canceller, str) else canceller
        idle_plan = plan or programme_week(1, settings.coach)
        follow = [] if treadmill is None else [
            BeltController.follow(treadmill, treadmill_settings or settings.treadmill)]
        self.coach = Coach(idle_plan, settings.coach, grammar, [self._speak, *listeners],
                           volume=settings.speech.volume, words_per_minute=settings.speech.rate,
                           followers=follow)
        #: Keeps the belt in step with the coach when a treadmill link is given.
        self.belt = self.coach.followers[0] if treadmill is not None else None
        self.completed = 0
        self.outcomes: list[str] = []
        self.input_losses = 0
        #: The state a session was in when the input ended under it (None: it did not).
        self.input_ended_in: State | None = None
        self._session: ExitStack | None = None
        self._recorder: Any = None
        #: Sessions over whose record the history has not taken in full yet (another program
        #: holds it locked): written at the loop's heartbeats, closed once written.
        self._ending: list[tuple[ExitStack, Any]] = []
        #: Work the history owes that waits for it without holding the loop up (serve's
        #: start-up tidy, a lock held then): tried at the heartbeats until it says done.
        self._upkeep = upkeep
        self._upkeep_t = float("-inf")
        self._offset = 0.0
        self._active: tuple[str, ...] = ()

    def _speaker_on_audio_time(self) -> bool:
        """Whether the speaker's times are already the loop's audio time: a simulated speaker
        in a simulated room, or one timed by this loop's own clock (a replay paced in real
        time: ``run --audio-in --realtime``); the real speaker stamps the wall clock."""
        return not self.clock.live or getattr(self.speaker, "clock", None) is self.clock

    def _played_on_audio_clock(self) -> Callable[[float, float], np.ndarray] | None:
        """The speaker's ``played_audio`` on the microphone's clock: as is for a simulated
        speaker (already on audio time), mapped by the AudioClock for the live one."""
        if not isinstance(self.speaker, PlaysBack):
            return None
        played = self.speaker.played_audio
        if self._speaker_on_audio_time():
            return played
        clock = self.clock
        return lambda a, b: played(clock.audio_to_speaker(a), clock.audio_to_speaker(b))

    def _duplex_gate(self) -> DuplexGate:
        """The gate, with the echo check against what was played wherever that is known."""
        if self._speaker_on_audio_time():
            return DuplexGate(self.speaker, reference=self.played)
        return DuplexGate(self.speaker, to_audio=self.clock.speaker_to_audio,
                          reference=self.played, echo_search_s=LIVE_ECHO_S)

    def _echo_canceller(self) -> Callable[[AudioChunk], AudioChunk] | None:
        """The configured canceller (``[audio] echo_canceller``), fed with the speaker's
        samples on the microphone's clock; one that cannot start is one warning and None."""
        if self.played is None:
            return None
        from voicecoach.audio.aec import ReferenceCanceller
        from voicecoach.audio.cancellers import make_canceller
        from voicecoach.listening.engines import suppresses_echo

        # the NLMS filter's span: live, the mic's arrival-time error and the device latency too
        span = LIVE_ECHO_S if self.clock.live else 0.128
        suppress = suppresses_echo(getattr(self.recogniser, "name", ""))
        canceller = make_canceller(self.settings.audio.echo_canceller, filter_s=span,
                                   suppress=suppress)
        return None if canceller is None else ReferenceCanceller(self.played, canceller)

    def _cancel_echo(self, chunk: AudioChunk) -> AudioChunk:
        """The chunk through the canceller; one that fails mid-session is dropped (one line)."""
        if self.canceller is None:
            return chunk
        try:
            return self.canceller(chunk)
        except Exception as exc:  # noqa: BLE001 - a foreign extension failing: go on without
            _LOGGER.warning("echo canceller failed (%s: %s); the coach goes on without echo "
                            "cancellation", type(exc).__name__, exc)
            self.canceller = None
            return chunk

    # ------------------------------------------------------------------ speech out
    def _speak(self, event: Event) -> None:
        if isinstance(event, CueSpoken):
            self.speaker.say(event.text, event.priority, event.t)
        elif isinstance(event, VolumeChanged):
            self.speaker.set_volume(event.volume)

    # ------------------------------------------------------------------ sessions
    def _start_session(self, t: float, phrase: str, confidence: float, source: str) -> None:
        stack = ExitStack()
        try:
            plan, recorder = stack.enter_context(self.open_session(self.chosen_plan))
        except VoicecoachError as exc:
            # The history cannot take a session (damaged, read-only, disk full): say so
            # aloud, log the fix, and keep listening (it may be fixed without a restart).
            _LOGGER.error("%s", exc.one_line())
            self.speaker.say(self.coach.words.NO_HISTORY, Priority.URGENT, t)
            return
        self._session, self._recorder = stack, recorder
        if hasattr(recorder, "on_problem"):  # the history stops taking it: said once
            told = recorder.on_problem  # the opener's own telling (a line on stderr), if any

            def on_problem(exc: Exception) -> None:
                if told is not None:
                    told(exc)
                self.coach.say(self.coach.words.HISTORY_FAILING, "warning", Priority.URGENT,
                               remember=False)
            recorder.on_problem = on_problem
        self.coach.plan = plan
        self.coach.listeners.append(recorder.on_event)
        self.coach.tick_hooks.append(recorder.heartbeat)
        self.coach.command("start", t, phrase=phrase, confidence=confidence, source=source)

    def _end_session(self) -> None:
        """The session is over: its record is closed now if the history takes the rest at
        once; if not (another program holds it locked), the loop goes on hearing and writes
        it at its heartbeats (:meth:`_write_ended`): closing would wait for the lock (up to
        about 43 s), and the microphone keeps only 2 s of what the user says meanwhile."""
        stack, recorder = self._session, self._recorder
        self._session = self._recorder = None
        if recorder is not None:
            self.coach.listeners.remove(recorder.on_event)
            self.coach.tick_hooks.remove(recorder.heartbeat)
        if stack is not None:
            end = getattr(recorder, "end", None)
            if end is not None and not end(self.coach.outcome or "interrupted"):
                _LOGGER.info("history: the session's end is written once the history allows")
                self._ending.append((stack, recorder))
            else:
                stack.close()
        self.completed += 1
        self.outcomes.append(self.coach.outcome or "")
        _LOGGER.info("session %d %s; listening for start again", self.completed,
                     self.coach.outcome)
        self.coach.reset()

    def _write_ended(self, t: float) -> None:
        """A heartbeat for the records of sessions over (never waits): each is closed once
        the history has taken it."""
        for item in list(self._ending):
            stack, recorder = item
            recorder.heartbeat(t)
            if recorder.closed:
                self._ending.remove(item)
                stack.close()

    def _heartbeat(self, t: float) -> None:
        """What waits for the history, tried without waiting: the records of sessions over
        (each second, by their recorders) and the upkeep (once a second of audio)."""
        if self._ending:
            self._write_ended(t)
        if self._upkeep is not None and t - self._upkeep_t >= UPKEEP_S:
            self._upkeep_t = t
            if self._upkeep():
                self._upkeep = None

    def close(self, exc: BaseException | None = None) -> None:
        """Close a session still open without waiting for it: recorded as stopped when
        ``exc`` is SystemExit/KeyboardInterrupt (SIGTERM, Ctrl-C), else as interrupted.
        Records of sessions over that are still unwritten are closed too, which waits for
        the history (the program is ending: nothing is left unsaid), all of them within
        one deadline of CLOSE_WORST_S, which the service's stop timeout leaves them: one
        after another, each waiting its own, a few would outlast it and be killed."""
        deadline = history_recorder.Deadline(history_recorder.CLOSE_WORST_S)
        for recorder in (self._recorder if self._session is not None else None,
                         *(recorder for _stack, recorder in self._ending)):
            if hasattr(recorder, "close_by"):
                recorder.close_by = deadline
        try:
            if self._session is not None:
                stack, self._session = self._session, None
                if exc is None:
                    stack.close()
                else:
                    stack.__exit__(type(exc), exc, exc.__traceback__)
        finally:
            while self._ending:
                stack, _recorder = self._ending.pop(0)
                stack.close()

    @property
    def finished(self) -> bool:
        return self.sessions is not None and self.completed >= self.sessions

    # ------------------------------------------------------------------ listening
    def _deliver(self, det: Detection, now: float) -> None:
        decision = self.gate.decide(det)
        if self.on_decision is not None:
            self.on_decision(decision)
        if not decision.accepted:
            release = getattr(self.recogniser, "release_stop", None)
            if det.command == "stop" and decision.reason == "echo" and release is not None:
                release()  # the coach's voice must not hold back the user's stop after it
            return
        t = max(det.emitted_s, self.coach.now)
        if det.command == "start" and self.coach.state in AT_REST and self._session is None:
            self._start_session(t, det.phrase, det.confidence, "voice")
        else:
            self.coach.command(det.command, t, phrase=det.phrase, confidence=det.confidence)

    def _sync_grammar(self) -> None:
        active = self.coach.accepted_commands()
        if active != self._active:
            self._active = active
            self.recogniser.set_commands(active)

    def process(self, chunk: AudioChunk) -> None:
        """One chunk of audio (already on the loop's audio time)."""
        # detections are emitted at the end of the chunk; it was captured over its audio time
        self.clock.note(chunk.end_s,
                        None if chunk.captured is None else chunk.captured + chunk.seconds)
        self.gate.hear(chunk.audio, chunk.end_s)  # the raw mic: the gate checks it for echo
        heard = self._cancel_echo(chunk)
        for det in self.recogniser.accept(heard):
            self._deliver(det, chunk.end_s)
            self._sync_grammar()
        self.coach.tick(chunk.end_s)
        if self.coach.done and self._session is not None:
            self._end_session()
        self._heartbeat(chunk.end_s)
        self._sync_grammar()

    def _chunks(self) -> Iterator[AudioChunk]:
        """Chunks of all sources in turn, on one audio clock; a failing source is retried."""
        lost = False
        while not self.finished:
            try:
                source = self.open_source()
            except Exception as exc:  # noqa: BLE001 - a device error of any kind: retry
                lost = self._lost(lost, exc)
                continue
            if source is None:
                return
            offset = self.clock.audio_s
            if lost:  # a new stream: forget the utterance the old one was cut off in
                self.recogniser.reset()
            try:
                iterator = source.chunks()
                while True:
                    try:
                        chunk = next(iterator)
                    except StopIteration:
                        break
                    if lost:
                        lost = False
                        _LOGGER.warning("microphone: back")
                        self.coach.input_back(self.coach.now)
                    yield replace(chunk, start_s=offset + chunk.start_s)
                    if self.finished:
                        return
            except Exception as exc:  # noqa: BLE001 - the device went away mid-stream
                lost = self._lost(lost, exc)
            finally:
                source.close()

    def _lost(self, already: bool, exc: Exception) -> bool:
        now = self.clock.audio_s
        if not already:
            self.input_losses += 1
            _LOGGER.warning("microphone: lost (%s); retrying every %g s", exc, self.retry_s)
            self.coach.lose_input(now)
        self.sleep(self.retry_s)
        self.clock.note(now + self.retry_s)
        self.coach.tick(self.clock.audio_s)
        self._heartbeat(self.clock.audio_s)
        return True

    def run(self) -> int:
        """Listen until the input ends or ``sessions`` sessions are done; return how many."""
        self._sync_grammar()
        if self.begin_at_once:
            self._start_session(0.0, "start", 1.0, "system")
            self._sync_grammar()
        try:
            for chunk in self._chunks():
                self.process(chunk)
            if self._session is not None and not self.coach.done:
                _LOGGER.warning("input ended during a session; stopping it")
                self.input_ended_in = self.coach.state
                self.coach.command("stop", self.clock.audio_s, source="system")
                if self.coach.state is State.STOPPED:
                    self._end_session()
        except BaseException as exc:
            self._halt_belt()
            self.close(exc)
            raise
        self.close()
        return self.completed

    def _halt_belt(self) -> None:
        """The loop is ending under a session (SIGTERM, Ctrl-C, a fault): nobody will coach or
        listen any more, so the belt is stopped."""
        if (self._session is not None or getattr(self.belt, "started", False)) \
                and stop_belts(self.coach):
            _LOGGER.warning("the coach is ending under a session: the belt is stopped")
