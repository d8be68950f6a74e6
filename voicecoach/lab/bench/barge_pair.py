"""``python -m voicecoach.lab.bench.barge_pair [barge_in arguments]``: the barge-in bench with the
NLMS span pair (``voicecoach.lab.aec_pair``) where ``--cancellers nlms`` builds the shipped NLMS
filter (the experiment log, session 26: not shipped). The pair's long filter spans the live
device's 0.3 s (``device.loop.LIVE_ECHO_S``) and its short one 0.128 s, on audio time too; the
residual suppressor after it is the shipped one. Only this process builds the pair: the device
loop's cost child (``--cost-s``) measures the shipped filter, so run it with ``--cost-s 0``.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import voicecoach.audio.cancellers as cancellers
from voicecoach.device.loop import LIVE_ECHO_S


@contextlib.contextmanager
def pair_installed() -> Iterator[None]:
    """While inside, the canceller "nlms" (and "auto") names is the pair."""
    shipped = cancellers.build

    def build(kind: str, *, filter_s: float = 0.128,
              suppress: bool = False) -> cancellers.Canceller | None:
        built = shipped(kind, filter_s=filter_s, suppress=suppress)
        if (cancellers.DEFAULT if kind == "auto" else kind) != "nlms":
            return built
        from voicecoach.audio.suppress import ResidualSuppressor
        from voicecoach.lab.aec_pair import SpanPair

        pair = SpanPair(filter_s=LIVE_ECHO_S)
        if isinstance(built, ResidualSuppressor):  # the shipped suppressor, as it is built
            built.inner = pair
            return built
        return pair
    cancellers.build = build
    try:
        yield
    finally:
        cancellers.build = shipped


def main(argv: list[str] | None = None) -> int:
    from voicecoach.lab.bench.barge_in import main as barge_in

    print("barge-in with the NLMS span pair (0.128 s + 0.3 s) for nlms", file=sys.stderr)
    with pair_installed():
        return barge_in(argv)


if __name__ == "__main__":
    sys.exit(main())
