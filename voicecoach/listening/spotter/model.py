"""The trained head: weights and model card inside the package, checked against the grammar.

The weights are a plain ``.npz`` of arrays (never a pickle): feature mean and scale (one per
window position and dimension), then either the layers of a small ReLU network (``w{i}``,
``b{i}``) or, for the temporal-convolution head, its convolutions over the window's steps
(``c{i}`` of shape (kernel, in, out), ``cb{i}``, ``dilation``) followed by its dense layer;
the model card (``.json`` beside it) holds the class labels, the recipe and seed, the decision
settings chosen by cross-validation, the figures, and a hash of the grammar phrases it was
trained for.

An ensemble (card ``"members": N``) holds N such heads, trained with different seeds: the
first one's arrays named as above, member ``j``'s with the prefix ``m{j}_``. Its
probabilities are the members' averaged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from voicecoach.errors import VoicecoachError
from voicecoach.grammar import Grammar
from voicecoach.listening.spotter.decide import Decision

_LOGGER = logging.getLogger(__name__)

MODEL_NAME = "en_commands"
MODEL_ENV = "VOICECOACH_SPOTTER_MODEL"
FORMAT_VERSION = 1
NOISE, OTHER = "_noise_", "_other_"
RETRAIN = ("retrain it: python -m voicecoach.lab.training.train "
           "(see voicecoach/listening/spotter/MODEL_CARD.md)")


def member_prefix(j: int) -> str:
    """The prefix of ensemble member ``j``'s arrays in the weights file (none for the first)."""
    return f"m{j}_" if j else ""


def member_name(name: str) -> tuple[int, str]:
    """An array's ensemble member and its name within that member (``member_prefix``'s inverse)."""
    prefix, sep, rest = name.partition("_")
    if sep and prefix[:1] == "m" and prefix[1:].isdigit():
        return int(prefix[1:]), rest
    return 0, name


def numbered(arrays: dict[str, np.ndarray], letter: str) -> int:
    """How many of ``arrays`` are ``{letter}0``, ``{letter}1``, ...: a head's dense layers
    (``w``) or convolutions (``c``); an ensemble's other members' prefixed arrays not counted."""
    return sum(1 for name in arrays if name[:1] == letter and name[1:].isdigit())


def split_members(arrays: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The weights file's arrays, one dict per ensemble member (one for a single head)."""
    members: dict[int, dict[str, np.ndarray]] = {}
    for name, array in arrays.items():
        j, rest = member_name(name)
        members.setdefault(j, {})[rest] = array
    return [members[j] for j in sorted(members)]


def join_members(heads: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """One weights dict holding ``heads`` as ensemble members (``split_members``'s inverse)."""
    return {member_prefix(j) + name: array for j, head in enumerate(heads)
            for name, array in head.items()}


def phrases_of(grammar: Grammar) -> dict[str, list[str]]:
    """Command -> phrases, in grammar order: what a model is trained for."""
    return {cmd: list(phrases) for cmd, phrases in grammar.phrases.items()}


def phrase_hash(phrases: dict[str, list[str]]) -> str:
    """A short hash of the command phrases (order-insensitive)."""
    canon = json.dumps({c: sorted(p) for c, p in sorted(phrases.items())}, sort_keys=True)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()[:16]


def builtin_paths() -> tuple[Path, Path]:
    """The packaged weights and model card."""
    base = resources.files("voicecoach.listening.spotter")
    return (Path(str(base.joinpath(f"{MODEL_NAME}.npz"))),
            Path(str(base.joinpath(f"{MODEL_NAME}.json"))))


@dataclass
class SpotterModel:
    """Head weights, class labels and the card's decision settings."""

    labels: list[str]
    layers: list[tuple[np.ndarray, np.ndarray]]
    mean: np.ndarray
    scale: np.ndarray
    card: dict[str, Any]
    path: Path
    convs: list[tuple[np.ndarray, np.ndarray, int]] = field(default_factory=list)
    """The temporal-convolution head's convolutions (kernel (k, in, out), bias, dilation),
    applied over the window's steps before ``layers``; empty for the MLP."""
    others: list[SpotterModel] = field(default_factory=list)
    """An ensemble's other members (same labels, window and card), averaged with this one."""

    @property
    def window(self) -> int:
        return int(self.card["recipe"]["window"])

    @property
    def decision(self) -> dict[str, Any]:
        return dict(self.card["decision"])

    @property
    def members(self) -> int:
        return 1 + len(self.others)

    def probabilities(self, windows: np.ndarray) -> np.ndarray:
        """(n, window, 96) embedding windows -> (n, classes) probabilities (an ensemble's
        members' averaged)."""
        probs = self._own_probabilities(windows)
        for other in self.others:
            probs = probs + other._own_probabilities(windows)
        return probs / self.members if self.others else probs

    def _own_probabilities(self, windows: np.ndarray) -> np.ndarray:
        x = windows.reshape(len(windows), -1).astype(np.float32)
        x = (x - self.mean) / self.scale
        if self.convs:
            h = x.reshape(len(x), self.window, -1)
            for kernel, bias, dilation in self.convs:
                steps = h.shape[1] - (kernel.shape[0] - 1) * dilation
                acc = np.broadcast_to(bias, (len(h), steps, bias.size)).copy()
                for j in range(kernel.shape[0]):
                    tap = h[:, j * dilation:j * dilation + steps].reshape(-1, h.shape[2])
                    acc += (tap @ kernel[j]).reshape(acc.shape)
                h = np.maximum(acc, 0.0)
            x = h.reshape(len(h), -1)
        for w, b in self.layers[:-1]:
            x = np.maximum(x @ w + b, 0.0)
        w, b = self.layers[-1]
        z = x @ w + b
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def check_grammar(self, grammar: Grammar) -> None:
        """One clear error when the model was trained for other phrases than ``grammar``'s."""
        wanted = phrases_of(grammar)
        have = set(self.labels)
        for cmd, phrases in wanted.items():
            for phrase in phrases:
                if phrase not in have:
                    raise VoicecoachError(
                        f"the command spotter {self.path.name} has no class for the phrase "
                        f"'{phrase}' of command '{cmd}' (the grammar changed since it was "
                        "trained)", RETRAIN)
        trained = self.card.get("phrases", {})
        for cmd, phrases in trained.items():
            if wanted.get(cmd) is None or sorted(wanted[cmd]) != sorted(phrases):
                raise VoicecoachError(
                    f"the command spotter {self.path.name} was trained for other phrases of "
                    f"command '{cmd}' than the grammar has", RETRAIN)
        if self.card.get("phrase_hash") != phrase_hash(wanted):
            raise VoicecoachError(f"the command spotter {self.path.name} was trained for "
                                  "other grammar phrases", RETRAIN)


def _bad_model(path: Path, what: str, own: bool = False) -> VoicecoachError:
    """One error for damaged weights or card; ``own``: a model $VOICECOACH_SPOTTER_MODEL
    pointed at (its fix is retraining it or unsetting the variable, not reinstalling)."""
    if own:
        return VoicecoachError(f"the command spotter weights {path} {what}",
                               f"{RETRAIN}, or unset {MODEL_ENV} to use the shipped weights")
    return VoicecoachError(f"the command spotter weights {path} {what}",
                           "reinstall voicecoach (pip install --force-reinstall voicecoach) or "
                           + RETRAIN)


def read_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """Every array of an ``.npz`` file (no pickles), or None if it is not a readable one."""
    try:
        with path.open("rb") as fh, np.load(fh, allow_pickle=False) as npz:
            return {k: np.asarray(npz[k]) for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return None


def load_model(weights: Path | None = None, card: Path | None = None) -> SpotterModel:
    """Load and check the weights (``weights``, else $VOICECOACH_SPOTTER_MODEL, else the
    packaged ones); every problem is one :class:`VoicecoachError`."""
    default_w, default_c = builtin_paths()
    env = os.environ.get(MODEL_ENV)
    from_env = weights is None and bool(env)
    weights = weights or (Path(env).expanduser() if env else default_w)
    if card is None:
        card = default_c if weights == default_w else weights.with_suffix(".json")
    own = from_env and weights != default_w  # the variable's model: its fix is not a reinstall
    if own and not weights.is_file():
        raise VoicecoachError(
            f"{MODEL_ENV} = {env}: {'not a file' if weights.exists() else 'no such file'}",
            f"point {MODEL_ENV} at a retrained en_commands.npz (with its .json card beside "
            "it), or unset it to use the shipped weights")

    def _bad(path: Path, what: str) -> VoicecoachError:
        return _bad_model(path, what, own)

    if not weights.is_file():
        raise _bad(weights, "are missing")
    if not card.is_file():
        raise _bad(card, "(model card) is missing")
    try:
        meta = json.loads(card.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        raise _bad(card, "(model card) is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        raise _bad(card, f"(model card) is not format {FORMAT_VERSION}")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    if meta.get("weights_sha256") not in (None, digest):
        raise _bad(weights, "do not match their model card (sha256 differs): corrupt or replaced")
    arrays = read_arrays(weights)
    if arrays is None:
        raise _bad(weights, "are corrupt (not a readable .npz)")
    for name, array in arrays.items():
        if np.issubdtype(array.dtype, np.number) and not np.all(np.isfinite(array)):
            raise _bad(weights, f"hold values that are not finite numbers (NaN or infinity) "
                       f"in '{name}': the spotter would hear nothing")
    try:
        labels = [str(x) for x in meta["labels"]]
        n_layers = int(meta["layers"])
        window = int(meta["recipe"]["window"])
        dict(meta["decision"])
        n_members = int(meta.get("members", 1))
    except (KeyError, TypeError, ValueError):
        raise _bad(weights, "lack a field the spotter needs") from None
    try:
        decision = Decision.from_card(meta["decision"])
    except (KeyError, TypeError, ValueError) as exc:
        raise _bad(card, f"(model card) has a decision setting that is missing or not a "
                   f"number ({type(exc).__name__}: {exc})") from None
    problem = decision.problem()
    if problem is not None:
        raise _bad(card, f"(model card) has a decision setting out of range: {problem}")
    heads = split_members(arrays)
    if n_members < 1 or len(heads) != n_members:
        raise _bad(weights, f"hold {len(heads)} head(s) where their card says {n_members}")
    models = []
    for j, head in enumerate(heads):
        if j:
            n_layers = numbered(head, "w")
        models.append(_member(head, n_layers, labels, window, meta, weights, _bad))
    first = models[0]
    if any(m.mean.shape != first.mean.shape for m in models[1:]):
        raise _bad(weights, "hold ensemble members of different window sizes")
    first.others = models[1:]
    return first


def _member(arrays: dict[str, np.ndarray], n_layers: int, labels: list[str], window: int,
            meta: dict[str, Any], weights: Path, _bad: Any) -> SpotterModel:
    """One head of the weights file, checked for shape against the labels and window."""
    try:
        layers = [(arrays[f"w{i}"].astype(np.float32), arrays[f"b{i}"].astype(np.float32))
                  for i in range(n_layers)]
        mean, scale = arrays["mean"].astype(np.float32), arrays["scale"].astype(np.float32)
        n_convs = numbered(arrays, "c")
        kernels = [(arrays[f"c{i}"].astype(np.float32), arrays[f"cb{i}"].astype(np.float32))
                   for i in range(n_convs)]
        dilations = [int(d) for d in arrays["dilation"]] if n_convs else []
    except (KeyError, TypeError, ValueError):
        raise _bad(weights, "lack a field the spotter needs") from None
    dims = mean.size
    if n_convs:
        if len(dilations) != n_convs or min(dilations) < 1 or window < 1 \
                or mean.size % window:
            raise _bad(weights, "have convolutions of inconsistent shapes")
        steps, dims = window, mean.size // window
        for (kernel, bias), dilation in zip(kernels, dilations, strict=True):
            if kernel.ndim != 3 or kernel.shape[1] != dims or bias.shape != (kernel.shape[2],):
                raise _bad(weights, "have convolutions of inconsistent shapes")
            steps -= (kernel.shape[0] - 1) * dilation
            dims = kernel.shape[2]
        if steps < 1:
            raise _bad(weights, "have convolutions longer than the window")
        dims *= steps
    for w, b in layers:
        if w.ndim != 2 or w.shape[0] != dims or b.shape != (w.shape[1],):
            raise _bad(weights, "have layers of inconsistent shapes")
        dims = w.shape[1]
    if dims != len(labels) or scale.shape != mean.shape:
        raise _bad(weights, "do not match the labels of their card")
    return SpotterModel(labels, layers, mean, scale, meta, weights,
                        [(k, b, d) for (k, b), d in zip(kernels, dilations, strict=True)])
