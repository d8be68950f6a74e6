"""Train the English command spotter's head, cross-validate it by speaker, export it.

    python -m voicecoach.lab.training.train            # the default recipe, about 1-2 h

1. Sources: ../shared/speech_commands and ../shared/speech_commands_train (real people, 1,736
   speakers; a fifth of them locked away by ``data.is_locked`` and never read here, the rest in
   4 folds by speaker) and the synthetic corpus (``training.synth``; made first when missing).
2. Features: augmented scenes embedded by the run-time front end, cached in shards under
   ``--work`` (an interrupted run resumes; nothing of it goes into git).
3. Cross-validation: for every fold, a head trained without that fold's speakers scores that
   fold's clips in streaming mode through the run-time decision code. Thresholds for a fold's
   figures are chosen on the other folds' clips only; the shipped thresholds on all of them.
   Every figure printed and written into the model card is such an out-of-fold figure.
4. The shipped head: the same recipe on every source, exported as ``.npz`` + model card.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from voicecoach.errors import VoicecoachError
from voicecoach.grammar import Grammar, load_grammar
from voicecoach.lab.corpus import FA_STATE, POSITIVES, state_for
from voicecoach.lab.training.cache import build_eval, build_examples
from voicecoach.lab.training.data import (
    REAL_POSITIVES,
    SILENCE,
    Source,
    real_sources,
    refuse_locked,
    speech_commands_dir,
    speech_commands_train_dir,
    synthetic_sources,
)
from voicecoach.lab.training.examples import Recipe
from voicecoach.listening.spotter.decide import STOP, Decider, Decision
from voicecoach.listening.spotter.model import (
    FORMAT_VERSION,
    MODEL_NAME,
    NOISE,
    OTHER,
    phrase_hash,
    phrases_of,
)

_LOGGER = logging.getLogger(__name__)

DEFAULT_WORK = Path.home() / ".cache" / "voicecoach" / "spotter-train"
#: Where the run time loads the weights from (voicecoach/listening/spotter/).
PACKAGE_DIR = Path(__file__).resolve().parents[2] / "listening" / "spotter"
#: What a mistake costs (the issue's order: a missed stop is the worst error, a false
#: "faster" the next). Misses are per command clip; false accepts per negative clip, times
#: NEGATIVE_PRIOR because other speech is far more common than a command.
MISS_COST = {STOP: 10.0}
FALSE_COST = {"faster": 5.0, STOP: 2.0, "incline_up": 3.0}
NEGATIVE_PRIOR = 20.0
GRID = np.round(np.arange(0.30, 0.995, 0.01), 3)


def labels_for(grammar: Grammar) -> list[str]:
    return [NOISE, OTHER] + grammar.all_phrases()


# -- the head -----------------------------------------------------------------------------
def training_rows(data: dict[str, np.ndarray], sources: Sequence[Source], recipe: Recipe
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Which cached windows the recipe trains on, and the weight of each."""
    src = data["source"]
    real = np.array([s.real for s in sources] + [False])[src]        # -1 (noise scenes): False
    def allowed(s: Source) -> bool:
        engines = recipe.synth_negative_engines if s.label == OTHER else recipe.synth_engines
        return s.real or not engines or s.group.startswith(engines)

    ok = np.array([allowed(s) for s in sources] + [True])
    keep = ok[np.where(src >= 0, src, len(sources))]
    weight = np.where(real, recipe.real_weight, 1.0)
    return keep, weight


def fit_head(x: np.ndarray, y: np.ndarray, labels: list[str], recipe: Recipe,
             weight: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """A one-hidden-layer ReLU network (scikit-learn), class-balanced, seeded."""
    from sklearn.neural_network import MLPClassifier

    flat = x.reshape(len(x), -1).astype(np.float32)
    mean = flat.mean(axis=0)
    scale = flat.std(axis=0) + 1e-3
    flat = (flat - mean) / scale
    counts = np.bincount(y, minlength=len(labels)).astype(np.float64)
    balance = (counts.sum() / np.maximum(counts, 1.0)) ** recipe.balance_power
    sample_weight = balance[y] * (1.0 if weight is None else weight)
    sample_weight = sample_weight / sample_weight.mean()
    clf = MLPClassifier(hidden_layer_sizes=(recipe.hidden,), alpha=recipe.alpha,
                        batch_size=min(recipe.batch, len(flat)), learning_rate_init=recipe.learning_rate,
                        max_iter=recipe.epochs, n_iter_no_change=recipe.epochs + 1, tol=0.0,
                        shuffle=True, random_state=recipe.seed)
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(flat, y, sample_weight=sample_weight)
    # The classifier only knows the classes it saw: spread its outputs over every label.
    w_out = np.zeros((clf.coefs_[-1].shape[0], len(labels)), np.float32)
    b_out = np.full(len(labels), -30.0, np.float32)
    for j, cls in enumerate(clf.classes_):
        w_out[:, cls] = clf.coefs_[-1][:, j]
        b_out[cls] = clf.intercepts_[-1][j]
    return {"mean": mean.astype(np.float32), "scale": scale.astype(np.float32),
            "w0": clf.coefs_[0].astype(np.float32), "b0": clf.intercepts_[0].astype(np.float32),
            "w1": w_out, "b1": b_out}


def head_probs(head: dict[str, np.ndarray], windows: np.ndarray) -> np.ndarray:
    x = (windows.reshape(len(windows), -1) - head["mean"]) / head["scale"]
    h = np.maximum(x @ head["w0"] + head["b0"], 0.0)
    z = h @ head["w1"] + head["b1"]
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def clip_probs(head: dict[str, np.ndarray], emb: np.ndarray, silence: np.ndarray, window: int
               ) -> np.ndarray:
    """Per-step probabilities of one clip, with the ring pre-filled as the engine does
    (``silence``: the front end's warm-up embeddings)."""
    seq = np.concatenate([silence[-(window - 1):], emb])
    idx = np.arange(len(emb))[:, None] + np.arange(window)[None, :]
    return head_probs(head, seq[idx])


# -- decisions ----------------------------------------------------------------------------
def statistic(probs: np.ndarray, classes: list[int], smooth: int, confirm: int) -> float:
    """The highest score a clip holds for ``confirm`` steps running, smoothed as the decider
    smooths (the mean of the last ``smooth`` steps): the clip fires iff this >= threshold."""
    raw = probs[:, classes].sum(axis=1)
    if not len(raw):
        return 0.0
    csum = np.concatenate([[0.0], np.cumsum(raw)])
    t = np.arange(len(raw))
    lo = np.maximum(0, t - smooth + 1)
    sm = (csum[t + 1] - csum[lo]) / (t + 1 - lo)
    if confirm > 1:
        if len(sm) < confirm:
            return 0.0
        sm = np.min(np.stack([sm[i:len(sm) - confirm + 1 + i] for i in range(confirm)]), axis=0)
    return float(sm.max())


def cost(curves: dict[str, Any], stop_t: float, t: float) -> float:
    total = 0.0
    for cmd, stats in curves["positive"].items():
        limit = stop_t if cmd == STOP else t
        miss = float(np.mean(np.asarray(stats) < limit)) if stats else 0.0
        total += MISS_COST.get(cmd, 1.0) * miss
    for cmd, stats in curves["negative"].items():
        limit = stop_t if cmd == STOP else t
        fa = float(np.mean(np.asarray(stats) >= limit)) if stats else 0.0
        total += NEGATIVE_PRIOR * FALSE_COST.get(cmd, 1.0) * fa
    return total


def choose(curves: dict[str, Any]) -> tuple[float, float]:
    """The stop threshold and the shared threshold of the other commands, at least cost.

    The two are independent terms of the cost, so each is a one-dimensional search."""
    def part(keep_stop: bool, t: float) -> float:
        sub = {"positive": {c: v for c, v in curves["positive"].items() if (c == STOP) == keep_stop},
               "negative": {c: v for c, v in curves["negative"].items() if (c == STOP) == keep_stop}}
        return cost(sub, t, t)
    stop_t = min(GRID, key=lambda t: (part(True, t), -t))
    other_t = min(GRID, key=lambda t: (part(False, t), -t))
    return float(stop_t), float(other_t)


def curves_for(clips: list[dict[str, Any]], grammar: Grammar, decision: Decision,
               classes: dict[str, list[int]]) -> dict[str, Any]:
    """Clip statistics: for command clips, of their own command; for negative clips, the
    highest of every command the walking state accepts."""
    pos: dict[str, list[float]] = {}
    neg: dict[str, list[float]] = {}
    for clip in clips:
        if clip["command"]:
            cmd = clip["command"]
            confirm = 1 if cmd == STOP else decision.confirm
            pos.setdefault(cmd, []).append(statistic(clip["probs"], classes[cmd],
                                                     decision.smooth, confirm))
        else:
            for cmd in grammar.commands_for(FA_STATE):
                confirm = 1 if cmd == STOP else decision.confirm
                neg.setdefault(cmd, []).append(statistic(clip["probs"], classes[cmd],
                                                         decision.smooth, confirm))
    return {"positive": pos, "negative": neg}


def run_decider(clip: dict[str, Any], grammar: Grammar, labels: list[str], decision: Decision
                ) -> list[tuple[str, float]]:
    """The run-time decision code over one clip's probabilities: (command, emitted_s)."""
    decider = Decider(labels, phrases_of(grammar), decision)
    state = state_for(grammar, clip["command"]) if clip["command"] else FA_STATE
    decider.set_commands(grammar.commands_for(state))
    out = []
    for j, p in enumerate(clip["probs"]):
        out += [(f.command, f.emitted_s) for f in decider.step(p, (j + 1) * 0.08)]
    return out


def figures(clips: list[dict[str, Any]], grammar: Grammar, labels: list[str],
            decision_of: dict[int, Decision]) -> dict[str, Any]:
    """Recall, false accepts and stop latency over clips, each fold with its own thresholds."""
    rec: dict[str, list[int]] = {}
    fa: dict[str, list[int]] = {}
    latency: list[float] = []
    for clip in clips:
        fired = run_decider(clip, grammar, labels, decision_of[clip["fold"]])
        if clip["command"]:
            hits = [t for c, t in fired if c == clip["command"]]
            rec.setdefault(clip["word"], []).append(1 if hits else 0)
            if hits and clip["command"] == STOP:
                latency.append(hits[0] - clip["end_s"])
        else:
            fa.setdefault(clip["word"], []).append(1 if fired else 0)
    words = [w for w in fa if w != SILENCE]
    fa_words = [v for w in words for v in fa[w]]
    return {
        "recall": {w: {"rate": round(float(np.mean(v)), 4), "heard": int(sum(v)), "clips": len(v)}
                   for w, v in rec.items()},
        "false_accepts": {w: {"rate": round(float(np.mean(v)), 4), "accepts": int(sum(v)),
                              "clips": len(v)} for w, v in fa.items()},
        "false_accepts_words": {"rate": round(float(np.mean(fa_words)), 4) if fa_words else 0.0,
                                "accepts": int(sum(fa_words)), "clips": len(fa_words)},
        "stop_latency_s": ({"median": round(statistics.median(latency), 3),
                            "max": round(max(latency), 3), "n": len(latency)} if latency else None),
    }


def curve_table(clips: list[dict[str, Any]], grammar: Grammar, decision: Decision,
                classes: dict[str, list[int]]) -> list[dict[str, float]]:
    """Threshold against recall and false accepts (out-of-fold statistics)."""
    c = curves_for(clips, grammar, decision, classes)
    rows = []
    for t in (0.05, 0.1, 0.2, 0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98):
        row: dict[str, float] = {"threshold": t}
        for cmd, stats in c["positive"].items():
            row[f"{cmd}_recall"] = round(float(np.mean(np.asarray(stats) >= t)), 4)
        neg = np.max(np.stack([np.asarray(v) for v in c["negative"].values()]), axis=0)
        row["fa_any"] = round(float(np.mean(neg >= t)), 4)
        row["fa_stop"] = round(float(np.mean(np.asarray(c["negative"][STOP]) >= t)), 4)
        rows.append(row)
    return rows


# -- driver -------------------------------------------------------------------------------
def _clips(eval_data: dict[str, Any], sources: Sequence[Source]) -> list[dict[str, Any]]:
    out = []
    for emb, end_s, i in zip(eval_data["emb"], eval_data["end_s"], eval_data["index"],
                             strict=True):
        src = sources[i]
        command = POSITIVES.get(src.word, "")
        out.append({"emb": emb, "end_s": end_s, "fold": src.fold, "word": src.word,
                    "command": command, "source": i})
    return out


def cross_validate(data: dict[str, np.ndarray], sources: Sequence[Source],
                   clips: list[dict[str, Any]], labels: list[str], grammar: Grammar,
                   recipe: Recipe, silence: np.ndarray, base: Decision
                   ) -> tuple[dict[str, Any], Decision]:
    y = np.array([labels.index(s) for s in data["label"]])
    keep, weight = training_rows(data, sources, recipe)
    classes = {cmd: [labels.index(p) for p in ps] for cmd, ps in phrases_of(grammar).items()}
    for k in range(recipe.folds):
        t0 = time.process_time()
        train = (data["fold"] != k) & keep
        head = fit_head(data["x"][train], y[train], labels, recipe, weight[train])
        for clip in clips:
            if clip["fold"] == k:
                clip["probs"] = clip_probs(head, clip["emb"], silence, recipe.window)
        _LOGGER.warning("fold %d/%d: %d training windows, %.0f CPU s", k + 1, recipe.folds,
                        int(train.sum()), time.process_time() - t0)
    decision_of: dict[int, Decision] = {}
    for k in range(recipe.folds):
        others = [c for c in clips if c["fold"] != k]
        st, t = choose(curves_for(others, grammar, base, classes))
        decision_of[k] = replace(base, stop_threshold=st, threshold=t)
    st, t = choose(curves_for(clips, grammar, base, classes))
    shipped = replace(base, stop_threshold=st, threshold=t)
    figs = figures(clips, grammar, labels, decision_of)
    figs["per_fold_thresholds"] = {str(k): [d.stop_threshold, d.threshold]
                                   for k, d in decision_of.items()}
    figs["curve"] = curve_table(clips, grammar, base, classes)
    return figs, shipped


def summary_line(figs: dict[str, Any]) -> str:
    r = figs["recall"]
    fa = figs["false_accepts"]
    lat = figs["stop_latency_s"]
    rec = " ".join(f"{w} {r[w]['rate']:.3f} ({r[w]['heard']}/{r[w]['clips']})"
                   for w in REAL_POSITIVES if w in r)
    fw = figs["false_accepts_words"]
    sil = fa.get(SILENCE, {"accepts": 0, "clips": 0, "rate": 0.0})
    lat_s = f"stop latency median {lat['median']:.2f} s max {lat['max']:.2f} s" if lat else ""
    return (f"cross-validated by speaker: recall {rec} | FA words {100 * fw['rate']:.2f}% "
            f"({fw['accepts']}/{fw['clips']}) | FA silence {sil['accepts']}/{sil['clips']} | "
            f"{lat_s}")


def export(out: Path, head: dict[str, np.ndarray], labels: list[str], grammar: Grammar,
           recipe: Recipe, decision: Decision, figs: dict[str, Any], extra: dict[str, Any]
           ) -> None:
    out.mkdir(parents=True, exist_ok=True)
    weights = out / f"{MODEL_NAME}.npz"
    tmp = out / f"{MODEL_NAME}.tmp.npz"
    arrays: dict[str, Any] = {k: v.astype(np.float16).astype(np.float32) if k.startswith("w")
                              else v for k, v in head.items()}
    np.savez_compressed(tmp, **arrays)
    tmp.replace(weights)
    card = {
        "format": FORMAT_VERSION,
        "name": MODEL_NAME,
        "language": "en",
        "labels": labels,
        "layers": 2,
        "phrases": phrases_of(grammar),
        "phrase_hash": phrase_hash(phrases_of(grammar)),
        "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "features": "pyopen-wakeword 1.1 melspectrogram.tflite + embedding_model.tflite, "
                    "96-dim every 80 ms",
        "recipe": asdict(recipe),
        "decision": asdict(decision),
        "costs": {"miss": MISS_COST, "false_accept": FALSE_COST,
                  "negative_prior": NEGATIVE_PRIOR},
        "figures": figs,
        **extra,
    }
    (out / f"{MODEL_NAME}.json").write_text(json.dumps(card, indent=1, sort_keys=True) + "\n",
                                            encoding="utf-8")
    (out / "MODEL_CARD.md").write_text(render_card(card), encoding="utf-8")


def render_card(card: dict[str, Any]) -> str:
    """The model card as Markdown, from the same data as the JSON card."""
    figs = card["figures"]
    rec = card["recipe"]
    dec = card["decision"]
    data = card.get("data", {})
    lines = [
        "# Model card: the English command spotter (`en_commands`)",
        "",
        "Generated by `python -m voicecoach.lab.training.train` with the JSON card beside "
        "it; do not edit by hand.",
        "",
        "## What it is",
        f"- A {rec['hidden']}-unit ReLU head over the last {rec['window']} speech embeddings "
        f"(80 ms steps, about {rec['window'] * 0.08 + 0.775:.1f} s of audio) of "
        f"{card['features']}.",
        f"- {len(card['labels'])} classes: every phrase of `grammars/en.json`, other speech "
        f"and noise. Grammar phrase hash `{card['phrase_hash']}`; weights sha256 "
        f"`{card['weights_sha256'][:16]}...`.",
        f"- Decisions: stop fires on the first step its score (mean of the last {dec['smooth']} "
        f"steps) reaches {dec['stop_threshold']:.2f}; other commands must reach "
        f"{dec['threshold']:.2f} on {dec['confirm']} steps running and be the state's best; "
        f"{dec['refractory_s']:.1f} s refractory (stop is never held back).",
        "",
        "## Data",
        f"- Real: {data.get('real_clips', '?')} clips of {data.get('real_speakers', '?')} "
        "speakers of Speech Commands (Pete Warden, CC BY 4.0), read from ../shared/speech_commands "
        "and ../shared/speech_commands_train, never copied into the repository; the locked fifth "
        "of the speakers (`training.data.is_locked`) is never read by training.",
        f"- Synthetic: {data.get('synthetic_clips', '?')} clips in voice families "
        f"{', '.join(data.get('synthetic_families', []))}; only the "
        f"{', '.join(rec.get('synth_engines', [])) or 'all'} voices' command phrases are trained "
        "on, every other family's speech as other speech.",
        f"- Voice families in the corpus that training did not use (the long-form benchmark "
        f"reads these): "
        f"{', '.join(card.get('unseen_families') or card.get('holdout_families', [])) or 'none'}.",
        f"- Training windows: {data.get('training_windows', '?')}.",
        "",
        "## Recipe (seed and every knob)",
        "",
        "```json",
        json.dumps(rec, indent=1, sort_keys=True),
        "```",
        "",
        "Costs used to pick the thresholds (out-of-fold): "
        f"`{json.dumps(card['costs'], sort_keys=True)}`.",
        "",
        "## Figures (speaker-disjoint cross-validation)",
        "",
        f"{figs['summary']}",
        "",
        "Each fold's figures use thresholds chosen on the other folds' clips only "
        f"(per fold: {figs.get('per_fold_thresholds', {})}).",
        "",
    ]
    curve = figs.get("curve") or [{"threshold": "-"}]
    keys = ["threshold"] + sorted(k for k in curve[0] if k != "threshold")
    lines += ["| " + " | ".join(keys) + " |", "|---" * len(keys) + "|"]
    for row in figs.get("curve", []):
        lines.append("| " + " | ".join(str(row.get(k, "")) for k in keys) + " |")
    look = figs.get("second_look")
    if look:
        lines += ["", "## The second look (Whisper tiny.en), cross-validated", "",
                  f"{look['summary']}", "",
                  "Stop fires at once from the confident threshold; from "
                  f"{dec.get('stop_candidate')} up to it, and for every other command (raised from "
                  f"{dec.get('verified_threshold')}), only when the verifier's probability that the "
                  "transcript begins with the command reaches its threshold: "
                  f"`{json.dumps(card.get('verify', {}), sort_keys=True)}`."]
    locked = card.get("locked")
    if locked:
        lines += ["", "## Locked test speakers, end to end through `voicecoach listen`", "",
                  "A fifth of the real speakers, set aside by a fixed rule before training "
                  "(`training.data.is_locked`) and never read by any choice above; measured "
                  "for this model by `python -m voicecoach.lab.bench.locked`:", ""]
        lines += [f"- {line}" for line in locked]
    lines += ["", f"Training took {card.get('train_cpu_s', '?')} CPU s in the driver process "
              "(feature workers not counted).", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voicecoach.lab.training.train",
                                     description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--speech-commands", type=Path, default=None,
                        help="real clips (default ../shared/speech_commands)")
    parser.add_argument("--speech-commands-train", type=Path, default=None,
                        help="more real clips, FLAC (default ../shared/speech_commands_train)")
    parser.add_argument("--synth", type=Path, action="append", default=None,
                        help="synthetic corpus folder, repeatable (default WORK/synth; made if missing)")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip choosing the second look's thresholds (no verifier installed)")
    parser.add_argument("--verify-per-word", type=int, default=250, metavar="N",
                        help="out-of-fold clips per word folder the verifier looks at")
    parser.add_argument("--features-only", action="store_true",
                        help="build (or resume) the feature caches and stop")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK,
                        help="cache folder for corpus and features")
    parser.add_argument("--out", type=Path, default=PACKAGE_DIR, help="where to write the model")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-export", action="store_true", help="cross-validate only")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="change one recipe field (a number), e.g. --set alpha=2")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny recipe for tests (not for shipping)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        return _train(args)
    except VoicecoachError as exc:
        print(f"voicecoach: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("voicecoach: training interrupted; run the same command again to resume "
              "(finished feature shards are kept)", file=sys.stderr)
        return 130


def _train(args: argparse.Namespace) -> int:
    recipe = Recipe(seed=args.seed)
    for item in args.set:
        field, _, value = item.partition("=")
        if field not in Recipe.__dataclass_fields__ or not isinstance(getattr(recipe, field),
                                                                      (int, float)):
            raise VoicecoachError(f"--set {item}: no numeric recipe field '{field}'",
                                  "see the recipe in voicecoach/listening/spotter/MODEL_CARD.md")
        try:
            recipe = replace(recipe, **{field: type(getattr(recipe, field))(value)})
        except ValueError:
            raise VoicecoachError(f"--set {item}: '{value}' is not a number",
                                  "give FIELD=NUMBER") from None
    if args.quick:
        recipe = replace(recipe, real_copies=1, noise_scenes=20, epochs=5, folds=2, hidden=16)
    grammar = load_grammar("en")
    labels = labels_for(grammar)
    synth_dirs = args.synth or [args.work / "synth"]
    for synth in synth_dirs:
        if not (synth / "manifest.jsonl").is_file():
            import importlib

            synth_mod = importlib.import_module("voicecoach.lab.training.synth")

            _LOGGER.warning("no synthetic corpus at %s: making it first", synth)
            code = synth_mod.main(["--out", str(synth), "--jobs", str(args.jobs),
                                   "--seed", str(args.seed)] + (["--quick"] if args.quick else []))
            if code:
                return code
    real = real_sources(speech_commands_dir(args.speech_commands), recipe.folds)
    real += real_sources(speech_commands_train_dir(args.speech_commands_train), recipe.folds,
                         "--speech-commands-train")
    all_synthetic = [s for synth in synth_dirs
                     for s in synthetic_sources(synth, recipe.folds, grammar.all_phrases())]
    synthetic = [s for s in all_synthetic if s.group not in recipe_holdout()]
    if args.quick:
        real = real[::16]
        synthetic = synthetic[::4]
    sources = real + synthetic
    refuse_locked(sources)
    t0 = time.process_time()
    data = build_examples(args.work, sources, recipe, args.jobs)
    eval_data = build_eval(args.work, sources, recipe, args.jobs)
    if args.features_only:
        print(f"features ready: {len(data['label'])} training windows, {len(eval_data['emb'])} "
              "evaluation clips")
        return 0
    from voicecoach.listening.spotter.features import EmbeddingFrontEnd

    with EmbeddingFrontEnd() as fe:
        silence = fe.warm_embeddings()
    clips = _clips(eval_data, sources)
    base = Decision(stop_threshold=0.5, threshold=0.5)
    figs, shipped = cross_validate(data, sources, clips, labels, grammar, recipe, silence, base)
    line = summary_line(figs)
    print(line)
    print(f"thresholds (chosen on all out-of-fold clips): stop {shipped.stop_threshold:.2f}, "
          f"others {shipped.threshold:.2f}")
    for row in figs["curve"]:
        print("curve " + " ".join(f"{k} {v}" for k, v in row.items()))
    figs["summary"] = line
    extra: dict[str, Any] = {}
    if not args.no_verify:
        shipped, extra["verify"], figs["second_look"] = _second_look(
            clips, sources, grammar, labels, shipped, recipe, args.verify_per_word)
        print(f"second look: {figs['second_look']['summary']}")
    if args.no_export:
        return 0
    y = np.array([labels.index(s) for s in data["label"]])
    keep, weight = training_rows(data, sources, recipe)
    head = fit_head(data["x"][keep], y[keep], labels, recipe, weight[keep])
    counts = {"real_clips": sum(1 for s in sources if s.real),
              "real_speakers": len({s.group for s in sources if s.kind == "real"}),
              "synthetic_clips": sum(1 for s in sources if not s.real),
              "synthetic_families": sorted({s.group for s in sources if not s.real}),
              "training_windows": int(keep.sum())}
    used = np.unique(data["source"][keep])
    trained = {sources[i].group for i in used if i >= 0 and not sources[i].real}
    counts["synthetic_families"] = sorted(trained)
    counts["synthetic_clips"] = sum(1 for s in sources if not s.real and s.group in trained)
    unseen = sorted({s.group for s in all_synthetic if s.group not in trained})
    export(args.out, head, labels, grammar, recipe, shipped, figs,
           {**extra, "data": counts, "holdout_families": list(recipe_holdout()),
            "unseen_families": unseen,
            "train_cpu_s": round(time.process_time() - t0, 1)})
    print(f"wrote {args.out / (MODEL_NAME + '.npz')} and its model card")
    return 0


def _second_look(clips: list[dict[str, Any]], sources: Sequence[Source], grammar: Grammar,
                 labels: list[str], shipped: Decision, recipe: Recipe, per_word: int
                 ) -> tuple[Decision, dict[str, float], dict[str, Any]]:
    """The verifier's thresholds and the confident stop, chosen on out-of-fold clips."""
    from voicecoach.lab.training.second_look import (
        STOP_CANDIDATE,
        VERIFIED_THRESHOLD,
        choose_second_look,
        look_at_clips,
        sample_clips,
        second_look_figures,
    )
    from voicecoach.listening.spotter.verify import load_verifier

    verifier = load_verifier()
    classes = {cmd: [labels.index(p) for p in ps] for cmd, ps in phrases_of(grammar).items()}
    sample = sample_clips(clips, per_word, recipe.seed)

    def state_of(clip: dict[str, Any]) -> str:
        return state_for(grammar, clip["command"]) if clip["command"] else FA_STATE

    def stop_stat(clip: dict[str, Any]) -> float:
        return statistic(clip["probs"], classes[STOP], shipped.smooth, 1)

    look_at_clips(sample, sources, grammar, labels, shipped, verifier, state_of)
    conf, thresholds = choose_second_look(sample, MISS_COST, FALSE_COST, NEGATIVE_PRIOR, stop_stat)
    figs = second_look_figures(sample, conf, thresholds, stop_stat)
    rec = " ".join(f"{w} {v['rate']:.3f} ({v['heard']}/{v['clips']})" for w, v in figs["recall"].items())
    fw, fs = figs["false_accepts_words"], figs["false_accepts_silence"]
    figs["summary"] = (f"cross-validated with the second look ({len(sample)} clips): recall {rec} | "
                       f"FA words {100 * fw['rate']:.2f}% ({fw['accepts']}/{fw['clips']}) | FA silence "
                       f"{fs['accepts']}/{fs['clips']} | confident stop {conf:.2f}, verifier "
                       + ", ".join(f"{k} {v:.3f}" for k, v in sorted(thresholds.items())))
    decision = replace(shipped, stop_candidate=STOP_CANDIDATE, verified_threshold=VERIFIED_THRESHOLD,
                       verified_stop_threshold=conf)
    return decision, thresholds, figs


def recipe_holdout() -> tuple[str, ...]:
    """Voice families kept out of training: the long-form false-accept benchmark reads them."""
    return HOLDOUT_FAMILIES


HOLDOUT_FAMILIES: tuple[str, ...] = ("flite-rms", "festival-ked_diphone", "espeak-en-gb-x-gbcwmd")

if __name__ == "__main__":
    raise SystemExit(main())
