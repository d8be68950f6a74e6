"""Acoustic echo cancellation: the coach's own known speech taken out of the microphone signal.

The coach renders its speech and plays the samples itself, so the far-end reference is known
exactly. ``EchoCanceller`` is a partitioned-block frequency-domain NLMS filter (PBFDAF,
overlap-save, gradient-constrained) on 16 kHz mono int16: 256-sample blocks, 512-point FFTs,
``filter_s`` of echo path (default 128 ms = 8 partitions). Numpy only; why not a library:
on PyPI ``speexdsp`` is sdist-only (a swig/C build), ``speexaec``/``webrtc-apm``/
``aec-audio-processing`` have no wheel for this Python, ``speexdsp-aec`` is a month-old ctypes
shim under a proprietary licence. WebRTC's AEC3 (``pywebrtc-audio``) sits beside it behind
one protocol, and the device's default is chosen between them by a benchmark: see
``voicecoach.audio.cancellers``.

Double talk (the user speaking over the coach) must not teach the filter to cancel the user:

* two filters (as speex MDF does): a *background* filter adapts every block; the
  *foreground* filter, whose output is returned, only takes the background's weights when
  its error has been clearly smaller over recent blocks, and the background is reset to the
  foreground when it diverges;
* an energy-ratio double-talk detector: once the canceller has converged (smoothed
  mic/residual energy over the noise floor above ``converged_db``), a block whose residual
  is 5 dB over the noise floor and above both ``dt_ratio`` of the mic energy and 6 dB more
  than the converged ERLE predicts holds the user's voice; adaptation is frozen for it and
  ``hangover`` blocks after. A hold longer than ``dt_max_s`` (an echo path that changed,
  not a user) is released. (A looser test, residual above half the echo estimate from 6 dB
  ERLE on, froze 86 % of the blocks in a quiet room and the filter never converged.)

Treadmill noise is as loud as the coach's echo in the loopback room (-30 vs -29 dBFS), so
a fixed step learns the noise: the step shrinks as the background residual nears the noise
floor (minimum statistics) and weak bins are regularised by the floor and the mean power.

Buffered into fixed blocks, with no added delay (see ``process``), the output does not
depend on how the input is chunked; it is deterministic. While the reference has been
silent for the whole filter span the output is the input and nothing is computed, so idle
listening costs almost nothing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from voicecoach.audio.chunk import SAMPLE_RATE, AudioChunk

if TYPE_CHECKING:
    from voicecoach.audio.cancellers import Canceller

_LOGGER = logging.getLogger(__name__)

BLOCK = 256
#: Minimum statistics under-read the mean noise energy of a block by about this factor.
NOISE_BIAS = 1.5
#: The smallest adaptation step, as a fraction of ``mu``.
MU_MIN = 0.05


class EchoCanceller:
    """Streaming echo canceller: ``process(mic, ref)`` -> mic with the echo of ``ref`` removed
    (the ``voicecoach.audio.cancellers.Canceller`` protocol)."""

    name = "nlms"

    def __init__(self, filter_s: float = 0.128, block: int = BLOCK, mu: float = 0.8,
                 dt_ratio: float = 0.5, converged_db: float = 10.0, hangover: int = 4,
                 dt_max_s: float = 2.0, reg: float = 0.1, noise_reg: float = 4.0,
                 rate: int = SAMPLE_RATE) -> None:
        if filter_s <= 0 or block <= 0 or not 0 < mu <= 1:
            raise ValueError("filter_s and block must be positive, 0 < mu <= 1")
        self.block = block
        self.parts = max(1, math.ceil(filter_s * rate / block))
        self.mu = mu
        self.dt_ratio = dt_ratio
        self.converged = 10.0 ** (converged_db / 10.0)
        self.hangover = hangover
        self.dt_max_blocks = int(dt_max_s * rate / block)
        bins = block + 1
        self._X = np.zeros((self.parts, bins), dtype=np.complex128)
        self._wb = np.zeros((self.parts, bins), dtype=np.complex128)
        self._wf = np.zeros((self.parts, bins), dtype=np.complex128)
        self._px = np.zeros(bins)
        self._x_prev = np.zeros(block)
        self._silent_blocks = self.parts + 1
        self._mic_buf = np.zeros(0)
        self._ref_buf = np.zeros(0)
        self._done = 0  # samples of the block being filled already returned
        self._acc_f = self._acc_b = 0.0
        self._erle = 1.0  # mic / residual energy over the noise floor, reference active
        self._sd_s = self._sf_s = self._sb_s = 0.0
        self._noise = math.inf
        self._dt_hold = 0
        self._dt_run = 0
        #: Blocks processed, blocks with double talk detected, filter copies (diagnostics).
        self.blocks = self.dt_blocks = self.copies = 0
        self.floor = 2.0 * block * 1e-8  # a -80 dBFS reference per bin
        self.noise_reg = noise_reg  # and by the noise floor (times this)
        self.reg = reg  # weak bins are regularised by this fraction of the mean power

    def process(self, mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
        """Cancel the echo of ``ref`` (same length, same time) in ``mic``; int16 in and out.

        No added delay: samples of a block not yet complete are cleaned with the current
        foreground filter (causal, so the block's missing samples do not change them, and
        the filter only changes at block ends): the result is the same for any chunking.
        """
        mic = np.asarray(mic)
        ref = np.asarray(ref)
        if mic.shape != ref.shape or mic.ndim != 1:
            raise ValueError("mic and ref must be 1-D and the same length")
        self._mic_buf = np.concatenate([self._mic_buf, mic.astype(np.float64) / 32768.0])
        self._ref_buf = np.concatenate([self._ref_buf, ref.astype(np.float64) / 32768.0])
        out = []
        b = self.block
        while self._mic_buf.size >= b:
            d, x = self._mic_buf[:b], self._ref_buf[:b]
            self._mic_buf, self._ref_buf = self._mic_buf[b:], self._ref_buf[b:]
            out.append(self._block(d, x)[self._done:])
            self._done = 0
        if self._mic_buf.size > self._done:
            out.append(self._partial()[self._done:])
            self._done = self._mic_buf.size
        flat = np.concatenate(out) if out else np.zeros(0)
        return np.clip(np.round(flat * 32768.0), -32768, 32767).astype(np.int16)

    def _partial(self) -> np.ndarray:
        """The foreground output for the start of a block still being filled."""
        m, b = self._mic_buf.size, self.block
        d, x = self._mic_buf, self._ref_buf
        if self._silent_blocks > self.parts and not x.any():
            return d
        xs = np.concatenate([self._x_prev, x, np.zeros(b - m)])
        y_spec = self._wf[0] * np.fft.rfft(xs) + (self._wf[1:] * self._X[:-1]).sum(axis=0)
        return d - np.fft.irfft(y_spec)[b:b + m]

    # ------------------------------------------------------------------ one block
    def _block(self, d: np.ndarray, x: np.ndarray) -> np.ndarray:
        b = self.block
        if x.any():
            self._silent_blocks = 0
        else:
            self._silent_blocks += 1
            if self._silent_blocks > self.parts:
                # the reference has been silent for the whole filter span: no echo can be
                # in the mic, nothing to learn; the spectra held are all zero
                if self._silent_blocks == self.parts + 1:
                    self._X[:] = 0.0
                self._x_prev = x
                return d
        self.blocks += 1
        self._X = np.roll(self._X, 1, axis=0)
        self._X[0] = np.fft.rfft(np.concatenate([self._x_prev, x]))
        self._x_prev = x
        yf = np.fft.irfft((self._wf * self._X).sum(axis=0))[b:]
        yb = np.fft.irfft((self._wb * self._X).sum(axis=0))[b:]
        ef, eb = d - yf, d - yb
        sd, sf, sb, sy = (float(np.dot(v, v)) for v in (d, ef, eb, yf))
        sx = float(np.dot(x, x))

        # near-end noise floor: minimum statistics of the residual, rising 1.3 dB/s
        self._noise = min(self._noise * 1.005, max(sf, 1e-10 * b))
        nf = NOISE_BIAS * self._noise
        # double-talk detector (energy ratio over the noise floor and the echo estimate),
        # only once the canceller has converged: before that the residual is mostly echo
        talk = self._erle > self.converged and sf > 3.0 * nf \
            and sf > max(self.dt_ratio, 4.0 / self._erle) * sd
        if talk:
            self._dt_hold = self.hangover
        elif self._dt_hold:
            self._dt_hold -= 1
        frozen = self._dt_hold > 0
        self._dt_run = self._dt_run + 1 if frozen else 0
        if self._dt_run > self.dt_max_blocks:  # too long for a user: the echo path changed
            frozen = False
            self._dt_hold = 0
            self._erle = 1.0
        self.dt_blocks += int(frozen)
        if not frozen and sx > 0:
            self._sd_s = 0.9 * self._sd_s + 0.1 * sd
            self._sf_s = 0.9 * self._sf_s + 0.1 * sf
            self._erle = max(self._sd_s - nf, 0.0) / max(self._sf_s - nf, 1e-3 * self._sf_s, 1e-12)

        # background NLMS update (gradient-constrained), frozen in double talk; the step
        # shrinks as the residual nears the noise floor (misadjustment from noise)
        self._sb_s = 0.7 * self._sb_s + 0.3 * sb
        self._px = 0.7 * self._px + 0.3 * (np.abs(self._X) ** 2).sum(axis=0)
        if not frozen:
            step = self.mu * min(1.0, max(MU_MIN, 1.0 - nf / max(self._sb_s, 1e-12)))
            e_spec = np.fft.rfft(np.concatenate([np.zeros(b), eb]))
            norm = self._px + self.reg * float(self._px.mean()) + self.floor \
                + self.noise_reg * self.parts * nf
            grad = np.conj(self._X) * (e_spec / norm)
            g = np.fft.irfft(grad, axis=1)
            g[:, b:] = 0.0
            self._wb += step * np.fft.rfft(g, axis=1)

        # two-path: the foreground takes the background's weights when they are better
        self._acc_f = 0.6 * self._acc_f + sf
        self._acc_b = 0.6 * self._acc_b + sb
        if not frozen and self._acc_b < 0.8 * self._acc_f:
            self._wf = self._wb.copy()
            self._acc_f = self._acc_b
            self.copies += 1
        elif self._acc_b > 4.0 * self._acc_f + 1e-9:
            self._wb = self._wf.copy()
            self._acc_b = self._acc_f
        return ef


class ReferenceCanceller:
    """Cleans microphone chunks against ``reference(start_s, end_s)`` -> int16 played then.

    ``reference`` gives what the speaker played over the chunk's span of audio time (the
    same clock as the chunks); the canceller finds the echo path's delay within its filter.
    """

    def __init__(self, reference: Callable[[float, float], np.ndarray],
                 canceller: Canceller | None = None) -> None:
        self.reference = reference
        self.canceller: Canceller = canceller or EchoCanceller()

    def __call__(self, chunk: AudioChunk) -> AudioChunk:
        mic = np.frombuffer(chunk.audio, dtype="<i2")
        ref = np.asarray(self.reference(chunk.start_s, chunk.end_s))
        if ref.size != mic.size:  # rounding of the span: pad or trim to the chunk
            ref = np.concatenate([ref[:mic.size], np.zeros(max(0, mic.size - ref.size),
                                                           dtype=ref.dtype)])
        if ref.dtype != np.int16:
            ref = np.clip(np.round(ref.astype(np.float64) * 32768.0), -32768, 32767)
        out = self.canceller.process(mic, ref.astype(np.int16))
        return replace(chunk, audio=out.astype("<i2").tobytes())


def erle_db(mic: np.ndarray, out: np.ndarray) -> float:
    """Echo return loss enhancement: 10*log10(mic energy / output energy), in dB."""
    m = np.asarray(mic, dtype=np.float64)
    o = np.asarray(out, dtype=np.float64)
    return 10.0 * math.log10(max(float(np.dot(m, m)), 1e-12) / max(float(np.dot(o, o)), 1e-12))
