"""Duplex benchmark: barge-in latency, false commands from the coach's voice, idle CPU and RSS.

``python -m voicecoach.lab.bench.duplex`` runs, in audio time, on replayed fixtures in a
simulated room (voicecoach.lab.room: the coach's rendered voice goes back into the
microphone, delayed and attenuated, over synthetic treadmill noise):

1. stop latency: a "stop" phrase said over the coach's briefing in every fixture voice, at
   three noise levels; from the end of the phrase to the coach cut off and the session stopped;
2. false commands over a 15-minute closed-loop session (10 dB SNR, a polite simulated user);
3. idle CPU while listening, CPU seconds per audio second, per engine (child processes);
4. peak RSS per engine (the same child processes).
``--rt60`` gives the room reverberation (voicecoach.lab.room.room_response) instead of a
direct path only.
It also measures the echo residual (voicecoach.device.duplex.echo_residual_db) on the stop trials,
and the echo canceller's ERLE; ``--no-aec`` feeds the recogniser the raw microphone.
Not a test: it prints one summary line per figure.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from voicecoach.audio.chunk import SAMPLE_RATE, AudioChunk
from voicecoach.audio.samples import to_int16, treadmill_noise
from voicecoach.device.duplex import echo_residual_db
from voicecoach.grammar import load_grammar
from voicecoach.lab.room import closed_loop, load_clip
from voicecoach.settings import Settings, SpeechSettings
from voicecoach.speaking.render import EspeakNgRenderer
from voicecoach.workout.plan import COOLDOWN, RECOVERY, WARMUP, Phase, Plan

_LOGGER = logging.getLogger(__name__)

VOICES = ("joe", "espeak-en-us", "espeak-en-us-f3", "espeak-en-us-m3", "espeak-en-gb",
          "espeak-en-gb-scotland")
STOP_PHRASES = ("stop", "stop now", "stop the workout")
#: Noise levels: None is a quiet room; else the treadmill noise RMS for that SNR against
#: fixture speech at -20 dBFS.
NOISE = {"quiet": 0.0, "snr20": 10 ** (-40 / 20), "snr10": 10 ** (-30 / 20)}
SPEECH_RMS = 0.1  # -20 dBFS, the fixtures' level

#: 15 minutes of walking after the briefing.
PLAN_15 = Plan("bench-15min", (
    replace(WARMUP, duration_s=180.0),
    Phase("backward", 240.0, 0.6, 0.5, 0.8, 0.0, 1.0, "technique"),
    replace(RECOVERY, duration_s=60.0),
    Phase("backward", 240.0, 0.6, 0.5, 0.8, 0.0, 1.0, "technique"),
    replace(COOLDOWN, duration_s=180.0),
))


def _settings(tmp: Path, engine: str = "auto") -> Settings:
    return Settings(speech=SpeechSettings(engine=engine), data_dir=tmp)


def _recogniser(settings: Settings) -> Any:
    from voicecoach.listening.engines import make_recogniser

    return make_recogniser(settings.speech, load_grammar(settings.speech.language),
                           announce=lambda line: None)


def stop_trials(settings: Settings, renderer: Any, voices: tuple[str, ...] = VOICES,
                noise: dict[str, float] | None = None, aec: bool = True,
                rt60_s: float = 0.0, warm: bool = False) -> list[dict[str, Any]]:
    """One session per trial. Cold: the briefing starts at 0 s and a stop is said over its
    first seconds (the canceller converging from nothing). ``warm``: the briefing is answered
    (typed) and the stop is said over the first coach utterance after 30 to 150 s, over the
    warm-up's cues, with the canceller converged."""
    recogniser = _recogniser(settings)
    rows = []
    i = 0
    for level, rms in (noise or NOISE).items():
        for voice in voices:
            for phrase in STOP_PHRASES:
                clip = load_clip("stop", phrase, voice)
                i += 1
                if warm:
                    after = 30.0 + ((i - 1) % 7) * 20.0
                    run = closed_loop(recogniser, settings, PLAN_15, after + 60.0,
                                      renderer=renderer, noise_rms=rms, typed_answers=True,
                                      begin_at_once=True, keep_mic=True, seed=i, aec=aec,
                                      rt60_s=rt60_s, stop_over_speech=(clip, after))
                    if clip not in run.source.clips:  # the coach never spoke long enough
                        continue
                else:
                    clip.at_s = 1.0 + ((i - 1) % 7) * 0.7
                    run = closed_loop(recogniser, settings, PLAN_15, clip.at_s + 4.0,
                                      renderer=renderer, noise_rms=rms, user=False,
                                      begin_at_once=True, clips=(clip,), keep_mic=True, seed=i,
                                      aec=aec, rt60_s=rt60_s)
                rows.append(_score_stop(run, clip, voice, phrase, level))
    return rows


def _score_stop(run: Any, clip: Any, voice: str, phrase: str, level: str) -> dict[str, Any]:
    intervals = run.speaker.speaking_intervals()
    over = any(iv.start <= clip.end_s and (iv.end or 1e9) >= clip.start_s for iv in intervals)
    cut = [iv.end for iv in intervals if not iv.completed and iv.end is not None
           and iv.end >= clip.start_s]
    stopped = [d.detection.emitted_s for d in run.loop.gate.decisions
               if d.detection.command == "stop" and d.accepted
               and d.detection.end_s >= clip.start_s]
    if run.loop.outcomes[:1] != ["stopped"]:
        stopped = []
    row: dict[str, Any] = {"voice": voice, "phrase": phrase, "noise": level, "over_speech": over,
                           "caught": bool(stopped), "latency_s": None, "residual": None}
    if stopped:
        done = max([stopped[0], *cut[:1]])
        row["latency_s"] = round(done - clip.end_s, 3)
    mic = np.concatenate(run.source.mic)
    row["residual"] = _residuals(mic, run.speaker, clip)
    row["erle_db"] = loop_erle(run)
    return row


def _residuals(mic: np.ndarray, speaker: Any, clip: Any) -> tuple[float, float] | None:
    """(echo residual over the stop phrase, over the echo alone just before it), in dB."""
    span = clip.end_s - clip.start_s
    lead = clip.start_s - span - 0.2
    if lead < 0.2:
        return None
    out = []
    for start in (clip.start_s, lead):
        a, b = int(start * SAMPLE_RATE), int((start + span) * SAMPLE_RATE)
        ref = speaker.played(start - 0.1, start + span)
        out.append(round(echo_residual_db(mic[a:b], ref), 1))
    return out[0], out[1]


def loop_erle(run: Any) -> float | None:
    """ERLE (dB) of the echo canceller over a closed-loop run, where the coach's echo is.

    The room is simulated, so the echo is known (the played speech, delayed and attenuated):
    the canceller is run again on the recorded microphone (same input, same result as in the
    loop) and the echo left in its output is compared with the echo that went in.
    """
    from voicecoach.audio.aec import EchoCanceller, erle_db

    source = run.source
    if not source.mic:
        return None
    canceller = EchoCanceller()
    echo_e = residual_e = 0.0
    t = 0.0
    for block in source.mic:  # chunk by chunk: a 17-minute run must not inflate peak RSS
        end = t + block.size / SAMPLE_RATE
        ref = run.speaker.played_audio(t, end)
        echo = source.echo(t, end)[:block.size].astype(np.float64)
        out = canceller.process(to_int16(block), ref[:block.size]).astype(np.float64) / 32768.0
        residual = out - (block.astype(np.float64) - echo)
        active = np.abs(echo) > 1e-4
        echo_e += float(np.dot(echo[active], echo[active]))
        residual_e += float(np.dot(residual[active], residual[active]))
        t = end
    if echo_e <= 0:
        return None
    return round(erle_db(np.array([math.sqrt(echo_e)]), np.array([math.sqrt(residual_e)])), 1)


def false_command_run(settings: Settings, renderer: Any, minutes_plan: Plan = PLAN_15,
                      aec: bool = True, rt60_s: float = 0.0) -> dict[str, Any]:
    """The 15-minute closed loop at 10 dB SNR with a polite user; counts what was wrong."""
    recogniser = _recogniser(settings)
    total = minutes_plan.total_s + 120.0
    cpu = time.process_time()
    run = closed_loop(recogniser, settings, minutes_plan, total, renderer=renderer,
                      noise_rms=NOISE["snr10"], voices=VOICES, seed=15, aec=aec,
                      keep_mic=True, rt60_s=rt60_s)
    said = run.user.said if run.user else []
    heard_ok = sum(1 for c in said if any(e.command == c.command and c.start_s - 0.3 <= e.t
                                          <= c.end_s + 2.5 for e in run.heard))
    return {"audio_s": total, "cpu_s": round(time.process_time() - cpu, 1),
            "outcome": run.loop.outcomes, "false": [(e.command, round(e.t, 1))
                                                    for e in run.false_commands()],
            "echo": [(e.command, round(e.t, 1)) for e in run.echo_commands()],
            "suppressed": [(d.detection.command, round(d.detection.start_s, 1))
                           for d in run.loop.gate.suppressed],
            "user_said": len(said), "user_heard": heard_ok, "erle_db": loop_erle(run),
            "coach_speech_s": round(sum((iv.end or 0) - iv.start
                                        for iv in run.speaker.speaking_intervals()), 1)}


def idle_child(engine: str, language: str, seconds: float) -> dict[str, Any]:
    """In this (child) process: load the engine, feed idle noise, report CPU ratio and RSS."""
    from voicecoach.listening.engines import make_recogniser

    grammar = load_grammar(language)
    recogniser = make_recogniser(SpeechSettings(engine=engine, language=language), grammar,
                                 announce=lambda line: None)
    recogniser.set_commands(grammar.commands_for("idle"))
    rng = np.random.default_rng(3)
    noise = to_int16(treadmill_noise(seconds, rng) * np.float32(NOISE["snr10"])).tobytes()
    step = int(0.1 * SAMPLE_RATE) * 2
    cpu = time.process_time()
    heard = 0
    from voicecoach.audio.aec import ReferenceCanceller

    # as on the device: the mic goes through echo cancellation against the (silent) speaker
    canceller = ReferenceCanceller(lambda a, b: np.zeros(int(round((b - a) * SAMPLE_RATE)),
                                                         dtype=np.int16))
    for k, offset in enumerate(range(0, len(noise), step)):
        chunk = canceller(AudioChunk(noise[offset:offset + step], k * 0.1))
        heard += len(recogniser.accept(chunk))
    used = time.process_time() - cpu
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {"engine": engine, "language": language, "cpu_ratio": round(used / seconds, 4),
            "peak_rss_mb": round(rss_mb, 1), "heard": heard}


def idle_engines(seconds: float) -> list[dict[str, Any]]:
    """One child process per engine this machine has (peak RSS must not mix)."""
    from voicecoach.config import languages
    from voicecoach.listening.engines import recognisers
    from voicecoach.listening.models import find_model

    runs: list[tuple[str, str]] = []
    for entry in recognisers():  # engines with their own model, then those that need one
        if entry.language is not None:
            runs.append((entry.name, entry.language))
        elif entry.needs_model:
            runs += [(entry.name, lang) for lang in languages() if find_model(lang, None)]
    out = []
    for engine, lang in runs:
        proc = subprocess.run([sys.executable, "-m", "voicecoach.lab.bench.duplex", "--idle-child",
                               engine, lang, str(seconds)], capture_output=True, text=True,
                              check=False, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if proc.returncode != 0:
            out.append({"engine": engine, "language": lang, "error": proc.stderr.strip()[-300:]})
            continue
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out


def _summary(rows: list[dict[str, Any]]) -> str:
    lat = [r["latency_s"] for r in rows if r["latency_s"] is not None]
    over = sum(r["over_speech"] for r in rows)
    caught = sum(r["caught"] for r in rows)
    if not lat:
        return f"stop latency: no stop caught in {len(rows)} trials"
    return (f"stop over the coach's voice: {caught}/{len(rows)} caught ({over} over speech), "
            f"end of phrase to speech cut off and session stopped: median "
            f"{statistics.median(lat):.3f} s, max {max(lat):.3f} s "
            f"(target <= 0.3 / 0.5 s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-child", nargs=3, metavar=("ENGINE", "LANG", "SECONDS"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="fewer trials, a 3-minute session")
    from voicecoach.listening.engines import engine_names

    parser.add_argument("--engine", default="auto", choices=engine_names(),
                        help="the recogniser (auto: the spotter for English)")
    parser.add_argument("--idle-s", type=float, default=120.0, help="idle audio per engine")
    parser.add_argument("--skip", nargs="*", default=(), choices=("stop", "false", "idle"))
    parser.add_argument("--no-aec", action="store_true",
                        help="feed the recogniser the raw microphone (no echo cancellation)")
    parser.add_argument("--warm", action="store_true",
                        help="say the stops over the warm-up's cues (canceller converged) "
                             "instead of the first seconds of the briefing")
    parser.add_argument("--rt60", type=float, default=0.0, metavar="S",
                        help="room reverberation time for the coach's echo (0: a direct path "
                             "only); the tail is 6 dB under the direct path")
    args = parser.parse_args(argv)
    if args.idle_child:
        engine, lang, seconds = args.idle_child
        print(json.dumps(idle_child(engine, lang, float(seconds))))
        return 0
    logging.basicConfig(level=logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="vc-bench-"))
    settings = _settings(tmp, args.engine)
    renderer = EspeakNgRenderer(settings.speech.voice, settings.speech.rate)
    if "stop" not in args.skip:
        voices = VOICES[:2] if args.quick else VOICES
        rows = stop_trials(settings, renderer, voices, aec=not args.no_aec, rt60_s=args.rt60,
                           warm=args.warm)
        print(_summary(rows), flush=True)
        pairs = [r["residual"] for r in rows if r["residual"]]
        if pairs:
            user = [p[0] for p in pairs]
            echo = [p[1] for p in pairs]
            print(f"echo residual (mic vs delayed known speech): echo alone median "
                  f"{statistics.median(echo):.1f} dB (max {max(echo):.1f}), with a spoken stop "
                  f"median {statistics.median(user):.1f} dB (min {min(user):.1f}); "
                  f"{sum(u > max(echo) for u in user)}/{len(user)} stops above every echo-only "
                  f"window", flush=True)
        erle = [r["erle_db"] for r in rows if r["erle_db"] is not None]
        if erle:
            print(f"echo canceller ERLE over each stop trial's echo (converging from silence at "
                  f"0 s): median {statistics.median(erle):.1f} dB, min {min(erle):.1f} dB; by noise: "
                  + ", ".join(f"{level} {statistics.median(v):.1f}" for level in NOISE
                              if (v := [r["erle_db"] for r in rows if r["noise"] == level
                                        and r["erle_db"] is not None])), flush=True)
        missed = [r for r in rows if not r["caught"]]
        for r in missed[:10]:
            print(f"  missed: {r['voice']} '{r['phrase']}' {r['noise']}", flush=True)
    # idle first: a child's peak RSS starts from this process's peak (fork), and the
    # 15-minute run keeps its microphone for the ERLE
    if "idle" not in args.skip:
        for row in idle_engines(args.idle_s):
            if "error" in row:
                print(f"idle {row['engine']} ({row['language']}): failed: {row['error']}")
                continue
            print(f"idle CPU {row['engine']} ({row['language']}): {row['cpu_ratio']:.3f} CPU s "
                  f"per audio s ({100 * row['cpu_ratio']:.1f} % of one core; target <= 10 %); "
                  f"peak RSS {row['peak_rss_mb']:.0f} MB; {row['heard']} commands heard in "
                  f"{args.idle_s:g} s of treadmill noise", flush=True)
    if "false" not in args.skip:
        plan = PLAN_15
        if args.quick:
            plan = Plan("bench-3min", (replace(WARMUP, duration_s=60.0), PLAN_15.phases[1],
                                       replace(COOLDOWN, duration_s=30.0)))
        result = false_command_run(settings, renderer, plan, aec=not args.no_aec,
                                   rt60_s=args.rt60)
        print(f"false commands over a {result['audio_s'] / 60:.1f}-minute closed-loop session "
              f"(coach's voice -6 dB 30 ms late, RT60 {args.rt60:g} s, treadmill noise 10 dB "
              f"SNR): "
              f"{len(result['echo'])} from the coach's voice or noise (target 0), "
              f"{len(result['false']) - len(result['echo'])} misheard user phrases "
              f"{result['false'] or ''}; the gate dropped "
              f"{len(result['suppressed'])} detections of the coach's voice; user commands heard "
              f"{result['user_heard']}/{result['user_said']}; outcome {result['outcome']}; "
              f"{result['coach_speech_s']} s of coach speech; {result['cpu_s']} CPU s; echo "
              f"canceller {'off' if args.no_aec else 'on'}, its ERLE over the coach's echo "
              f"{result['erle_db']} dB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
