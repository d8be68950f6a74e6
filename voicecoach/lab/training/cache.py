"""Feature caches for training: augmented example windows and whole-clip embeddings, in shards.

Each shard is named by a hash of the recipe's feature fields and of the items in it, written
to a temporary name and renamed, so an interrupted run resumes where it stopped and a changed
recipe never reads stale features. Shards are made by worker processes (``--jobs``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voicecoach.audio.samples import active_bounds, to_float
from voicecoach.audio.wav import read_wav_16k
from voicecoach.lab.training.data import NOISE, ROOM_LEAD_S, Source, in_room, read_audio
from voicecoach.lab.training.examples import Backgrounds, Recipe, examples, noise_scene
from voicecoach.listening.spotter.features import EmbeddingFrontEnd

_LOGGER = logging.getLogger(__name__)

SHARD = 160
VERSION = 2


@dataclass(frozen=True)
class Item:
    """One augmented copy of a source (``source`` < 0: a synthetic noise scene)."""

    source: int
    copy: int


def _key(payload: Any) -> str:
    return hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


# -- worker side --------------------------------------------------------------------------
_STATE: dict[str, Any] = {}
#: Coach clips per fold mixed under examples
COACH_PER_FOLD = 40


def _backgrounds(sources: Sequence[Source], coach_per_fold: int
                 ) -> tuple[dict[int, list[np.ndarray]], dict[int, list[np.ndarray]]]:
    """The noise and coach clips every worker mixes under its examples."""
    noise: dict[int, list[np.ndarray]] = {}
    coach: dict[int, list[np.ndarray]] = {}
    for s in sources:
        if s.kind == "real_noise":
            noise.setdefault(s.fold, []).append(to_float(read_wav_16k(s.path)))
        elif s.kind == "coach" and len(coach.get(s.fold, [])) < coach_per_fold:
            coach.setdefault(s.fold, []).append(to_float(read_wav_16k(s.path)))
    return noise, coach


def _init(sources: Sequence[Source], recipe: Recipe, coach_per_fold: int) -> None:
    noise, coach = _backgrounds(sources, coach_per_fold)
    _STATE.update(fe=EmbeddingFrontEnd(), bg=Backgrounds(noise, coach), sources=sources,
                  recipe=recipe)


def _make_shard(job: tuple[Path, list[Item]]) -> Path:
    path, items = job
    fe, bg, sources, recipe = (_STATE[k] for k in ("fe", "bg", "sources", "recipe"))
    xs: list[np.ndarray] = []
    labels: list[str] = []
    folds: list[int] = []
    srcs: list[int] = []
    for item in items:
        if item.source < 0:
            audio = noise_scene(-item.source - 1, recipe)
            emb = fe.embed(audio * 32768.0, first=0, warm=False)
            w = recipe.window
            ends = list(range(w - 1, len(emb), 3))
            wins = np.stack([emb[e - w + 1:e + 1] for e in ends]).astype(np.float16)
            lab = [NOISE] * len(ends)
            fold = (-item.source - 1) % recipe.folds
        else:
            src = sources[item.source]
            wins, lab = examples(fe, src, item.copy, recipe, bg)
            fold = src.fold
        if len(lab):
            xs.append(wins)
            labels += lab
            folds += [fold] * len(lab)
            srcs += [item.source] * len(lab)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, x=np.concatenate(xs) if xs else np.zeros((0, recipe.window, 96), np.float16),
             label=np.array(labels, dtype=str), fold=np.array(folds, np.int16),
             source=np.array(srcs, np.int32))
    os.replace(tmp, path)
    return path


def _eval_shard(job: tuple[Path, list[int]]) -> Path:
    path, idx = job
    fe, sources = _STATE["fe"], _STATE["sources"]
    embs, ends, lengths = [], [], []
    for i in idx:
        src = sources[i]
        raw = read_audio(src.path)
        padded = in_room(raw, src.path.name)
        emb = fe.embed(padded.astype(np.float32))
        _, end = active_bounds(to_float(raw), threshold_db=-30.0)
        embs.append(emb)
        lengths.append(len(emb))
        ends.append(ROOM_LEAD_S + end / 16000.0)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, emb=np.concatenate(embs).astype(np.float32), lengths=np.array(lengths),
             end_s=np.array(ends), index=np.array(idx))
    os.replace(tmp, path)
    return path


# -- driver side --------------------------------------------------------------------------
def _run(jobs: list[Any], fn: Callable[[Any], Path], sources: Sequence[Source], recipe: Recipe,
         workers: int, what: str) -> None:
    todo = [j for j in jobs if not j[0].exists()]
    if not todo:
        return
    _LOGGER.warning("%s: %d of %d shards to make with %d worker(s)", what, len(todo), len(jobs),
                    workers)
    # read here first: a clip the workers' initializer cannot read would make the pool start
    # worker after worker forever; here it is one clear error naming the file
    _backgrounds(sources, COACH_PER_FOLD)
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init,
                  initargs=(list(sources), recipe, COACH_PER_FOLD)) as pool:
        for n, done in enumerate(pool.imap_unordered(fn, todo), 1):
            if n % 10 == 0 or n == len(todo):
                _LOGGER.warning("%s: %d/%d shards (%s)", what, n, len(todo), done.name)


def build_examples(work: Path, sources: Sequence[Source], recipe: Recipe, workers: int
                   ) -> dict[str, np.ndarray]:
    """All training windows (cached), with labels, fold tags and source indices.

    A shard holds one copy number of a run of sources, so raising ``real_copies`` only adds
    shards and a changed corpus only re-makes the shards whose sources changed."""
    folder = work / "examples"
    folder.mkdir(parents=True, exist_ok=True)
    base = {"v": VERSION, "recipe": {k: v for k, v in recipe.features_key().items()
                                     if k not in ("real_copies", "synth_copies", "noise_scenes")}}
    jobs: list[tuple[Path, list[Item]]] = []
    for real in (True, False):
        idx = [i for i, s in enumerate(sources) if s.real == real]
        copies = recipe.real_copies if real else recipe.synth_copies
        for copy in range(copies):
            for lo in range(0, len(idx), SHARD):
                chunk = [Item(i, copy) for i in idx[lo:lo + SHARD]]
                # the source index is in the key: shards store indices into ``sources``
                ident = [(it.source, str(sources[it.source].path), sources[it.source].kind,
                          sources[it.source].label, sources[it.source].fold) for it in chunk]
                jobs.append((folder / f"{_key([base, copy, ident])}.npz", chunk))
    scenes = [Item(-1 - k, 0) for k in range(recipe.noise_scenes)]
    for lo in range(0, len(scenes), SHARD):
        chunk = scenes[lo:lo + SHARD]
        jobs.append((folder / f"{_key([base, 'noise', [it.source for it in chunk]])}.npz", chunk))
    _run(jobs, _make_shard, sources, recipe, workers, "training examples")
    parts = [np.load(j[0]) for j in jobs]
    return {k: np.concatenate([p[k] for p in parts]) for k in ("x", "label", "fold", "source")}


def build_eval(work: Path, sources: Sequence[Source], recipe: Recipe, workers: int
               ) -> dict[str, Any]:
    """Whole-clip embeddings of every real clip, padded as the benchmark pads them."""
    idx = [i for i, s in enumerate(sources) if s.real]
    folder = work / "eval"
    folder.mkdir(parents=True, exist_ok=True)
    jobs = []
    for lo in range(0, len(idx), SHARD):
        chunk = idx[lo:lo + SHARD]
        jobs.append((folder / f"{_key([VERSION, 'warm', [(i, str(sources[i].path)) for i in chunk]])}.npz",
                     chunk))
    _run(jobs, _eval_shard, sources, recipe, workers, "evaluation clips")
    embs, end_s, index = [], [], []
    for path, _ in jobs:
        with np.load(path) as z:
            offsets = np.cumsum(np.concatenate([[0], z["lengths"]]))
            flat = z["emb"]
            embs += [flat[offsets[k]:offsets[k + 1]] for k in range(len(z["lengths"]))]
            end_s += z["end_s"].tolist()
            index += z["index"].tolist()
    return {"emb": embs, "end_s": end_s, "index": index}
