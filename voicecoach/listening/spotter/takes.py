"""Enrollment takes: a take is checked before it is used (something said, loud enough, not
clipped, not too short or long, speech rather than noise), with the reason when it is not."""

from __future__ import annotations

import logging

import numpy as np

from voicecoach.audio.samples import active_bounds
from voicecoach.errors import VoicecoachError
from voicecoach.listening.spotter.features import SAMPLE_RATE

_LOGGER = logging.getLogger(__name__)

MIN_SPEECH_S = 0.15
MAX_SPEECH_S = 3.0
MAX_TAKE_S = 8.0
MIN_TAKE_S = 0.3
QUIET_DBFS = -45.0
CLIP_LEVEL = 32000
CLIP_FRACTION = 0.01
#: A take whose speech probability (WebRTC's voice detector, the mean of its 10 best 10 ms
#: frames) stays under this holds no speech. Measured: belt and white noise 0.29-0.35 at any
#: level; 100 real Speech Commands clips of stop/go/yes/no 0.77 at the lowest; the fixture
#: voices' go/no 0.75 and up. (pymicro-vad was tried first: its probability for a short "no"
#: or "go" is as low as for noise, 0.03-0.05.)
NO_SPEECH_PROB = 0.5


class TakeRejected(VoicecoachError):
    """A take that cannot be used, and why (the flow asks again)."""


def speech_bounds(samples: np.ndarray) -> tuple[float, float]:
    """Start and end (seconds) of the speech in a take: the part within 30 dB of its loudest
    10 ms (the training convention)."""
    start, end = active_bounds(samples, threshold_db=-30.0)
    return start / SAMPLE_RATE, end / SAMPLE_RATE


def speech_probability(samples: np.ndarray) -> float | None:
    """How surely the take holds speech (0..1): WebRTC's voice detector (``pywebrtc-audio``)
    over the take heard twice (the first pass settles its noise estimate), the mean of its 10
    most speech-like 10 ms frames; None when the library cannot be used."""
    try:
        from pywebrtc_audio import VoiceDetector

        detector = VoiceDetector(sample_rate=SAMPLE_RATE)
        x = np.asarray(samples, np.int16)
        x = np.concatenate([x, x])
        probs = np.array([detector.process(x[i:i + 160]) for i in range(0, x.size - 159, 160)])
    except Exception as exc:  # noqa: BLE001 - missing, or a foreign extension failing
        _LOGGER.warning("voice activity: pywebrtc-audio cannot be used (%s); takes are not "
                        "checked for speech", exc)
        return None
    if probs.size == 0:
        return 0.0
    return float(np.sort(probs)[-10:].mean())


def check_take(samples: np.ndarray) -> tuple[float, float]:
    """The speech bounds of a usable take; :class:`TakeRejected` saying why otherwise."""
    x = np.asarray(samples)
    seconds = x.size / SAMPLE_RATE
    if seconds < MIN_TAKE_S:
        raise TakeRejected(f"the take is too short ({seconds:.2f} s)",
                           "say the whole command, then pause")
    if seconds > MAX_TAKE_S:
        raise TakeRejected(f"the take is too long ({seconds:.1f} s)",
                           f"say only the command (takes of at most {MAX_TAKE_S:.0f} s)")
    f = x.astype(np.float64) / 32768.0
    frame = 160
    n = f.size // frame
    energy = (f[:n * frame].reshape(n, frame) ** 2).mean(axis=1)
    peak_db = 10.0 * np.log10(float(energy.max()) + 1e-12)
    if peak_db < QUIET_DBFS:
        raise TakeRejected(f"nothing was said, or too quietly (loudest {peak_db:.0f} dBFS)",
                           "speak up or move closer to the microphone")
    clipped = float(np.mean(np.abs(x.astype(np.int32)) >= CLIP_LEVEL))
    if clipped > CLIP_FRACTION:
        raise TakeRejected(f"the take is clipped ({100 * clipped:.1f} % of samples at full "
                           "scale)", "speak a little softer or turn the microphone gain down")
    prob = speech_probability(x)
    if prob is not None and prob < NO_SPEECH_PROB:
        raise TakeRejected(f"no speech in the take, only sound or noise (voice activity "
                           f"{prob:.2f})", "say the command in a quieter moment, closer to "
                           "the microphone")
    start, end = speech_bounds(x)
    if end - start < MIN_SPEECH_S:
        raise TakeRejected(f"the take holds only a click ({end - start:.2f} s of sound)",
                           "say the whole command")
    if end - start > MAX_SPEECH_S:
        raise TakeRejected(f"the take holds {end - start:.1f} s of sound, more than one "
                           "command", "say only the command, in a quiet moment")
    return start, end
