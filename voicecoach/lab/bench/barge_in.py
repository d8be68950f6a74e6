"""Barge-in with real people: held-out speakers' stops said over the coach, through the device loop.

``python -m voicecoach.lab.bench.barge_in`` (one command; the last line is the summary). Real
speakers from ``../shared/speech_commands`` and ``../shared/speech_commands_train`` whose
``zlib.crc32(speaker.encode()) % 5 == 0`` (the locked test set: the spotter never trains on
them) say stop (and go / yes / no) over the coach's espeak-ng voice, played back through a
simulated room into the microphone (voicecoach.lab.room: the coach's samples delayed 20-60 ms,
through a room response with RT60 0.2-0.6 s, at the level the loopback room measures, about
-27 dBFS while it talks; the user at the same level; treadmill noise 10 dB under them), at
two moments: **cold** (1-8 s into the first briefing, the canceller converging from nothing)
and **settled** (20-30 s in, after 20 s of coach speech). Each trial runs the real device
loop (recogniser, echo canceller, duplex gate, coach, belt controller on a simulated FTMS
treadmill) in audio time, three times in the same room: with no echo (the coach's voice not
in the microphone), and with the echo through each canceller (``webrtc``, ``nlms``).

Reported: stops caught (session stopped and FTMS stop written after the word) with echo, as
a ratio of the same trials caught with no echo; word end -> FTMS stop written (audio time);
go / yes / no said over the coach heard by the recogniser (the gate drops them over speech
by design, so this is the canceller's effect on hearing them); commands from the coach's own
voice over a 30-minute closed loop with a polite user; the device loop's CPU per audio second
and peak RSS (a child process per canceller). Counts, ratios and audio time; not a test.
``--speakers dev`` runs the speakers that are not locked instead: choose settings on those.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from voicecoach.audio.chunk import SAMPLE_RATE
from voicecoach.audio.samples import active_bounds, to_float
from voicecoach.config import number_in
from voicecoach.grammar import load_grammar
from voicecoach.lab.bench.barge_cost import device_cost, device_cost_child
from voicecoach.lab.bench.barge_trace import Tracer, loss_reason
from voicecoach.lab.room import UserClip, closed_loop
from voicecoach.settings import AudioSettings, Settings, TreadmillSettings
from voicecoach.speaking.speaker import SpeechInterval
from voicecoach.workout.plan import COOLDOWN, WARMUP, Phase, Plan

_LOGGER = logging.getLogger(__name__)

SHARED = Path(__file__).resolve().parents[3].parent / "shared"
SETS = ("speech_commands", "speech_commands_train")
def held_out(speaker: str) -> bool:
    """The locked test set (voicecoach.lab.training.data.is_locked): never trained on."""
    from voicecoach.lab.training.data import is_locked

    return is_locked(speaker)


#: Levels (dBFS of the active speech) and the room.
USER_DBFS = -27.0
NOISE_RMS = 10 ** ((USER_DBFS - 10.0) / 20)   # treadmill noise 10 dB under the user
RT60S = (0.2, 0.3, 0.45, 0.6)
DELAYS_S = (0.02, 0.03, 0.045, 0.06)
CANCELLERS = ("webrtc", "nlms")
DRIVE = TreadmillSettings(control="drive")
PLAN = Plan("bench-barge-in", (replace(WARMUP, duration_s=240.0),
                               Phase("backward", 600.0, 0.8, 0.6, 1.2, 0.0, 1.0, "technique"),
                               replace(COOLDOWN, duration_s=120.0)))


@dataclass(frozen=True)
class Take:
    """One held-out real clip: its word, speaker, file."""

    word: str
    speaker: str
    path: Path


#: ``--negatives``: words that must fire nothing, said over the coach (a stop acted on from one
#: is a false stop over the coach's speech).
NEGATIVE_WORDS = ("up", "down", "off", "on", "left", "right", "_unknown_")

#: ``--speakers``: the locked test set, or the others (for choosing anything; never the locked).
SPEAKER_SETS = ("locked", "dev")
#: ``--verify``: the second look as the ``verify`` extra gives it, or the default install's
#: spotter alone.
VERIFY_CHOICES = ("auto", "off")


def held_out_takes(root: Path = SHARED, words: tuple[str, ...] = ("stop", "go", "yes", "no"),
                   speakers: str = "locked") -> dict[str, list[Take]]:
    """Every held-out speaker's clips of ``words`` from both shared sets, sorted by file;
    ``speakers="dev"``: every speaker *not* locked instead (to choose settings on)."""
    if speakers not in SPEAKER_SETS:
        raise ValueError(f"speakers must be one of {', '.join(SPEAKER_SETS)}, not {speakers!r}")
    out: dict[str, list[Take]] = {w: [] for w in words}
    for name in SETS:
        for word in words:
            folder = root / name / word
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                if path.suffix not in (".wav", ".flac"):
                    continue
                speaker = path.name.split("_nohash_")[0]
                if held_out(speaker) == (speakers == "locked"):
                    out[word].append(Take(word, speaker, path))
    return out


def load_take(take: Take) -> UserClip:
    """The clip at :data:`USER_DBFS` (active speech), with its speech bounds (energy, clean)."""
    if take.path.suffix == ".flac":
        import soundfile

        data, rate = soundfile.read(str(take.path), dtype="int16", always_2d=False)
        if rate != SAMPLE_RATE:
            raise ValueError(f"{take.path}: {rate} Hz")
        audio = to_float(np.asarray(data))
    else:
        from voicecoach.lab.corpus import read_clip

        audio = to_float(read_clip(take.path))
    a, b = active_bounds(audio, -30.0)
    active = audio[a:b] if b > a else audio
    rms = float(np.sqrt(np.mean(active.astype(np.float64) ** 2))) or 1e-9
    audio = (audio * np.float32(10 ** (USER_DBFS / 20) / rms)).astype(np.float32)
    command = {"go": "resume"}.get(take.word, take.word)
    return UserClip(0.0, audio, command, take.word, a / SAMPLE_RATE, b / SAMPLE_RATE)


def _settings(tmp: Path, canceller: str, verify: str = "auto") -> Settings:
    base = Settings(data_dir=tmp, audio=AudioSettings(echo_canceller=canceller))
    return replace(base, speech=replace(base.speech, verify=verify))


def trial(recogniser: Any, renderer: Any, take: Take, i: int, settled: bool, echo: str | None,
          tmp: Path, states: bool = False, verify: str = "auto") -> dict[str, Any]:
    """One trial in room ``i``: ``echo`` None for no echo, else the canceller's name;
    ``states``: every look also records its pooled encoder output (:class:`Tracer`)."""
    from voicecoach.treadmill.ftms import Op
    from voicecoach.treadmill.sim import SimTreadmill

    clip = load_take(take)
    settings = _settings(tmp, echo or "off", verify)
    rt60, delay = RT60S[i % len(RT60S)], DELAYS_S[(i // len(RT60S)) % len(DELAYS_S)]
    sim = SimTreadmill()
    tracer = Tracer(recogniser, states=states)
    common: dict[str, Any] = dict(renderer=renderer, noise_rms=NOISE_RMS, begin_at_once=True,
                                  seed=i + 1, rt60_s=rt60, echo_delay_s=delay,
                                  echo_gain_db=-6.0 if echo else -300.0, aec=echo is not None,
                                  treadmill=sim, treadmill_settings=DRIVE)
    if settled:  # the briefing answered (typed); said over an utterance 20-30 s in
        after = 20.0 + (i % 5) * 2.0
        run = closed_loop(recogniser, settings, PLAN, after + 6.0, typed_answers=True,
                          stop_over_speech=(clip, after), **common)
        placed = clip in run.source.clips
    else:
        clip.at_s = 1.0 + (i % 8) * 0.9 - clip.speech_start_s
        run = closed_loop(recogniser, settings, PLAN, clip.at_s + 4.0, user=False,
                          clips=(clip,), **common)
        placed = True
    tracer.close()
    row: dict[str, Any] = {"word": take.word, "speaker": take.speaker, "file": take.path.name,
                           "settled": settled, "room": i, "echo": echo or "none",
                           "placed": placed, "caught": False, "heard": False,
                           "latency_s": None}
    if not placed:
        return row
    row.update(tracer.around(clip.start_s, clip.end_s))
    row["word_s"] = (round(clip.start_s, 3), round(clip.end_s, 3))
    row["over_speech"] = any(iv.start <= clip.end_s and (iv.end or 1e9) >= clip.start_s
                             for iv in run.speaker.speaking_intervals())
    mine = [d for d in run.loop.gate.decisions
            if clip.start_s - 0.3 <= d.detection.end_s and d.detection.start_s <= clip.end_s + 1.5]
    row["heard"] = any(d.detection.command == clip.command for d in mine)
    if take.word in NEGATIVE_WORDS:  # acted on: a false command over the coach's speech
        row["false"] = sorted({d.detection.command for d in mine if d.accepted})
    if take.word == "stop":
        accepted = [d.detection.emitted_s for d in mine
                    if d.detection.command == "stop" and d.accepted]
        written = [t for t, c in sim.log.of(Op.STOP_PAUSE)
                   if c.value == 1 and accepted and t >= accepted[0] - 1e-9]
        if accepted and written and "stopped" in run.loop.outcomes[:1]:
            row["caught"] = True
            row["latency_s"] = round(written[0] - clip.end_s, 3)
            row["written_s"] = round(written[0], 3)
        row["gate"] = [(d.reason, round(d.detection.start_s, 2), round(d.detection.end_s, 2),
                        round(d.detection.emitted_s, 2), d.detection.verified)
                       for d in mine if d.detection.command == "stop"]
        row["lost_at"] = loss_reason(row, mine, _candidate(recogniser))
    return row


def _candidate(recogniser: Any) -> float:
    """The stop candidate level over the coach's speech (the words are said over it)."""
    decider = getattr(recogniser, "decider", None)
    return 0.0 if decider is None else float(decider.stop_candidate(over=True))


def _at_level(recogniser: Any, over_candidate: float | None) -> float | None:
    """Raise stop candidates over the coach from ``over_candidate`` (None: as the model card
    says); the level the recogniser now raises them from there (None: the card's)."""
    decider = getattr(recogniser, "decider", None)
    if over_candidate is not None and decider is not None:
        decider.over_stop_candidate = over_candidate
    return getattr(decider, "over_stop_candidate", None)


def moments(take: Take, i: int, both: bool) -> tuple[bool, ...]:
    """The moments (settled?) a take is said at: a stop at both (the locked set holds 182
    stops, so 364 stop trials), other words, or every take without ``both``, at one in turn."""
    return (False, True) if both and take.word == "stop" else (i % 2 == 1,)


def run_trials(takes: list[Take], echoes: tuple[str | None, ...], tmp: Path,
               progress: bool = True, log: Path | None = None,
               both_moments: bool = True, states: bool = False,
               over_candidate: float | None = None,
               verify: str = "auto") -> list[dict[str, Any]]:
    """Every take in its own room (a stop cold and settled, other words at one moment), once
    per echo condition (``states``: see :func:`trial`; ``over_candidate``: the stop candidate
    level over the coach's speech, for making an over-the-coach look's training data; each
    row records it)."""
    from voicecoach.listening.engines import make_recogniser
    from voicecoach.speaking.render import EspeakNgRenderer

    base = _settings(tmp, "off", verify)
    recogniser = make_recogniser(base.speech, load_grammar("en"), announce=lambda line: None)
    renderer = EspeakNgRenderer(base.speech.voice, base.speech.rate)
    level = _at_level(recogniser, over_candidate)
    rows = []
    # a word that must fire nothing is said with the echo only (no echo has nothing to compare)
    jobs = [(take, i, settled, echo) for i, take in enumerate(takes)
            for settled in moments(take, i, both_moments) for echo in echoes
            if echo is not None or take.word not in NEGATIVE_WORDS]
    bar = _bar(len(jobs), "barge-in trials", progress)
    for take, i, settled, echo in jobs:
        rows.append(trial(recogniser, renderer, take, i, settled, echo, tmp, states, verify))
        rows[-1]["over_candidate"] = level
        rows[-1]["verify"] = verify
        if log is not None:  # as it goes: a long run stopped early keeps its trials
            with log.open("a", encoding="utf-8") as out:
                out.write(json.dumps(rows[-1]) + "\n")
        bar.update(1)
    bar.close()
    return rows


def _bar(total: int, desc: str, progress: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="trial", disable=not progress or None,
                leave=False)


#: ``--loop-talk``: the coach's cue pacing for a closed loop in which it talks nearly all the
#: time (a cue after every second of quiet, none held back as recent: ``cue_no_repeat`` 0),
#: so that "no command from the coach's own voice" is measured over its speech, not its silences.
TALKATIVE_CUE_S, TALKATIVE_GAP_S = 1.0, 1.0


#: The closed loop's seed: the benchmark's own loop (its figure); ``--loop-states`` (training
#: data) must use another, so that no look the figure counts was trained on.
LOOP_SEED = 30


def closed_loop_session(canceller: str, minutes: float, tmp: Path,
                        talkative: bool = False, *, seed: int = LOOP_SEED,
                        states: Path | None = None,
                        over_candidate: float | None = None,
                        verify: str = "auto") -> dict[str, Any]:
    """``minutes`` of a closed loop (a session begun at once, the user's answers typed, the
    coach's echo in a RT60 0.45 s room, belt noise): commands from the coach's own voice (or
    noise), and what the gate dropped; ``talkative``: the coach paced by :data:`TALKATIVE_CUE_S`.
    ``states``: every look over the coach (all at its own echo: nobody else speaks) with its
    pooled encoder output is written there as one JSON line, training data for
    ``lab.training.over_probe --echo``; ``over_candidate`` as for :func:`run_trials`."""
    from voicecoach.listening.engines import make_recogniser
    from voicecoach.speaking.render import EspeakNgRenderer

    settings = _settings(tmp, canceller, verify)
    if talkative:
        settings = replace(settings, coach=replace(settings.coach, cue_interval_s=TALKATIVE_CUE_S,
                                                   min_gap_s=TALKATIVE_GAP_S, cue_no_repeat=0))
    recogniser = make_recogniser(settings.speech, load_grammar("en"), announce=lambda x: None)
    level = _at_level(recogniser, over_candidate)
    tracer = Tracer(recogniser, states=True) if states is not None else None
    renderer = EspeakNgRenderer(settings.speech.voice, settings.speech.rate)
    total = minutes * 60.0
    plan = Plan("bench-closed-loop", (replace(WARMUP, duration_s=total * 0.2),
                                      Phase("backward", total * 0.6, 0.8, 0.6, 1.2, 0.0, 1.0,
                                            "technique"),
                                      replace(COOLDOWN, duration_s=total * 0.2)))
    # the session begins at once and the answers are typed: the coach talks through its whole
    # plan whatever the engine makes of a fixture voice's "start" (unheard, the coach was silent)
    run = closed_loop(recogniser, settings, plan, total, renderer=renderer, noise_rms=NOISE_RMS,
                      voices=("joe",), seed=seed, rt60_s=0.45, echo_delay_s=0.04,
                      aec=canceller != "off", sessions=None, begin_at_once=True,
                      typed_answers=True)
    if tracer is not None and states is not None:
        tracer.close()
        row = {"loop": True, "seed": seed, "canceller": canceller, "audio_s": total,
               "over_candidate": level,
               "echo_looks": [x for x in tracer.looks if x.get("over")]}
        states.write_text(json.dumps(row) + "\n", encoding="utf-8")
    intervals = run.speaker.speaking_intervals()
    return {"canceller": canceller, "audio_s": total, "talkative": talkative, "verify": verify,
            "echo": [(e.command, round(e.t, 1)) for e in run.echo_commands()],
            "echo_said": [said_before(intervals, e.t) for e in run.echo_commands()],
            "suppressed": len(run.loop.gate.suppressed), "outcomes": run.loop.outcomes,
            "coach_speech_s": round(sum((iv.end or total) - iv.start
                                        for iv in run.speaker.speaking_intervals()), 1)}


def said_before(intervals: Sequence[SpeechInterval], t: float, within_s: float = 2.0) -> list[str]:
    """What the coach was saying at ``t`` or stopped saying less than ``within_s`` before it (the
    words a command from its own voice was heard in), oldest first; not what it began at ``t``
    (its answer to that command)."""
    return [iv.text for iv in intervals
            if iv.start < t and (iv.end is None or iv.end >= t - within_s)]


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per echo condition: stops caught (cold / settled), latency, other words heard."""
    out: dict[str, Any] = {}
    for echo in sorted({r["echo"] for r in rows}):
        mine = [r for r in rows if r["echo"] == echo and r["placed"]]
        stops = [r for r in mine if r["word"] == "stop"]
        lat = [r["latency_s"] for r in stops if r["caught"]]
        others = [r for r in mine if r["word"] != "stop"]
        out[echo] = {
            "stops": len(stops), "caught": sum(r["caught"] for r in stops),
            "cold": (sum(r["caught"] for r in stops if not r["settled"]),
                     sum(not r["settled"] for r in stops)),
            "settled": (sum(r["caught"] for r in stops if r["settled"]),
                        sum(r["settled"] for r in stops)),
            "latency_median_s": round(statistics.median(lat), 3) if lat else None,
            "latency_max_s": round(max(lat), 3) if lat else None,
            "others_heard": (sum(r["heard"] for r in others if r["word"] not in NEGATIVE_WORDS),
                             sum(r["word"] not in NEGATIVE_WORDS for r in others)),
            "negatives": (sum(bool(r.get("false")) for r in others if r["word"] in NEGATIVE_WORDS),
                          sum(r["word"] in NEGATIVE_WORDS for r in others),
                          sum("stop" in r.get("false", []) for r in others)),
            "lost": _lost(stops),
            "verify": ",".join(sorted({str(r.get("verify", "auto")) for r in mine})) or "auto",
        }
    return out


def _lost(stops: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Where the stops were lost or late (barge_trace.loss_reason): reason -> [cold, settled]."""
    out: dict[str, list[int]] = {}
    for r in stops:
        if r.get("lost_at"):
            out.setdefault(r["lost_at"], [0, 0])[int(bool(r["settled"]))] += 1
    return out


def summary_lines(summary: dict[str, Any], loops: list[dict[str, Any]],
                  costs: list[dict[str, Any]]) -> list[str]:
    lines = []
    base = summary.get("none")
    for echo, s in summary.items():
        ratio = ""
        if base and echo != "none" and base["caught"]:
            ratio = f" = {s['caught'] / base['caught']:.3f} of no echo (target >= 0.95)"
        lat = "" if s["latency_median_s"] is None else (
            f"; word end -> FTMS stop written median {s['latency_median_s']:.3f} s, max "
            f"{s['latency_max_s']:.3f} s (target 0.25 / 0.5)")
        lines.append(f"echo {echo}: stops caught {s['caught']}/{s['stops']}{ratio} (cold "
                     f"{s['cold'][0]}/{s['cold'][1]}, settled {s['settled'][0]}/"
                     f"{s['settled'][1]}){lat}; go/yes/no heard {s['others_heard'][0]}/"
                     f"{s['others_heard'][1]}")
        if s.get("negatives", (0, 0, 0))[1]:
            neg = s["negatives"]
            lines.append(f"echo {echo}: other words said over the coach acted on {neg[0]}/{neg[1]}"
                         f" ({neg[2]} as stop)")
        if s.get("lost"):
            lines.append(f"echo {echo}: lost or late at (cold, settled): " + ", ".join(
                f"{k} {v[0]}+{v[1]}" for k, v in sorted(s["lost"].items())))
    for loop in loops:
        talk = ", the coach talking throughout" if loop.get("talkative") else ""
        if loop.get("verify", "auto") != "auto":
            talk += ", no second look"
        lines.append(f"closed loop {loop['audio_s'] / 60:.0f} min{talk}, canceller {loop['canceller']}: "
                     f"{len(loop['echo'])} commands from the coach's voice or noise "
                     f"{loop['echo'] or ''}(target 0); the gate dropped {loop['suppressed']}; "
                     f"{loop['coach_speech_s']} s of coach speech; sessions {loop['outcomes']}")
        for (command, t), said in zip(loop["echo"], loop.get("echo_said", []), strict=False):
            lines.append(f"  {command} at {t} s, the coach saying: " + " | ".join(said))
    for cost in costs:
        if "error" in cost:
            lines.append(f"device loop cost, canceller {cost['canceller']}: failed: "
                         f"{cost['error']}")
            continue
        look = "" if cost.get("verify", "auto") == "auto" else ", no second look"
        lines.append(f"device loop cost, canceller {cost['canceller']}{look}: "
                     f"{100 * cost['cpu_ratio']:.1f} % of a core per audio second (target 5 %; "
                     f"the simulated room's own {100 * cost.get('room_cpu_ratio', 0.0):.1f} % "
                     f"taken off), peak RSS {cost['peak_rss_mb']:.0f} MB (target 100)"
                     + ("" if cost.get("listening_rss_mb") is None else
                        f", {cost['listening_rss_mb']:.0f} MB from the first audio on"))
    parts = []
    for echo, s in summary.items():
        if echo == "none":
            continue
        share = s["caught"] / base["caught"] if base and base["caught"] else float("nan")
        false = next((len(lp["echo"]) for lp in loops if lp["canceller"] == echo), None)
        parts.append(f"{echo} {s['caught']}/{s['stops']} ({share:.3f} of no echo "
                     f"{base['caught'] if base else '?'}/{base['stops'] if base else '?'}), "
                     f"latency median {s['latency_median_s']} max {s['latency_max_s']} s, "
                     f"false {false}")
    if not parts:  # no trials (--stops 0 ...): the closed loops are the figure
        parts = [f"{lp['canceller']} closed loop {lp['audio_s'] / 60:.0f} min, "
                 f"{lp['coach_speech_s']} s of coach speech: {len(lp['echo'])} commands from "
                 "its own voice" for lp in loops] or ["no trials and no closed loop"]
    alone = any(s.get("verify") == "off" for s in summary.values()) or any(
        lp.get("verify") == "off" for lp in loops)
    lines.append("SUMMARY barge-in, real held-out speakers"
                 + (", spotter alone (no second look)" if alone else "") + ": " + "; ".join(parts))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stops", type=number_in(0, 100_000, whole=True), default=200,
                        help="held-out stop clips (at most; the locked set has 182), each said "
                             "cold and settled")
    parser.add_argument("--others", type=number_in(0, 100_000, whole=True), default=30,
                        help="held-out clips of each of go, yes, no")
    parser.add_argument("--negatives", type=number_in(0, 100_000, whole=True), default=0,
                        help="held-out clips of words that must fire nothing ("
                             + ", ".join(NEGATIVE_WORDS) + "), spread over them, each said once "
                             "over the coach with the echo")
    parser.add_argument("--cancellers", default=",".join(CANCELLERS),
                        help="comma-separated: webrtc, nlms, off")
    parser.add_argument("--loop-minutes", type=number_in(0, 24 * 60), default=30.0,
                        help="the closed loop per canceller (0: skip)")
    parser.add_argument("--loop-talk", action="store_true",
                        help="the closed loop's coach talks nearly all the time (a cue after "
                             "every second of quiet) instead of at its usual pace")
    parser.add_argument("--cost-s", type=number_in(0, 24 * 3600), default=120.0,
                        help="idle audio for the CPU/RSS child per canceller (0: skip)")
    parser.add_argument("--speakers", choices=SPEAKER_SETS, default="locked",
                        help="locked: the test set (report); dev: speakers not locked, to "
                             "choose settings on (--stops of them, spread evenly)")
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--json", type=Path, help="also write every trial's row here (JSON lines)")
    parser.add_argument("--states", action="store_true",
                        help="each look in --json also holds its pooled encoder output: the "
                             "over-the-coach look's training data (lab.training.over_probe; "
                             "dev speakers only)")
    parser.add_argument("--echo-only", action="store_true",
                        help="skip the no-echo trials (training data needs only the echo)")
    parser.add_argument("--over-candidate", type=float, metavar="LEVEL",
                        help="raise stop candidates over the coach's speech from LEVEL (training "
                             "data for an over-the-coach look; with --states)")
    parser.add_argument("--loop-seed", type=int, default=LOOP_SEED,
                        help="the closed loop's seed (its noise and voices; default the "
                             "benchmark's own)")
    parser.add_argument("--loop-states", type=Path, metavar="FILE",
                        help="write the closed loop's looks over the coach with their encoder "
                             "output to FILE (training data: over_probe --echo; with a "
                             "--loop-seed other than the benchmark's)")
    parser.add_argument("--verify", choices=VERIFY_CHOICES, default="auto",
                        help="the spotter's second look in the trials, closed loops and cost: "
                             "auto (as the verify extra gives it) or off (the default install, "
                             "no verifier)")
    parser.add_argument("--from-json", type=Path, help="summarise the trials of an earlier --json")
    parser.add_argument("--cost-child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cost_child:
        logging.basicConfig(level=logging.ERROR)
        print(json.dumps(device_cost_child(args.cost_child[0], float(args.cost_child[1]),
                                           *args.cost_child[2:3])))
        return 0
    logging.basicConfig(level=logging.ERROR)
    if not (args.shared / SETS[0]).is_dir():
        print(f"barge-in: no real speech at {args.shared} (../shared)", file=sys.stderr)
        return 2
    takes = held_out_takes(args.shared, ("stop", "go", "yes", "no", *NEGATIVE_WORDS),
                           speakers=args.speakers)
    chosen = _spread(takes["stop"], args.stops)
    for word in ("go", "yes", "no"):
        chosen += _spread(takes[word], args.others)
    if args.negatives > 0:
        chosen += _spread(sorted((t for w in NEGATIVE_WORDS for t in takes[w]),
                                 key=lambda t: t.path.name), args.negatives)
    cancellers = tuple(c for c in args.cancellers.split(",") if c)
    unknown = [c for c in cancellers if c not in (*CANCELLERS, "off")]
    if unknown or not cancellers:
        print(f"barge-in: --cancellers {args.cancellers!r}: give one or more of "
              f"{', '.join((*CANCELLERS, 'off'))}, comma-separated", file=sys.stderr)
        return 2
    if args.json and not args.json.parent.is_dir():
        print(f"barge-in: --json {args.json}: the folder {args.json.parent} does not exist",
              file=sys.stderr)
        return 2
    if args.from_json:
        try:
            rows = [json.loads(x) for x in
                    args.from_json.read_text(encoding="utf-8").splitlines() if x]
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            print(f"barge-in: --from-json {args.from_json}: cannot be read as the JSON lines "
                  f"of an earlier --json ({exc})", file=sys.stderr)
            return 2
        for line in summary_lines(summarise(rows), [], []):
            print(line, flush=True)
        return 0
    if args.verify == "off" and (args.states or args.loop_states or args.over_candidate is not None):
        print("barge-in: --states, --loop-states and --over-candidate record second looks: "
              "leave out --verify off", file=sys.stderr)
        return 2
    if args.states and (args.speakers != "dev" or not args.json):
        print("barge-in: --states makes training data: use it with --speakers dev and --json",
              file=sys.stderr)
        return 2
    if args.over_candidate is not None and not (args.states or args.loop_states):
        print("barge-in: --over-candidate makes an over-the-coach look's training data: a level "
              "above 0 and below 1, with --states or --loop-states", file=sys.stderr)
        return 2
    if args.loop_states and (args.loop_seed == LOOP_SEED or args.loop_minutes <= 0
                             or len(cancellers) != 1):
        print(f"barge-in: --loop-states makes training data from one canceller's closed loop: "
              f"give --loop-seed other than the benchmark's {LOOP_SEED}, --loop-minutes above 0 "
              "and one --cancellers", file=sys.stderr)
        return 2
    if args.over_candidate is not None and not 0 < args.over_candidate < 1:
        print("barge-in: --over-candidate must be above 0 and below 1", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="vc-barge-"))
    progress = sys.stderr.isatty() and not os.environ.get("CI")
    if args.json:
        args.json.write_text("", encoding="utf-8")
    echoes = cancellers if args.echo_only else (None, *cancellers)
    rows = run_trials(chosen, echoes, tmp, progress, args.json, states=args.states,
                      over_candidate=args.over_candidate, verify=args.verify)
    loops = [closed_loop_session(c, args.loop_minutes, tmp, args.loop_talk, seed=args.loop_seed,
                                 states=args.loop_states, over_candidate=args.over_candidate,
                                 verify=args.verify)
             for c in cancellers if args.loop_minutes > 0]
    looks = ("auto", "off") if args.verify == "auto" else ("off",)
    costs = [device_cost(c, args.cost_s, v) for c in cancellers for v in looks
             if args.cost_s > 0]
    for line in summary_lines(summarise(rows), loops, costs):
        print(line, flush=True)
    return 0


def _spread(takes: list[Take], n: int) -> list[Take]:
    """``n`` takes spread evenly over the sorted list (one speaker's clips are adjacent)."""
    if n >= len(takes):
        return list(takes)
    idx = np.linspace(0, len(takes) - 1, n).round().astype(int)
    return [takes[i] for i in sorted(set(idx.tolist()))]


if __name__ == "__main__":
    sys.exit(main())
