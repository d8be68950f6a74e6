"""The coach's speech the echo canceller tests play through their rooms (espeak-ng, about 10 s)."""

from __future__ import annotations

import numpy as np

from voicecoach.speaking.render import EspeakNgRenderer

RATE = 16000
TEXT = ("Welcome to backward walking. Safety first: three quick checks before we walk. "
        "Stand at the back of the belt and hold the rails. Are you ready? Say yes.")


def coach_speech() -> np.ndarray:
    """:data:`TEXT` as the speaker plays it (float, -1..1)."""
    audio = EspeakNgRenderer().render(TEXT).audio.astype(np.float64) * 0.8 / 32768.0
    assert audio.size > 8 * RATE
    return audio
