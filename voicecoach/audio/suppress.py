"""Residual echo suppression after a linear canceller: the coach's leftover echo turned down.

A linear echo canceller (voicecoach.audio.aec) converges over seconds and does not span a
reverberant tail: the first seconds of the coach's speech come back into what the recogniser
hears a few dB under the user's voice, and the spotter's second look (Whisper) then reads the
coach's words before the user's "stop". This post-filter needs no converged filter: per
frequency bin it fits how the canceller's output power follows the reference's recent power
(``|E(k,t)|^2 ~ a(k) + c(k) * R(k,t)``, R the reference power leaky-summed over a
reverberant tail), by exponentially weighted least squares over about ``fit_s`` of the coach's
speech. The user's voice is uncorrelated with the reference, so it goes into the intercept
and the noise of the fit, not into the coupling ``c``; where ``c * R`` is most of a bin's
power the bin is turned down (Wiener-like gain ``1 - beta * c R / |E|^2``, at least
``floor``), where the user (or the belt) is much louder than the predicted echo it passes.

A short-time Fourier transform of 256-sample frames, hop 128 (square-root Hann windows,
overlap-add: perfect reconstruction at unit gain). It delays its output by :data:`DELAY`
samples (16 ms) and returns as many samples as came in, so the result does not depend on how
the input is chunked (given a first chunk of at least :data:`DELAY` samples); the first
:data:`DELAY` samples out are the first heard, time-reversed: a stream that opens on digital
zeros deafened pocketsphinx for a whole session. While the reference has been silent
longer than the tail, no transform is computed: idle listening costs almost nothing.
"""

from __future__ import annotations

import logging

import numpy as np

from voicecoach.audio.cancellers import Canceller
from voicecoach.audio.chunk import SAMPLE_RATE

_LOGGER = logging.getLogger(__name__)

FRAME = 256
HOP = 128
#: Output delay (samples): a frame, so that any chunking gives the same samples.
DELAY = FRAME
#: The reference's power is leaky-summed with this time constant (a treadmill room's tail).
TAIL_S = 0.1
#: The fit's correlation from which the echo estimate counts at all, and in full. Over about
#: 75 independent frames a fit to noise alone has a correlation of about +-0.12: at 0.2 some
#: bins were turned down at random in a room with no echo, and pocketsphinx heard a stop in
#: the belt noise.
RHO_MIN = 0.35
RHO_FULL = 0.6
SMOOTH = np.array([0.25, 0.5, 0.25])
#: Frames of the coach's speech fitted before any suppression (a correlation over a handful
#: of frames is anything up to 1).
MIN_FIT = 30
#: A reference frame quieter than this (power per bin, int16 scale squared) is silence.
SILENT = 1e-2


class ResidualSuppressor:
    """``inner``'s output with the echo it left turned down (the Canceller protocol)."""

    def __init__(self, inner: Canceller, *, beta: float = 1.5, floor: float = 0.1,
                 fit_s: float = 0.6, tail_s: float = TAIL_S, rate: int = SAMPLE_RATE) -> None:
        if not 0 < floor <= 1 or beta < 0 or fit_s <= 0 or tail_s <= 0:
            raise ValueError("0 < floor <= 1, beta >= 0, fit_s and tail_s > 0")
        self.inner = inner
        self.name = inner.name  # the configured canceller, with its post-filter
        self.beta = beta
        self.floor = floor
        self._alpha = min(1.0, HOP / (fit_s * rate))
        self._decay = float(np.exp(-HOP / (tail_s * rate)))
        self._quiet_frames = int(np.ceil(5 * tail_s * rate / HOP))  # the tail 40 dB down
        window = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(FRAME) / FRAME))
        self._win = window  # analysis and synthesis: squared windows sum to 1 at hop FRAME/2
        self._win2 = window * window
        bins = FRAME // 2 + 1
        self._r = np.zeros(bins)
        self._mr = np.zeros(bins)
        self._me = np.zeros(bins)
        self._mrr = np.zeros(bins)
        self._mer = np.zeros(bins)
        self._mee = np.zeros(bins)
        self._fitted = 0.0  # weight of the fit so far (0: nothing learnt)
        self._fit_frames = 0
        self._e = np.zeros(FRAME - HOP)  # the frame's first half: the previous hop
        self._x = np.zeros(FRAME - HOP)
        self._pend_e = np.zeros(0)
        self._pend_x = np.zeros(0)
        self._ola = np.zeros(FRAME)
        # output made but not yet returned (None: nothing heard yet, see process)
        self._out: np.ndarray | None = None
        self._silent = self._quiet_frames + 1
        #: Frames transformed and the mean gain applied in them (diagnostics).
        self.frames = 0
        self.gain_sum = 0.0

    def process(self, mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
        """As ``inner.process``; the result :data:`DELAY` samples late (int16)."""
        clean = np.asarray(self.inner.process(mic, ref), dtype=np.float64)
        ref = np.asarray(ref, dtype=np.float64)
        if clean.shape != ref.shape:
            raise ValueError("the inner canceller returned another number of samples")
        if self._out is None:
            # the first DELAY samples out: the first heard, time-reversed, not digital zeros
            # (pocketsphinx's channel estimate never recovered from 16 ms of zeros at the
            # start of a stream)
            if not clean.size:
                return np.zeros(0, np.int16)
            lead = np.resize(clean[:DELAY][::-1], DELAY)
            self._out, self._e = lead[:HOP], lead[HOP:]
            self._ola[:HOP] = lead[HOP:] * self._win2[HOP:]  # as if framed at unit gain
        self._pend_e = np.concatenate([self._pend_e, clean])
        self._pend_x = np.concatenate([self._pend_x, ref])
        made = [self._out]
        while self._pend_e.size >= HOP:
            e, x = self._pend_e[:HOP], self._pend_x[:HOP]
            self._pend_e, self._pend_x = self._pend_e[HOP:], self._pend_x[HOP:]
            made.append(self._hop(e, x))
        out = np.concatenate(made)
        n = clean.size
        self._out = out[n:]
        return np.clip(np.round(out[:n]), -32768, 32767).astype(np.int16)

    def _hop(self, e: np.ndarray, x: np.ndarray) -> np.ndarray:
        """One hop: the finished HOP samples of the overlap-add."""
        ef = np.concatenate([self._e, e])
        xf = np.concatenate([self._x, x])
        self._e, self._x = ef[HOP:], xf[HOP:]
        self._silent = self._silent + 1 if not x.any() else 0
        if self._silent > self._quiet_frames:
            if self._silent == self._quiet_frames + 1:
                self._r[:] = 0.0
            frame = ef * self._win2  # unit gain: the transform pair is the identity
        else:
            frame = self._suppress(ef, xf)
        self._ola += frame
        done = self._ola[:HOP].copy()
        self._ola = np.concatenate([self._ola[HOP:], np.zeros(HOP)])
        return done

    def _suppress(self, ef: np.ndarray, xf: np.ndarray) -> np.ndarray:
        spec = np.fft.rfft(ef * self._win)
        pe = spec.real ** 2 + spec.imag ** 2
        xs = np.fft.rfft(xf * self._win)
        self._r = self._decay * self._r + (xs.real ** 2 + xs.imag ** 2)
        r = self._r
        if float(r.mean()) > SILENT:  # fit only while the reference carries the coach
            a = self._alpha
            self._mr += a * (r - self._mr)
            self._me += a * (pe - self._me)
            self._mrr += a * (r * r - self._mrr)
            self._mer += a * (pe * r - self._mer)
            self._mee += a * (pe * pe - self._mee)
            self._fitted += a * (1.0 - self._fitted)
            self._fit_frames += 1
        gain = np.ones_like(pe)
        if self._fit_frames >= MIN_FIT:
            # weights summing to less than 1 early on: undo that bias before the moments meet
            w = self._fitted
            mr, me = self._mr / w, self._me / w
            var = self._mrr / w - mr * mr
            cov = self._mer / w - me * mr
            var_e = self._mee / w - me * me
            ok = (var > 1e-12 * (mr * mr + 1e-12)) & (var_e > 0)
            coupling = np.where(ok, np.maximum(cov, 0.0) / np.maximum(var, 1e-30), 0.0)
            # only where the output's power clearly follows the reference's: a weak fit is
            # noise (a room with no echo) or a user talking over the coach; full from RHO_FULL
            rho = np.where(ok, cov / np.sqrt(np.maximum(var * var_e, 1e-30)), 0.0)
            trust = np.clip((rho - RHO_MIN) / (RHO_FULL - RHO_MIN), 0.0, 1.0)
            echo = trust * coupling * r
            # echo and output power smoothed over neighbouring bins: no isolated bins turned
            # down (musical noise a recogniser may hear as a word)
            echo = np.convolve(echo, SMOOTH, mode="same")
            level = np.convolve(pe, SMOOTH, mode="same")
            gain = np.maximum(self.floor, 1.0 - self.beta * echo / (level + 1e-9))
        self.frames += 1
        self.gain_sum += float(gain.mean())
        return np.fft.irfft(spec * gain, FRAME) * self._win
