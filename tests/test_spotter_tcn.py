"""The temporal-convolution head (``Recipe.head = 1``): its hand-written gradient, that it
learns, and that the run time computes what training computed."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from voicecoach.errors import VoicecoachError
from voicecoach.grammar import load_grammar
from voicecoach.lab.training.card import export
from voicecoach.lab.training.examples import Recipe
from voicecoach.lab.training.head import fit_head, head_probs, labels_for
from voicecoach.lab.training.tcn import init_params, loss_and_grads
from voicecoach.listening.spotter.decide import Decision
from voicecoach.listening.spotter.model import load_model

GRAMMAR = load_grammar("en")
LABELS = labels_for(GRAMMAR)


def test_the_backward_pass_matches_finite_differences() -> None:
    rng = np.random.default_rng(1)
    params = init_params(rng, 7, 4, 3, (1, 2), 5, np.float64)
    for name in params:
        if name != "dilation":     # biases away from zero, so every path carries gradient
            params[name] = params[name] + rng.standard_normal(params[name].shape) * 0.3
    x = rng.standard_normal((6, 7, 4))
    y = rng.integers(0, 5, 6)
    sw = rng.uniform(0.5, 2.0, 6)
    _, grads = loss_and_grads(params, x, y, sw, 0.7)
    assert set(grads) == {"c0", "cb0", "c1", "cb1", "w0", "b0"}
    eps = 1e-6
    for name, grad in grads.items():
        numeric = np.zeros_like(grad)
        for i in np.ndindex(grad.shape):
            old = params[name][i]
            params[name][i] = old + eps
            up, _ = loss_and_grads(params, x, y, sw, 0.7)
            params[name][i] = old - eps
            down, _ = loss_and_grads(params, x, y, sw, 0.7)
            params[name][i] = old
            numeric[i] = (up - down) / (2 * eps)
        assert np.allclose(grad, numeric, rtol=1e-5, atol=1e-7), name


def _two_classes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise windows; class 1 has a bump on a few dimensions at steps 6-8 only."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 12, 96)).astype(np.float32) * 3.0 + 5.0
    y = rng.integers(0, 2, n)
    x[y == 1, 6:9, :10] += 4.0
    return x, y


TINY = replace(Recipe(), head=1, channels=8, epochs=30, batch=32, learning_rate=0.01)


def test_a_tiny_fit_separates_two_classes() -> None:
    x, y = _two_classes(600, 0)
    head = fit_head(x[:400], y[:400], LABELS, TINY)
    probs = head_probs(head, x[400:])
    assert probs.shape == (200, len(LABELS))
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (probs.argmax(axis=1) == y[400:]).mean() > 0.95
    # the same seed gives the same head
    again = fit_head(x[:400], y[:400], LABELS, TINY)
    assert all(np.array_equal(head[k], again[k]) for k in head)


def _exported(folder: Path) -> Path:
    x, y = _two_classes(300, 1)
    head = fit_head(x, y, LABELS, replace(TINY, epochs=3))
    export(folder, head, LABELS, GRAMMAR, replace(TINY, epochs=3), Decision(0.9, 0.9),
           {"summary": "test"}, {})
    return folder / "en_commands.npz"


def test_the_run_time_computes_the_training_probabilities(tmp_path: Path) -> None:
    weights = _exported(tmp_path)
    model = load_model(weights)
    model.check_grammar(GRAMMAR)
    assert len(model.convs) == 2 and len(model.layers) == 1
    # per-position statistics, as enrollment (``spotter.voice.normalise``) reads them
    assert model.mean.shape == model.scale.shape == (12 * 96,)
    with np.load(weights) as z:
        head = {k: z[k] for k in z.files}
    windows = np.random.default_rng(2).standard_normal((50, 12, 96)).astype(np.float32) + 5.0
    expected = head_probs(head, windows)
    assert expected.std(axis=0).max() > 1e-3, "the test windows should not all look alike"
    assert np.allclose(model.probabilities(windows), expected, atol=1e-5)
    assert np.allclose(model.probabilities(windows[:1]), expected[:1], atol=1e-5)
    card = (tmp_path / "MODEL_CARD.md").read_text()
    assert "temporal-convolution head" in card and "8 channels" in card


@pytest.mark.parametrize(("name", "shape", "what"), [
    ("c1", (3, 7, 8), "convolutions of inconsistent shapes"),
    ("cb0", (9,), "convolutions of inconsistent shapes"),
    ("c0", (3, 95, 8), "convolutions of inconsistent shapes"),
    ("w0", (40, len(LABELS)), "layers of inconsistent shapes"),
    ("dilation", (2,), "convolutions longer than the window"),
])
def test_a_tcn_of_wrong_shapes_is_refused_in_one_line(tmp_path: Path, name: str,
                                                      shape: tuple[int, ...], what: str) -> None:
    weights = _exported(tmp_path)
    with np.load(weights) as z:
        arrays = {k: z[k] for k in z.files}
    arrays[name] = np.full(shape, 9 if name == "dilation" else 0.1, arrays[name].dtype)
    np.savez(weights, **arrays)
    card = json.loads(weights.with_suffix(".json").read_text())
    card.pop("weights_sha256")
    weights.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(VoicecoachError) as info:
        load_model(weights)
    line = info.value.one_line()
    assert what in line and "\n" not in line and str(weights) in line


def test_an_unknown_head_is_one_error() -> None:
    x, y = _two_classes(20, 3)
    with pytest.raises(VoicecoachError) as info:
        fit_head(x, y, LABELS, replace(TINY, head=2))
    assert "head" in info.value.one_line()
