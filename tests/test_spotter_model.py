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
from voicecoach.lab.training.head import head_probs, labels_for
from voicecoach.listening.spotter.decide import Decision
from voicecoach.listening.spotter.model import (
    MODEL_ENV,
    builtin_paths,
    join_members,
    load_model,
    phrase_hash,
    phrases_of,
    split_members,
)

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


def _listen_with(tmp_path: Path, weights: Path) -> subprocess.CompletedProcess[str]:
    """`voicecoach listen` on a fixture stop with $VOICECOACH_SPOTTER_MODEL at ``weights``, as a
    user runs it (a child process)."""
    env = {"VOICECOACH_HOME": str(tmp_path / "home"), MODEL_ENV: str(weights),
           "PATH": "/usr/bin:/bin"}
    clip = Path(__file__).resolve().parent.parent / "audio_fixtures/commands/joe/normal/stop__stop.wav"
    return subprocess.run([sys.executable, "-m", "voicecoach", "listen", "--engine", "spotter",
                           str(clip)], capture_output=True, text=True, env=env, check=False)


def test_listen_with_bad_weights_is_one_line(tmp_path: Path) -> None:
    weights = tiny_model(tmp_path)
    weights.write_bytes(b"garbage")
    proc = _listen_with(tmp_path, weights)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "spotter" in lines[0] and "weights" in lines[0]


def _random_head(seed: int, labels: list[str], hidden: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    dims = 12 * 96
    return {"mean": rng.standard_normal(dims).astype(np.float32),
            "scale": (1.0 + rng.random(dims)).astype(np.float32),
            "w0": rng.standard_normal((dims, hidden)).astype(np.float32) * 0.05,
            "b0": rng.standard_normal(hidden).astype(np.float32),
            "w1": rng.standard_normal((hidden, len(labels))).astype(np.float32),
            "b1": rng.standard_normal(len(labels)).astype(np.float32)}


def test_an_ensemble_averages_its_members_probabilities(tmp_path: Path) -> None:
    labels = labels_for(GRAMMAR)
    heads = [_random_head(1, labels), _random_head(2, labels, hidden=5)]
    for j, head in enumerate(heads):
        export(tmp_path / f"single{j}", head, labels, GRAMMAR, Recipe(), Decision(0.9, 0.9),
               {"summary": "test"}, {})
    export(tmp_path / "both", join_members(heads), labels, GRAMMAR, Recipe(), Decision(0.9, 0.9),
           {"summary": "test"}, {"member_seeds": [0, 1]})
    singles = [load_model(tmp_path / f"single{j}" / "en_commands.npz") for j in range(2)]
    both = load_model(tmp_path / "both" / "en_commands.npz")
    assert both.members == 2 and singles[0].members == 1 and both.card["members"] == 2
    x = np.random.default_rng(3).standard_normal((4, 12, 96)).astype(np.float32)
    a, b = (m.probabilities(x) for m in singles)
    assert not np.allclose(a, b, atol=1e-3), "the two members must differ for the test to mean much"
    assert np.allclose(both.probabilities(x), (a + b) / 2, atol=1e-6)
    # the lab's forward pass (what cross-validation scores) is the run time's
    lab_head = split_members(dict(np.load(tmp_path / "both" / "en_commands.npz")))
    assert np.allclose(head_probs(join_members(lab_head), x), both.probabilities(x), atol=1e-5)
    assert "An ensemble of 2 such heads" in (tmp_path / "both" / "MODEL_CARD.md").read_text()


def test_an_ensemble_missing_a_member_is_one_clear_error(tmp_path: Path) -> None:
    labels = labels_for(GRAMMAR)
    heads = [_random_head(1, labels), _random_head(2, labels)]
    export(tmp_path, join_members(heads), labels, GRAMMAR, Recipe(), Decision(0.9, 0.9),
           {"summary": "test"}, {})
    card = json.loads((tmp_path / "en_commands.json").read_text())
    card["members"] = 3
    (tmp_path / "en_commands.json").write_text(json.dumps(card))
    assert "hold 2 head(s) where their card says 3" in _err(tmp_path / "en_commands.npz")
    heads[1]["w0"] = heads[1]["w0"][:-96]           # a member for another window
    export(tmp_path, join_members(heads), labels, GRAMMAR, Recipe(), Decision(0.9, 0.9),
           {"summary": "test"}, {})
    assert "inconsistent shapes" in _err(tmp_path / "en_commands.npz")


def test_listen_says_it_runs_an_ensemble_and_hears_through_it(tmp_path: Path) -> None:
    """A user's ensemble (two seeds' heads) through the real CLI: loaded, named, run."""
    labels = labels_for(GRAMMAR)
    export(tmp_path, join_members([_random_head(1, labels), _random_head(2, labels)]), labels,
           GRAMMAR, Recipe(), Decision(0.9, 0.9), {"summary": "test"}, {"member_seeds": [0, 1]})
    env = {"VOICECOACH_HOME": str(tmp_path / "home"), MODEL_ENV: str(tmp_path / "en_commands.npz"),
           "PATH": "/usr/bin:/bin"}
    clip = Path(__file__).resolve().parent.parent / "audio_fixtures/commands/joe/normal/stop__stop.wav"
    proc = subprocess.run([sys.executable, "-m", "voicecoach", "listen", "--engine", "spotter",
                           "--json", str(clip)], capture_output=True, text=True, env=env,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert "2 trained heads averaged" in proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["audio_s"] > 0.5


@pytest.mark.parametrize(("field", "value", "said"), [
    ("relook_end_s", "abc", "not a number"),
    ("relook_end_s", -1, "relook_end_s is -1.0"),
    ("stop_threshold", 1.5, "stop_threshold is 1.5"),
    ("stop_threshold", None, "not a number"),
    ("smooth", 0, "smooth and confirm"),
])
def test_a_card_with_a_bad_decision_setting_is_one_line_naming_it(
        tmp_path: Path, field: str, value: object, said: str) -> None:
    """A hand-edited or damaged decision in the card: one line naming the setting, through
    listen as a user meets it (before, a ValueError's traceback, or a threshold no score can
    reach: a stop never heard)."""
    weights = tiny_model(tmp_path)
    card = json.loads(weights.with_suffix(".json").read_text())
    card["decision"][field] = value
    weights.with_suffix(".json").write_text(json.dumps(card))
    assert said in _err(weights) and "model card" in _err(weights)
    proc = _listen_with(tmp_path, weights)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr and said in lines[0], proc.stderr
