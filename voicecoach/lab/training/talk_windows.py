"""Running talk to train on: the head learns that words inside talk are not commands, and
hears stops said among other words.

Session 7's long form lost its last false stops to *confident* spotter stops on word runs
("talked about a box of") that the verifier scored 0.000: the head had only ever seen a
sentence as eight windows of one clip, never talk running on, so only the head can unlearn
them. Per cross-validation fold ``k``, ``Recipe.talk_minutes`` of talk are mixed as the long
form is (``lab.longform.make_longform``, other file names and another order of the stops than
the talk the second look is chosen on, ``lab.training.talk``) from fold ``k``'s material only:
its training voices' sentences and coach texts, its real speakers' non-command words and stops,
its noise clips. The streaming front end embeds each file as the engine does; every
``talk_stride``-th window is "other speech", except the windows just after a stop
(``Recipe.positive_after_end_s``, labelled stop, as a clip's are) and the rest of a stop's
windows (left out). The windows carry fold ``k``, so fold ``k``'s head never trains on them.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from voicecoach.lab.longform import make_longform
from voicecoach.lab.training.data import OTHER, Source, read_audio
from voicecoach.lab.training.examples import Recipe
from voicecoach.lab.training.talk import fold_material, stream_embeddings
from voicecoach.listening.spotter.features import STEP_S

_LOGGER = logging.getLogger(__name__)

VERSION = 1
#: The source index of a window of running talk in the training data (noise scenes are
#: -1 - n, real and synthetic sources 0 and up).
TALK_SOURCE = -1_000_000
STOP_LABEL = "stop"
#: A stop's windows from its start to this long after its end are left out but for the
#: stop-labelled ones: the word is still in them.
STOP_AFTER_S = 1.0


def talk_files(work: Path, sources: Sequence[Source], recipe: Recipe
               ) -> list[tuple[int, Path, list[tuple[float, float]]]]:
    """The training talk of every fold (made once, deterministic): (fold, path, stops said)."""
    out = []
    for k in range(recipe.folds):
        talk, words, noise, stops = fold_material(sources, k)
        if not talk:
            _LOGGER.warning("training talk: fold %d has no sentences; left out", k)
            continue
        order = np.random.default_rng([recipe.seed, k, VERSION]).permutation(len(stops))
        files, truth = make_longform(work / f"talk-train-v{VERSION}" / f"fold{k}",
                                     recipe.talk_minutes / 60.0, talk, words, noise,
                                     [stops[i] for i in order], name="train")
        out += [(k, f, truth[str(f)]) for f in files]
    return out


def window_labels(steps: int, said: Sequence[tuple[float, float]], recipe: Recipe
                  ) -> list[tuple[int, str]]:
    """The (step, label) of the windows a talk file of ``steps`` embeddings gives."""
    times = (np.arange(steps) + 1) * STEP_S
    label = np.full(steps, "", dtype=object)
    label[np.arange(steps) % recipe.talk_stride == 0] = OTHER
    lo_off, hi_off = recipe.positive_after_end_s
    for lo, hi in said:
        label[(times >= lo) & (times <= hi + STOP_AFTER_S)] = ""
        label[(times >= hi + lo_off) & (times <= hi + hi_off)] = STOP_LABEL
    label[:recipe.window - 1] = ""
    return [(int(j), str(label[j])) for j in np.nonzero(label != "")[0]]


def _embed(job: tuple[Path, Path]) -> Path:
    """Embed one talk file as the engine's streaming front end does (cached beside it)."""
    wav, out = job
    warm, emb = stream_embeddings(read_audio(wav))
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, emb=np.asarray(emb, np.float16), warm=np.asarray(warm, np.float16))
    os.replace(tmp, out)
    return out


def talk_windows(work: Path, sources: Sequence[Source], recipe: Recipe, workers: int
                 ) -> dict[str, np.ndarray]:
    """The training windows of running talk (``x``, ``label``, ``fold``, ``source``), cached."""
    files = talk_files(work, sources, recipe) if recipe.talk_minutes > 0 else []
    jobs = [(f, f.with_name(f"{f.stem}.emb-v{VERSION}.npz")) for _, f, _ in files]
    todo = [j for j in jobs if not j[1].exists()]
    if todo:
        _LOGGER.warning("training talk: embedding %d of %d files with %d worker(s)", len(todo),
                        len(jobs), workers)
        with mp.get_context("spawn").Pool(workers) as pool:
            for n, done in enumerate(pool.imap_unordered(_embed, todo), 1):
                _LOGGER.warning("training talk: %d/%d (%s)", n, len(todo), done.name)
    xs, labels, folds = [], [], []
    w = recipe.window
    for (k, _, said), (_, emb_path) in zip(files, jobs, strict=True):
        with np.load(emb_path) as z:
            seq = np.concatenate([z["warm"][-(w - 1):], z["emb"]])
            steps = len(z["emb"])
        picked = window_labels(steps, said, recipe)
        idx = np.array([j for j, _ in picked])
        xs.append(seq[idx[:, None] + np.arange(w)[None, :]])
        labels += [lab for _, lab in picked]
        folds += [k] * len(picked)
    if not xs:
        return {"x": np.zeros((0, w, 96), np.float16), "label": np.array([], dtype=str),
                "fold": np.zeros(0, np.int16), "source": np.zeros(0, np.int32)}
    return {"x": np.concatenate(xs).astype(np.float16), "label": np.array(labels, dtype=str),
            "fold": np.array(folds, np.int16),
            "source": np.full(len(labels), TALK_SOURCE, np.int32)}


def with_talk(data: dict[str, np.ndarray], talk: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The training data with the talk windows after it."""
    return {k: np.concatenate([data[k], talk[k].astype(data[k].dtype)]) for k in data}
