"""The trained spotter as shipped: weights (``.npz``, no pickles) and the model card (JSON and
Markdown) with its recipe, decision, costs and figures."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from voicecoach.grammar import Grammar
from voicecoach.lab.training.examples import Recipe
from voicecoach.lab.training.look_probe import DEFAULT_C
from voicecoach.lab.training.thresholds import FALSE_COST, MISS_COST, NEGATIVE_PRIOR
from voicecoach.listening.spotter.decide import Decision
from voicecoach.listening.spotter.look_probe import ARRAYS, FRAMES, LOOK_PROBE_FILE, WORDS
from voicecoach.listening.spotter.model import (
    FORMAT_VERSION,
    MODEL_NAME,
    member_name,
    numbered,
    phrase_hash,
    phrases_of,
    split_members,
)

_LOGGER = logging.getLogger(__name__)


def export(out: Path, head: dict[str, np.ndarray], labels: list[str], grammar: Grammar,
           recipe: Recipe, decision: Decision, figs: dict[str, Any], extra: dict[str, Any],
           look_probe: dict[str, np.ndarray] | None = None) -> None:
    """Write the weights, the JSON card and MODEL_CARD.md to ``out``; with ``look_probe``, the
    learned look beside them (``LOOK_PROBE_FILE``, named and pinned by the card)."""
    out.mkdir(parents=True, exist_ok=True)
    probe_path = out / LOOK_PROBE_FILE
    if look_probe is not None:
        digest = save_arrays(probe_path, {k: np.asarray(look_probe[k], np.float32) for k in ARRAYS})
        extra = {**extra, "look_probe": {
            "file": LOOK_PROBE_FILE, "sha256": digest,
            "width": int(np.asarray(look_probe["mean"]).size // 2), "frames": FRAMES,
            "classes": [*WORDS, "other"],
            "recipe": f"logistic regression (scikit-learn, C {DEFAULT_C}, class-balanced) "
                      "on the mean and maximum of Whisper tiny.en's encoder output over the "
                      f"look's first {FRAMES} frames; fitted on every look of the second look's "
                      "clips and talk (lab.training.look_probe.learned_look)"}}
    elif probe_path.is_file():
        probe_path.unlink()     # a card without one must not sit beside a stale probe
    weights = out / f"{MODEL_NAME}.npz"
    tmp = out / f"{MODEL_NAME}.tmp.npz"
    arrays: dict[str, Any] = {k: v.astype(np.float16).astype(np.float32) if _is_weight(k)
                              else v for k, v in head.items()}
    np.savez_compressed(tmp, **arrays)
    tmp.replace(weights)
    card = {
        "format": FORMAT_VERSION,
        "name": MODEL_NAME,
        "language": "en",
        "labels": labels,
        "layers": numbered(head, "w"),
        "members": len(split_members(head)),
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
    if "verify" in extra:
        from voicecoach.listening.spotter.verify import LOOK_S

        card["look_s"] = LOOK_S
    write_card(out / f"{MODEL_NAME}.json", card)


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> str:
    """``arrays`` into the ``.npz`` at ``path`` (through a temporary file, so a reader never
    sees half of one); returns its sha256, the pin a card gives it."""
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)  # type: ignore[arg-type]
    tmp.replace(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_card(card_path: Path, card: dict[str, Any]) -> None:
    """The JSON card at ``card_path`` and its MODEL_CARD.md beside it, rendered from it."""
    card_path.write_text(json.dumps(card, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    (card_path.parent / "MODEL_CARD.md").write_text(render_card(card), encoding="utf-8")


def _is_weight(name: str) -> bool:
    """The dense layers' ``w{i}`` and the convolutions' ``c{i}`` (kept at float16 precision);
    not biases, feature statistics or dilations."""
    name = member_name(name)[1]
    return name[:1] in ("w", "c") and name[1:].isdigit()


def _what_it_is(rec: dict[str, Any]) -> str:
    if rec.get("head", 0) == 1:
        return (f"A temporal-convolution head (two kernel-3 convolutions over time, "
                f"{rec['channels']} channels, dilations 1 and {rec['dilation']}, ReLU, then one "
                f"dense layer; `lab.training.tcn`)")
    return f"A {rec['hidden']}-unit ReLU head"


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
        f"- {_what_it_is(rec)} over the last {rec['window']} speech embeddings "
        f"(80 ms steps, about {rec['window'] * 0.08 + 0.775:.1f} s of audio) of "
        f"{card['features']}."
        + (f" An ensemble of {card['members']} such heads, trained by the same recipe with seeds "
           f"{', '.join(str(x) for x in card.get('member_seeds', []))} (each on its own "
           "augmented features), their probabilities averaged; every figure below is the "
           "ensemble's." if card.get("members", 1) > 1 else ""),
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
        f"{', '.join(data.get('synthetic_families', []))}; "
        + (f"only the {', '.join(rec['synth_engines'])} voices' command phrases are trained on, "
           "every other family's speech as other speech." if rec.get("synth_engines") else
           "every family's command phrases and other speech are trained on."),
        *([f"- What was trained on (kind, label, group and file of every source) hashes to "
           f"`{data['corpus_sha256'][:16]}...` (`train.corpus_digest`): a run of this recipe "
           "and seed on another corpus gives another head."] if data.get("corpus_sha256") else []),
        f"- Voice families in the corpus that training did not use (the long-form benchmark "
        f"reads these): "
        f"{', '.join(card.get('unseen_families') or card.get('holdout_families', [])) or 'none'}.",
        f"- Training windows: {data.get('training_windows', '?')}"
        + (f", of which {data['talk_windows']} of running talk ({rec.get('talk_minutes')} "
           "minutes per fold of the fold's training voices' sentences with its real words and "
           "stops, `lab.training.talk_windows`)" if data.get("talk_windows") else "") + ".",
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
                  "transcript begins with the command reaches its threshold"
                  + (f" ({', '.join(card['verify_anywhere'])}: begins with it at any word of "
                     "Whisper's own transcript)" if card.get("verify_anywhere") else "")
                  + f": `{json.dumps(card.get('verify', {}), sort_keys=True)}`. The verifier "
                  f"reads the last {card.get('look_s', 2.0)} s of audio before the candidate"
                  + ("; a stop candidate looked at while its score still rose is looked at once "
                     "more at the run's peak if rejected (`peak_look`)" if dec.get("peak_look")
                     else "")
                  + (f"; a stop candidate turned down is looked at once more "
                     f"{0.08 * dec['relook_after']:.2f} s later" if dec.get("relook_after") else "")
                  + (f"; a stop candidate turned down is looked at once more {dec['relook_end_s']} s "
                     "after its word's end (the loudness envelope: its last sound within 30 dB of "
                     "its loudest), unless the first look came that late" if dec.get("relook_end_s")
                     else "")
                  + (f"; a stop run whose score reaches {dec['sure_stop_threshold']} needs only "
                     f"{dec['sure_stop_bar']} from the look (the sure-stop rule, chosen last, "
                     "so it only adds stops)" if dec.get("sure_stop_threshold") is not None
                     else "")
                  + "".join(f"; a {c} candidate raised at {r[0]} or more needs only {r[1]} from "
                            "the look" for c, r in sorted(card.get("verify_sure", {}).items()))
                  + ".",
                  "",
                  "Chosen by the costs above on out-of-fold clips and on out-of-fold running talk "
                  "(`lab.training.talk`: the training voices' sentences with the fold's real "
                  "words and stops, each fold's head; a false command an hour there costs as 1 % "
                  "of false accepts on clips)."]
        learned = card.get("look_probe") or {}
        clean = bool(learned) and learned.get("clean", True) is not False
        if clean:
            lines += ["", f"**Stop by the learned look** (`{learned['file']}`, sha256 "
                      f"`{learned['sha256'][:16]}...`): the look's stop score is not the opening's "
                      "probability but the stop probability of a probe on the same encoder pass "
                      f"({learned.get('recipe', '')}), each fold's looks scored by a probe fitted on the "
                      "other folds' before any threshold above was chosen."]
        if learned:
            over = learned.get("over")
            if over:
                cv = over.get("cross_validated", {})
                where = ("a second probe (arrays `over_*` in the same file)" if clean else
                         f"a learned look (`{learned['file']}`, sha256 "
                         f"`{learned['sha256'][:16]}...`; away from the coach the opening is "
                         "read, at the bars above)")
                raised = "" if over.get("candidate") is None else \
                    (f" (the spotter raises stop candidates there from {over['candidate']}, the "
                     "level the looks it was fitted on were raised at)")
                lines += ["", f"**Over the coach's own speech** stop is read by {where} "
                          f"at a bar of {over['bar']}{raised}, a probe on the look's own encoder pass: "
                          f"{over.get('recipe', '')}. Out of fold on those trials: "
                          + "; ".join(f"{name} {v['caught']}/{v['stops']} stops in time, "
                                      f"{v['false_others']}/{v['others']} other words taken "
                                      f"for stop, {v['echo_false']} echo looks let through"
                                      for name, v in cv.items()) + "."]
            else:
                lines += ["", "Over the coach's own speech the opening is read, as before."]
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
