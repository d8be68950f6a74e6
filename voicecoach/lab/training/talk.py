"""Out-of-fold talk for choosing the second look: how often running talk raises a command,
and how often a stop said inside it is heard, on speakers and texts no head trained on.

The single-word clips the thresholds were first chosen on hold no running talk, and a
verifier threshold chosen on them (0.004 for stop) let 26 false stops an hour through in the
locked long form. Here, per cross-validation fold ``k``: ten-minute files mixed as the long
form benchmark mixes them (``lab.longform.make_longform``) from the training voices'
sentences and coach texts of fold ``k``, the real non-command words and stops of fold ``k``'s
speakers (never a locked one) and fold ``k``'s noise clips; fold ``k``'s head (which never
heard them) gives the spotter's probabilities as the engine computes them, the probe decider
raises every candidate of the "backward" state, and the verifier looks at each, both ways
(the transcript's opening, and anywhere in it). ``second_look.choose_second_look`` weighs the
result per hour beside the clips.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from voicecoach.errors import VoicecoachError
from voicecoach.grammar import Grammar
from voicecoach.lab.longform import make_longform, match_stops
from voicecoach.lab.training.data import REAL_NEGATIVES, Source, read_audio
from voicecoach.listening.spotter.decide import STOP, Decider, Decision, sure_enough
from voicecoach.listening.spotter.model import phrases_of
from voicecoach.listening.spotter.verify import WhisperVerifier, look_window

_LOGGER = logging.getLogger(__name__)

STATE = "backward"
"""The long form's state: the belt is moving, every command is listened for."""
MINUTES_PER_FOLD = 20.0
VERSION = 1


def fold_material(sources: Sequence[Source], k: int
                  ) -> tuple[list[Path], list[Path], list[Path], list[Path]]:
    """Fold ``k``'s material for running talk: the training voices' sentences and coach texts,
    its real speakers' non-command words, its noise clips and its real stops."""
    talk = [s.path for s in sources if s.kind in ("sentence", "coach") and s.fold == k]
    words = [s.path for s in sources if s.kind == "real" and s.word in REAL_NEGATIVES
             and s.fold == k]
    noise = [s.path for s in sources if s.kind == "real_noise" and s.fold == k]
    stops = [s.path for s in sources if s.kind == "real" and s.word == "stop" and s.fold == k]
    return talk, words, noise, stops


def fold_files(work: Path, sources: Sequence[Source], folds: int,
               minutes: float = MINUTES_PER_FOLD) -> list[tuple[int, Path, list[tuple[float, float]]]]:
    """The talk files of every fold (made once, deterministic): (fold, path, stops said)."""
    out = []
    for k in range(folds):
        talk, words, noise, stops = fold_material(sources, k)
        if not talk or not stops:
            _LOGGER.warning("talk: fold %d has no talk or no stops; left out", k)
            continue
        files, truth = make_longform(work / f"talk-v{VERSION}" / f"fold{k}", minutes / 60.0, talk,
                                     words, noise, stops)
        out += [(k, f, truth[str(f)]) for f in files]
    return out


def stream_probs(head: dict[str, np.ndarray], samples: np.ndarray, window: int) -> np.ndarray:
    """The head's per-step probabilities over a whole stream, as the engine computes them
    (streaming front end from a reset, ring pre-filled with its warm-up embeddings)."""
    from voicecoach.lab.training.head import clip_probs

    warm, emb = stream_embeddings(samples)
    return clip_probs(head, emb, warm, window)


def stream_embeddings(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The front end's warm-up embeddings (what the engine's ring starts with) and a whole
    stream's embeddings, computed as the engine's streaming front end does from a reset."""
    from voicecoach.listening.spotter.features import EmbeddingFrontEnd

    with EmbeddingFrontEnd() as fe:
        warm = fe.warm_embeddings()
        emb = fe.push(samples)
    return np.asarray(warm), np.asarray(emb)


def talk_events(files: Sequence[tuple[int, Path, list[tuple[float, float]]]],
                heads: dict[int, dict[str, np.ndarray]], grammar: Grammar, labels: list[str],
                base: Decision, verifier: WhisperVerifier, window: int, cache: Path,
                stop_candidate: float, verified_threshold: float, states: bool = False
                ) -> dict[str, Any]:
    """Every candidate the probe decider raises in the talk files, with the verifier's looks
    (cached in ``cache``, keyed by the heads and the files); with ``states``, each look's pooled
    encoder output too (``data["feats"]``, one row per event, for the learned look)."""
    import hashlib

    from voicecoach.listening.spotter.look_probe import pooled
    from voicecoach.listening.spotter.verify import LOOK_S

    key = hashlib.sha256(json.dumps([VERSION, stop_candidate, verified_threshold,
                                     base.peak_look, LOOK_S,
                                     *([base.relook_after] if base.relook_after else []),
                                     *(["states"] if states else []),
                                     [str(f) for _, f, _ in files],
                                     [hashlib.sha256(np.concatenate([v.ravel() for v in heads[k].values()])
                                                     .tobytes()).hexdigest() for k in sorted(heads)]
                                     ]).encode()).hexdigest()[:16]
    saved = cache / f"talk-events-{key}.json"
    saved_feats = cache / f"talk-events-{key}.npz"
    if saved.is_file() and (saved_feats.is_file() or not states):
        try:
            data: dict[str, Any] = json.loads(saved.read_text(encoding="utf-8"))
            if states:
                with np.load(saved_feats) as z:
                    data["feats"] = z["feats"]
            return data
        except (ValueError, UnicodeDecodeError, OSError, KeyError):
            _LOGGER.warning("talk: %s is damaged (a run killed while writing it?); looking again",
                            saved)
    phrases = phrases_of(grammar)
    classes = [labels.index(p) for p in phrases[STOP]]
    probe = replace(base, stop_threshold=1.01, stop_candidate=stop_candidate,
                    verified_threshold=verified_threshold)
    events: list[dict[str, Any]] = []
    feats: list[np.ndarray] = []
    stops: list[dict[str, Any]] = []
    audio_s = 0.0
    t0 = time.process_time()
    for n, (k, path, said) in enumerate(files, 1):
        samples = read_audio(path)
        audio_s += samples.size / 16000.0
        audio = samples.astype(np.float32) / 32768.0
        probs = stream_probs(heads[k], samples, window)
        stop_score = np.convolve(probs[:, classes].sum(axis=1), np.ones(base.smooth) / base.smooth,
                                 mode="full")[:len(probs)]
        decider = Decider(labels, phrases, probe, verifying=True)
        decider.set_commands(grammar.commands_for(STATE))
        stops += [{"file": str(path), "start_s": lo, "end_s": hi} for lo, hi in said]
        for j, p in enumerate(probs):
            for fired in decider.step(p, (j + 1) * 0.08):
                end = int(round(fired.emitted_s * 16000))
                asked = {c: phrases[c] for c in (fired.command, *fired.rivals, STOP)}
                opening: dict[str, float] = {}
                kept: list[np.ndarray] | None = [] if states else None
                anywhere = verifier.scores(look_window(audio, end), asked, anywhere={STOP},
                                           opening=opening, states=kept)
                if kept:
                    feats.append(pooled(kept[0][None])[0].astype(np.float16))
                lo = hi = j
                while lo > 0 and stop_score[lo - 1] >= stop_candidate:
                    lo -= 1
                while hi + 1 < len(stop_score) and stop_score[hi + 1] >= stop_candidate:
                    hi += 1
                run_max = float(stop_score[lo:hi + 1].max()) if stop_score[j] >= stop_candidate \
                    else float(stop_score[j])
                if fired.relook:  # its run may have ended: the decider keeps its highest score
                    run_max = max(run_max, decider.stop_run_max)
                if fired.command == STOP:  # as the engine does with a look it turns down
                    decider.looked_at_stop(fired, opening.get(STOP, 0.0))
                events.append({"file": str(path), "fold": k, "emitted_s": fired.emitted_s,
                               "command": fired.command, "rivals": list(fired.rivals),
                               "spotter": fired.score, "stop_run_max": run_max,
                               "opening": opening, "anywhere": anywhere})
        _LOGGER.warning("talk: %d/%d files, %d candidates, %.0f CPU s", n, len(files),
                        len(events), time.process_time() - t0)
    data = {"audio_s": audio_s, "events": events, "stops": stops}
    if states:
        tmp_feats = saved_feats.with_suffix(".tmp.npz")
        np.savez(tmp_feats, feats=_rows(feats))
        tmp_feats.replace(saved_feats)
    tmp = saved.with_suffix(".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    tmp.replace(saved)
    if states:
        data["feats"] = _rows(feats)
    return data


def _rows(feats: list[np.ndarray]) -> np.ndarray:
    """One row per event (none: an empty table)."""
    return np.stack(feats).astype(np.float16) if feats else np.zeros((0, 0), np.float16)


def talk_outcome(data: dict[str, Any], conf: float, thresholds: dict[str, float], method: str,
                 refractory_s: float = 1.0, sure: tuple[float, float] | None = None,
                 sure_commands: Mapping[str, tuple[float, float]] | None = None
                 ) -> dict[str, Any]:
    """What the engine would do with these settings: stops caught, false commands per hour.

    An event acts as the engine's second look decides (stop first if it clears; a command
    other than the candidate must clear the default bar too); a stop run whose smoothed score
    reaches ``conf`` is a confident stop; with ``sure`` (spotter level, verifier bar: the
    ``Decision.sure_stop_*`` rule) a stop candidate whose run reaches the level and whose look's
    opening reaches the bar is a stop too; ``sure_commands`` the same per other command, on the
    spotter's score at the candidate. ``method``: "opening" or "anywhere" (stop only)."""
    default = thresholds.get("default", 1.0)
    acted: dict[str, list[tuple[float, str]]] = {}
    for e in sorted(data["events"], key=lambda e: (e["file"], e["emitted_s"])):
        stop_looks = e[method] if method == "anywhere" else e["opening"]

        def limit(c: str, e: dict[str, Any] = e) -> float:
            own = thresholds.get(c, default)
            return own if c == e["command"] else max(own, default)

        rule = (sure_commands or {}).get(e["command"])
        heard = {c: p for c, p in e["opening"].items() if c != STOP and (
            p >= limit(c) or (c == e["command"] and sure_enough(rule, e["spotter"], p)))}
        sure_stop = e["command"] == STOP and \
            sure_enough(sure, e["stop_run_max"], stop_looks.get(STOP, 0.0))
        if stop_looks.get(STOP, 0.0) >= limit(STOP) or sure_stop or \
                (e["command"] == STOP and e["stop_run_max"] >= conf):
            named: str | None = STOP
        else:
            named = max(heard, key=heard.__getitem__, default=None)
        if named is None:
            continue
        done = acted.setdefault(e["file"], [])
        # the refractory second holds back any other command, and a stop after a stop
        if done and e["emitted_s"] - done[-1][0] < refractory_s and \
                (named != STOP or done[-1][1] == STOP):
            continue
        done.append((e["emitted_s"], named))
    caught = 0
    false: dict[str, int] = {}
    by_file: dict[str, list[tuple[float, float]]] = {}
    for s in data["stops"]:
        by_file.setdefault(s["file"], []).append((s["start_s"], s["end_s"]))
    for file, done in acted.items():
        for (_t, c), k in zip(done, match_stops(done, by_file.get(file, [])), strict=True):
            if k is None:
                false[c] = false.get(c, 0) + 1
            else:
                caught += 1
    hours = data["audio_s"] / 3600.0
    return {"stops": len(data["stops"]), "caught": caught,
            "recall": caught / max(1, len(data["stops"])),
            "false": false, "false_per_hour": sum(false.values()) / max(hours, 1e-9),
            "hours": hours}


def load_fold_heads(folder: Path, folds: int) -> dict[int, dict[str, np.ndarray]]:
    """The fold heads the last cross-validation kept (``out_of_fold.cross_validate``)."""
    import zipfile

    heads = {}
    for k in range(folds):
        path = folder / f"head_{k}.npz"
        if path.is_file():
            try:
                with np.load(path) as z:
                    heads[k] = {name: z[name] for name in z.files}
            except (ValueError, OSError, EOFError, zipfile.BadZipFile):
                raise VoicecoachError(f"{path} is not a fold head (damaged, or a run killed while "
                                      "writing it)",
                                      "delete that folder and run the full training again "
                                      "(without --second-look-only)") from None
    return heads


