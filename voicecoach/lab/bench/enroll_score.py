"""The enrollment bench's clips and its scoring with the spotter alone: each clip embedded (cached),
the run-time decider and the enrolled scorer stepped over it, one speaker's recall and false
accepts (a part of ``python -m voicecoach.lab.bench.enroll``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voicecoach.grammar import Grammar
from voicecoach.lab.training.data import SILENCE, locked_clips, read_audio, speech_commands_train_dir
from voicecoach.listening.spotter.calibrate import TAIL_S
from voicecoach.listening.spotter.decide import Decider
from voicecoach.listening.spotter.enroll import EnrolledScorer
from voicecoach.listening.spotter.features import STEP_S, EmbeddingFrontEnd
from voicecoach.listening.spotter.model import SpotterModel
from voicecoach.listening.spotter.voice import VoiceProfile

_LOGGER = logging.getLogger(__name__)


def clip_list(root: Path, per_folder: int | None = None, train: Path | None = None
              ) -> list[tuple[str, str, Path]]:
    """(word folder, speaker, path) of every clip of a locked speaker (and the locked noise
    clips) in ``root`` and in ``train`` (default ../shared/speech_commands_train; the first
    ``per_folder`` of each folder)."""
    out = []
    for base in (root, speech_commands_train_dir(train)):
        if not base.is_dir():
            continue
        taken: dict[str, int] = {}
        for path, folder, speaker in locked_clips([base]):
            if per_folder is not None and taken.get(folder, 0) >= per_folder:
                continue
            taken[folder] = taken.get(folder, 0) + 1
            out.append((folder, speaker if folder != SILENCE else "", path))
    return out


def embed_all(clips: Sequence[tuple[str, str, Path]], work: Path, fe: EmbeddingFrontEnd
              ) -> list[dict[str, Any]]:
    """Embeddings of each clip + 0.48 s of silence (what the engine hears), cached in ``work``."""
    cache = work / "embeddings.npz"
    names = [f"{w}/{p.name}" for w, _, p in clips]
    have: dict[str, Any] = {}
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as npz:
            have = {k: np.asarray(npz[k]) for k in npz.files}
    out, added = [], 0
    for (word, speaker, path), name in zip(clips, names, strict=True):
        samples = read_audio(path)
        key = f"{path.parent.parent.name}__{name.replace('/', '__')}"
        if key not in have:
            audio = np.concatenate([samples, np.zeros(int(TAIL_S * 16000), np.int16)])
            have[key] = fe.embed(audio).astype(np.float32)
            added += 1
        out.append({"word": word, "speaker": speaker, "path": path, "samples": samples,
                    "emb": have[key]})
    if added:
        work.mkdir(parents=True, exist_ok=True)
        np.savez(work / "embeddings.tmp.npz", **have)
        (work / "embeddings.tmp.npz").replace(cache)
    return out


def generic_fired(decider: Decider, probs: np.ndarray) -> list[list[str]]:
    """The run-time decider over one clip: the commands fired at each step."""
    decider.reset()
    return [[f.command for f in decider.step(p, (j + 1) * STEP_S)] for j, p in enumerate(probs)]


def enrolled_fired(scorer: EnrolledScorer, windows: np.ndarray, generic: list[list[str]]
                   ) -> tuple[list[str], list[str]]:
    """The run-time scorer over one clip: (added detections, generic ones passed on)."""
    scorer.reset()
    added: list[str] = []
    passed: list[str] = []
    best_all = scorer.scores_many(windows)
    for j, g in enumerate(generic):
        hits, keep = scorer.decide(best_all[j], (j + 1) * STEP_S, g)
        added += [h.command for h in hits]
        passed += keep
    return added, passed


def fe_free(clip: dict[str, Any], model: SpotterModel, silence: np.ndarray) -> Any:
    """A stand-in front end that returns the cached embeddings of this clip (same numbers)."""
    class Cached:
        def embed(self, audio: np.ndarray) -> np.ndarray:
            return np.asarray(clip["emb"])
    return Cached()


def score_speaker(speaker: str, profile: VoiceProfile, clips: list[dict[str, Any]],
                  held: set[int], grammar: Grammar, model: SpotterModel, adapt_s: float,
                  size: int, rejected: int) -> dict[str, Any]:
    scorer = EnrolledScorer([profile], model)
    rec: dict[str, list[int]] = {}
    own_fa = [0, 0, 0]     # clips, generic FA, FA with enrollment
    other_fa = [0, 0, 0]
    noise_fa = [0, 0, 0]
    for i, clip in enumerate(clips):
        if i in held:
            continue
        scorer.set_commands(grammar.commands_for(clip["state"]))
        added, passed = enrolled_fired(scorer, clip["windows"], clip["generic"])
        generic = [c for step in clip["generic"] for c in step]
        truth = clip["command"]
        mine = clip["speaker"] == speaker
        if mine and truth in profile.commands:
            g = truth in generic
            a = truth in passed or truth in added
            rec.setdefault(clip["word"], []).append(2 * g + a)
            continue
        wrong_before = any(c != truth for c in generic)
        wrong_after = any(c != truth for c in passed + added)
        box = noise_fa if clip["word"] == SILENCE else own_fa if mine else other_fa
        if mine and truth:
            continue   # the speaker's own command word that was not enrolled
        box[0] += 1
        box[1] += wrong_before
        box[2] += wrong_after
    recall = {w: {"clips": len(v), "generic": sum(x >= 2 for x in v),
                  "enrolled": sum(x % 2 == 1 for x in v)} for w, v in rec.items()}
    return {"speaker": speaker, "words": sorted(profile.commands), "recall": recall,
            "own_fa": own_fa, "other_fa": other_fa, "noise_fa": noise_fa,
            "adapt_cpu_s": round(adapt_s, 4), "bytes": size, "rejected_takes": rejected,
            "thresholds": {c: v.threshold for c, v in profile.commands.items()}}
