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
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voicecoach.config import number_in
from voicecoach.errors import VoicecoachError, report
from voicecoach.grammar import load_grammar
from voicecoach.lab.corpus import POSITIVES
from voicecoach.lab.training.data import (
    ROOM_LEAD_S,
    Source,
    add_real_data_options,
    in_room,
    read_audio,
    real_sources,
    refuse_locked,
    speech_commands_dir,
    speech_commands_train_dir,
    synthetic_sources,
)
from voicecoach.listening.spotter.decide import STOP, Decision
from voicecoach.listening.spotter.look_probe import FRAMES, WORDS, pooled, probe_probs
from voicecoach.listening.spotter.model import phrases_of
from voicecoach.listening.spotter.verify import SAMPLE_RATE, WhisperVerifier, look_window

_LOGGER = logging.getLogger(__name__)

CLIP_TAIL_S = 0.2
"""A clip is looked at with the window ending this long after it (session 12's setting)."""
TARGETS = (0.93, 0.94, 0.95, 0.96, 0.97, 0.975)
"""Stop recalls on clips at which the two looks are compared."""
DEFAULT_C = 0.01
"""The probe's inverse L2 strength (0.003 and 0.03 gave the same picture in session 14)."""
VERSION = 1


def clip_window(samples: np.ndarray, name: str) -> np.ndarray:
    """A clip in room tone, float, cut as a look at a candidate :data:`CLIP_TAIL_S` after it."""
    audio = in_room(samples, name).astype(np.float32) / 32768.0
    end = int(round((ROOM_LEAD_S + CLIP_TAIL_S) * SAMPLE_RATE)) + samples.size
    return look_window(audio, min(end, audio.size))


def look(verifier: WhisperVerifier, window: np.ndarray, phrases: dict[str, list[str]]
         ) -> tuple[list[float], np.ndarray]:
    """The shipped look's opening probability of each command word (:data:`WORDS` order) and
    the pooled encoder output (``look_probe.pooled``), from one encoder pass."""
    asked = {POSITIVES[w]: phrases[POSITIVES[w]] for w in WORDS}
    opening: dict[str, float] = {}
    states: list[np.ndarray] = []
    verifier.scores(window, asked, opening=opening, states=states)
    return [opening.get(POSITIVES[w], 0.0) for w in WORDS], \
        pooled(states[0][None])[0].astype(np.float16)


@dataclass
class Looks:
    """Looks at clips or talk candidates: pooled encoder output, the opening's stop score, class
    and fold."""

    feats: np.ndarray       # (n, 2 width) float16, look_probe.pooled
    stop: np.ndarray        # (n,) the opening's stop probability
    label: np.ndarray       # index into WORDS, or len(WORDS) for anything else
    fold: np.ndarray

    def save(self, to: Path) -> None:
        to.parent.mkdir(parents=True, exist_ok=True)
        tmp = to.with_suffix(".tmp.npz")
        np.savez(tmp, feats=self.feats, stop=self.stop, label=self.label, fold=self.fold)
        tmp.replace(to)


def _look_at(clips: Sequence[Source], verifier: WhisperVerifier | None = None
             ) -> tuple[list[list[float]], list[np.ndarray]]:
    """Looks at ``clips`` (with the pinned verifier unless one is given: a worker loads its own)."""
    from voicecoach.listening.spotter.verify import load_verifier

    verifier = verifier or load_verifier()
    phrases = phrases_of(load_grammar("en"))
    states, opening = [], []
    t0 = time.process_time()
    for n, s in enumerate(clips, 1):
        o, st = look(verifier, clip_window(read_audio(s.path), s.path.name), phrases)
        opening.append(o)
        states.append(st)
        if n % 1000 == 0:
            _LOGGER.warning("look probe: %d/%d clips of a worker, %.0f CPU s", n, len(clips),
                            time.process_time() - t0)
    return opening, states


def clip_looks(sources: Sequence[Source], verifier: WhisperVerifier | None = None,
               jobs: int = 1) -> Looks:
    """A look at every real word clip of ``sources`` (``jobs`` processes, in order)."""
    clips = [s for s in sources if s.kind == "real"]
    refuse_locked(clips)
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        parts = [clips[i::jobs] for i in range(jobs)]
        with ProcessPoolExecutor(jobs) as pool:
            done = list(pool.map(_look_at, parts))
        opening: list[list[float]] = [[] for _ in clips]
        states: list[np.ndarray] = [np.zeros(0)] * len(clips)
        for i, (o, st) in enumerate(done):
            for j, (oj, sj) in enumerate(zip(o, st, strict=True)):
                opening[i + j * jobs] = oj
                states[i + j * jobs] = sj
    else:
        opening, states = _look_at(clips, verifier)
    return Looks(np.array(states).reshape(len(clips), -1),
                 np.array([o[0] for o in opening], np.float32),
                 np.array([_word_class(s.word) for s in clips], int),
                 np.array([s.fold for s in clips], int))


def talk_table(data: dict[str, Any]) -> tuple[Looks, dict[str, Any]]:
    """The looks of ``training.talk.talk_events(states=True)`` as :class:`Looks` (a look on a
    stop said there is stop, any other one anything else), and where each falls: ``at`` the
    index of the stop, or -1."""
    at = talk_at_stop(data)
    feats = np.asarray(data["feats"], np.float16)
    looks = Looks(feats.reshape(len(at), -1) if len(at) else np.zeros((0, 0), np.float16),
                  np.array([e["opening"].get(STOP, 0.0) for e in data["events"]], np.float32),
                  np.where(at >= 0, 0, len(WORDS)), np.array([e["fold"] for e in data["events"]], int))
    where = {"at": at, "time": np.array([e["emitted_s"] for e in data["events"]]),
             "name": np.array([e["file"] for e in data["events"]]), "stops": len(data["stops"]),
             "audio_s": float(data["audio_s"])}
    return looks, where


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


def _word_class(word: str) -> int:
    return WORDS.index(word) if word in WORDS else len(WORDS)


def talk_at_stop(data: dict[str, Any], after_s: float = 1.0) -> np.ndarray:
    """For each talk event (``training.talk.talk_events``), the index of the stop said there
    that it falls on (from its start to ``after_s`` after its end), or -1."""
    def at(e: dict[str, Any]) -> int:
        return next((i for i, stop in enumerate(data["stops"]) if stop["file"] == e["file"]
                     and stop["start_s"] <= e["emitted_s"] <= stop["end_s"] + after_s), -1)

    return np.array([at(e) for e in data["events"]], int)


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


def bar_for(scores: np.ndarray, target: float) -> float:
    """The highest bar at which at least ``target`` of ``scores`` (the stop clips') pass."""
    ordered = np.sort(scores)
    return float(ordered[int(np.floor((1.0 - target) * ordered.size))])


def talk_outcome(score: np.ndarray, bar: float, where: dict[str, Any],
                 refractory_s: float = 1.0) -> tuple[int, int]:
    """(stops caught, false stops) in the talk at ``bar``: a stop is caught when a look at it
    passes; false stops are passing looks away from any stop, one per ``refractory_s``."""
    passed = score >= bar
    at = where["at"]
    caught = len(set(at[passed & (at >= 0)].tolist()))
    false = 0
    last: tuple[str, float] | None = None
    for i in sorted(np.flatnonzero(passed & (at < 0)), key=lambda i: (where["name"][i], where["time"][i])):
        f, t = str(where["name"][i]), float(where["time"][i])
        if last is None or last[0] != f or t - last[1] >= refractory_s:
            false += 1
        last = (f, t)
    return caught, false


def compare(clips: Looks, talk: Looks, where: dict[str, Any], probe_clip: np.ndarray,
            probe_talk: np.ndarray, targets: Sequence[float] = TARGETS) -> list[dict[str, Any]]:
    """Both looks at each target stop recall on clips: the bar, false accepts on clips of other
    words, stops caught and false stops an hour in talk."""
    pos = clips.label == 0
    hours = where["audio_s"] / 3600.0
    rows = []
    for target in targets:
        for method, cs, ts in (("opening", clips.stop, talk.stop),
                               ("probe", probe_clip, probe_talk)):
            bar = bar_for(cs[pos], target)
            caught, false = talk_outcome(ts, bar, where)
            rows.append({"target": target, "look": method, "bar": round(bar, 4),
                         "stop_recall": round(float((cs[pos] >= bar).mean()), 4),
                         "stops_missed": int((cs[pos] < bar).sum()),
                         "fa_clips": int((cs[~pos] >= bar).sum()), "clips_other": int((~pos).sum()),
                         "talk_caught": caught, "talk_stops": where["stops"], "talk_false": false,
                         "talk_false_per_hour": round(false / max(hours, 1e-9), 2)})
    return rows


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
