"""The device loop's sources: replayed files as fast as possible or at audio pace."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from voicecoach.audio.wav import write_wav
from voicecoach.device.sources import Paced, replay


def _wav(path: Path, seconds: float) -> Path:
    write_wav(path, np.zeros(int(16000 * seconds), np.int16))
    return path


def test_replay_gives_each_file_once_then_none(tmp_path: Path) -> None:
    opener = replay([str(_wav(tmp_path / "a.wav", 0.5)), str(_wav(tmp_path / "b.wav", 0.3))],
                    realtime=False)
    first, second = opener(), opener()
    assert first is not None and second is not None and opener() is None
    assert not isinstance(first, Paced)
    assert abs(sum(c.seconds for c in first.chunks()) - 0.5) < 1e-6
    first.close()
    second.close()


def test_paced_waits_for_each_chunk_s_start(tmp_path: Path) -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(round(s, 3))
        now[0] += s

    source = replay([str(_wav(tmp_path / "a.wav", 0.3))], realtime=True)()
    assert isinstance(source, Paced)
    paced = Paced(source.source, clock=lambda: now[0], sleep=sleep)
    given = [(round(c.start_s, 3), round(now[0], 3)) for c in paced.chunks()]
    paced.close()
    assert len(given) == 3 and all(start == at for start, at in given)  # each on its time
    assert abs(sum(slept) - given[-1][0]) < 1e-9
