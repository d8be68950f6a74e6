"""Benchmark of the shipped English command spotter through ``voicecoach listen``.

    python -m voicecoach.lab.bench.spotter [--hours 1.0] [--work DIR]

- Long form: an hour (``--hours``) of talk made of sentences and coach texts read by the voices
  the model card says were held out of training, with real non-command words of the *locked*
  speakers (up/down/left/right/on/off/other; ``training.data.is_locked``) sprinkled in, and
  about every 20 s a "stop" of a locked speaker, over belt noise, room noise or a faint floor
  at 5-20 dB SNR, cut into 10-minute WAV files and run through ``voicecoach listen --json
  --state backward`` in a child process: stops caught, false commands per hour (any command
  that is not one of those stops), CPU per audio second (RTF), peak RSS.
- Fixtures: every stop phrase of ``audio_fixtures`` (6 voices x 3 speeds, clean and under
  noise): recall, and latency from the phrase's true end (manifest) to the emitted command.
- Chunking: the same files at 10, 100 and 500 ms chunks give identical JSON.

The cross-validated Speech Commands figures come from training
(``python -m voicecoach.lab.training.train``), which writes them into the model card:
the shipped model has heard every real speaker, so only out-of-fold figures are honest.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from voicecoach.errors import VoicecoachError, report
from voicecoach.lab.longform import make_longform, match_stops

_LOGGER = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "audio_fixtures"
def longform_sources(synth: Path, families: Sequence[str], roots: Sequence[Path],
                     kinds: Sequence[str] = ("sentence", "coach")
                     ) -> tuple[list[Path], list[Path], list[Path], list[Path]]:
    """Held-out voices' sentences, and the locked speakers' non-command words, noise clips and
    stops (``training.data.locked_clips``) of the real folders ``roots``."""
    talk: list[Path] = []
    manifest = synth / "manifest.jsonl"
    if not manifest.is_file():
        raise VoicecoachError(f"no synthetic corpus at {synth}",
                              "make it: python -m voicecoach.lab.training.synth --out "
                              f"{synth}")
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if row["family"] in families and row["kind"] in kinds:
            talk.append(synth / row["path"])
    if not talk:
        raise VoicecoachError(f"the corpus at {synth} has no talk by the held-out voices "
                              f"{', '.join(families) or '(none named)'}",
                              "retrain with held-out voice families (model card: holdout_families)")
    from voicecoach.lab.training.data import REAL_NEGATIVES, SILENCE, locked_clips

    locked = locked_clips(roots)
    words = [p for p, word, _ in locked if word in REAL_NEGATIVES]
    noise = [p for p, word, _ in locked if word == SILENCE]
    stops = [p for p, word, _ in locked if word == "stop"]
    return talk, words, noise, stops


def listen_child(paths: Sequence[Path], chunk_ms: int = 100, state: str = "backward",
                 engine: str = "spotter", verify: str = "auto",
                 env: Mapping[str, str] | None = None
                 ) -> tuple[list[dict[str, Any]], float, float]:
    """``voicecoach listen --json`` in a child process: its lines, CPU s, peak RSS (MB);
    ``env``: variables set for the child only."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    # VmHWM is the child's own peak (ru_maxrss of a child counts the parent's pages at fork)
    code = ("import sys; from voicecoach.cli import main; c = main(sys.argv[1:]); "
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')]; "
            "sys.stderr.write('PEAK_RSS_KB ' + hwm[0].split()[1] + '\\n'); sys.exit(c)")
    cmd = [sys.executable, "-c", code, "listen", "--json", "--engine", engine, "--verify", verify,
           "--state", state, "--chunk-ms", str(chunk_ms), *map(str, paths)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          env={**os.environ, **(env or {}), "PYTHONHASHSEED": "0"})
    if proc.returncode != 0:
        raise VoicecoachError(f"voicecoach listen failed: {proc.stderr.strip()[-300:]}",
                              "run the same listen command by hand to see why")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.strip()]
    peak = [float(x.split()[1]) for x in proc.stderr.splitlines() if x.startswith("PEAK_RSS_KB")]
    return lines, cpu, (peak[0] / 1024.0 if peak else float("nan"))


def fixture_stops() -> list[tuple[Path, list[dict[str, Any]]]]:
    """Fixture files with a stop in them, and their expected commands."""
    manifest = json.loads((FIXTURES / "manifest.json").read_text(encoding="utf-8"))
    entries = manifest["files"] if isinstance(manifest, dict) and "files" in manifest else manifest
    out = []
    for entry in entries:
        rel = entry["file"]
        exp = entry.get("expected", [])
        if rel.startswith(("commands/", "noisy/")) and any(e["command"] == "stop" for e in exp):
            out.append((FIXTURES / rel, exp))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voicecoach.lab.bench.spotter",
                                     description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--hours", type=float, default=1.0, help="long-form audio to make")
    parser.add_argument("--work", type=Path,
                        default=Path.home() / ".cache" / "voicecoach" / "spotter-train")
    parser.add_argument("--speech-commands", type=Path, default=None)
    parser.add_argument("--synth", type=Path, default=None,
                        help="the synthetic corpus (default WORK/synth)")
    parser.add_argument("--speech-commands-train", type=Path, default=None)
    parser.add_argument("--verify", choices=["auto", "off"], default="auto",
                        help="the spotter's second look (as listen --verify)")
    parser.add_argument("--no-fixtures", action="store_true", help="the long form only")
    parser.add_argument("--confusable", action="store_true",
                        help="also sprinkle the corpus's confusable single words (top, shop, "
                             "stock, ...) into the talk: a harsher test than the issue's")
    args = parser.parse_args(argv)
    from voicecoach.lab.training.data import speech_commands_dir, speech_commands_train_dir
    from voicecoach.listening.spotter.model import load_model

    try:
        card = load_model().card
        families = card.get("holdout_families", [])
        kinds = ("sentence", "coach", "negative") if args.confusable else ("sentence", "coach")
        roots = [speech_commands_dir(args.speech_commands),
                 speech_commands_train_dir(args.speech_commands_train)]
        talk, words, noise, locked_stops = longform_sources(args.synth or args.work / "synth",
                                                            families, roots, kinds)
        folder = args.work / ("longform-confusable" if args.confusable else "longform")
        files, said = make_longform(folder, args.hours, talk, words, noise, locked_stops)
        lines, cpu, rss = listen_child(files, verify=args.verify)
    except VoicecoachError as exc:
        return report(exc)
    audio_s = sum(x["audio_s"] for x in lines)
    caught, n_stops, lat = 0, 0, []
    false: list[dict[str, Any]] = []
    for x in lines:
        windows = said.get(x["file"], [])
        n_stops += len(windows)
        matched = match_stops([(c["emitted_s"], c["command"]) for c in x["commands"]], windows)
        for c, k in zip(x["commands"], matched, strict=True):
            if k is None:
                false.append({**c, "file": Path(x["file"]).name})
            else:
                caught += 1
                lat.append(c["emitted_s"] - windows[k][1])
    by_cmd: dict[str, int] = {}
    for c in false:
        by_cmd[c["command"]] = by_cmd.get(c["command"], 0) + 1
    what = "sentences, coach texts and confusable words" if args.confusable else \
        "sentences and coach texts"
    lat_s = f"median {statistics.median(lat):.2f} s max {max(lat):.2f} s" if lat else "n/a"
    print(f"long form ({audio_s / 3600:.2f} h of {what} in {len(families)} voices left out of "
          f"training, locked speakers' non-command words, 5-20 dB SNR, verify {args.verify}): "
          f"locked speakers' stops caught {caught}/{n_stops} ({caught / max(1, n_stops):.3f}), "
          f"latency {lat_s} | {len(false)} false commands = "
          f"{len(false) / (audio_s / 3600):.2f} per hour {by_cmd or ''} | "
          f"RTF {cpu / audio_s:.4f} (CPU s per audio s) | peak RSS {rss:.0f} MB")
    for c in false:      # where they come from: a confident stop or a verified command
        print(f"  false {c['command']} in {c['file']} at {c['emitted_s']:.2f} s, spotter "
              f"{c['confidence']:.3f}")
    if args.no_fixtures:
        return 0
    stops = fixture_stops()
    with tempfile.TemporaryDirectory():
        res = {}
        for chunk in (10, 100, 500):
            got, _, _ = listen_child([p for p, _ in stops], chunk_ms=chunk)
            res[chunk] = [json.dumps(x["commands"], sort_keys=True) for x in got]
    got100, _, _ = listen_child([p for p, _ in stops], chunk_ms=100)
    heard, lat = 0, []
    for (_path, exp), line in zip(stops, got100, strict=True):
        truth = [e for e in exp if e["command"] == "stop"][0]
        hits = [c for c in line["commands"] if c["command"] == "stop"
                and c["emitted_s"] >= truth["start_s"]]
        if hits:
            heard += 1
            lat.append(hits[0]["emitted_s"] - truth["end_s"])
    same = res[10] == res[100] == res[500]
    lat_s = (f"median {statistics.median(lat):.2f} s max {max(lat):.2f} s" if lat else "n/a")
    print(f"fixture stops (6 voices x 3 speeds, clean and noisy): {heard}/{len(stops)} heard | "
          f"latency from true end {lat_s} | 10/100/500 ms chunks identical: {same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
