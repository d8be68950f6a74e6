"""Two NLMS filters side by side: a short one for the cold start, a long one for the room's tail.

A lab canceller, not shipped (the experiment log, session 26, experiments 23-26): run with
``python -m voicecoach.lab.bench.barge_pair`` (the barge-in bench with it in place of the NLMS
filter). On 608 dev stop trials it caught 541 in time against the shipped filter's 513, but it
churned more trials than its rules allowed and took one dev "up" over the coach for stop.

A normalised LMS filter converges in a time that grows with its length, and a short filter
cannot take out a reverberant room's tail. On the barge-in benchmark's real speakers (the
experiment log, session 25), a 0.3 s filter caught more stops said once the canceller had
settled than the 0.128 s one, and fewer said in the first seconds of the coach's speech.

:class:`SpanPair` runs both on the same blocks of microphone and reference, each with its own
foreground/background pair and double-talk detector (``voicecoach.audio.aec``):

* per 256-sample block, the output is the foreground output of the filter whose recent
  residual (its smoothed foreground error energy) was lower at the last block's end;
* while the short filter's residual is under :data:`SEED_RATIO` of the long one's, the long
  filter is *seeded* from it: the long filter's first partitions take the short foreground's
  weights (the partitions line up: same block, same reference history), its tail is zeroed,
  and it adapts the tail from there. So the long filter starts where the short one has got to
  instead of from nothing.

Once the reference has been silent for the short span the short filter passes the microphone
through (``EchoCanceller``'s idle rule) and has no residual to compare: from a block before
that, the long one's output is taken, as the room's tail is still sounding.

The output does not depend on how the input is chunked: every sample of a block, whether
returned before the block was complete or with it, is cleaned by the filter chosen at the last
block's end.
"""

from __future__ import annotations

import numpy as np

from voicecoach.audio.aec import EchoCanceller

#: The short filter's span (the NLMS filter's span before session 26).
SHORT_S = 0.128
#: The long filter is seeded from the short one while the short one's residual is under this
#: fraction of the long one's (fixed before the benchmark run, not searched).
SEED_RATIO = 0.5


class SpanPair(EchoCanceller):
    """The long filter (``filter_s``) with a short one (``short_s``) beside it; the
    ``voicecoach.audio.cancellers.Canceller`` protocol. With ``short_s >= filter_s`` it is
    the long filter alone."""

    name = "nlms"

    def __init__(self, filter_s: float = 0.3, short_s: float = SHORT_S,
                 **kwargs: float) -> None:
        super().__init__(filter_s=filter_s, **kwargs)  # type: ignore[arg-type]
        short = EchoCanceller(filter_s=short_s, **kwargs)  # type: ignore[arg-type]
        self.short: EchoCanceller | None = short if short.parts < self.parts else None
        self._short_out = False  # the last block's output was the short filter's
        #: Blocks whose output was the short filter's; times the long one was seeded.
        self.short_blocks = self.seeds = 0

    def _block(self, d: np.ndarray, x: np.ndarray) -> np.ndarray:
        short = self.short
        if short is None:
            return super()._block(d, x)
        # the filter whose output this block is was chosen at the last block's end, as the
        # samples of this block returned before it was complete were (chunking-independent)
        use_short = self._short_out
        e_short = short._block(d, x)
        e_long = super()._block(d, x)
        if short._silent_blocks < short.parts:
            if self._erle < self.converged and short._acc_f < SEED_RATIO * self._acc_f:
                self._wf[:] = 0.0
                self._wf[:short.parts] = short._wf
                self._wb = self._wf.copy()
                self._acc_f = self._acc_b = short._acc_f
                self.seeds += 1
            self._short_out = short._acc_f < self._acc_f
        else:
            # one more silent block and the short filter passes the microphone through (and
            # has no residual): the long one's tail is still cancelling
            self._short_out = False
        self.short_blocks += int(use_short)
        return e_short if use_short else e_long

    def _partial(self) -> np.ndarray:
        short = self.short
        if short is None or not self._short_out:
            return super()._partial()
        short._mic_buf, short._ref_buf = self._mic_buf, self._ref_buf
        return short._partial()
