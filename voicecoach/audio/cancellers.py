"""Echo cancellers behind one protocol: WebRTC's AEC3 (``pywebrtc-audio``) and our NLMS filter.

Both take the microphone and what the speaker played over the same samples (16 kHz mono
int16) and return the microphone with the speaker's echo taken out, as many samples as came
in. :func:`make_canceller` builds the one the settings name (``[audio] echo_canceller``);
one that cannot start (library missing, of another release, or failing its first frame) is
one line in the log and the coach goes on without echo cancellation; ``doctor`` says the same.

Which one is the default was chosen by the real-people barge-in benchmark
(``voicecoach.lab.bench.barge_in``): stops caught over the coach's voice and false commands from
it, not decibels of echo removed (see the README's figures).
"""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np

from voicecoach.audio.chunk import SAMPLE_RATE

_LOGGER = logging.getLogger(__name__)

#: ``[audio] echo_canceller`` values; "auto" is :data:`DEFAULT`.
CHOICES = ("auto", "webrtc", "nlms", "off")
#: The canceller "auto" builds, chosen by barge-in recall and false commands (README figures):
#: real locked speakers' stops over the coach, NLMS 28/60 against AEC3 18/60 (no echo 49/60),
#: both 0 commands from the coach's voice over 10 minutes; on the fixture-voice duplex tests
#: AEC3 let the coach's voice stop a closed-loop session and lost stops the NLMS filter keeps.
#: With the second look's retry from the onset (issue 16), on speakers not locked: NLMS 38/43
#: against AEC3 32/43 (no echo 44/44).
DEFAULT = "nlms"
#: The residual echo suppressor after the NLMS filter (voicecoach.audio.suppress): chosen on
#: the barge-in benchmark's dev speakers (30 stops said 1-8 s into the first briefing, NLMS
#: alone 21/30, no echo 29/30): beta 1.5 / floor 0.1 caught 25/30, beta 3 / floor 0.05 26/30.
SUPPRESS_BETA = 1.5
SUPPRESS_FLOOR = 0.1
#: The pywebrtc-audio releases whose API (``EchoCanceller(sample_rate, num_channels,
#: stream_delay_ms).process(near, far)``) this module uses.
PYWEBRTC_AUDIO = "~=0.2.0"
WEBRTC_HINT = f"pip install 'pywebrtc-audio{PYWEBRTC_AUDIO}' (in the venv that runs voicecoach)"
#: AEC3 processes whole 10 ms frames.
FRAME = SAMPLE_RATE // 100


class Canceller(Protocol):
    """Streaming echo canceller: ``process(mic, ref)`` -> mic without the echo of ``ref``."""

    name: str

    def process(self, mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
        """int16 in (same length, same time), int16 out, as many samples as came in."""
        ...


class CancellerError(RuntimeError):
    """An echo canceller could not be started; the message is one line."""


class WebRtcCanceller:
    """WebRTC AEC3 through ``pywebrtc-audio`` (its own delay estimator, 8 ms of added delay).

    AEC3 works on whole 10 ms frames; the samples of a frame not yet complete are passed on
    as heard (and their cleaned version is dropped when the frame completes), so nothing is
    delayed and any chunking in whole 10 ms gives the same output.
    """

    name = "webrtc"

    def __init__(self, stream_delay_ms: int = 0, rate: int = SAMPLE_RATE) -> None:
        try:
            from pywebrtc_audio import EchoCanceller as Aec3
        except ImportError as exc:
            raise CancellerError(f"pywebrtc-audio is not installed ({exc})") from None
        try:
            self._aec = Aec3(sample_rate=rate, num_channels=1, stream_delay_ms=stream_delay_ms)
            silent = np.zeros(rate // 100, np.int16)
            probe = self._aec.process(silent, silent)
            if np.asarray(probe).shape != silent.shape:
                raise CancellerError(f"its process() gave {np.asarray(probe).shape} samples for "
                                     f"{silent.size}")
            self._aec.reset()
        except CancellerError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of a foreign extension
            raise CancellerError(f"pywebrtc-audio's AEC3 failed to start "
                                 f"({type(exc).__name__}: {exc})") from None
        self.frame = rate // 100
        self._mic = np.zeros(0, np.int16)
        self._ref = np.zeros(0, np.int16)
        self._done = 0  # samples of the frame being filled already returned (as heard)

    def process(self, mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
        mic = np.asarray(mic, dtype=np.int16)
        ref = np.asarray(ref, dtype=np.int16)
        if mic.shape != ref.shape or mic.ndim != 1:
            raise ValueError("mic and ref must be 1-D and the same length")
        self._mic = np.concatenate([self._mic, mic])
        self._ref = np.concatenate([self._ref, ref])
        out = []
        f = self.frame
        while self._mic.size >= f:
            clean = np.asarray(self._aec.process(self._mic[:f], self._ref[:f]), np.int16)
            out.append(clean[self._done:])
            self._done = 0
            self._mic, self._ref = self._mic[f:], self._ref[f:]
        if self._mic.size > self._done:
            out.append(self._mic[self._done:])
            self._done = self._mic.size
        return np.concatenate(out) if out else np.zeros(0, np.int16)


def build(kind: str, *, filter_s: float = 0.128, suppress: bool = False) -> Canceller | None:
    """The canceller ``kind`` names ("auto": :data:`DEFAULT`; "off": None); raises
    :class:`CancellerError` when it cannot start. ``suppress``: the NLMS filter's leftover
    echo is turned down after it (voicecoach.audio.suppress; for engines that hear better so,
    voicecoach.listening.engines.Engine.suppress_echo)."""
    if kind not in CHOICES:
        raise CancellerError(f"unknown echo canceller {kind!r}; allowed: {', '.join(CHOICES)}")
    kind = DEFAULT if kind == "auto" else kind
    if kind == "off":
        return None
    if kind == "webrtc":
        return WebRtcCanceller()
    from voicecoach.audio.aec import EchoCanceller
    from voicecoach.audio.suppress import ResidualSuppressor

    nlms = EchoCanceller(filter_s=filter_s)
    if not suppress:
        return nlms
    # the linear filter converges over seconds and does not span a reverberant tail: the echo
    # it leaves is turned down after it (voicecoach.audio.suppress; chosen on dev speakers)
    return ResidualSuppressor(nlms, beta=SUPPRESS_BETA, floor=SUPPRESS_FLOOR)


def make_canceller(kind: str, *, filter_s: float = 0.128,
                   suppress: bool = False) -> Canceller | None:
    """As :func:`build`, but a canceller that cannot start is one warning and None."""
    try:
        return build(kind, filter_s=filter_s, suppress=suppress)
    except CancellerError as exc:
        _LOGGER.warning("echo canceller %s: %s; the coach goes on without echo cancellation%s",
                        kind, exc, f" (fix: {WEBRTC_HINT})" if "pywebrtc" in str(exc) else "")
        return None
