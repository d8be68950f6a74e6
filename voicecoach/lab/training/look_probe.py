"""A learned second look for stop (session 14; lab only, not shipped): a logistic probe on
Whisper tiny.en's own encoder output, against the shipped look (the probability that the
transcript opens with the command), on speakers that are not locked.

Why: on every out-of-fold clip the shipped system hears stop 0.941 of the time, and the shipped
look alone, at the card's stop bar (0.02), hears exactly that many; the bar is held there by
false stops in running talk, where a lower bar lets talk through (README "Measured figures",
session 14). A look that tells a stop said on its own from talk at high recall is what would
let the bar come down.

What is compared, at equal stop recall on clips:
- **clips**: every clip of every speaker who is not locked, in both real sets (in room tone, as
  ``listen`` hears a user), looked at with the 1.2-s window ending :data:`CLIP_TAIL_S` after the
  clip; false accepts are the clips of every other word, the other commands' included;
- **running talk**: each fold's 20 minutes of the training run's own talk files
  (``training.talk.fold_files``: that fold's training voices' sentences and coach texts, real
  non-command words and stops, noise), every stop candidate the decider raises there (with the
  fold heads of the last training run, ``WORK/folds``; without them the shipped head, which has
  heard these speakers: said so in the report), looked at as the engine looks.
The probe is scored out of fold by the repository's four speaker folds (``data.speaker_fold``;
talk by its file's fold): the probe that scores a fold never saw it. No locked speaker is read
(``data.real_sources`` leaves them out, and the run refuses one).

    python -m voicecoach.lab.training.look_probe --synth ~/.cache/voicecoach/spotter-train/synth-other

The tool in parts: the looks at clips and talk (look_data.py), the two looks compared at each
target recall (look_compare.py); here, the probe, its fit out of fold, the learned look the
training ships, and the run and its command line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voicecoach.config import number_in
from voicecoach.errors import VoicecoachError, report
from voicecoach.grammar import load_grammar
from voicecoach.lab.training.data import (
    add_real_data_options,
    real_sources,
    refuse_locked,
    speech_commands_dir,
    speech_commands_train_dir,
    synthetic_sources,
)
from voicecoach.lab.training.look_compare import TARGETS, bar_for, compare, talk_outcome
from voicecoach.lab.training.look_data import (
    CLIP_TAIL_S,
    Looks,
    _word_class,
    clip_looks,
    clip_window,
    talk_at_stop,
    talk_table,
)
from voicecoach.listening.spotter.decide import STOP, Decision
from voicecoach.listening.spotter.look_probe import FRAMES, WORDS, pooled, probe_probs

_LOGGER = logging.getLogger(__name__)

#: Importable from here as before the tool was split (its tests read them, and patch fit_probe
#: here: out_of_fold and learned_look stay beside it).
__all__ = ["CLIP_TAIL_S", "DEFAULT_C", "FRAMES", "TARGETS", "VERSION", "WORDS", "Looks", "bar_for",
           "clip_looks", "clip_window", "compare", "fit_probe", "learned_look", "main",
           "out_of_fold", "pooled", "probe_probs", "talk_at_stop", "talk_outcome", "talk_table"]

DEFAULT_C = 0.01
"""The probe's inverse L2 strength (0.003 and 0.03 gave the same picture in session 14)."""
VERSION = 1


def fit_probe(x: np.ndarray, y: np.ndarray, c: float = DEFAULT_C,
              sample_weight: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """A class-balanced multinomial logistic regression on standardised features, as plain
    arrays (what a run time would load); ``sample_weight`` weighs looks within their class."""
    from sklearn.linear_model import LogisticRegression

    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    model = LogisticRegression(C=c, max_iter=3000, class_weight="balanced")
    model.fit((x - mean) / scale, y, sample_weight=sample_weight)
    coef = np.zeros((len(WORDS) + 1, x.shape[1]))
    intercept = np.full(len(WORDS) + 1, -1e9)
    coef[model.classes_] = model.coef_ if len(model.classes_) > 2 else \
        np.stack([-model.coef_[0] / 2, model.coef_[0] / 2])
    intercept[model.classes_] = model.intercept_ if len(model.classes_) > 2 else \
        np.array([-model.intercept_[0] / 2, model.intercept_[0] / 2])
    return {"mean": mean, "scale": scale, "coef": coef, "intercept": intercept}


def out_of_fold(clips: Looks, talk: Looks, c: float = DEFAULT_C) -> tuple[np.ndarray, np.ndarray]:
    """The probe's stop probability of every clip and talk candidate, each scored by a probe
    trained on the other folds' clips and talk."""
    xc, xt = clips.feats.astype(np.float32), talk.feats.astype(np.float32)
    clip_score = np.zeros(len(xc))
    talk_score = np.zeros(len(xt))
    for k in sorted(set(clips.fold.tolist())):
        x = np.concatenate([xc[clips.fold != k], xt[talk.fold != k]])
        y = np.concatenate([clips.label[clips.fold != k], talk.label[talk.fold != k]])
        probe = fit_probe(x, y, c)
        clip_score[clips.fold == k] = probe_probs(probe, xc[clips.fold == k])[:, 0]
        if (talk.fold == k).any():
            talk_score[talk.fold == k] = probe_probs(probe, xt[talk.fold == k])[:, 0]
    return clip_score, talk_score


def learned_look(clips: Sequence[dict[str, Any]], talk: dict[str, Any], folds: int,
                 c: float = DEFAULT_C) -> dict[str, np.ndarray]:
    """The learned look, chosen as the second look's thresholds are: every stop look at the
    clips (``second_look.look_at_clips(states=True)``) and in the talk (``talk_events(states=
    True)``) is scored again, in place, by a probe fitted on the looks of the other folds only
    (clips by their speaker's fold, talk by its file's); returns the probe fitted on every look,
    the one to ship.

    A look is labelled by its clip's word (stop, go, yes, no, anything else), a talk look stop
    when it falls on a stop said there. The scores replace the transcript-opening ones
    (``looks``, ``looks_anywhere``, ``look_pairs`` of stop; the talk events' ``opening`` and
    ``anywhere`` stop), so every threshold after this is chosen on the learned look's scale."""
    rows: list[np.ndarray] = []
    labels: list[int] = []
    fold_of: list[int] = []
    for clip in clips:
        for _command, feat in clip.get("look_feats", []):
            rows.append(np.asarray(feat, np.float32))
            labels.append(_word_class(clip["word"]))
            fold_of.append(int(clip["fold"]))
    feats = np.asarray(talk.get("feats", np.zeros((0, 0))), np.float32)
    if len(talk["events"]) and feats.shape[0] != len(talk["events"]):
        raise VoicecoachError("the talk's looks have no encoder states (an old cache?)",
                              "delete WORK/talk-events-*.json and run the training again")
    at_stop = talk_at_stop(talk) >= 0
    x = np.concatenate([np.array(rows, np.float32).reshape(len(rows), -1), feats]) if len(feats) \
        else np.array(rows, np.float32)
    y = np.concatenate([labels, np.where(at_stop, 0, len(WORDS))]).astype(int)
    f = np.concatenate([fold_of, [int(e["fold"]) for e in talk["events"]]]).astype(int)
    if not len(x) or not (y == 0).any():
        raise VoicecoachError("the second look took no look at a stop clip: no learned look "
                              "can be fitted", "train on data with stop clips (../shared)")
    score = np.zeros(len(x))
    for k in range(folds):
        if (f == k).any():
            probe = fit_probe(x[f != k], y[f != k], c)
            score[f == k] = probe_probs(probe, x[f == k])[:, 0]
    n = 0
    for clip in clips:
        stop_scores = []
        for command, _feat in clip.get("look_feats", []):
            if command == STOP:
                stop_scores.append(float(score[n]))
            n += 1
        if stop_scores:
            clip["looks"][STOP] = max(stop_scores)
            clip["looks_anywhere"] = {STOP: max(stop_scores)}
            clip["look_pairs"][STOP] = [[pair[0], s] for pair, s
                                        in zip(clip["look_pairs"][STOP], stop_scores, strict=True)]
    for e, s in zip(talk["events"], score[n:], strict=True):
        e["opening"][STOP] = float(s)
        e["anywhere"][STOP] = float(s)
    return fit_probe(x, y, c)


def _cache_key(parts: Sequence[Any]) -> str:
    return hashlib.sha256(json.dumps([VERSION, FRAMES, CLIP_TAIL_S, *parts]).encode()).hexdigest()[:16]


def _run(args: argparse.Namespace) -> int:
    from voicecoach.lab.training.second_look import STOP_CANDIDATE, VERIFIED_THRESHOLD
    from voicecoach.lab.training.talk import fold_files, load_fold_heads, talk_events
    from voicecoach.lab.training.train import recipe_holdout
    from voicecoach.listening.spotter.model import builtin_paths
    from voicecoach.listening.spotter.verify import MODEL_SHA256, load_verifier

    grammar = load_grammar("en")
    real = real_sources(speech_commands_dir(args.speech_commands), 4)
    real += real_sources(speech_commands_train_dir(args.speech_commands_train), 4,
                         "--speech-commands-train")
    synthetic = [s for s in synthetic_sources(args.synth, 4, grammar.all_phrases())
                 if s.group not in recipe_holdout()]
    sources = real + synthetic
    refuse_locked(sources)
    weights, card_path = builtin_paths()
    card = json.loads(card_path.read_text(encoding="utf-8"))
    heads = load_fold_heads(args.work / "folds", 4)
    in_sample = len(heads) < 4
    if in_sample:
        _LOGGER.warning("look probe: no fold heads in %s: the talk's candidates come from the "
                        "shipped head, which has heard these speakers", args.work / "folds")
        with np.load(weights) as z:
            heads = {k: {n: z[n] for n in z.files} for k in range(4)}
    verifier = load_verifier()
    clip_file = args.work / "look-probe" / \
        f"clips-{_cache_key([MODEL_SHA256, sorted(str(s.path) for s in real)])}.npz"
    if clip_file.is_file():
        with np.load(clip_file) as z:
            clips = Looks(z["feats"], z["stop"], z["label"], z["fold"])
    else:
        clips = clip_looks(real, verifier, args.jobs)
        clips.save(clip_file)
    # the talk's candidates and looks exactly as the training run's choice sees them
    # (cached by talk_events itself)
    talk, where = talk_table(talk_events(
        fold_files(args.work, sources, 4), heads, grammar, list(card["labels"]),
        Decision.from_card(card["decision"]), verifier, int(card["recipe"]["window"]), args.work,
        STOP_CANDIDATE, VERIFIED_THRESHOLD, states=True))
    probe_clip, probe_talk = out_of_fold(clips, talk, args.c)
    rows = compare(clips, talk, where, probe_clip, probe_talk)
    result = {"clips": int(len(clips.label)), "stop_clips": int((clips.label == 0).sum()),
              "talk_hours": round(where["audio_s"] / 3600.0, 3), "talk_candidates": int(len(talk.label)),
              "talk_candidates_from": "the shipped head (in sample)" if in_sample else "fold heads",
              "c": args.c, "rows": rows}
    print(f"look probe: {result['clips']} clips ({result['stop_clips']} stop) of speakers not "
          f"locked, {result['talk_hours']} h of talk ({result['talk_candidates']} candidates "
          f"from {result['talk_candidates_from']}), C {args.c}")
    print("stop recall on clips | look | bar | FA on other clips | talk stops caught | talk false an hour")
    for r in rows:
        print(f"{r['target']:.3f} ({r['stop_recall']:.3f}) | {r['look']} | {r['bar']} | "
              f"{r['fa_clips']}/{r['clips_other']} | {r['talk_caught']}/{r['talk_stops']} | "
              f"{r['talk_false_per_hour']} ({r['talk_false']})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from voicecoach.lab.training.train import DEFAULT_WORK

    parser = argparse.ArgumentParser(prog="python -m voicecoach.lab.training.look_probe",
                                     description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_real_data_options(parser)
    parser.add_argument("--synth", type=Path, required=True,
                        help="the synthetic corpus of other speech (training.synth --kinds "
                             "negative,coach,sentence): the talk's sentences")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK,
                        help="the training cache folder (talk files, fold heads, look caches)")
    parser.add_argument("--c", type=number_in(0, 1e6, above=True), default=DEFAULT_C,
                        help="the probe's inverse L2 strength")
    parser.add_argument("--jobs", type=number_in(1, 64, whole=True), default=2,
                        help="processes for the clips' looks")
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        return _run(args)
    except VoicecoachError as exc:
        return report(exc)


if __name__ == "__main__":
    raise SystemExit(main())
