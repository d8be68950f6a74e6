"""Augmented training examples: a source clip placed in a scene, embedded, cut into windows.

A scene is the source's speech on a background (room noise of the source's own fold,
synthetic belt noise, or a faint floor), sometimes under the coach's voice, in a room, at a
random level and speaking rate, sometimes shouted into a clipping microphone. The scene is
embedded by the same front end as at run time, and head-sized windows of embeddings are cut
where the label is true: a command phrase just after it ends, "other speech" anywhere in it.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import soxr

from voicecoach.audio.samples import active_bounds, to_float, treadmill_noise
from voicecoach.lab.room import room_response
from voicecoach.lab.training.data import NOISE, OTHER, Source, read_audio
from voicecoach.listening.spotter.features import SAMPLE_RATE, STEP_S, EmbeddingFrontEnd

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the training data and the head; written into the model card."""

    seed: int = 0
    folds: int = 4
    """Cross-validation folds of the speakers who are not locked (see ``data.is_locked``)."""
    window: int = 12
    """Embeddings (80 ms steps) the head sees: 0.96 s of steps, about 1.7 s of audio."""
    real_copies: int = 1
    """Augmented scenes per real clip (copy 0 keeps the clip's speed). One is enough with
    1,400 real speakers, and halves the features' cost."""
    synth_copies: int = 1
    noise_scenes: int = 600
    """Scenes of synthetic noise alone (belt, hum, pink, brown), labelled noise."""
    snr_db: tuple[float, float] = (0.0, 20.0)
    clean_prob: float = 0.25
    coach_prob: float = 0.25
    coach_on_real: bool = False
    """Whether real people's commands are also put under the coach's voice (False: only the
    synthetic ones are; the real clips keep their own recordings' backgrounds plus noise)."""
    """Chance that the coach's voice plays under a command (barge-in)."""
    coach_snr_db: tuple[float, float] = (0.0, 12.0)
    reverb_prob: float = 0.3
    speed: tuple[float, float] = (0.88, 1.12)
    shout_prob: float = 0.1
    level_dbfs: tuple[float, float] = (-38.0, -12.0)
    positive_after_end_s: tuple[float, float] = (-0.04, 0.28)
    """A command's windows end this long after the phrase ends (latency is bought here)."""
    other_windows: int = 4
    sentence_windows: int = 8
    hidden: int = 192
    alpha: float = 1.0
    epochs: int = 40
    batch: int = 256
    learning_rate: float = 0.001
    real_weight: float = 3.0
    balance_power: float = 1.0
    """Class weights are (windows of all classes / windows of the class) to this power."""
    """Each real window counts this many synthetic ones in the loss."""
    synth_engines: tuple[str, ...] = ("piper", "kokoro")
    """Synthetic voice families whose command phrases are trained on, by engine prefix
    (empty: all). With only Piper's command phrases the head learns the voice as much as the
    word (espeak, flite and festival voices say only other speech); () was tried in session 6
    (README, "Measured figures") and not shipped: every command from held-out voices 0.20 ->
    0.46, but later stops, stops lost at the end of a stream, and four times the false stops in
    running talk."""
    synth_negative_engines: tuple[str, ...] = ()
    """Synthetic voice families whose other speech is trained on (empty: all)."""
    talk_minutes: float = 0.0
    """Minutes of running talk per fold trained on (``lab.training.talk_windows``: the fold's
    training voices' sentences, real non-command words and stops, over noise, mixed as the long
    form is); 0: none. Every window of it is "other speech" but those just after a stop.
    0 reproduces the shipped head; 30 was tried in session 8 and not shipped (README, "Measured
    figures": more stops caught in talk, but a coach cue heard as "go", fewer stops verified
    over the coach's voice, and no fewer false commands in the locked long form)."""
    talk_stride: int = 3
    """Every this many steps (80 ms) of the talk a window is taken."""
    talk_weight: float = 1.0
    """Each window of running talk counts this many synthetic ones in the loss."""
    peak_look: int = 0
    """1: a stop candidate looked at while its score still rose is looked at once more at the
    run's peak if rejected (``Decision.peak_look``). Tried in session 9 and not shipped
    (README, "Measured figures"). Not a feature or head setting."""
    relook_after: int = 0
    """Steps (80 ms) after a turned-down stop look at which it is looked at once more
    (``Decision.relook_after``; 0: never). 3 was tried in session 10 (fixed from a look at 300
    dev stop clips under their out-of-fold heads: many looks came before the word had ended)
    and not shipped: the costs then chose stop read anywhere at a higher bar, fewer false stops
    in talk but more stops missed (README, "Measured figures"). Not a feature or head setting."""
    relook_end_s: float = 0.2
    """A turned-down stop candidate is looked at once more this long after its word's end
    (``Decision.relook_end_s``; 0: never). The engine times it from the loudness envelope, which
    the cross-validation's looks do not have, so it is added to the card after every choice and
    measured only through ``listen`` (session 22: 0.2 s, session 21's dev diagnostic, not
    searched). Not a feature or head setting."""
    sure_stop: int = 1
    """1: the second look's choice may add the sure-stop rule (``Decision.sure_stop_threshold``
    and ``sure_stop_bar``, ``second_look.choose_sure_stop``), kept only if it lowers the cost;
    0: never (the card of session 9). Not a feature or head setting."""
    sure_commands: int = 1
    """1: the same for go, yes and no on the spotter's score at the candidate
    (``second_look.choose_sure_commands``; the card's ``verify_sure``); 0: never. Not a feature
    or head setting."""
    head: int = 0
    """0: the one-hidden-layer MLP (``hidden`` units, scikit-learn); 1: the temporal-convolution
    head (``lab.training.tcn``: two kernel-3 convolutions over the window's steps, ``channels``
    wide, the second dilated by ``dilation``, then a dense layer; numpy only). Both use
    ``alpha``, ``epochs``, ``batch``, ``learning_rate`` and the class and row weights alike."""
    channels: int = 96
    """The temporal-convolution head's channels per step (``head = 1`` only)."""
    dilation: int = 2
    """The dilation of its second convolution (``head = 1`` only; 1: none)."""
    speaker_share: float = 1.0
    """The share of the real speakers (not locked) whose clips the heads are trained on, kept by a
    hash of the speaker id (``data.curve_speaker``), so a smaller share is a subset of a larger
    one; every out-of-fold clip is still scored. For a learning curve (session 28); the shipped
    recipe trains on all (1.0). Not a feature setting."""

    def features_key(self) -> dict[str, Any]:
        """The fields that change the cached features (not the head's)."""
        d = asdict(self)
        if not d["coach_on_real"]:
            d.pop("coach_on_real")    # the key of the features made before the field existed
        for key in ("hidden", "alpha", "epochs", "batch", "learning_rate", "folds",
                    "real_weight", "synth_engines", "synth_negative_engines", "balance_power",
                    "talk_minutes", "talk_stride", "talk_weight", "peak_look", "sure_stop",
                    "relook_after", "relook_end_s", "sure_commands", "head", "channels", "dilation",
                    "speaker_share"):
            d.pop(key)
        return d


def rng_for(recipe: Recipe, name: str, copy: int) -> np.random.Generator:
    return np.random.default_rng([recipe.seed, zlib.crc32(name.encode("utf-8")), copy])


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-12))


def _coloured(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    freqs[0] = freqs[1] if n > 1 else 1.0
    out = np.fft.irfft(spectrum / freqs ** (exponent / 2.0), n)
    return (out / (_rms(out))).astype(np.float32)


class Backgrounds:
    """Background audio by fold: real room-noise clips and the coach's sentences."""

    def __init__(self, noise: dict[int, list[np.ndarray]], coach: dict[int, list[np.ndarray]]
                 ) -> None:
        self.noise = noise
        self.coach = coach

    def noise_for(self, fold: int, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` samples of unit-RMS background: a room clip of this fold or synthetic noise."""
        pick = rng.integers(0, 5)
        clips = self.noise.get(fold, [])
        if pick <= 1 and clips:
            clip = clips[rng.integers(0, len(clips))]
            reps = int(np.ceil(n / clip.size)) + 1
            tiled = np.tile(clip, reps)
            start = int(rng.integers(0, tiled.size - n + 1))
            out = tiled[start:start + n]
            return (out / _rms(out)).astype(np.float32)
        if pick == 2:
            return treadmill_noise(n / SAMPLE_RATE, rng)[:n]
        return _coloured(rng, n, float(rng.choice([0.0, 1.0, 2.0])))

    def coach_for(self, fold: int, rng: np.random.Generator) -> np.ndarray | None:
        clips = self.coach.get(fold, [])
        if not clips:
            return None
        return clips[int(rng.integers(0, len(clips)))]


def load_speech(source: Source) -> tuple[np.ndarray, int, int]:
    """The clip as float audio and the sample bounds of its speech."""
    audio = to_float(read_audio(source.path))
    if source.kind == "real_noise":
        return audio, 0, 0
    start, end = active_bounds(audio, threshold_db=-30.0)
    if end <= start:
        start, end = 0, audio.size
    return audio, start, end


def _place(canvas: np.ndarray, clip: np.ndarray, at: int) -> None:
    lo, hi = max(0, at), min(canvas.size, at + clip.size)
    if hi > lo:
        canvas[lo:hi] += clip[lo - at:hi - at]


def scene(source: Source, copy: int, recipe: Recipe, bg: Backgrounds
          ) -> tuple[np.ndarray, float, float]:
    """The augmented scene (float audio) and the speech's start and end in it (seconds)."""
    rng = rng_for(recipe, str(source.path.name) + source.kind, copy)
    audio, start, end = load_speech(source)
    if source.kind == "real_noise":
        lead = bg.noise_for(source.fold, SAMPLE_RATE, rng) * _rms(audio)
        tail = np.tile(audio, 2)
        out = np.concatenate([lead.astype(np.float32), tail])
        return out * float(rng.uniform(0.3, 2.0)), 0.0, 0.0
    if copy > 0 or not source.real:
        factor = float(rng.uniform(*recipe.speed))
        if abs(factor - 1.0) > 1e-3:
            audio = soxr.resample(audio, SAMPLE_RATE, SAMPLE_RATE / factor).astype(np.float32)
            start, end = int(start / factor), int(end / factor)
    if rng.random() < recipe.reverb_prob:
        ir = room_response(float(rng.uniform(0.15, 0.7)), float(rng.uniform(0.0, 10.0)),
                           seed=int(rng.integers(1, 1 << 30)))
        audio = np.convolve(audio, ir)[:audio.size].astype(np.float32)
    speech_rms = _rms(audio[start:end]) if end > start else _rms(audio)
    level = 10.0 ** (float(rng.uniform(*recipe.level_dbfs)) / 20.0)
    audio = audio * (level / speech_rms)
    speech_rms = level
    # Place the speech so that its end leaves room for a full head window before it.
    long_text = source.kind in ("coach", "sentence")
    min_end = (recipe.window + 3) * STEP_S
    lead_s = 0.3 if not long_text else 1.2
    end_s = max(min_end, lead_s + (end - start) / SAMPLE_RATE) + float(rng.uniform(0, STEP_S))
    at = int(end_s * SAMPLE_RATE) - end
    total = int((end_s + 0.45) * SAMPLE_RATE)
    canvas = np.zeros(total, np.float32)
    _place(canvas, audio, at)
    if rng.random() < recipe.clean_prob:
        canvas += rng.standard_normal(total).astype(np.float32) * float(
            10.0 ** (rng.uniform(-75.0, -55.0) / 20.0))
    else:
        snr = float(rng.uniform(*recipe.snr_db))
        canvas += bg.noise_for(source.fold, total, rng) * float(speech_rms / 10.0 ** (snr / 20.0))
    if source.kind in ("real", "positive") and rng.random() < recipe.coach_prob:
        # the draw above is made for real clips either way, so both settings give the same
        # scenes but for the coach's voice
        coach = bg.coach_for(source.fold, rng) if source.kind == "positive" or recipe.coach_on_real \
            else None
        if coach is not None and coach.size:
            ratio = float(rng.uniform(*recipe.coach_snr_db))
            coach = coach * float(speech_rms / 10.0 ** (ratio / 20.0) / _rms(coach))
            _place(canvas, coach, int(rng.integers(-coach.size // 2, max(1, total // 2))))
    if rng.random() < recipe.shout_prob:
        canvas = np.clip(canvas * float(10.0 ** (rng.uniform(10.0, 22.0) / 20.0)), -1.0, 1.0)
    canvas = np.clip(canvas, -1.0, 1.0)
    return canvas, (at + start) / SAMPLE_RATE, (at + end) / SAMPLE_RATE


def window_ends(source: Source, recipe: Recipe, steps: int, start_s: float, end_s: float,
                rng: np.random.Generator) -> list[int]:
    """The steps whose windows are examples of the source's label."""
    first = recipe.window - 1
    times = (np.arange(steps) + 1) * STEP_S
    valid = np.arange(steps) >= first
    if source.label == NOISE:
        pick = np.nonzero(valid)[0]
        return sorted(rng.choice(pick, size=min(4, pick.size), replace=False).tolist())
    if source.label != OTHER:
        lo, hi = recipe.positive_after_end_s
        sel = np.nonzero(valid & (times >= end_s + lo) & (times <= end_s + hi))[0]
        return sel.tolist()
    count = recipe.sentence_windows if source.kind in ("coach", "sentence") else recipe.other_windows
    sel = np.nonzero(valid & (times >= start_s + 0.15) & (times <= end_s + 0.4))[0]
    if sel.size == 0:
        return []
    return sorted(rng.choice(sel, size=min(count, sel.size), replace=False).tolist())


def examples(fe: EmbeddingFrontEnd, source: Source, copy: int, recipe: Recipe,
             bg: Backgrounds) -> tuple[np.ndarray, list[str]]:
    """Windows (n, window, 96) and their labels for one augmented copy of ``source``."""
    audio, start_s, end_s = scene(source, copy, recipe, bg)
    steps = audio.size // 1280
    rng = rng_for(recipe, source.path.name + "/windows", copy)
    ends = window_ends(source, recipe, steps, start_s, end_s, rng)
    if not ends:
        return np.zeros((0, recipe.window, 96), np.float16), []
    first = ends[0] - recipe.window + 1
    emb = fe.embed(audio * 32768.0, first=first, warm=False)
    wins = np.stack([emb[e - first - recipe.window + 1:e - first + 1] for e in ends])
    return wins.astype(np.float16), [source.label] * len(ends)


def noise_scene(index: int, recipe: Recipe) -> np.ndarray:
    """A scene of synthetic noise alone, at a random level."""
    rng = rng_for(recipe, "noise-scene", index)
    n = int((recipe.window + 6) * STEP_S * SAMPLE_RATE)
    kind = index % 4
    if kind == 0:
        x = treadmill_noise(n / SAMPLE_RATE, rng)[:n]
    else:
        x = _coloured(rng, n, float(kind - 1))
    return (x * float(10.0 ** (rng.uniform(-60.0, -15.0) / 20.0))).astype(np.float32)
