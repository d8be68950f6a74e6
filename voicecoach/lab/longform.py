"""The long form: ten-minute files of talk with real words and stops mixed in, over noise.

Made the same way for the benchmark (``lab.bench.spotter``: held-out voices, locked speakers)
and for choosing the second look (``lab.training.talk``: training voices, one fold's speakers),
so the choice is validated on what the benchmark measures.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from voicecoach.audio.chunk import SAMPLE_RATE
from voicecoach.audio.samples import active_bounds, to_float, treadmill_noise
from voicecoach.audio.wav import read_wav_16k, write_wav

FILE_S = 600.0


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-12))



def make_longform(out: Path, hours: float, talk: list[Path], words: list[Path],
                  noise: list[Path], stops: Sequence[Path] = (), stop_every_s: float = 20.0,
                  name: str = "longform"
                  ) -> tuple[list[Path], dict[str, list[tuple[float, float]]]]:
    """Write the long-form files (deterministic); their paths and, per file, the (start, end)
    of every stop said in it. Each file's draws are seeded by its name (``name_KK.wav``), so
    another ``name`` gives other files from the same material."""
    from voicecoach.lab.training.data import read_audio

    out.mkdir(parents=True, exist_ok=True)
    files = []
    truth: dict[str, list[tuple[float, float]]] = {}
    n_files = max(1, int(round(hours * 3600.0 / FILE_S)))
    used = 0
    for k in range(n_files):
        path = out / f"{name}_{k:02d}.wav"
        files.append(path)
        rng = _rng(path.name)
        total = int(FILE_S * SAMPLE_RATE)
        speech = np.zeros(total, np.float32)
        said: list[tuple[float, float]] = []
        pos = int(rng.uniform(0.2, 1.0) * SAMPLE_RATE)
        next_stop = pos + int(rng.uniform(0.5, 1.5) * stop_every_s * SAMPLE_RATE)
        while pos < total:
            is_stop = bool(stops) and pos >= next_stop
            if is_stop:
                src = stops[used % len(stops)]
                used += 1
                next_stop = pos + int(rng.uniform(0.5, 1.5) * stop_every_s * SAMPLE_RATE)
            else:
                src = words[rng.integers(len(words))] if rng.random() < 0.25 and words else \
                    talk[rng.integers(len(talk))]
            clip = to_float(read_audio(src))
            clip = clip * float(10 ** (rng.uniform(-32, -14) / 20) / _rms(clip))
            end = min(total, pos + clip.size)
            speech[pos:end] += clip[:end - pos]
            if is_stop and end - pos == clip.size:
                lo, hi = active_bounds(clip, threshold_db=-30.0)
                said.append(((pos + lo) / SAMPLE_RATE, (pos + hi) / SAMPLE_RATE))
            pos = end + int(rng.uniform(0.15, 2.5) * SAMPLE_RATE)
        truth[str(path)] = said
        if path.exists():
            continue
        kind = k % 3
        if kind == 0:
            bg = treadmill_noise(FILE_S, rng)[:total]
        elif kind == 1 and noise:
            clips = [to_float(read_wav_16k(noise[int(i)])) for i in rng.integers(0, len(noise), 20)]
            bg = np.resize(np.concatenate([c / _rms(c) for c in clips]), total)
        else:
            bg = rng.standard_normal(total).astype(np.float32)
        snr = float(rng.uniform(5.0, 20.0))
        mix = speech + bg * float(_rms(speech[speech != 0]) / 10 ** (snr / 20))
        # written under another name first: a run killed here leaves no short file that
        # the next run would take as made
        tmp = path.with_name(path.name + ".tmp.wav")
        write_wav(tmp, np.clip(mix, -1, 1))
        tmp.replace(path)
    return files, truth



def match_stops(acted: Sequence[tuple[float, str]], said: Sequence[tuple[float, float]]
                ) -> list[int | None]:
    """How the long form counts: a stop acted on (time, command) from 0.2 s before a said
    stop's start to 1 s after its end catches that stop, once. For each command acted on, the
    index of the stop it caught, or None: a false command (a second stop on the same word
    too)."""
    hit = [False] * len(said)
    out: list[int | None] = []
    for t, command in acted:
        i = next((i for i, (lo, hi) in enumerate(said)
                  if command == "stop" and lo - 0.2 <= t <= hi + 1.0), None)
        if i is None or hit[i]:
            out.append(None)
        else:
            hit[i] = True
            out.append(i)
    return out
