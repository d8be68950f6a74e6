"""A replayed session drives the simulated treadmill: the user's recorded track (start, yes,
ready, "faster", then "stop" said over the coach) through the real device loop and recogniser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from replay_helpers import PLAN

from voicecoach.audio.wav import AudioFileSource, write_wav
from voicecoach.commands._common import recorded_session
from voicecoach.device.loop import AudioClock, DeviceLoop
from voicecoach.device.loop_faults import ListeningFaults
from voicecoach.events import CommandHeard, Event, StateChanged
from voicecoach.grammar import load_grammar
from voicecoach.lab.cached import CachedRenderer
from voicecoach.lab.room import ClosedLoopSource, EchoWavSpeaker, PoliteUser, load_clip
from voicecoach.settings import Settings, SpeechSettings, TreadmillSettings
from voicecoach.speaking.render import EspeakNgRenderer
from voicecoach.treadmill.ftms import KMH_PER_MPH, Op
from voicecoach.treadmill.sim import SimTreadmill
from voicecoach.workout.machine import State

DRIVE = TreadmillSettings(control="drive")
TOTAL_S = 150.0


def _pocketsphinx() -> Any:
    from voicecoach.listening.engines import make_recogniser

    # The belt is under test here, not recognition: pocketsphinx hears this synthetic user's
    # voice (Piper joe) in 0.81 of clean fixture clips, the spotter (trained for real people)
    # in 0.71, too few for the scripted briefing to get through reliably.
    return make_recogniser(SpeechSettings(engine="pocketsphinx"), load_grammar("en"))


class FasterThenStop:
    """After the polite answers: "faster" early in the backward block (again if not heard),
    then "stop" over the middle of a coach utterance (again if the session goes on)."""

    def __init__(self, loop: DeviceLoop, speaker: EchoWavSpeaker, room: ClosedLoopSource) -> None:
        self.loop, self.speaker, self.room = loop, speaker, room
        self.faster_at: list[float] = []
        self.stop_at: list[float] = []

    def _place(self, t: float, command: str, phrase: str) -> None:
        clip = load_clip(command, phrase)
        clip.at_s = t
        self.room.add(clip)

    def __call__(self, t: float) -> None:
        coach = self.loop.coach
        if coach.done or self.speaker.is_speaking() and not self.faster_heard():
            return
        walking = coach.state is State.BACKWARD and not coach.awaiting_turn
        if walking and not self.faster_heard() and coach.phase_elapsed > 3 \
                and (not self.faster_at or t - self.faster_at[-1] > 5) and len(self.faster_at) < 4:
            self.faster_at.append(t)
            self._place(t, "faster", "faster")
        elif self.faster_heard() and (not self.stop_at or t - self.stop_at[-1] > 5) \
                and t - self.faster_at[-1] > 6 and len(self.stop_at) < 4:
            for iv in self.speaker.speaking_intervals():
                if iv.start + 0.2 <= t and iv.end is not None and iv.end >= t + 1.2:
                    self.stop_at.append(t)
                    self._place(t, "stop", "stop")
                    return

    def faster_heard(self) -> bool:
        return self.loop.coach.speed_mph > 0.6 + 1e-6 and \
            self.loop.coach.state is State.BACKWARD or bool(self.stop_at)


def _loop(settings: Settings, recogniser: Any, speaker: Any, source: Any, clock: AudioClock,
          sim: SimTreadmill, events: list[Event]) -> DeviceLoop:
    sources = iter([source])
    return DeviceLoop(settings, load_grammar("en"), recogniser, speaker,
                      lambda: next(sources, None),
                      lambda plan: recorded_session(settings, plan, "serve"), plan=PLAN,
                      listeners=[events.append], clock=clock, sessions=1, treadmill=sim,
                      treadmill_settings=DRIVE)


@pytest.mark.slow  # minutes of audio: CI runs it in its `pytest -m slow` step
def test_a_replayed_session_drives_the_belt(tmp_path: Path) -> None:
    renderer = CachedRenderer(EspeakNgRenderer())
    recogniser = _pocketsphinx()
    # 1. record the user's side against the simulated coach (no echo in the track)
    clock = AudioClock()
    speaker = EchoWavSpeaker(renderer, clock=clock)
    room = ClosedLoopSource(speaker, TOTAL_S, echo_gain_db=-200.0, keep_mic=True)
    loop = _loop(Settings(data_dir=tmp_path / "rec"), recogniser, speaker, room, clock,
                 SimTreadmill(), [])
    polite, script = PoliteUser(loop.coach, speaker, room), FasterThenStop(loop, speaker, room)
    room.react = lambda t: (polite(t), script(t))
    recogniser.reset()
    loop.run()
    assert script.stop_at, "the recording never got as far as the stop"
    track = tmp_path / "user.wav"
    write_wav(track, np.concatenate([*room.mic, np.zeros(5 * 16000, dtype=np.float32)]))

    # 2. replay the recording through the real loop, driving a fresh simulated treadmill
    events: list[Event] = []
    clock = AudioClock()
    speaker = EchoWavSpeaker(renderer, clock=clock)
    sim = SimTreadmill()
    # a recogniser as fresh as the recording's: pocketsphinx's reset() keeps its running
    # cepstral mean, so the one that recorded would hear the same track a little differently
    # (a borderline stop over the coach was lost that way once the briefing grew a sentence)
    fresh = _pocketsphinx()
    replay = _loop(Settings(data_dir=tmp_path / "replay"), fresh, speaker,
                   AudioFileSource(track), clock, sim, events)
    replay.run()
    heard = {e.command: e for e in events if isinstance(e, CommandHeard) and e.source == "voice"}
    assert "faster" in heard and "stop" in heard
    assert replay.outcomes == ["stopped"]

    speeds = [(t, round(float(c.value or 0) / KMH_PER_MPH, 1)) for t, c in
              sim.log.of(Op.SET_TARGET_SPEED)]
    after_faster = [mph for t, mph in speeds if t >= heard["faster"].t]
    assert after_faster == [0.7]  # one step up from the block's 0.6, written once
    assert max(mph for _, mph in speeds) <= 1.5  # never above the plan (warm-up top 1.5)

    stop = heard["stop"]
    over = [iv for iv in speaker.speaking_intervals()
            if iv.start <= stop.t and (iv.end is None or iv.end >= stop.t - 0.5)]
    assert over, "the stop was not said over the coach"
    written = [t for t, c in sim.log.of(Op.STOP_PAUSE) if c.value == 1]
    assert written and 0 <= written[0] - stop.t <= 0.2  # at the audio time it was heard

    sim.poll(replay.clock.audio_s + 15.0)  # the belt runs down to a halt
    assert sim.model.speed_kmh == 0.0 and sim.model.state == "stopped"


class DiesAt:
    """A recogniser that hears the briefing through ("start", then "yes" every 4 s) and then
    raises ``exc`` at audio time ``at``: the loop ending under a walking session."""

    name = "scripted"
    language = "en"

    def __init__(self, at: float, exc: BaseException) -> None:
        self.at, self.exc = at, exc

    def set_commands(self, commands: Any) -> None:
        pass

    def reset(self) -> None:
        pass

    def accept(self, chunk: Any) -> list[Any]:
        from voicecoach.listening.recogniser import Detection

        t = round(chunk.end_s, 2)
        if t >= self.at:
            raise self.exc
        said = {1.0: "start", **{round(8.0 + 4 * k, 2): "yes" for k in range(14)}}.get(t)
        return [Detection(said, said, t - 0.4, t - 0.1, t, 0.99, True)] if said else []

    def flush(self) -> list[Any]:
        return []

    def close(self) -> None:
        pass


class Quiet:
    """Silence for ``seconds``; its close raises ``fails`` (a stream that cannot be closed)."""

    def __init__(self, seconds: float = 10_000.0, fails: BaseException | None = None) -> None:
        self.seconds, self.fails = seconds, fails

    def chunks(self) -> Any:
        from voicecoach.audio.chunk import AudioChunk

        for i in range(round(self.seconds * 10)):
            yield AudioChunk(b"\0\0" * 1600, i * 0.1, 16000)

    def close(self) -> None:
        if self.fails is not None:
            raise self.fails


@pytest.mark.parametrize(("exc", "where", "raised", "status"), [
    (SystemExit(0), "recogniser", SystemExit, "stopped"),  # SIGTERM: as the user ending it
    # a fault in the listening ends the session (loop_faults.py), and one that comes back on
    # every chunk the loop (exit 70)
    (RuntimeError("a fault"), "recogniser", ListeningFaults, "stopped"),
    # Ctrl-C in the history's upkeep (whose faults the loop logs and goes on past) is not
    # swallowed
    (KeyboardInterrupt(), "upkeep", KeyboardInterrupt, "stopped"),
    # a fault outside the workout, the listening and the history still ends the loop
    # unhandled (here the audio source's close): the belt is stopped all the same
    (RuntimeError("a fault"), "source", RuntimeError, "interrupted")])
def test_the_loop_ending_under_a_session_stops_the_belt(exc: BaseException, where: str,
                                                        raised: type[BaseException],
                                                        status: str, tmp_path: Path) -> None:
    import sqlite3

    from voicecoach.commands._device import simulated_speaker

    settings = Settings(data_dir=tmp_path)
    clock = AudioClock()
    sim = SimTreadmill()
    sources = iter([Quiet(90.0, exc) if where == "source" else Quiet()])
    events: list[Event] = []

    def upkeep() -> bool:
        if clock.audio_s >= 90.0:
            raise exc
        return False
    loop = DeviceLoop(settings, load_grammar("en"),
                      DiesAt(90.0 if where == "recogniser" else 1e9, exc),
                      simulated_speaker(settings, clock), lambda: next(sources, None),
                      lambda plan: recorded_session(settings, plan, "serve"), plan=PLAN,
                      clock=clock, sleep=lambda s: None, treadmill=sim, treadmill_settings=DRIVE,
                      upkeep=upkeep if where == "upkeep" else None, listeners=[events.append])
    with pytest.raises(raised):
        loop.run()
    # it must die mid-walk (after a listening fault the coach is idle: the state it left then)
    faulted = [e.source for e in events if isinstance(e, StateChanged) and e.trigger == "fault"]
    ended_in = faulted if raised is ListeningFaults else [loop.coach.state.value]
    assert ended_in in (["warmup"], ["backward"]), "it must die mid-walk"
    sim.poll(sim.now + 30)              # the treadmill half a minute later, nobody coaching
    assert sim.log.of(Op.STOP_PAUSE) and sim.model.speed_kmh < 0.01
    with sqlite3.connect(tmp_path / "history.sqlite3") as db:
        assert [s for (s,) in db.execute("select status from sessions")] == [status]


def test_an_upkeep_that_raises_is_one_line_and_the_walk_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging
    import sqlite3

    from voicecoach.commands._device import simulated_speaker
    from voicecoach.device import loop_sessions

    settings = Settings(data_dir=tmp_path)
    clock = AudioClock()
    sim = SimTreadmill()
    sources = iter([Quiet(120.0)])
    tried: list[float] = []

    def upkeep() -> bool:  # the history's upkeep (serve's start-up tidy) has a bug
        tried.append(clock.audio_s)
        if clock.audio_s >= 90.0:
            raise RuntimeError("a fault")
        return False
    loop = DeviceLoop(settings, load_grammar("en"), DiesAt(1e9, RuntimeError()),
                      simulated_speaker(settings, clock), lambda: next(sources, None),
                      lambda plan: recorded_session(settings, plan, "serve"), plan=PLAN,
                      clock=clock, sleep=lambda s: None, treadmill=sim, treadmill_settings=DRIVE,
                      upkeep=upkeep)
    with caplog.at_level(logging.INFO):
        assert loop.run() == 1  # on the old code the RuntimeError came out of here
    # left to the history's next opening: not tried again; the walk went on to the input's end
    assert tried[-2] < 90.0 <= tried[-1] < 91.0 and loop._upkeep is None
    assert loop.faults == [] and loop.listen_faults == []
    assert loop.input_ended_in is not None  # the session went on to the input's end
    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert line.startswith("history fault in the history's upkeep: RuntimeError: a fault")
    assert [r.name for r in caplog.records if r.levelno >= logging.ERROR] == [
        loop_sessions.__name__]
    assert not any(r.exc_info for r in caplog.records if r.levelno > logging.DEBUG)
    with sqlite3.connect(tmp_path / "history.sqlite3") as db:
        assert [s for (s,) in db.execute("select status from sessions")] == ["stopped"]


def test_a_stop_the_gate_drops_as_the_coachs_voice_releases_the_recognisers_refractory(
        tmp_path: Path) -> None:
    from voicecoach.commands._device import simulated_speaker
    from voicecoach.device.duplex import Decision
    from voicecoach.listening.recogniser import Detection

    class Releasing(DiesAt):
        released = 0

        def release_stop(self) -> None:
            self.released += 1

    settings = Settings(data_dir=tmp_path)
    clock = AudioClock()
    rec = Releasing(1e9, RuntimeError())
    loop = DeviceLoop(settings, load_grammar("en"), rec, simulated_speaker(settings, clock),
                      lambda: None, lambda plan: recorded_session(settings, plan, "serve"),
                      plan=PLAN, clock=clock)
    stop = Detection("stop", "stop", 0.1, 0.4, 0.5, 0.99, False)
    for reason, accepted, released in (("echo", False, 1), ("over-speech", False, 1),
                                       ("stop", True, 1)):
        loop.gate.decide = lambda det, r=reason, a=accepted: Decision(det, a, r)  # type: ignore
        loop._deliver(stop, 0.5)
        assert rec.released == released, reason
