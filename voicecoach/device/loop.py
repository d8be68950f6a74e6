"""The device loop: listen all day, start a session by voice, speak through a queue, survive faults.

Audio time drives everything: the coach's clock is the microphone's sample count (plus the
time spent waiting for a lost microphone), and the duplex gate compares it with the times
the speaker reports. Speech goes to the Speaker, which never blocks this loop.

The loop in parts: its audio clock (audio_clock.py), its sessions with their history
records (loop_sessions.py) and what a fault inside the workout or in the listening does
(loop_faults.py); here, the echo path, the speech out and the listening.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import replace
from typing import Any

import numpy as np

from voicecoach import events as ev
from voicecoach.audio.chunk import AudioChunk, AudioSource
from voicecoach.device.audio_clock import AudioClock
from voicecoach.device.belt import BeltController, stop_belts
from voicecoach.device.duplex import Decision, DuplexGate
from voicecoach.device.loop_faults import DeviceFaults, LoopFaults
from voicecoach.device.loop_sessions import LoopSessions, SessionOpener
from voicecoach.device.speaker_search import SpeakerSearch
from voicecoach.events import CueSpoken, Event, VolumeChanged
from voicecoach.grammar import Grammar
from voicecoach.listening.recogniser import Detection, Recogniser
from voicecoach.phrases import load_phrases
from voicecoach.settings import Settings, TreadmillSettings
from voicecoach.speaking.speaker import LosesOutput, PlaysBack, Speaker
from voicecoach.treadmill.link import Treadmill
from voicecoach.workout.coach import Coach, Listener
from voicecoach.workout.machine import AT_REST, State
from voicecoach.workout.plan import Plan, programme_week

_LOGGER = logging.getLogger(__name__)

#: Seconds between attempts to reopen a microphone that went away.
RETRY_S = 3.0
#: Echo path the live canceller covers: the speaker's output latency (its speech is stamped as
#: its stream opens, not as the sound leaves it), the room (the loopback room needs 30 ms
#: plus its tail) and what the capture stamps miss.
LIVE_ECHO_S = 0.3

#: Said when a session cannot be recorded (no command phrase in it: a test checks).
NO_HISTORY_SPEECH = load_phrases("en").NO_HISTORY  # (in English; the loop says its language's)


class DeviceLoop(LoopSessions, LoopFaults):
    """Idle -> "start" -> briefing -> ... -> idle again, for ``sessions`` sessions (None: ever).

    ``open_source`` returns the next audio source, or None when there is no more input
    (replayed files); if it raises, or the source raises mid-stream, the microphone is taken
    as gone: the coach says so, and the loop retries every ``retry_s`` seconds. A source whose
    reopening re-reads the device list (sources.Microphone) is also reopened, while the belt is
    still, to look for a speaker that lost its device (speaker_search.py). An exception
    inside the workout, or in the listening (the audio clock, the duplex gate, the
    recogniser, its grammar's switch), halts the belt and ends that session, not the loop
    (loop_faults.py); one in writing the history is logged and the write tried again
    (loop_sessions.py).
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
        #: When to reopen the microphone to look for a lost speaker (None: never, as reopening
        #: this source does not re-read the device list, or the speaker never loses one).
        self.speaker_search = (SpeakerSearch(speaker) if isinstance(speaker, LosesOutput)
                               and getattr(open_source, "rereads_devices", False) else None)
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
        self.faults: list[float] = []
        self.listen_faults: list[float] = []
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
        self._history_faults: dict[str, str] = {}
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

    # ------------------------------------------------------------------ listening
    def _deliver(self, det: Detection, now: float) -> bool:
        """A detection through the duplex gate's decision, then to the coach if accepted; each
        a listening step, the first the gate's (its fault is the duplex gate's). False when
        one failed."""
        hearing = f"while hearing '{det.command}'"
        decided: list[Decision] = []
        return (self._listening(f"in the duplex gate {hearing}",
                                lambda: decided.append(self.gate.decide(det)),
                                device=ev.DUPLEX_GATE)
                and self._listening(hearing, self._act_on, det, decided[0], now))

    def _act_on(self, det: Detection, decision: Decision, now: float) -> None:
        """What the gate decided of a detection: dropped (a stop dropped as echo releases the
        recogniser's hold), or the command to the coach."""
        if self.on_decision is not None:
            self.on_decision(decision)
        if not decision.accepted:
            release = getattr(self.recogniser, "release_stop", None)
            if det.command == "stop" and decision.reason == "echo" and release is not None:
                release()  # the coach's voice must not hold back the user's stop after it
            return
        t = max(det.emitted_s, self.coach.now)
        if det.command == "start" and self.coach.state in AT_REST and self._session is None:
            self._workout("while starting a session", self._start_session, t, det.phrase,
                          det.confidence, "voice")
        else:
            self._workout(f"while acting on '{det.command}'", self.coach.command, det.command,
                          t, phrase=det.phrase, confidence=det.confidence)

    def _sync_grammar(self) -> None:
        active = self.coach.accepted_commands()
        if active != self._active:
            self.recogniser.set_commands(active)
            self._active = active

    def _hear(self, chunk: AudioChunk) -> None:
        """The chunk through the duplex gate, the echo canceller and the recogniser, and what
        is heard to the coach. A fault in the gate, the recogniser or its grammar's switch is
        a listening fault (loop_faults.py): the rest of the chunk goes unheard."""
        # the raw mic: the gate checks it for echo
        if not self._listening("in the duplex gate", self.gate.hear, chunk.audio, chunk.end_s,
                               device=ev.DUPLEX_GATE):
            return
        heard = self._cancel_echo(chunk)
        found: list[Detection] = []
        if not self._listening("in the recogniser",
                               lambda: found.extend(self.recogniser.accept(heard))):
            return
        for det in found:
            if not (self._deliver(det, chunk.end_s)
                    and self._listening("while switching the grammar", self._sync_grammar)):
                return

    def process(self, chunk: AudioChunk) -> None:
        """One chunk of audio (already on the loop's audio time). A fault in the audio clock
        (its arithmetic: a bug) is a listening fault: the gate's and the canceller's times
        come from it, so the chunk goes unheard."""
        # detections are emitted at the end of the chunk; it was captured over its audio time
        if self._listening("in the audio clock", self.clock.note, chunk.end_s,
                           None if chunk.captured is None else chunk.captured + chunk.seconds,
                           device=ev.AUDIO_CLOCK):
            self._hear(chunk)
        self._workout("while coaching", self.coach.tick, chunk.end_s)
        if self.coach.done and self._session is not None:
            self._workout("while ending the session", self._end_session)
        self._heartbeat(chunk.end_s)
        self._listening("while switching the grammar", self._sync_grammar)

    def _chunks(self) -> Iterator[AudioChunk]:
        """Chunks of all sources in turn, on one audio clock; a failing source is retried."""
        lost = False
        reopened = False  # closed on purpose to look for the speaker (speaker_search.py)
        while not self.finished:
            try:
                source = self.open_source()
            except Exception as exc:  # noqa: BLE001 - a device error of any kind: retry
                lost = self._lost(lost, exc)
                continue
            if source is None:
                return
            offset = self.clock.audio_s
            if lost or reopened:  # a new stream: forget the utterance the old one was cut off in
                self._listening("as the microphone came back", self.recogniser.reset)
            reopened = False
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
                        self._workout("as the microphone came back", self.coach.input_back,
                                      self.coach.now)
                    yield replace(chunk, start_s=offset + chunk.start_s)
                    if self.finished:
                        return
                    if self._search_speaker():
                        reopened = True
                        break
            except DeviceFaults:  # the loop gives up (loop_faults.py): not the microphone
                raise
            except Exception as exc:  # noqa: BLE001 - the device went away mid-stream
                lost = self._lost(lost, exc)
            finally:
                source.close()

    def _search_speaker(self) -> bool:
        """Whether to reopen the microphone now to look for a lost speaker: never while a
        belt may move (a deaf gap under a moving belt), see :meth:`_belt_still`."""
        search = self.speaker_search
        return search is not None and search.due(self.clock.audio_s, self._belt_still())

    def _belt_still(self) -> bool:
        """No belt that may be moving: the workout at rest or paused and, when a belt is
        driven or watched, the belt known still (BeltState.still: not reported moving, no stop
        or pause unconfirmed, not winding down). With no belt the device knows of, a walk may
        still be on a belt started by hand: never in the middle of one."""
        at_rest = self.coach.state in (*AT_REST, State.PAUSED)
        if not isinstance(self.belt, BeltController):
            return at_rest
        return at_rest and self.belt.still

    def _lost(self, already: bool, exc: Exception) -> bool:
        now = self.clock.audio_s
        if not already:
            self.input_losses += 1
            _LOGGER.warning("microphone: lost (%s); retrying every %g s", exc, self.retry_s)
            self._workout("as the microphone went", self.coach.lose_input, now)
        self.sleep(self.retry_s)
        self._listening("in the audio clock", self.clock.note, now + self.retry_s,
                        device=ev.AUDIO_CLOCK)
        self._workout("while coaching", self.coach.tick, self.clock.audio_s)
        self._heartbeat(self.clock.audio_s)
        return True

    def run(self) -> int:
        """Listen until the input ends or ``sessions`` sessions are done; return how many."""
        try:
            self._listening("while setting the grammar", self._sync_grammar)
            if self.begin_at_once:
                self._workout("while starting a session", self._start_session, 0.0, "start",
                              1.0, "system")
                self._listening("while switching the grammar", self._sync_grammar)
            for chunk in self._chunks():
                self.process(chunk)
            if self._session is not None and not self.coach.done:
                _LOGGER.warning("input ended during a session; stopping it")
                self.input_ended_in = self.coach.state
                self._workout("as the input ended", self.coach.command, "stop",
                              self.clock.audio_s, source="system")
                if self.coach.state is State.STOPPED:
                    self._workout("while ending the session", self._end_session)
        except BaseException as exc:
            if not isinstance(exc, DeviceFaults):  # (the fault halted the belt already)
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
