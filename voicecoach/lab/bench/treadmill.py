"""Treadmill benchmark: spoken stop to FTMS stop, unasked belt writes over an hour, reconnect.

``python -m voicecoach.lab.bench.treadmill`` runs the real device loop in a simulated room
(voicecoach.lab.room: the coach's voice echoed into the microphone over treadmill noise) with
the recogniser ``make_recogniser`` picks for English, driving a simulated FTMS treadmill
(voicecoach.treadmill.sim) on audio time:

1. stop: a stop phrase in each fixture voice said over the coach after the briefing (typed
   answers, so the belt runs); from the end of the phrase to the FTMS stop written;
2. unasked writes: at least an hour of sessions at 10 dB SNR with chatter, coach sentences and
   never-command words said into the room, console speed changes and link drops; every speed
   or incline write must follow a request (a command, a phase, "ready") since the link was
   last up, and move towards it;
3. reconnect (``--ble``, needs the test extra): bleak's BlueZ backend against the fake FTMS
   peripheral on bluezoo; the link is dropped and the wall time to the link back and to the
   first belt reading after it is measured.
Figures are audio time (1, 2) or wall time (3), counts and ratios; not a test.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from voicecoach.device.belt_state import RESTART_MPH
from voicecoach.device.sayings import LINK_LOST
from voicecoach.events import Event, PhaseStarted, TargetChanged, WalkerReady
from voicecoach.grammar import load_grammar
from voicecoach.lab.room import closed_loop, load_clip
from voicecoach.settings import Settings, TreadmillSettings
from voicecoach.treadmill.ftms import KMH_PER_MPH, Op
from voicecoach.treadmill.link import LinkUp
from voicecoach.treadmill.sim import SimTreadmill
from voicecoach.workout.plan import COOLDOWN, RECOVERY, WARMUP, Phase, Plan

_LOGGER = logging.getLogger(__name__)

VOICES = ("joe", "espeak-en-us", "espeak-en-us-f3", "espeak-en-us-m3", "espeak-en-gb",
          "espeak-en-gb-scotland")
STOP_PHRASES = ("stop", "stop now", "stop the workout")
SNR20 = 10 ** (-40 / 20)
SNR10 = 10 ** (-30 / 20)
DRIVE = TreadmillSettings(control="drive")

#: A 30-minute session (two 10-minute blocks); the hour is two of them.
PLAN_30 = Plan("bench-30min", (
    replace(WARMUP, duration_s=300.0),
    Phase("backward", 600.0, 0.8, 0.6, 1.2, 0.0, 1.0, "technique"),
    replace(RECOVERY, duration_s=120.0),
    Phase("backward", 600.0, 0.8, 0.6, 1.2, 0.0, 1.0, "technique"),
    replace(COOLDOWN, duration_s=180.0),
))
#: Negative clips (no command in them) said into the room, one about every TALK_EVERY_S.
TALK = ("negatives/chatter", "negatives/coach_cue", "negatives/never_word")
TALK_EVERY_S = 20.0
TARGET_COMMANDS = ("faster", "slower", "incline_up", "incline_down", "pain")
#: Wall seconds the BLE reconnect is waited for.
RECONNECT_WAIT_S = 15.0


def _recogniser(settings: Settings) -> Any:
    from voicecoach.listening.engines import make_recogniser

    return make_recogniser(settings.speech, load_grammar(settings.speech.language),
                           announce=lambda line: _LOGGER.info("%s", line))


def _renderer(settings: Settings) -> Any:
    from voicecoach.speaking.render import EspeakNgRenderer

    return EspeakNgRenderer(settings.speech.voice, settings.speech.rate)


# ---------------------------------------------------------------- 1. spoken stop to FTMS stop
def stop_trials(settings: Settings, voices: tuple[str, ...] = VOICES) -> list[dict[str, Any]]:
    """One session per voice and phrase: the stop said over the coach 40 to 130 s in."""
    recogniser, renderer = _recogniser(settings), _renderer(settings)
    rows = []
    for i, (voice, phrase) in enumerate((v, p) for v in voices for p in STOP_PHRASES):
        clip = load_clip("stop", phrase, voice)
        after = 40.0 + (i % 7) * 15.0
        sim = SimTreadmill()
        run = closed_loop(recogniser, settings, PLAN_30, after + 60.0, renderer=renderer,
                          noise_rms=SNR20, typed_answers=True, begin_at_once=True, seed=i + 1,
                          stop_over_speech=(clip, after), treadmill=sim,
                          treadmill_settings=DRIVE)
        if clip not in run.source.clips:
            continue  # the coach never spoke long enough in the window
        heard = [e.t for e in run.heard if e.command == "stop" and
                 clip.start_s - 0.3 <= e.t <= clip.end_s + 2.5]  # this clip's stop, by voice
        stops = [t for t, c in sim.log.of(Op.STOP_PAUSE)
                 if c.value == 1 and heard and t >= heard[0] - 1e-9]
        over = any(iv.start <= clip.end_s and (iv.end or 1e9) >= clip.start_s
                   for iv in run.speaker.speaking_intervals())
        rows.append({"voice": voice, "phrase": phrase, "over_speech": over,
                     "caught": bool(stops),
                     "latency_s": round(stops[0] - clip.end_s, 3) if stops else None})
    return rows


# ---------------------------------------------------------------- 2. unasked writes
class TalkInRoom:
    """Says a negative fixture clip into the room about every TALK_EVERY_S (react hook)."""

    def __init__(self, source: Any, clips: list[Any]) -> None:
        self.source, self.clips, self.next_t, self.i = source, clips, 30.0, 0

    def __call__(self, t: float) -> None:
        if t >= self.next_t and self.clips:
            clip = self.clips[self.i % len(self.clips)]
            self.i += 1
            self.source.add(replace(clip, at_s=t))
            self.next_t = t + TALK_EVERY_S + (self.i % 5)


def _talk_clips() -> list[Any]:
    from voicecoach.audio.wav import read_wav_16k
    from voicecoach.lab.room import FIXTURES, UserClip, to_float

    clips = []
    for folder in TALK:
        for path in sorted((FIXTURES / folder).glob("*.wav")):
            audio = to_float(read_wav_16k(path))
            clips.append(UserClip(0.0, audio, "", path.stem, 0.0, audio.size / 16000))
    return clips


def unasked_writes(writes: list[tuple[float, Any]], events: list[Event],
                   link_ups: list[float]) -> list[tuple[float, str]]:
    """Speed/incline writes that no request explains: a write must come after a request (a
    non-console TargetChanged, or "ready") with no reconnect in between, and move from the
    last written value (a still belt's 0 at the start and after a stop, pause or start) towards
    that request's target, or, while a turn waits for "ready", down to the very slow belt the
    turn asks for."""
    requests = [e for e in events if (isinstance(e, TargetChanged) and e.why != "console")
                or (isinstance(e, WalkerReady) and e.said)]
    targets: list[tuple[float, float, float]] = []  # (t, speed mph, incline %)
    last = (0.0, 0.0)
    for e in events:
        if isinstance(e, TargetChanged):
            last = (e.speed_mph, e.incline_pct)
        if e in requests:
            targets.append((e.t, *last))
    bad: list[tuple[float, str]] = []
    # a turn ("side rails, slow belt", then "ready") asks for the very slow belt until "ready"
    turns: list[tuple[float, float]] = []
    for e in events:
        if isinstance(e, PhaseStarted) and e.awaits_turn:
            turns.append((e.t, math.inf))
        elif isinstance(e, WalkerReady) and turns and turns[-1][1] == math.inf:
            turns[-1] = (turns[-1][0], e.t)
    # a belt starts still and flat, and is still again after a stop or a pause: a slow start
    # (or a stepped incline) climbs from there towards the target, never past it
    prev: dict[Op, float | None] = {Op.SET_TARGET_SPEED: 0.0, Op.SET_TARGET_INCLINE: 0.0}
    for t, command in writes:
        if command.op in (Op.STOP_PAUSE, Op.START_RESUME):
            prev[Op.SET_TARGET_SPEED] = 0.0
        if not command.moves_belt:
            continue
        value = float(command.value or 0.0)
        before = [r for r in targets if r[0] <= t + 1e-9]
        if not before or any(before[-1][0] < up <= t for up in link_ups):
            bad.append((t, command.describe()))
            continue
        goal = before[-1][1] * KMH_PER_MPH if command.op is Op.SET_TARGET_SPEED else before[-1][2]
        start = prev[command.op]
        lo, hi = (min(start, goal), max(start, goal)) if start is not None else (goal, goal)
        if command.op is Op.SET_TARGET_SPEED and any(a <= t + 1e-9 <= b for a, b in turns):
            lo = min(lo, RESTART_MPH * KMH_PER_MPH)
        slack = 0.1 * KMH_PER_MPH if command.op is Op.SET_TARGET_SPEED else 0.1
        if not lo - slack <= value <= hi + slack:  # the grid and clamps move it a little
            bad.append((t, command.describe()))
        prev[command.op] = value
    return bad


def _silent_for(recogniser: Any, clips: list[Any]) -> list[Any]:
    """The clips in which the engine, hearing each alone, finds no command of the backward
    state (the others end a session at once: a recognition figure, not a belt one)."""
    from voicecoach.audio.chunk import AudioChunk
    from voicecoach.audio.samples import to_int16

    commands = load_grammar("en").commands_for("backward")
    keep = []
    for clip in clips:
        recogniser.reset()
        recogniser.set_commands(commands)
        pcm = to_int16(clip.audio).tobytes()
        step = 3200  # 0.1 s of 16-bit samples
        found = []
        for i in range(0, len(pcm), step):
            found += recogniser.accept(AudioChunk(pcm[i:i + step], i / 32000))
        found += recogniser.flush()
        if not found:
            keep.append(clip)
    recogniser.reset()
    return keep


def hour_of_talk(settings: Settings, hours: float = 1.0, max_runs: int = 60,
                 quiet_talk: bool = False) -> dict[str, Any]:
    """Sessions of talk and noise until ``hours`` of audio are done (a stop falsely heard ends
    one early: the next begins); counts writes, unasked ones and commands falsely heard.
    ``quiet_talk``: only the talk clips the engine hears no command in when alone."""
    recogniser, renderer = _recogniser(settings), _renderer(settings)
    talk = _talk_clips()
    if quiet_talk:
        talk = _silent_for(recogniser, talk)
    total: dict[str, Any] = {"audio_s": 0.0, "runs": 0, "talk_kinds": len(talk), "speed_incline_writes": 0,
                             "unasked_writes": 0, "target_commands_heard": 0,
                             "stops_heard": 0, "link_drops": 0, "console_changes": 0,
                             "talk_clips": 0, "link_lost_said": 0, "sessions_with_drop": 0}
    n = 0
    while total["audio_s"] < hours * 3600.0 and n < max_runs:
        n += 1
        sim = SimTreadmill()
        drops = [200.0 + 600.0 * k for k in range(3)]  # a link drop every 10 minutes
        for t in drops:
            sim.schedule(t, "disconnect", 8.0)
        console = ((500.0, 0.9), (1300.0, 0.7))  # a console change in each block
        for t, mph in console:
            sim.schedule(t, "speed", mph * KMH_PER_MPH)
        events: list[Event] = []
        talkers: list[TalkInRoom] = []

        def make_react(room: Any, talkers: list[TalkInRoom] = talkers) -> TalkInRoom:
            talkers.append(TalkInRoom(room, talk))
            return talkers[-1]

        run = closed_loop(recogniser, settings, PLAN_30, PLAN_30.total_s + 120.0,
                          renderer=renderer, noise_rms=SNR10, typed_answers=True,
                          begin_at_once=True, seed=100 + n, treadmill=sim,
                          treadmill_settings=DRIVE, make_react=make_react,
                          listeners=(events.append,))
        end = run.loop.clock.audio_s
        bad = unasked_writes(sim.log.writes, events, sim.up_times[1:])
        said = [e for e in events if getattr(e, "text", "") == LINK_LOST]
        total["link_lost_said"] += len(said)
        total["sessions_with_drop"] += any(t < end for t in drops) and sim.connects > 1
        total["audio_s"] += end
        total["runs"] += 1
        total["speed_incline_writes"] += len(sim.log.moving())
        total["unasked_writes"] += len(bad)
        total["target_commands_heard"] += sum(e.command in TARGET_COMMANDS for e in run.heard)
        total["stops_heard"] += sum(e.command == "stop" for e in run.heard)
        total["link_drops"] += sum(t < end for t in drops)
        total["console_changes"] += sum(t < end for t, _ in console)
        total["talk_clips"] += talkers[0].i if talkers else 0
        for t, what in bad:
            _LOGGER.warning("unasked write at %.1f s: %s", t, what)
    return total


# ---------------------------------------------------------------- 3. reconnect over bleak
def ble_reconnect(drops: int = 3) -> list[dict[str, float | None]]:
    """Drop the link to the fake FTMS peripheral on bluezoo ``drops`` times (a fresh mock BlueZ
    each time: bluezoo serves only two connections of a device); wall seconds from the drop to
    the link back and to the first belt reading after it. Needs the repo's tests/ folder and
    the test extra."""
    import asyncio
    import sys
    import time

    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
    from bluez_bus import CENTRAL, PERIPHERAL, forget, mock_bluez
    from fake_ftms import FakeTreadmill, run_in_thread

    from voicecoach.treadmill.client import BleakTreadmill
    from voicecoach.treadmill.link import BeltReading, LinkDown

    async def disconnect() -> None:
        from dbus_fast import BusType
        from dbus_fast.aio import MessageBus

        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        try:
            path = f"/org/bluez/{CENTRAL[0]}/dev_{PERIPHERAL[1].replace(':', '_')}"
            intro = await bus.introspect("org.bluez", path)
            device = bus.get_proxy_object("org.bluez", path, intro)
            await device.get_interface("org.bluez.Device1").call_disconnect()  # type: ignore[attr-defined]
        finally:
            bus.disconnect()

    rows = []
    for _ in range(drops):
        with mock_bluez():
            fake = FakeTreadmill()
            thread = run_in_thread(fake)
            forget()
            link = BleakTreadmill(PERIPHERAL[1], adapter=CENTRAL[0], reconnect_s=1.0)
            try:
                began = time.monotonic()
                seen: list[Any] = []
                while not any(isinstance(u, LinkUp) for u in seen) \
                        and time.monotonic() - began < 30:
                    seen += link.poll(time.monotonic() - began)
                    time.sleep(0.02)
                dropped = time.monotonic()
                asyncio.run(disconnect())
                lost: float | None = None
                back: float | None = None
                first: float | None = None
                while first is None and time.monotonic() - dropped < RECONNECT_WAIT_S:
                    for u in link.poll(time.monotonic() - began):
                        if isinstance(u, LinkDown) and lost is None:
                            lost = time.monotonic() - dropped
                        elif isinstance(u, LinkUp):
                            back = time.monotonic() - dropped
                        elif isinstance(u, BeltReading) and back is not None and first is None:
                            first = time.monotonic() - dropped
                    time.sleep(0.02)
                rows.append({"drop_seen_s": lost, "link_back_s": back, "first_reading_s": first})
            finally:
                link.close()
                fake.close()
                thread.join(5)
    return rows


# ---------------------------------------------------------------- report
def _summary(stops: list[dict[str, Any]]) -> dict[str, Any]:
    caught = [r["latency_s"] for r in stops if r["caught"]]
    return {"stop_trials": len(stops), "stops_written": len(caught),
            "over_speech": sum(r["over_speech"] for r in stops),
            "latency_median_s": round(statistics.median(caught), 3) if caught else None,
            "latency_max_s": round(max(caught), 3) if caught else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--voices", type=int, default=len(VOICES), help="fixture voices to use")
    parser.add_argument("--hours", type=float, default=1.0, help="hours of talk and noise")
    parser.add_argument("--ble", action="store_true", help="also measure a BLE reconnect")
    parser.add_argument("--no-stop", action="store_true", help="skip the stop trials")
    parser.add_argument("--quiet-talk", action="store_true",
                        help="say only the talk clips the engine hears no command in alone")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        if not args.no_stop:
            result["stop"] = _summary(stop_trials(settings, VOICES[:args.voices]))
        if args.hours > 0:
            result["talk"] = hour_of_talk(settings, args.hours, quiet_talk=args.quiet_talk)
    if args.ble:
        result["reconnect"] = ble_reconnect()
    if args.json:
        print(json.dumps(result))
        return 0
    if "stop" in result:
        s = result["stop"]
        print(f"stop -> FTMS stop (audio time): {s['stops_written']}/{s['stop_trials']} "
              f"written ({s['over_speech']} said over the coach), median "
              f"{s['latency_median_s']} s, max {s['latency_max_s']} s")
    if "talk" in result:
        talk = result["talk"]
        print(f"unasked speed/incline writes: {talk['unasked_writes']} of "
              f"{talk['speed_incline_writes']} over {talk['audio_s'] / 3600:.2f} h of talk and "
              f"noise in {talk['runs']} sessions ({talk['talk_clips']} talk clips of "
              f"{talk['talk_kinds']} kinds, "
              f"{talk['link_drops']} link drops, {talk['console_changes']} console changes; "
              f"falsely heard: {talk['target_commands_heard']} target commands, "
              f"{talk['stops_heard']} stops; link loss said {talk['link_lost_said']} times in "
              f"{talk['sessions_with_drop']} sessions with a drop)")
    for row in result.get("reconnect", []):
        def sec(v: float | None) -> str:
            return "never" if v is None else f"{v:.2f} s"
        print(f"BLE drop (wall time): seen after {sec(row['drop_seen_s'])}, link back "
              f"{sec(row['link_back_s'])}, first belt reading {sec(row['first_reading_s'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
