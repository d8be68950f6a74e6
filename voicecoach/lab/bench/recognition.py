"""Recognition benchmark: recall, false accepts, stop latency, speed, memory, chunking.

``python -m voicecoach.lab.bench.recognition`` streams every clip of ../shared/speech_commands
(real people, 1-second clips, padded with quiet so a recogniser can finish the word) and the
manifest of ``audio_fixtures/`` through the real recogniser, in audio time.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from voicecoach.errors import VoicecoachError, report
from voicecoach.grammar import STOP, Grammar
from voicecoach.lab.bench.clips import Runner, chunk_sizes_agree, make_factory
from voicecoach.lab.corpus import FA_STATE, LEAD_S, POSITIVES, pad_clip, read_clip, state_for
from voicecoach.listening.recogniser import Recogniser

_LOGGER = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[3]
NEGATIVE_WORDS = ("up", "down", "left", "right", "on", "off", "_unknown_")
CURVE = (-1.0, -0.5, 0.0, 0.5, 1.0, 2.0)


def clip_files(data: Path, folder: str, limit: int | None) -> list[Path]:
    """The sorted WAV files of one Speech Commands folder (the first ``limit``)."""
    files = sorted((data / folder).glob("*.wav"))
    return files[:limit] if limit else files


def measure_set(runner: Runner, grammar: Grammar, data: Path,
                limit: int | None) -> dict[str, Any]:
    """Recall per positive folder, false-accept rate per negative folder, stop latency."""
    out: dict[str, Any] = {"recall": {}, "false_accepts": {}}
    latencies: list[float] = []
    for folder, command in POSITIVES.items():
        state = state_for(grammar, command)
        files = clip_files(data, folder, limit)
        hits = 0
        for path in files:
            res = runner.run(path.name, pad_clip(read_clip(path), path.name),
                             grammar.commands_for(state))
            heard = [d for d in res.detections if d.command == command]
            hits += bool(heard)
            if heard and command == STOP:
                latencies.append(heard[0].emitted_s - heard[0].end_s)
        out["recall"][folder] = {"hits": hits, "clips": len(files), "command": command,
                                 "state": state}
    for folder in (*NEGATIVE_WORDS, "_silence_"):
        files = clip_files(data, folder, limit)
        fired = 0
        for path in files:
            res = runner.run(path.name, pad_clip(read_clip(path), path.name),
                             grammar.commands_for(FA_STATE))
            fired += bool(res.detections)
        out["false_accepts"][folder] = {"accepts": fired, "clips": len(files),
                                        "state": FA_STATE}
    out["stop_latencies"] = latencies
    return out


def measure_fixtures(runner: Runner, grammar: Grammar, folder: Path) -> dict[str, Any] | None:
    """Recall and false accepts on ``folder/manifest.json`` (all commands listening): a
    list of entries, or an object with a "files" list; each entry has "file", "kind" and
    "expected" (or "commands") with command, start_s and end_s."""
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return None
    data = json.loads(manifest.read_text(encoding="utf-8"))
    entries = data.get("files", []) if isinstance(data, dict) else data
    by_kind: dict[str, dict[str, int]] = {}
    latencies: list[float] = []
    for entry in entries:
        samples = read_clip(folder / entry["file"])
        res = runner.run(entry["file"], pad_clip(samples, entry["file"]), grammar.commands)
        kind = by_kind.setdefault(entry["kind"], {"expected": 0, "heard": 0, "false": 0,
                                                  "files": 0})
        kind["files"] += 1
        used: set[int] = set()
        for exp in entry.get("expected", entry.get("commands", [])):
            kind["expected"] += 1
            for i, det in enumerate(res.detections):
                if (i not in used and det.command == exp["command"]
                        and det.end_s - LEAD_S >= exp["start_s"]
                        and det.start_s - LEAD_S <= exp["end_s"] + 0.5):
                    used.add(i)
                    kind["heard"] += 1
                    if det.command == STOP:
                        latencies.append(det.emitted_s - det.end_s)
                    break
        kind["false"] += len(res.detections) - len(used)
    return {"kinds": by_kind, "stop_latencies": latencies}


def measure_curve(factory: Callable[..., Recogniser], grammar: Grammar, data: Path,
                  limit: int | None) -> list[dict[str, Any]]:
    """Stop recall and false accepts at each sensitivity of the pocketsphinx engine."""
    points = []
    for sensitivity in CURVE:
        runner = Runner(factory(sensitivity=sensitivity))
        res = measure_set(runner, grammar, data, limit)
        points.append({"sensitivity": sensitivity, **_rates(res)})
    return points


def _rates(res: dict[str, Any]) -> dict[str, float]:
    fa = res["false_accepts"]
    words = sum(fa[f]["accepts"] for f in NEGATIVE_WORDS)
    clips = sum(fa[f]["clips"] for f in NEGATIVE_WORDS)
    stop = res["recall"]["stop"]
    return {"stop_recall": stop["hits"] / max(stop["clips"], 1),
            "fa_words": words / max(clips, 1),
            "fa_silence": fa["_silence_"]["accepts"] / max(fa["_silence_"]["clips"], 1)}


def summary_line(engine: str, res: dict[str, Any]) -> str:
    """The one-line summary the README quotes."""
    stop, fa = res["recall"]["stop"], res["false_accepts"]
    rates = _rates(res)
    words = sum(fa[f]["accepts"] for f in NEGATIVE_WORDS)
    clips = sum(fa[f]["clips"] for f in NEGATIVE_WORDS)
    lat = res["stop_latencies"]
    latency = (f"stop latency median {statistics.median(lat):.2f} s max {max(lat):.2f} s"
               if lat else "stop latency n/a")
    return (f"{engine}: stop recall {rates['stop_recall']:.2f} ({stop['hits']}/{stop['clips']})"
            f" | FA unknown-words {100 * rates['fa_words']:.1f}% ({words}/{clips})"
            f" | FA silence {100 * rates['fa_silence']:.1f}%"
            f" ({fa['_silence_']['accepts']}/{fa['_silence_']['clips']}) | {latency}"
            f" | RTF {res['rtf']:.3f} | peak RSS {res['peak_rss_mb']:.0f} MB"
            f" | chunking {'identical' if res['chunking_identical'] else 'DIFFERS'}")


def _report(engine: str, res: dict[str, Any]) -> None:
    print(f"== {engine} on {res['data']} ==")
    for folder, r in res["recall"].items():
        print(f"recall {folder:>9} -> {r['command']:<7} in state {r['state']:<9}"
              f" {r['hits'] / max(r['clips'], 1):.3f} ({r['hits']}/{r['clips']})")
    for folder, r in res["false_accepts"].items():
        print(f"false accepts {folder:>9} (state {r['state']}) "
              f"{100 * r['accepts'] / max(r['clips'], 1):5.1f}% ({r['accepts']}/{r['clips']})")
    print(f"chunking 10/100/500 ms on {res['chunking_clips']} clips: "
          f"{'identical' if res['chunking_identical'] else 'differs: ' + ', '.join(res['chunking_differs'])}")
    for point in res.get("curve", []):
        print(f"curve sensitivity {point['sensitivity']:+.1f}: stop recall "
              f"{point['stop_recall']:.3f} | FA words {100 * point['fa_words']:.1f}%"
              f" | FA silence {100 * point['fa_silence']:.1f}%")
    fix = res.get("fixtures")
    if fix is None:
        print("fixtures: no manifest.json, skipped")
    else:
        for kind, k in fix["kinds"].items():
            print(f"fixtures {kind:>10}: heard {k['heard']}/{k['expected']} expected,"
                  f" {k['false']} false accepts in {k['files']} files")
        lat = fix["stop_latencies"]
        if lat:
            print(f"fixtures stop latency median {statistics.median(lat):.2f} s"
                  f" max {max(lat):.2f} s")


def run_bench(engine: str, language: str, data: Path, fixtures: Path | None,
              limit: int | None, curve: bool, curve_limit: int | None,
              model: Path | None = None) -> dict[str, Any]:
    """Every measurement, as one dict."""
    if not data.is_dir():
        raise VoicecoachError(f"no speech data at {data}", "pass --data ../shared/speech_commands")
    grammar, factory = make_factory(engine, language, model)
    runner = Runner(factory())
    cpu0 = time.process_time()
    res = measure_set(runner, grammar, data, limit)
    res["rtf"] = (time.process_time() - cpu0) / max(runner.audio_s, 1e-9)
    res["data"] = str(data)
    sample = [(p.name, pad_clip(read_clip(p), p.name))
              for folder in ("stop", "_unknown_", "up", "_silence_")
              for p in clip_files(data, folder, 5)]
    same, differs = chunk_sizes_agree(factory, sample, grammar.commands_for(FA_STATE))
    res.update(chunking_identical=same, chunking_differs=differs, chunking_clips=len(sample))
    res["fixtures"] = measure_fixtures(runner, grammar, fixtures) if fixtures else None
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if curve:
        res["curve"] = measure_curve(factory, grammar, data, curve_limit)
    return res


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m voicecoach.lab.bench.recognition",
                                     description=__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    from voicecoach.listening.engines import recognisers

    parser.add_argument("--engine", default="pocketsphinx",
                        choices=[engine.name for engine in recognisers()],
                        help="recogniser to measure (the spotter's shipped model trained on "
                             "every Speech Commands speaker: its honest figures are the "
                             "cross-validated ones of `python -m "
                             "voicecoach.lab.training.train`)")
    parser.add_argument("--lang", default="en", help="grammar language")
    parser.add_argument("--model", type=Path, default=None, help="vosk model folder")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "speech_commands",
                        help="Speech Commands folders (stop/, up/, _silence_/ ...)")
    parser.add_argument("--fixtures", type=Path, default=REPO / "audio_fixtures",
                        help="folder with manifest.json (skipped when absent)")
    parser.add_argument("--limit", type=int, default=None, help="clips per folder")
    parser.add_argument("--curve", action="store_true",
                        help="also sweep the pocketsphinx sensitivity (recall vs false accepts)")
    parser.add_argument("--curve-limit", type=int, default=40, help="clips per folder per point")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    try:
        res = run_bench(args.engine, args.lang, args.data, args.fixtures, args.limit,
                        args.curve, args.curve_limit, args.model)
    except VoicecoachError as exc:
        return report(exc)
    res["summary"] = summary_line(args.engine, res)
    if args.json:
        print(json.dumps(res))
    else:
        _report(args.engine, res)
        print(res["summary"])
        if args.engine == "spotter":
            print("note: the shipped spotter was trained on these speakers; these are not "
                  "unseen-speaker figures (see the model card's cross-validated ones)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
