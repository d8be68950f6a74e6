"""An ensemble (``--member``; a part of ``python -m voicecoach.lab.training.train``): what a
full run keeps for it, another full run of the same recipe with another ``--seed`` read back
from its ``--work`` folder and checked, and this run's heads averaged with its heads
(``model.join_members``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from voicecoach.errors import VoicecoachError
from voicecoach.lab.training.examples import Recipe
from voicecoach.listening.spotter.model import join_members, split_members


@dataclass
class Member:
    """Another full run of the same recipe with another seed, for an ensemble."""

    work: Path
    seed: int
    folds: dict[int, dict[str, np.ndarray]]
    full: dict[str, np.ndarray]


def ensemble_head(own: dict[str, np.ndarray], others: Sequence[dict[str, np.ndarray]]
                  ) -> dict[str, np.ndarray]:
    """``own`` (its first member only, if it is already an ensemble) averaged with ``others``."""
    return join_members([split_members(own)[0], *others]) if others else own


def save_full_run(fold_dir: Path, head: dict[str, np.ndarray], recipe: Recipe) -> None:
    """What ``--member`` reads of a full run: its shipped head and recipe, beside its fold heads."""
    fold_dir.mkdir(parents=True, exist_ok=True)
    np.savez(fold_dir / "full.npz", **split_members(head)[0])  # type: ignore[arg-type]
    (fold_dir / "run.json").write_text(json.dumps({"recipe": asdict(recipe)}, sort_keys=True)
                                       + "\n", encoding="utf-8")


def load_members(dirs: Sequence[Path], recipe: Recipe) -> list[Member]:
    """The ``--member`` runs, each checked to be the same recipe with its own seed."""
    from voicecoach.lab.training.talk import load_fold_heads

    out: list[Member] = []
    seeds = {recipe.seed}
    for work in dirs:
        folds = work / "folds"
        try:
            run = json.loads((folds / "run.json").read_text(encoding="utf-8"))["recipe"]
            with np.load(folds / "full.npz") as z:
                full = {name: z[name] for name in z.files}
        except (OSError, ValueError, KeyError, TypeError, EOFError):
            raise VoicecoachError(f"--member {work}: no finished full training run there "
                                  f"({folds}/run.json and full.npz missing or damaged)",
                                  f"run python -m voicecoach.lab.training.train --work {work} "
                                  f"--out {work}/out --seed N (N another seed) first") from None
        ours = asdict(recipe)
        differ = sorted(k for k in ours if k != "seed" and run.get(k) != ours[k]
                        and not (isinstance(ours[k], tuple) and list(ours[k]) == run.get(k)))
        if differ:
            raise VoicecoachError(f"--member {work} was trained with another recipe "
                                  f"({', '.join(differ)} differ)",
                                  "train the member with the same --set options, another --seed")
        seed = int(run.get("seed", -1))
        if seed in seeds:
            raise VoicecoachError(f"--member {work} was trained with seed {seed}, which the "
                                  "ensemble already has", "give members trained with other --seed")
        seeds.add(seed)
        heads = load_fold_heads(folds, recipe.folds)
        if len(heads) != recipe.folds:
            raise VoicecoachError(f"--member {work}: {len(heads)} of {recipe.folds} fold heads in "
                                  f"{folds}", "run that member's full training again")
        out.append(Member(work, seed, heads, full))
    return out
