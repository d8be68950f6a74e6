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

An ensemble: run the full training once more with another ``--seed`` in its own ``--work``
folder, then this run with ``--member THAT_WORK`` (repeatable): every fold's head and the
shipped head become the seeds' heads averaged (``model.split_members``), and every figure,
threshold and the second look are chosen for that average.

The tool in parts: the ensemble's members read and averaged (ensemble.py), the out-of-fold
cross-validation and the second look's choice (out_of_fold.py), the model and its card
written (card.py); here, the command line and the run from sources to export.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from voicecoach.config import number_in
from voicecoach.errors import VoicecoachError, report
from voicecoach.grammar import load_grammar
from voicecoach.lab.corpus import POSITIVES
from voicecoach.lab.training.cache import build_eval, build_examples
from voicecoach.lab.training.card import export
from voicecoach.lab.training.data import (
    Source,
    add_real_data_options,
    check_negatives,
    real_sources,
    refuse_locked,
    speech_commands_dir,
    speech_commands_train_dir,
    synthetic_sources,
)
from voicecoach.lab.training.ensemble import Member, ensemble_head, load_members, save_full_run
from voicecoach.lab.training.examples import Recipe
from voicecoach.lab.training.head import fit_head, labels_for, training_rows
from voicecoach.lab.training.out_of_fold import _second_look, cross_validate, summary_line
from voicecoach.lab.training.talk_windows import TALK_SOURCE
from voicecoach.lab.training.tcn import steps_after
from voicecoach.listening.spotter.decide import Decision
from voicecoach.listening.spotter.model import MODEL_NAME

_LOGGER = logging.getLogger(__name__)

#: Importable from here as before the module was split (the tests and lab.training.look_probe
#: read some of them; card.py's model card names ``train.corpus_digest``).
__all__ = ["DEFAULT_WORK", "HOLDOUT_FAMILIES", "PACKAGE_DIR", "Member", "corpus_digest",
           "cross_validate", "ensemble_head", "load_members", "main", "recipe_holdout",
           "recipe_with", "save_full_run", "summary_line"]

DEFAULT_WORK = Path.home() / ".cache" / "voicecoach" / "spotter-train"
#: Where the run time loads the weights from (voicecoach/listening/spotter/).
PACKAGE_DIR = Path(__file__).resolve().parents[2] / "listening" / "spotter"


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voicecoach.lab.training.train",
                                     description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_real_data_options(parser)
    parser.add_argument("--synth", type=Path, action="append", default=None,
                        help="synthetic corpus folder, repeatable (default WORK/synth; made if missing)")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip choosing the second look's thresholds (no verifier installed)")
    parser.add_argument("--verify-per-word", type=number_in(1, 1_000_000, whole=True), default=250,
                        metavar="N",
                        help="out-of-fold clips per word folder the verifier looks at")
    parser.add_argument("--features-only", action="store_true",
                        help="build (or resume) the feature caches and stop")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK,
                        help="cache folder for corpus and features")
    parser.add_argument("--out", type=Path, default=PACKAGE_DIR, help="where to write the model")
    parser.add_argument("--jobs", type=number_in(1, 64, whole=True), default=2)
    parser.add_argument("--seed", type=number_in(0, 2**32 - 1, whole=True), default=0)
    parser.add_argument("--no-export", action="store_true", help="cross-validate only")
    parser.add_argument("--second-look-only", action="store_true",
                        help="keep the head in --out and the fold heads of the last run "
                             "(WORK/folds): choose the second look again and rewrite the card")
    parser.add_argument("--look-probe", action="store_true",
                        help="score the second look's stop with a probe on Whisper's encoder "
                             "output, fitted out of fold (lab.training.look_probe), and ship it")
    parser.add_argument("--member", type=Path, action="append", default=[], metavar="WORK",
                        help="the --work folder of a full run of this recipe with another --seed: "
                             "average its heads with this run's (an ensemble; repeatable)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="change one recipe field (a number), e.g. --set alpha=2")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny recipe for tests (not for shipping)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        return _train(args)
    except VoicecoachError as exc:
        return report(exc)
    except KeyboardInterrupt:
        print("voicecoach: training interrupted; run the same command again to resume "
              "(finished feature shards are kept)", file=sys.stderr)
        return 130


def recipe_with(recipe: Recipe, items: Sequence[str]) -> Recipe:
    """``recipe`` with each ``--set FIELD=NUMBER`` applied; a yes/no field takes 0 or 1 (not
    Python's truth of a string, for which "0" is true)."""
    for item in items:
        field, _, value = item.partition("=")
        if field not in Recipe.__dataclass_fields__ or not isinstance(getattr(recipe, field),
                                                                      (int, float)):
            raise VoicecoachError(f"--set {item}: no numeric recipe field '{field}'",
                                  "see the recipe in voicecoach/listening/spotter/MODEL_CARD.md")
        kind = type(getattr(recipe, field))
        try:
            if kind is bool:
                if value.strip() not in ("0", "1"):
                    raise ValueError(value)
                parsed: Any = value.strip() == "1"
            else:
                parsed = kind(value)
        except ValueError:
            raise VoicecoachError(f"--set {item}: '{value}' is not "
                                  f"{'0 or 1' if kind is bool else 'a number'}",
                                  f"give {field}={'0 or 1' if kind is bool else 'NUMBER'}") from None
        recipe = replace(recipe, **{field: parsed})
    # checked here, before minutes of features, not when the first head is fitted
    if not 0.0 < recipe.speaker_share <= 1.0:
        raise VoicecoachError(f"--set speaker_share={recipe.speaker_share}: the share of the real "
                              "speakers trained on must be over 0 and at most 1",
                              "give speaker_share=S with 0 < S <= 1 (1: every speaker)")
    if recipe.head not in (0, 1):
        raise VoicecoachError(f"--set head={recipe.head}: no such head",
                              "give head=0 (the MLP) or head=1 (the temporal convolutions)")
    widest = max((d for d in range(1, recipe.window) if steps_after(recipe.window, (1, d)) >= 1),
                 default=0)
    if recipe.head == 1 and (recipe.channels < 1 or not 1 <= recipe.dilation <= widest):
        raise VoicecoachError(f"--set channels={recipe.channels} dilation={recipe.dilation}: "
                              f"the convolutions need at least one channel and must fit the "
                              f"{recipe.window}-step window",
                              f"give channels >= 1 and dilation from 1 to {widest}")
    return recipe


def _train(args: argparse.Namespace) -> int:
    recipe = recipe_with(Recipe(seed=args.seed), args.set)
    if args.quick:
        recipe = replace(recipe, real_copies=1, noise_scenes=20, epochs=5, folds=2, hidden=16, channels=8,
                         talk_minutes=0.0)
    if args.second_look_only:
        _kept_heads(args, recipe)
    members = load_members(args.member, recipe)
    grammar = load_grammar("en")
    labels = labels_for(grammar)
    synth_dirs = args.synth or [args.work / "synth"]
    # the real sets first: a wrong folder is said before minutes of synthesis, not after
    roots = [speech_commands_dir(args.speech_commands),
             speech_commands_train_dir(args.speech_commands_train)]
    real = real_sources(roots[0], recipe.folds)
    real += real_sources(roots[1], recipe.folds, "--speech-commands-train")
    check_negatives(real, roots)
    for synth in synth_dirs:
        if not (synth / "manifest.jsonl").is_file():
            import importlib

            synth_mod = importlib.import_module("voicecoach.lab.training.synth")

            _LOGGER.warning("no synthetic corpus at %s: making it first", synth)
            code = synth_mod.main(["--out", str(synth), "--jobs", str(args.jobs),
                                   "--seed", str(args.seed)] + (["--quick"] if args.quick else []))
            if code:
                return code
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
    if recipe.talk_minutes > 0:
        from voicecoach.lab.training.talk_windows import talk_windows, with_talk

        data = with_talk(data, talk_windows(args.work, sources, recipe, args.jobs))
    eval_data = build_eval(args.work, sources, recipe, args.jobs)
    if args.features_only:
        print(f"features ready: {len(data['label'])} training windows, {len(eval_data['emb'])} "
              "evaluation clips")
        return 0
    from voicecoach.listening.spotter.features import EmbeddingFrontEnd

    with EmbeddingFrontEnd() as fe:
        silence = fe.warm_embeddings()
    clips = _clips(eval_data, sources)
    base = Decision(stop_threshold=0.5, threshold=0.5, peak_look=bool(recipe.peak_look),
                    relook_after=recipe.relook_after)
    fold_dir = args.work / "folds"
    fold_dir.mkdir(parents=True, exist_ok=True)
    kept = _kept_heads(args, recipe) if args.second_look_only else None
    figs, shipped = cross_validate(data, sources, clips, labels, grammar, recipe, silence, base,
                                   fold_dir, kept, members)
    line = summary_line(figs)
    print(line)
    print(f"thresholds (chosen on all out-of-fold clips): stop {shipped.stop_threshold:.2f}, "
          f"others {shipped.threshold:.2f}")
    for row in figs["curve"]:
        print("curve " + " ".join(f"{k} {v}" for k, v in row.items()))
    figs["summary"] = line
    extra: dict[str, Any] = {}
    learned: dict[str, np.ndarray] | None = None
    if args.look_probe and args.no_verify:
        raise VoicecoachError("--look-probe is a second look: it cannot go with --no-verify",
                              "drop one of them")
    if not args.no_verify:
        shipped, extra["verify"], figs["second_look"], learned = _second_look(
            clips, sources, grammar, labels, shipped, recipe, args.verify_per_word, args.work,
            members, args.look_probe)
        extra["verify_anywhere"] = figs["second_look"].pop("anywhere")
        extra["verify_sure"] = figs["second_look"].pop("sure")
        print(f"second look: {figs['second_look']['summary']}")
    if args.no_export:
        return 0
    y = np.array([labels.index(s) for s in data["label"]])
    keep, weight = training_rows(data, sources, recipe)
    if kept is not None:
        with np.load(args.out / f"{MODEL_NAME}.npz") as z:
            head = {name: z[name] for name in z.files}
    else:
        head = fit_head(data["x"][keep], y[keep], labels, recipe, weight[keep])
    save_full_run(fold_dir, head, recipe)
    head = ensemble_head(head, [m.full for m in members])
    used = np.unique(data["source"][keep])
    counts = {"real_clips": sum(1 for i in used if i >= 0 and sources[i].real),
              "real_speakers": len({sources[i].group for i in used
                                    if i >= 0 and sources[i].kind == "real"}),
              "synthetic_clips": sum(1 for s in sources if not s.real),
              "synthetic_families": sorted({s.group for s in sources if not s.real}),
              "training_windows": int(keep.sum()),
              "talk_windows": int((keep & (data["source"] == TALK_SOURCE)).sum())}
    trained = {sources[i].group for i in used if i >= 0 and not sources[i].real}
    counts["synthetic_families"] = sorted(trained)
    counts["synthetic_clips"] = sum(1 for s in sources if not s.real and s.group in trained)
    counts["corpus_sha256"] = corpus_digest(
        [s for s in sources if s.real or s.group in trained])
    unseen = sorted({s.group for s in all_synthetic if s.group not in trained})
    export(args.out, head, labels, grammar, recipe, shipped, figs,
           {**extra, "data": counts, "member_seeds": [recipe.seed] + [m.seed for m in members],
            "holdout_families": list(recipe_holdout()),
            "unseen_families": unseen,
            "train_cpu_s": _train_cpu_s(args, kept, time.process_time() - t0)},
           learned)
    print(f"wrote {args.out / (MODEL_NAME + '.npz')} and its model card")
    return 0


def _train_cpu_s(args: argparse.Namespace, kept: object, spent: float) -> float:
    """This run's CPU time, or with --second-look-only the full run's (from the card in --out)."""
    if kept is not None:
        try:
            card = json.loads((args.out / f"{MODEL_NAME}.json").read_text(encoding="utf-8"))
            return float(card["train_cpu_s"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return round(spent, 1)


def _kept_heads(args: argparse.Namespace, recipe: Recipe) -> dict[int, dict[str, np.ndarray]]:
    """The fold heads of the last full run, or one error saying to run it first."""
    from voicecoach.lab.training.talk import load_fold_heads

    fold_dir = args.work / "folds"
    kept = load_fold_heads(fold_dir, recipe.folds)
    if len(kept) != recipe.folds or not (args.out / f"{MODEL_NAME}.npz").is_file():
        raise VoicecoachError(f"--second-look-only needs the {recipe.folds} fold heads of the last "
                              f"run in {fold_dir} and its model in {args.out}",
                              "run the full training once (without --second-look-only)")
    return kept


def corpus_digest(sources: Sequence[Source]) -> str:
    """A sha256 of what a run trained on (each source's kind, label, group and file name, in
    any order): two runs of one recipe and seed give the same head only if this is the same
    (session 14 found the regenerated synthetic corpus had drifted from the shipped head's)."""
    import hashlib

    lines = sorted(f"{s.kind}\t{s.label}\t{s.group}\t{s.path.name}" for s in sources)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def recipe_holdout() -> tuple[str, ...]:
    """Voice families kept out of training: the long-form false-accept benchmark reads them."""
    return HOLDOUT_FAMILIES


HOLDOUT_FAMILIES: tuple[str, ...] = ("flite-rms", "festival-ked_diphone", "espeak-en-gb-x-gbcwmd")

if __name__ == "__main__":
    raise SystemExit(main())
