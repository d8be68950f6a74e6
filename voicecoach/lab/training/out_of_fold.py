"""The run's out-of-fold choices (a part of ``python -m voicecoach.lab.training.train``): the
head cross-validated by speaker, each fold's clips scored by a head that never heard that
fold's speakers, with the figures and thresholds chosen on them (:func:`cross_validate`); and
the second look's thresholds, chosen on out-of-fold clips and out-of-fold talk
(:func:`_second_look`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from voicecoach.errors import VoicecoachError
from voicecoach.grammar import Grammar
from voicecoach.lab.corpus import FA_STATE, state_for
from voicecoach.lab.training.data import REAL_POSITIVES, SILENCE, Source
from voicecoach.lab.training.ensemble import Member, ensemble_head
from voicecoach.lab.training.examples import Recipe
from voicecoach.lab.training.head import clip_probs, fit_head, training_rows
from voicecoach.lab.training.thresholds import (
    FALSE_COST,
    MISS_COST,
    NEGATIVE_PRIOR,
    choose,
    curve_table,
    curves_for,
    figures,
    statistic,
)
from voicecoach.listening.spotter.decide import STOP, Decision
from voicecoach.listening.spotter.model import phrases_of

_LOGGER = logging.getLogger(__name__)


def cross_validate(data: dict[str, np.ndarray], sources: Sequence[Source],
                   clips: list[dict[str, Any]], labels: list[str], grammar: Grammar,
                   recipe: Recipe, silence: np.ndarray, base: Decision,
                   fold_dir: Path | None = None, heads: dict[int, dict[str, np.ndarray]] | None = None,
                   members: Sequence[Member] = ()) -> tuple[dict[str, Any], Decision]:
    """Out-of-fold probabilities for every clip (``clip["probs"]``), the figures and the
    thresholds; with ``fold_dir``, each fold's head is kept there (``head_K.npz``) for the
    second look's choice on out-of-fold talk (``lab.training.talk``); with ``heads``, those
    fold heads are used instead of fitting them again; with ``members``, each fold's head is
    averaged with theirs (an ensemble; only this run's own head is kept in ``fold_dir``)."""
    y = np.array([labels.index(s) for s in data["label"]])
    keep, weight = training_rows(data, sources, recipe)
    classes = {cmd: [labels.index(p) for p in ps] for cmd, ps in phrases_of(grammar).items()}
    for k in range(recipe.folds):
        t0 = time.process_time()
        train = (data["fold"] != k) & keep
        head = heads[k] if heads is not None else \
            fit_head(data["x"][train], y[train], labels, recipe, weight[train])
        if fold_dir is not None and heads is None:
            np.savez(fold_dir / f"head_{k}.npz", **head)  # type: ignore[arg-type]
        head = ensemble_head(head, [m.folds[k] for m in members])
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


def _choose(sample: list[dict[str, Any]], talk: dict[str, Any], recipe: Recipe, stop_stat: Any
            ) -> tuple[float, dict[str, float], str, tuple[float, float] | None, dict[str, Any]]:
    """Every threshold of the second look, chosen on the looks at ``sample`` and ``talk``, and
    the figures they give (``figs["summary"]`` the line printed)."""
    from voicecoach.lab.training.second_look import (
        choose_second_look,
        choose_sure_commands,
        choose_sure_stop,
        second_look_figures,
    )
    from voicecoach.lab.training.talk import talk_outcome

    conf, thresholds, method = choose_second_look(sample, MISS_COST, FALSE_COST, NEGATIVE_PRIOR,
                                                  stop_stat, talk)
    sure = choose_sure_stop(sample, MISS_COST, FALSE_COST, NEGATIVE_PRIOR, stop_stat, conf,
                            thresholds, method, talk) if recipe.sure_stop else None
    sure_commands = choose_sure_commands(sample, MISS_COST, FALSE_COST, NEGATIVE_PRIOR, conf,
                                         thresholds, method, sure, talk) \
        if recipe.sure_commands else {}
    figs = second_look_figures(sample, conf, thresholds, stop_stat, method, sure, sure_commands)
    out = talk_outcome(talk, conf, thresholds, method, sure=sure, sure_commands=sure_commands)
    figs["talk"] = {"hours": round(out["hours"], 3), "stops": out["stops"], "caught": out["caught"],
                    "false": out["false"], "false_per_hour": round(out["false_per_hour"], 2)}
    figs["anywhere"] = [STOP] if method == "anywhere" else []
    figs["sure"] = {c: list(r) for c, r in sorted(sure_commands.items())}
    rec = " ".join(f"{w} {v['rate']:.3f} ({v['heard']}/{v['clips']})" for w, v in figs["recall"].items())
    fw, fs = figs["false_accepts_words"], figs["false_accepts_silence"]
    figs["summary"] = (f"cross-validated with the second look ({len(sample)} clips): recall {rec} | "
                       f"FA words {100 * fw['rate']:.2f}% ({fw['accepts']}/{fw['clips']}) | FA silence "
                       f"{fs['accepts']}/{fs['clips']} | out-of-fold talk ({out['hours']:.2f} h): "
                       f"stops {out['caught']}/{out['stops']}, {out['false_per_hour']:.1f} false an "
                       f"hour {out['false'] or ''} | confident stop {conf:.2f}, stop read "
                       f"{method}, verifier "
                       + ", ".join(f"{k} {v:.3f}" for k, v in sorted(thresholds.items()))
                       + (f" | sure stop: run {sure[0]:.2f} with verifier {sure[1]:.3f}" if sure
                          else " | no sure-stop rule")
                       + "".join(f" | sure {c}: spotter {r[0]:.2f} with verifier {r[1]:.3f}"
                                 for c, r in sorted(sure_commands.items())))
    return conf, thresholds, method, sure, figs


def _second_look(clips: list[dict[str, Any]], sources: Sequence[Source], grammar: Grammar,
                 labels: list[str], shipped: Decision, recipe: Recipe, per_word: int, work: Path,
                 members: Sequence[Member] = (), learned_look: bool = False
                 ) -> tuple[Decision, dict[str, float], dict[str, Any], dict[str, np.ndarray] | None]:
    """The verifier's thresholds and the confident stop, chosen on out-of-fold clips and
    out-of-fold talk (``lab.training.talk``, made from the fold heads in ``work/folds``); with
    ``learned_look``, stop is scored by a probe on the look's encoder output, fitted out of fold
    before any threshold is chosen (``lab.training.look_probe.learned_look``), and the probe
    fitted on every look is returned to ship."""
    from voicecoach.lab.training.second_look import (
        STOP_CANDIDATE,
        VERIFIED_THRESHOLD,
        look_at_clips,
        sample_clips,
    )
    from voicecoach.lab.training.talk import fold_files, load_fold_heads, talk_events
    from voicecoach.listening.spotter.verify import load_verifier

    # the talk is checked first: with no fold holding both talk and stops (a tiny corpus,
    # e.g. --quick's sample) there is no hour to rate false commands by, and no choice to make
    files = fold_files(work, sources, recipe.folds)
    if not files:
        raise VoicecoachError("the second look cannot be chosen: no fold has both running talk "
                              "and stop clips to make its out-of-fold talk from (too few sources)",
                              "give more training data, or add --no-verify to skip the second look")
    verifier = load_verifier()
    classes = {cmd: [labels.index(p) for p in ps] for cmd, ps in phrases_of(grammar).items()}
    sample = sample_clips(clips, per_word, recipe.seed)

    def state_of(clip: dict[str, Any]) -> str:
        return state_for(grammar, clip["command"]) if clip["command"] else FA_STATE

    def stop_stat(clip: dict[str, Any]) -> float:
        return statistic(clip["probs"], classes[STOP], shipped.smooth, 1)

    look_at_clips(sample, sources, grammar, labels, shipped, verifier, state_of, learned_look)
    heads = {k: ensemble_head(h, [m.folds[k] for m in members])
             for k, h in load_fold_heads(work / "folds", recipe.folds).items()}
    talk = talk_events(files, heads, grammar, labels, shipped,
                       verifier, recipe.window, work, STOP_CANDIDATE, VERIFIED_THRESHOLD, learned_look)
    probe: dict[str, np.ndarray] | None = None
    if learned_look:
        import copy

        from voicecoach.lab.training.look_probe import learned_look as fit_learned_look

        # the same looks read at the transcript's opening, chosen the same way: the paired
        # comparison the learned look is judged by (printed, not shipped)
        plain = _choose(copy.deepcopy(sample), copy.deepcopy(talk), recipe, stop_stat)
        print(f"second look, read at the opening (the same looks): {plain[-1]['summary']}")
        probe = fit_learned_look(sample, talk, recipe.folds)
    conf, thresholds, method, sure, figs = _choose(sample, talk, recipe, stop_stat)
    decision = replace(shipped, stop_candidate=STOP_CANDIDATE, verified_threshold=VERIFIED_THRESHOLD,
                       verified_stop_threshold=conf,
                       sure_stop_threshold=sure[0] if sure else None,
                       sure_stop_bar=sure[1] if sure else None,
                       # timed by the loudness envelope at run time, so not simulated above
                       relook_end_s=recipe.relook_end_s or None)
    if probe is not None:
        # the probe's score is the same read either way: the run time reads no transcript
        # for it (SpotterRecogniser._look), so the card says "opening"
        figs["anywhere"] = []
        figs["summary"] = figs["summary"].replace(f"stop read {method}",
                                                  "stop read by the learned look")
    return decision, thresholds, figs, probe
