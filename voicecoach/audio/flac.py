"""FLAC files (phones' recorders, the Speech Commands sets) read through libsndfile
(soundfile): the header checked and the whole file decoded once when it is opened, so a
damaged file is said before anything of it is heard (as a WAV's truncation is), then
streamed as float32 mono blocks at the file's own rate for the one file source
(audio/wav.py) to resample and cut into chunks."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from voicecoach.audio.checks import AUDIO_HINT, COPY_AGAIN, bad, check_layout

_LOGGER = logging.getLogger(__name__)

#: The first four bytes of every FLAC file.
FLAC_MAGIC = b"fLaC"
_READ_FRAMES = 32768  # input frames per read, whatever the chunk size asked for
_DISK_HINT = ("check the disk it is on (dmesg shows its errors) and copy the file again")


@dataclass(frozen=True)
class FlacInfo:
    """What a FLAC file's header says, checked against its decoded audio."""

    path: Path
    channels: int
    rate: int
    frames: int

    @property
    def seconds(self) -> float:
        """Duration of the file in seconds."""
        return self.frames / self.rate


def _soundfile(path: Path) -> ModuleType:
    try:
        import soundfile
    except (ImportError, OSError) as exc:  # OSError: the package without its libsndfile
        raise bad(path, f"is a FLAC file, and reading FLAC needs libsndfile ({exc})",
                  "install it: pip install soundfile, or sudo apt install libsndfile1") from None
    return soundfile


def _why(exc: Exception) -> str:
    _LOGGER.debug("libsndfile: %s", exc, exc_info=exc)
    return " ".join(str(exc).split()) or type(exc).__name__


def read_flac_header(path: Path) -> FlacInfo:
    """Check the FLAC file ``path`` (its magic already seen): its layout as a WAV's is
    checked, then every frame decoded; damage or a short file is one clear error."""
    sf = _soundfile(path)
    try:
        handle = sf.SoundFile(str(path))
    except sf.LibsndfileError as exc:
        _why(exc)
        raise bad(path, "is damaged: its FLAC header cannot be read", COPY_AGAIN) from None
    with handle:
        check_layout(path, handle.channels, handle.samplerate, AUDIO_HINT)
        info = FlacInfo(path, handle.channels, handle.samplerate, handle.frames)
        if info.frames <= 0:
            raise bad(path, "holds no audio (0 samples)", "give a file with sound in it")
        buffer = np.empty((_READ_FRAMES, info.channels), dtype=np.float32)
        done = 0
        while True:
            try:
                got = len(handle.read(_READ_FRAMES, dtype="float32", always_2d=True,
                                      out=buffer))
            except sf.LibsndfileError as exc:
                _why(exc)
                got = 0
            if got == 0:
                break
            done += got
    if done < info.frames:
        raise bad(path, f"is damaged: its audio cannot be decoded past {done / info.rate:.2f} s "
                        f"of the {info.seconds:.2f} s its header promises", COPY_AGAIN)
    return info


def flac_blocks(info: FlacInfo, closed: Callable[[], bool]) -> Iterator[tuple[np.ndarray, bool]]:
    """The file's audio as float32 mono blocks at its own rate, each with whether it is the
    last, until ``closed()``; a file gone or failing since it was checked is one error."""
    sf = _soundfile(info.path)
    if not info.path.is_file():
        raise bad(info.path, "is gone (moved or deleted while being read)", "check the path")
    try:
        handle = sf.SoundFile(str(info.path))
    except sf.LibsndfileError as exc:
        raise bad(info.path, f"cannot be read ({_why(exc)})", "check the file's permissions"
                  ) from None
    with handle:
        done = 0
        while done < info.frames and not closed():
            try:
                data = handle.read(_READ_FRAMES, dtype="float32", always_2d=True)
            except sf.LibsndfileError as exc:
                raise bad(info.path, f"could not be read past {done / info.rate:.2f} s "
                          f"({_why(exc)})", _DISK_HINT) from None
            if not len(data):
                raise bad(info.path, "became shorter while being read")
            done += len(data)
            mono = data[:, 0] if info.channels == 1 else data.mean(axis=1, dtype=np.float32)
            yield np.ascontiguousarray(mono, dtype=np.float32), done >= info.frames
