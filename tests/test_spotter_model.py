"""Loading the spotter's weights: the packaged model, and every way a weights file can be bad."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from voicecoach.errors import VoicecoachError
from voicecoach.grammar import load_grammar, parse_grammar
from voicecoach.lab.training.card import export
from voicecoach.lab.training.examples import Recipe
from voicecoach.lab.training.head import labels_for
from voicecoach.listening.spotter.decide import Decision
from voicecoach.listening.spotter.model import MODEL_ENV, builtin_paths, load_model, phrase_hash, phrases_of

GRAMMAR = load_grammar("en")


def tiny_model(folder: Path, labels: list[str] | None = None) -> Path:
    """A random head exported by the training code (window 12, 8 hidden units)."""
    labels = labels or labels_for(GRAMMAR)
    rng = np.random.default_rng(0)
    dims = 12 * 96
    head = {"mean": np.zeros(dims, np.float32), "scale": np.ones(dims, np.float32),
            "w0": rng.standard_normal((dims, 8)).astype(np.float32) * 0.01,
            "b0": np.zeros(8, np.float32),
            "w1": rng.standard_normal((8, len(labels))).astype(np.float32),
            "b1": np.zeros(len(labels), np.float32)}
    export(folder, head, labels, GRAMMAR, Recipe(), Decision(0.9, 0.9), {"summary": "test"}, {})
    return folder / "en_commands.npz"


def test_the_packaged_model_loads_and_fits_the_grammar() -> None:
    weights, card = builtin_paths()
    assert weights.is_file() and card.is_file(), "the package must ship its weights and card"
    model = load_model()
    model.check_grammar(GRAMMAR)
    meta = json.loads(card.read_text())
    assert meta["phrase_hash"] == phrase_hash(phrases_of(GRAMMAR))
    assert weights.stat().st_size < 2_000_000, "weights should stay a few hundred KB"
    probs = model.probabilities(np.zeros((3, model.window, 96), np.float32))
    assert probs.shape == (3, len(model.labels))
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_round_trip_of_an_exported_model(tmp_path: Path) -> None:
    model = load_model(tiny_model(tmp_path))
    assert model.window == 12 and model.labels[:2] == ["_noise_", "_other_"]
    model.check_grammar(GRAMMAR)


def _err(path: Path) -> str:
    with pytest.raises(VoicecoachError) as info:
        load_model(path)
    return info.value.message


def test_missing_weights(tmp_path: Path) -> None:
    assert "missing" in _err(tmp_path / "nothing.npz")


def test_corrupt_weights(tmp_path: Path) -> None:
    weights = tiny_model(tmp_path)
    weights.write_bytes(b"PK\x03\x04 this is not a zip file")
    assert "do not match their model card" in _err(weights)
    card = json.loads(weights.with_suffix(".json").read_text())
    card.pop("weights_sha256")
    weights.with_suffix(".json").write_text(json.dumps(card))
    assert "corrupt" in _err(weights)


def test_corrupt_card(tmp_path: Path) -> None:
    weights = tiny_model(tmp_path)
    weights.with_suffix(".json").write_text("{not json")
    assert "not valid JSON" in _err(weights)


def test_weights_for_other_phrases_name_the_command(tmp_path: Path) -> None:
    data = json.loads(GRAMMAR.path.read_text()) if GRAMMAR.path else {}
    data["commands"]["faster"]["phrases"].append("quicker")
    changed = parse_grammar(data, tmp_path / "en.json")
    model = load_model(tiny_model(tmp_path))
    with pytest.raises(VoicecoachError) as info:
        model.check_grammar(changed)
    assert "'quicker'" in info.value.message and "'faster'" in info.value.message
    assert "retrain" in (info.value.hint or "")
    # a model trained for phrases the grammar no longer has
    labels = labels_for(GRAMMAR) + ["go faster"]
    other = load_model(tiny_model(tmp_path / "other", labels))
    card = other.card
    card["phrases"] = {**card["phrases"], "faster": ["faster", "speed up", "go faster"]}
    with pytest.raises(VoicecoachError) as info:
        replace(other, card=card).check_grammar(GRAMMAR)
    assert "'faster'" in info.value.message


def test_listen_with_bad_weights_is_one_line(tmp_path: Path) -> None:
    weights = tiny_model(tmp_path)
    weights.write_bytes(b"garbage")
    env = {"VOICECOACH_HOME": str(tmp_path / "home"), MODEL_ENV: str(weights),
           "PATH": "/usr/bin:/bin"}
    clip = Path(__file__).resolve().parent.parent / "audio_fixtures/commands/joe/normal/stop__stop.wav"
    proc = subprocess.run([sys.executable, "-m", "voicecoach", "listen", "--engine", "spotter",
                           str(clip)], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "spotter" in lines[0] and "weights" in lines[0]
