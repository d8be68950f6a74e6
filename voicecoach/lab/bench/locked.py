"""The locked test speakers, end to end through ``voicecoach listen``: the figure we report.

    python -m voicecoach.lab.bench.locked [--verify auto|off] [--bare] [--json]

A fifth of the real speakers of ``../shared/speech_commands`` and
``../shared/speech_commands_train`` (and a fifth of the background-noise clips) are locked
away by a fixed rule (``training.data.is_locked``) before any training: no recipe, threshold or
verifier setting ever looked at them. This bench writes each of their clips as a user's audio
would reach the device (half a second of quiet room tone before and after; ``--bare``: the clip
alone, nothing after the word) into WAV files, one folder per workout state, and runs
``voicecoach listen --json --state STATE`` on each folder in a child process, as a user would:
stop and the other words in the walking state ('backward', the most commands), go in 'paused'
(it means resume), yes and no in 'briefing'. It prints recall per word, false accepts on other
words and on noise, stop latency (emitted minus the end of the word, audio time), CPU per audio
second and the child's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voicecoach.audio.chunk import SAMPLE_RATE
from voicecoach.audio.samples import active_bounds, to_float
from voicecoach.audio.wav import write_wav
from voicecoach.config import number_in
from voicecoach.errors import VoicecoachError, report
from voicecoach.lab.bench.spotter import listen_child
from voicecoach.lab.training.data import (
    REAL_POSITIVES,
    ROOM_LEAD_S,
    SILENCE,
    in_room,
    locked_clips,
    read_audio,
    speech_commands_dir,
    speech_commands_train_dir,
)

#: The state each word is heard in, and the command it must give ("" = none).
STATE_OF = {"stop": "backward", "go": "paused", "yes": "briefing", "no": "briefing"}
COMMAND_OF = {"stop": "stop", "go": "resume", "yes": "yes", "no": "no"}
NEGATIVE_STATE = "backward"


def write_inputs(clips: Sequence[tuple[Path, str, str]], folder: Path, bare: bool
                 ) -> dict[str, dict[str, Any]]:
    """Write each clip as a WAV under ``folder/<state>/<word>/``; the truth per file."""
    truth: dict[str, dict[str, Any]] = {}
    for path, word, speaker in clips:
        raw = read_audio(path)
        audio = raw if bare else in_room(raw, path.name)
        lead = 0.0 if bare else ROOM_LEAD_S
        _, end = active_bounds(to_float(raw), threshold_db=-30.0)
        state = STATE_OF.get(word, NEGATIVE_STATE)
        dest = folder / state / word / f"{path.parent.parent.name}-{path.stem}.wav"
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_wav(dest, audio)
        truth[str(dest)] = {"word": word, "speaker": speaker, "command": COMMAND_OF.get(word, ""),
                            "end_s": lead + end / SAMPLE_RATE, "audio_s": audio.size / SAMPLE_RATE}
    return truth


def score(results: list[dict[str, Any]], truth: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Recall per word, false accepts, stop latency."""
    recall: dict[str, list[int]] = {}
    fa: dict[str, list[int]] = {}
    latency: list[float] = []
    fired_as: dict[str, int] = {}
    for row in results:
        t = truth[row["file"]]
        heard = [c for c in row["commands"]]
        if t["command"]:
            hits = [c for c in heard if c["command"] == t["command"]]
            recall.setdefault(t["word"], []).append(1 if hits else 0)
            if hits and t["command"] == "stop":
                latency.append(hits[0]["emitted_s"] - t["end_s"])
        else:
            fa.setdefault(t["word"], []).append(1 if heard else 0)
            for c in heard:
                fired_as[c["command"]] = fired_as.get(c["command"], 0) + 1
    words = [v for w, vs in fa.items() if w != SILENCE for v in vs]
    noise = fa.get(SILENCE, [])
    return {
        "recall": {w: {"rate": round(float(np.mean(v)), 4), "heard": int(sum(v)), "clips": len(v)}
                   for w, v in sorted(recall.items())},
        "false_accepts": {w: {"rate": round(float(np.mean(v)), 4), "accepts": int(sum(v)),
                              "clips": len(v)} for w, v in sorted(fa.items())},
        "false_accepts_words": {"rate": round(float(np.mean(words)), 4) if words else 0.0,
                                "accepts": int(sum(words)), "clips": len(words)},
        "false_accepts_noise": {"accepts": int(sum(noise)), "clips": len(noise)},
        "false_commands": fired_as,
        "stop_latency_s": ({"median": round(statistics.median(latency), 3),
                            "max": round(max(latency), 3), "n": len(latency)} if latency else None),
        "speakers": len({t["speaker"] for t in truth.values() if t["word"] != SILENCE}),
    }


def look_cost(clips: Sequence[tuple[Path, str, str]]) -> float | None:
    """CPU seconds (one core) of one second look, the median over ``clips``."""
    from voicecoach.listening.spotter.verify import WhisperVerifier, load_verifier

    try:
        verifier: WhisperVerifier = load_verifier()
    except VoicecoachError:
        return None
    costs = []
    for path, _, _ in clips:
        audio = in_room(read_audio(path), path.name).astype(np.float32) / 32768.0
        t0 = time.process_time()
        verifier.scores(audio[-32000:], {"stop": ["stop", "stop now", "stop the workout"]})
        costs.append(time.process_time() - t0)
    return round(statistics.median(costs), 3) if costs else None


def summary(figs: dict[str, Any], verify: str, bare: bool) -> str:
    rec = " ".join(f"{w} {v['rate']:.3f} ({v['heard']}/{v['clips']})"
                   for w, v in figs["recall"].items() if w in REAL_POSITIVES)
    fw, fn, lat = figs["false_accepts_words"], figs["false_accepts_noise"], figs["stop_latency_s"]
    lat_s = f"stop latency median {lat['median']:.2f} s max {lat['max']:.2f} s" if lat else "no stop heard"
    how = "bare clips" if bare else "clips in room tone"
    return (f"locked speakers ({figs['speakers']}) through listen, {how}, verify {verify}: recall {rec} | "
            f"FA words {100 * fw['rate']:.2f}% ({fw['accepts']}/{fw['clips']}) | FA noise "
            f"{fn['accepts']}/{fn['clips']} | {lat_s} | CPU {figs['cpu_per_audio_s']:.3f} s per audio s | "
            f"peak RSS {figs['peak_rss_mb']:.0f} MB"
            + (f" | {figs['look_cpu_s']:.2f} CPU s per look" if figs.get("look_cpu_s") else ""))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voicecoach.lab.bench.locked",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--speech-commands", type=Path, default=None)
    parser.add_argument("--speech-commands-train", type=Path, default=None)
    parser.add_argument("--verify", choices=["auto", "off"], default="auto")
    parser.add_argument("--bare", action="store_true", help="the clips alone, nothing around them")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument("--limit", type=number_in(0, 1_000_000, whole=True), default=0,
                        help="at most N clips per word (0: all)")
    parser.add_argument("--record", action="store_true",
                        help="write the summary line into the shipped model card (once per model)")
    args = parser.parse_args(argv)
    try:
        roots = [speech_commands_dir(args.speech_commands),
                 speech_commands_train_dir(args.speech_commands_train)]
        clips = locked_clips(roots)
        if not any(c[1] != SILENCE for c in clips):
            raise VoicecoachError(f"no clip of a locked test speaker in {roots[0]} or {roots[1]}",
                                  "point --speech-commands and --speech-commands-train at the "
                                  "whole Speech Commands sets")
        if args.limit:
            by_word: dict[str, list[tuple[Path, str, str]]] = {}
            for c in clips:
                by_word.setdefault(c[1], []).append(c)
            clips = [c for group in by_word.values() for c in group[:args.limit]]
        # the children's own home and no config file (this process's environment untouched)
        env = {"VOICECOACH_HOME": tempfile.mkdtemp(prefix="vc-locked-home"),
               "VOICECOACH_CONFIG": "/nonexistent/voicecoach-bench.toml"}
        with tempfile.TemporaryDirectory(prefix="vc-locked") as tmp:
            truth = write_inputs(clips, Path(tmp), args.bare)
            t0 = time.monotonic()
            results: list[dict[str, Any]] = []
            cpu, peak = 0.0, 0.0
            for state in sorted({p.name for p in Path(tmp).iterdir()}):
                lines, state_cpu, rss = listen_child([Path(tmp) / state], state=state,
                                                     verify=args.verify, env=env)
                results += lines
                cpu, peak = cpu + state_cpu, max(peak, rss)
        figs = score(results, truth)
        audio_s = sum(t["audio_s"] for t in truth.values())
        figs["cpu_per_audio_s"] = cpu / audio_s
        figs["peak_rss_mb"] = peak
        figs["audio_s"] = round(audio_s, 1)
        figs["wall_s"] = round(time.monotonic() - t0, 1)
        if args.verify == "auto":
            figs["look_cpu_s"] = look_cost(clips[:40])
    except VoicecoachError as exc:
        return report(exc)
    line = summary(figs, args.verify, args.bare)
    print(line)
    if args.json:
        print(json.dumps(figs, sort_keys=True))
    if args.record and not args.limit:
        record(line, args.verify, args.bare)
    return 0


def record(line: str, verify: str, bare: bool) -> None:
    """Keep ``line`` in the shipped model card (one line per verify/bare mode) and re-render
    MODEL_CARD.md from it."""
    from voicecoach.lab.training.card import write_card
    from voicecoach.listening.spotter.model import builtin_paths

    _, card_path = builtin_paths()
    card = json.loads(card_path.read_text(encoding="utf-8"))
    key = ("bare clips" if bare else "clips in room tone") + f", verify {verify}:"
    kept = [x for x in card.get("locked", []) if key not in x]
    card["locked"] = sorted(kept + [line])
    write_card(card_path, card)


if __name__ == "__main__":
    raise SystemExit(main())
