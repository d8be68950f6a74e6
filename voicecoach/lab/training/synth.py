"""Render the spotter's training texts in many synthetic voices to 16 kHz WAV clips and a manifest:
which voice says which text, the tasks in their order, the manifest, the command line. The
voices are voicecoach.lab.training.voices; the rendering is voicecoach.lab.training.speak."""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from voicecoach.audio.chunk import SAMPLE_RATE
from voicecoach.audio.wav import read_wav_16k
from voicecoach.grammar import Grammar, load_grammar
from voicecoach.lab.training import texts as T
from voicecoach.lab.training.speak import render_task
from voicecoach.lab.training.voices import ENGINES, Clip, VoiceConfig, voice_configs

_LOGGER = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
#: Voice configurations per text, by kind (positives' own grammar phrase: all of them).
PER_VARIANT = 24
PER_NEGATIVE = 36
PER_COACH = 8
PER_SENTENCE = 3
#: Sampling weight per engine: neural voices help most.
ENGINE_WEIGHT = {"piper": 2.0, "espeak": 1.0, "flite": 1.0, "festival": 1.0, "kokoro": 2.0}


# ----------------------------------------------------------------------------- planning


def _weighted_sample(rng: random.Random, configs: Sequence[VoiceConfig], k: int) -> list[VoiceConfig]:
    """``k`` configurations without replacement, weighted by engine (Efraimidis-Spirakis)."""
    if k >= len(configs):
        return list(configs)
    keyed = sorted(configs, key=lambda c: rng.random() ** (1.0 / ENGINE_WEIGHT.get(c.engine, 1.0)),
                   reverse=True)
    return sorted(keyed[:k])


def plan_clips(items: Sequence[T.Text], configs: Sequence[VoiceConfig], seed: int = 0) -> list[Clip]:
    """Which voices speak which text: a grammar phrase in every voice, the rest in a seeded sample."""
    clips: list[Clip] = []
    pool = sorted(configs)
    for item in items:
        if item.kind == "positive":
            k = len(pool) if item.text == item.label else PER_VARIANT
        else:
            k = {"negative": PER_NEGATIVE, "coach": PER_COACH, "sentence": PER_SENTENCE}[item.kind]
        rng = random.Random(f"plan:{seed}:{item.kind}:{item.text}")
        clips.extend(Clip(item, voice) for voice in _weighted_sample(rng, pool, k) if voice.usable)
    return clips


def plan_rounds(items: Sequence[T.Text], seed: int, rounds: Sequence[int], engines: Sequence[str] = ENGINES,
                quick: bool = False) -> tuple[list[Clip], list[VoiceConfig]]:
    """The clips of each round planned on its own (``--rounds 1,2`` = round 1, then round 2), and
    all the voices."""
    clips: list[Clip] = []
    configs: list[VoiceConfig] = []
    for rnd in dict.fromkeys(rounds):
        round_configs = voice_configs(seed, quick=quick, rounds=(rnd,), engines=engines)
        configs.extend(round_configs)
        clips.extend(plan_clips(items, round_configs, seed=seed))
    return list(dict.fromkeys(clips)), configs


def quick_texts(grammar: Grammar) -> list[T.Text]:
    """A tiny text set for tests: three phrases with a variant, two negatives, coach, sentence."""
    pos = [t for t in T.positives(grammar) if t.label in ("stop", "go on", "yes")]
    pos = [t for t in pos if t.text == t.label or t.text == f"{t.label}!"]
    return (pos + T.negative_words(grammar)[:2] + T.coach_texts(grammar)[:1]
            + T.everyday_sentences(grammar, count=1))


def group_tasks(out_dir: Path, clips: Iterable[Clip], seed: int) -> list[tuple[str, int, list[Clip]]]:
    """One task per (text, engine): the slow neural engines first, and the kinds interleaved in
    proportion (so that a run stopped early still has every kind in every voice, and no voice is
    heard only in commands)."""
    groups: dict[tuple[str, str, str], list[Clip]] = {}
    for clip in clips:
        groups.setdefault((clip.voice.engine, clip.text.kind, clip.text.text), []).append(clip)
    lanes: dict[tuple[bool, str, str], list[tuple[str, str, str]]] = {}
    for key in sorted(groups):
        lanes.setdefault((key[0] not in ("piper", "kokoro"), key[0], key[1]), []).append(key)
    position = {key: (lane[0], i / len(keys), T.KINDS.index(lane[2]), lane[1])
                for lane, keys in lanes.items() for i, key in enumerate(keys)}
    order = sorted(groups, key=lambda k: (position[k], k))
    return [(str(out_dir), seed, groups[k]) for k in order]


def read_manifest(out_dir: Path) -> list[dict[str, Any]]:
    """The entries of DIR/manifest.jsonl; a line cut short by a killed run is skipped."""
    path = out_dir / MANIFEST
    if not path.exists():
        return []
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            _LOGGER.warning("%s line %d is cut short: skipped (its clip is found again by --finish)",
                            path, number)
            continue
        if isinstance(rec, dict) and "path" in rec:
            entries.append(rec)
    return entries


def rewrite_manifest(out_dir: Path) -> list[dict[str, Any]]:
    """Rewrite DIR/manifest.jsonl atomically: entries whose file exists, one per path, sorted."""
    path = out_dir / MANIFEST
    now = time.time()
    for stale in out_dir.glob("*/*/.*.tmp"):
        if now - stale.stat().st_mtime > 60:  # left by a killed worker, not being written
            stale.unlink()
    entries = {rec["path"]: rec for rec in read_manifest(out_dir) if (out_dir / rec["path"]).exists()}
    ordered = [entries[k] for k in sorted(entries)]
    tmp = path.with_name(f".{MANIFEST}.tmp")
    tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in ordered), encoding="utf-8")
    os.replace(tmp, path)
    return ordered


def _backfill(out_dir: Path, clips: Iterable[Clip]) -> list[dict[str, Any]]:
    """Entries for planned clips whose file exists but whose line was lost (an interrupted append)."""
    known = {rec["path"] for rec in read_manifest(out_dir)}
    out = []
    for clip in clips:
        dest = out_dir / clip.path
        if clip.path not in known and dest.exists():
            out.append(clip.record(read_wav_16k(dest).size / SAMPLE_RATE))
    return out


def _open_for_append(out_dir: Path) -> TextIO:
    """DIR/manifest.jsonl for appending, starting on a fresh line (a killed run may have cut one)."""
    path = out_dir / MANIFEST
    cut = path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
    manifest = open(path, "a", encoding="utf-8")  # the caller closes it
    if cut:
        manifest.write("\n")
    return manifest


def finish(out_dir: Path, seed: int = 0, rounds: Sequence[int] = (1,),
           engines: Sequence[str] = ENGINES) -> list[dict[str, Any]]:
    """Add entries for clips of ``rounds`` that exist but are not listed (a killed run), then
    rewrite the manifest."""
    grammar = load_grammar("en")
    clips, _ = plan_rounds(T.all_texts(grammar, seed=seed), seed, rounds, engines)
    found = _backfill(out_dir, clips)
    if found:
        _LOGGER.info("%d clips were on disk but not in the manifest: added", len(found))
        with _open_for_append(out_dir) as manifest:
            for rec in found:
                manifest.write(json.dumps(rec, sort_keys=True) + "\n")
    return rewrite_manifest(out_dir)


def _worker_init() -> None:
    """Workers leave SIGINT to the parent, which ends them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _interruptible(results: Any) -> Iterator[list[dict[str, Any]]]:
    """Results of a pool's ``imap_unordered``, waiting in short steps so Ctrl-C/SIGTERM get through."""
    while True:
        try:
            yield results.next(timeout=0.5)
        except multiprocessing.TimeoutError:
            continue
        except StopIteration:
            return


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def generate(out_dir: Path, jobs: int = 2, seed: int = 0, quick: bool = False,
             rounds: Sequence[int] = (1,), engines: Sequence[str] = ENGINES,
             kinds: Sequence[str] = T.KINDS) -> list[dict[str, Any]]:
    """Render the corpus into ``out_dir``; returns the final manifest entries."""
    grammar = load_grammar("en")
    items = quick_texts(grammar) if quick else T.all_texts(grammar, seed=seed)
    items = [t for t in items if t.kind in kinds]
    bad = T.negative_violations(grammar, items)
    if bad:
        raise ValueError(f"negative texts hold command phrases: {bad[:5]}")
    clips, configs = plan_rounds(items, seed, rounds, engines, quick)
    if not configs:
        _LOGGER.warning("no speech engine is installed: nothing to render")
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = group_tasks(out_dir, clips, seed)
    _LOGGER.info("%d texts x %d voices -> %d clips in %d tasks", len(items),
                 sum(c.usable for c in configs), len(clips),
                 len(tasks))
    start = time.monotonic()
    done = 0
    with _open_for_append(out_dir) as manifest:
        for rec in _backfill(out_dir, clips):
            manifest.write(json.dumps(rec, sort_keys=True) + "\n")
        results: Iterable[list[dict[str, Any]]]
        if jobs > 1:
            pool = multiprocessing.get_context("fork").Pool(jobs, initializer=_worker_init)
            results = _interruptible(pool.imap_unordered(render_task, tasks, chunksize=1))
        else:
            pool = None
            results = map(render_task, tasks)
        try:
            for n, records in enumerate(results, 1):
                for rec in records:
                    manifest.write(json.dumps(rec, sort_keys=True) + "\n")
                manifest.flush()
                done += len(records)
                if n % 200 == 0:
                    _LOGGER.info("%d/%d tasks, %d new clips, %.0f s", n, len(tasks), done,
                                 time.monotonic() - start)
        except BaseException:
            if pool is not None:
                pool.terminate()
            raise
        finally:
            if pool is not None:
                pool.close()
                pool.join()
    entries = rewrite_manifest(out_dir)
    _LOGGER.info("%d new clips in %.0f s; the manifest lists %d", done, time.monotonic() - start,
                 len(entries))
    return entries


def summary(entries: Sequence[dict[str, Any]]) -> str:
    """Counts per kind, label, engine and family, as text."""
    lines = [f"clips: {len(entries)}"]
    for key in ("kind", "engine", "family", "label"):
        counts = Counter(e[key] for e in entries)
        lines.append(f"per {key}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m voicecoach.lab.training.synth --out DIR``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="output folder (WAVs + manifest.jsonl)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a tiny corpus, for tests")
    parser.add_argument("--rounds", default="1", help="voice rounds, comma-separated (1: first corpus, "
                        "2: more Piper and espeak-ng settings)")
    parser.add_argument("--engines", default=",".join(ENGINES), help="engines to use, comma-separated")
    parser.add_argument("--kinds", default=",".join(T.KINDS), help="text kinds, comma-separated")
    parser.add_argument("--ready", action="store_true", help="write DIR/READY with the clip count at the end")
    parser.add_argument("--finish", action="store_true",
                        help="render nothing: list clips of --rounds found on disk, rewrite the manifest "
                        "(and READY with --ready)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, _raise_interrupt)
    if args.finish:
        entries = finish(args.out, seed=args.seed, rounds=[int(r) for r in args.rounds.split(",")],
                         engines=args.engines.split(","))
    else:
        try:
            entries = generate(args.out, jobs=args.jobs, seed=args.seed, quick=args.quick,
                               rounds=[int(r) for r in args.rounds.split(",")],
                               engines=args.engines.split(","), kinds=args.kinds.split(","))
        except KeyboardInterrupt:
            entries = rewrite_manifest(args.out)
            _LOGGER.warning("interrupted: the manifest lists the %d clips made; the same command "
                            "carries on", len(entries))
            return 130
    print(summary(entries))
    if args.ready:
        (args.out / "READY").write_text(f"{len(entries)}\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
