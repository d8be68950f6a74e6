"""The spotter's head: which rows it trains on, the small MLP (or the temporal-convolution
head, ``lab.training.tcn``) fitted and exported as plain arrays, and its probabilities over a
clip's windows as the run time would compute them."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from voicecoach.errors import VoicecoachError
from voicecoach.grammar import Grammar
from voicecoach.lab.training.data import Source, curve_speaker
from voicecoach.lab.training.examples import Recipe
from voicecoach.lab.training.tcn import fit_tcn, tcn_probs
from voicecoach.listening.spotter.model import NOISE, OTHER, split_members

_LOGGER = logging.getLogger(__name__)


def labels_for(grammar: Grammar) -> list[str]:
    return [NOISE, OTHER] + grammar.all_phrases()


def training_rows(data: dict[str, np.ndarray], sources: Sequence[Source], recipe: Recipe
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Which cached windows the recipe trains on, and the weight of each."""
    from voicecoach.lab.training.talk_windows import TALK_SOURCE

    src = data["source"]
    at = np.where(src >= 0, src, len(sources))      # noise scenes and talk: the last entry
    real = np.array([s.real for s in sources] + [False])[at]

    def allowed(s: Source) -> bool:
        if s.kind == "real":  # a person: within the recipe's share of the speakers
            return curve_speaker(s.group) < recipe.speaker_share
        engines = recipe.synth_negative_engines if s.label == OTHER else recipe.synth_engines
        return s.real or not engines or s.group.startswith(engines)

    ok = np.array([allowed(s) for s in sources] + [True])
    keep = ok[at]
    weight = np.where(real, recipe.real_weight, np.where(src == TALK_SOURCE, recipe.talk_weight,
                                                         1.0))
    return keep, weight


def fit_head(x: np.ndarray, y: np.ndarray, labels: list[str], recipe: Recipe,
             weight: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """A one-hidden-layer ReLU network (scikit-learn), or with ``recipe.head == 1`` the
    temporal-convolution head (``lab.training.tcn``); class-balanced, seeded."""
    from sklearn.neural_network import MLPClassifier

    counts = np.bincount(y, minlength=len(labels)).astype(np.float64)
    balance = (counts.sum() / np.maximum(counts, 1.0)) ** recipe.balance_power
    sample_weight = balance[y] * (1.0 if weight is None else weight)
    sample_weight = sample_weight / sample_weight.mean()
    if recipe.head == 1:
        return fit_tcn(x, y, len(labels), sample_weight, channels=recipe.channels,
                       dilation=recipe.dilation, alpha=recipe.alpha, epochs=recipe.epochs,
                       batch=recipe.batch, learning_rate=recipe.learning_rate, seed=recipe.seed)
    if recipe.head != 0:
        raise VoicecoachError(f"recipe field head = {recipe.head}: no such head",
                              "give head=0 (the MLP) or head=1 (the temporal convolutions)")
    flat = x.reshape(len(x), -1).astype(np.float32)
    mean = flat.mean(axis=0)
    scale = flat.std(axis=0) + 1e-3
    flat = (flat - mean) / scale
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
    """Probabilities of a head, or an ensemble's members' averaged (``model.split_members``)."""
    members = split_members(head)
    if len(members) > 1:
        return np.mean([_one_head_probs(m, windows) for m in members], axis=0)
    return _one_head_probs(head, windows)


def _one_head_probs(head: dict[str, np.ndarray], windows: np.ndarray) -> np.ndarray:
    if "c0" in head:
        return tcn_probs(head, windows)
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
