"""Audio files as an audio source: WAV (any rate, width and channel count) and FLAC
(audio/flac.py), checked when opened and streamed as 16 kHz mono through one path."""

from __future__ import annotations

import logging
import stat
import struct
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soxr

from voicecoach.audio.checks import AUDIO_HINT, COPY_AGAIN, WAV_HINT, bad, check_layout
from voicecoach.audio.chunk import SAMPLE_RATE, AudioChunk
from voicecoach.audio.flac import FLAC_MAGIC, FlacInfo, flac_blocks, read_flac_header
from voicecoach.errors import VoicecoachError

_LOGGER = logging.getLogger(__name__)

_PCM, _FLOAT, _EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
_OTHER_CODECS = {0x0002: "ADPCM", 0x0006: "A-law", 0x0007: "mu-law", 0x0011: "IMA ADPCM",
                 0x0055: "MP3"}
_UNKNOWN_SIZE = 0x7FFF0000  # a data size this big is a placeholder, not a length
_READ_FRAMES = 32768  # input frames per read: independent of the chunk size asked for


@dataclass(frozen=True)
class WavInfo:
    """What a WAV header says: encoding, layout, and where the samples are."""

    path: Path
    fmt: int  # _PCM or _FLOAT
    channels: int
    rate: int
    bits: int
    block_align: int
    data_offset: int
    frames: int

    @property
    def seconds(self) -> float:
        """Duration of the file in seconds."""
        return self.frames / self.rate


def read_header(path: str | Path) -> WavInfo | FlacInfo:
    """Parse and check the header of ``path``, a WAV file (RIFF/WAVE) or a FLAC file (told
    by its first bytes, not its name); raise one clear error if it is bad."""
    path = Path(path)
    try:
        status = path.stat()
        if not stat.S_ISREG(status.st_mode) and not stat.S_ISDIR(status.st_mode):
            # a pipe (`... | voicecoach listen /dev/stdin`, a FIFO) or a device: the reader
            # seeks and reopens, which a stream cannot do (a FIFO would block for ever)
            raise bad(path, "is a pipe or a device, not a file",
                       "save the audio to a .wav or .flac file first and give that")
        size = status.st_size
        with path.open("rb") as fh:
            if fh.read(len(FLAC_MAGIC)) != FLAC_MAGIC:
                fh.seek(0)
                info = _parse(fh, path, size)
                if info.fmt == _FLOAT:
                    _check_finite(fh, info)
                return info
    except FileNotFoundError:
        raise bad(path, "no such file", "check the path") from None
    except IsADirectoryError:
        raise bad(path, "is a folder, not an audio file", "give a .wav or .flac file") from None
    except OSError as exc:
        raise bad(path, f"cannot be read ({exc.strerror or exc})",
                   "check the file's permissions") from None
    return read_flac_header(path)


def _check_finite(fh: BinaryIO, info: WavInfo) -> None:
    """Float samples must be numbers: NaN or infinity is a broken recording, refused before
    anything is heard (it would otherwise be heard as silence, or as a full-scale click)."""
    dtype = "<f4" if info.bits == 32 else "<f8"
    fh.seek(info.data_offset)
    done = 0
    while done < info.frames:
        n = min(info.frames - done, _READ_FRAMES)
        data = np.frombuffer(fh.read(n * info.block_align), dtype)
        odd = np.flatnonzero(~np.isfinite(data))
        if odd.size:
            at = (done + odd[0] // info.channels) / info.rate
            raise bad(info.path, f"holds samples that are not numbers (NaN or infinity), the "
                       f"first at {at:.2f} s", "re-export the recording; it is damaged")
        done += n


def _parse(fh: BinaryIO, path: Path, size: int) -> WavInfo:
    if size == 0:
        raise bad(path, "is empty (0 bytes)", AUDIO_HINT)
    head = fh.read(12)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX", b"RF64") or head[8:12] != b"WAVE":
        raise bad(path, "is not a WAV or FLAC file (no RIFF/WAVE or fLaC header)", AUDIO_HINT)
    if head[:4] != b"RIFF":
        raise bad(path, f"is a {head[:4].decode()} WAV, which is not supported")
    fmt_fields: tuple[int, int, int, int, int] | None = None
    while True:
        chunk_head = fh.read(8)
        if len(chunk_head) < 8:
            raise bad(path, "is truncated or corrupt: no 'data' chunk found")
        cid, csize = chunk_head[:4], struct.unpack("<I", chunk_head[4:])[0]
        start = fh.tell()
        if cid == b"fmt ":
            body = fh.read(csize)
            if len(body) < 16 or len(body) < min(csize, 16):
                raise bad(path, "is truncated or corrupt: the 'fmt ' chunk is too short")
            tag, channels, rate, _, align, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == _EXTENSIBLE:
                if len(body) < 26:
                    raise bad(path, "is corrupt: WAVE_FORMAT_EXTENSIBLE header too short")
                tag = struct.unpack("<H", body[24:26])[0]
            fmt_fields = (tag, channels, rate, align, bits)
        elif cid == b"data":
            if fmt_fields is None:
                raise bad(path, "is corrupt: 'data' comes before 'fmt '")
            available = size - start
            if (csize == 0 or csize >= _UNKNOWN_SIZE) and available > 0:
                # writers that stream to a pipe leave the size unset (0, 0x7FFFF000 for
                # espeak-ng --stdout, 0xFFFFFFFF): the audio runs to the end of the file
                _LOGGER.debug("%s: data size %#x taken as the rest of the file", path, csize)
                csize = available - available % fmt_fields[3] if fmt_fields[3] else available
            return _info(path, fmt_fields, start, csize, available)
        fh.seek(start + csize + (csize & 1))
        if fh.tell() > size:
            raise bad(path, f"is truncated or corrupt: chunk {cid!r} runs past the end")


def _info(path: Path, fields: tuple[int, int, int, int, int], offset: int, csize: int,
          available: int) -> WavInfo:
    tag, channels, rate, align, bits = fields
    if tag in _OTHER_CODECS:
        raise bad(path, f"uses {_OTHER_CODECS[tag]} compression, which is not supported")
    if tag not in (_PCM, _FLOAT):
        raise bad(path, f"uses an unknown encoding (format tag {tag:#06x})")
    check_layout(path, channels, rate, WAV_HINT)
    ok_bits = (8, 16, 24, 32) if tag == _PCM else (32, 64)
    if bits not in ok_bits:
        kind = "integer" if tag == _PCM else "float"
        raise bad(path, f"has {bits}-bit {kind} samples, which are not supported")
    if align != channels * bits // 8:
        raise bad(path, f"is corrupt: block size {align} does not match "
                         f"{channels} x {bits}-bit samples")
    if csize > available:
        raise bad(path, f"is truncated: the header promises {csize} bytes of audio "
                         f"but only {available} are there", COPY_AGAIN)
    if csize % align:
        raise bad(path, "is truncated: the audio ends in the middle of a sample frame",
                   COPY_AGAIN)
    frames = csize // align
    if frames == 0:
        raise bad(path, "holds no audio (0 samples)", "give a file with sound in it")
    return WavInfo(path, tag, channels, rate, bits, align, offset, frames)


def _decode(raw: bytes, info: WavInfo) -> np.ndarray:
    """Bytes of whole frames -> float32 mono in [-1, 1]."""
    if info.fmt == _FLOAT:
        data = np.frombuffer(raw, "<f4" if info.bits == 32 else "<f8").astype(np.float32)
        data = np.nan_to_num(data, nan=0.0, posinf=1.0, neginf=-1.0)  # checked at the header
    elif info.bits == 8:
        data = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif info.bits == 16:
        data = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif info.bits == 24:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        ints = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8
        data = ints.astype(np.float32) / 8388608.0
    else:
        data = (np.frombuffer(raw, "<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    if info.channels > 1:
        data = data.reshape(-1, info.channels).mean(axis=1, dtype=np.float32)
    return np.asarray(data, dtype=np.float32)


def _to_int16(data: np.ndarray) -> np.ndarray:
    return np.clip(np.round(data * 32768.0), -32768, 32767).astype(np.int16)


class AudioFileSource:
    """Stream a WAV or FLAC file as 16 kHz mono int16 chunks of ``chunk_s`` seconds (audio
    time)."""

    def __init__(self, path: str | Path, chunk_s: float = 0.1) -> None:
        if chunk_s <= 0:
            raise VoicecoachError(f"chunk length {chunk_s} s is not positive",
                                  "give a chunk length above 0 ms")
        self.path = Path(path)
        self.chunk_s = chunk_s
        self.info = read_header(self.path)
        self._closed = False

    @property
    def seconds(self) -> float:
        """Duration of the file in seconds."""
        return self.info.seconds

    def _pcm_blocks(self) -> Iterator[np.ndarray]:
        """16 kHz mono int16 blocks, identical whatever ``chunk_s`` is."""
        info = self.info
        if (isinstance(info, WavInfo) and info.fmt == _PCM and info.bits == 16
                and info.channels == 1 and info.rate == SAMPLE_RATE):
            yield from (np.frombuffer(raw, "<i2").astype(np.int16) for raw, _ in self._raw())
            return
        resampler = (None if info.rate == SAMPLE_RATE
                     else soxr.ResampleStream(info.rate, SAMPLE_RATE, 1, dtype="float32"))
        for data, last in self._mono_blocks():
            if resampler is not None:
                data = resampler.resample_chunk(data, last=last)
            if data.size:
                yield _to_int16(data)

    def _mono_blocks(self) -> Iterator[tuple[np.ndarray, bool]]:
        """float32 mono blocks at the file's rate, each with whether it is the last."""
        info = self.info
        if isinstance(info, FlacInfo):
            yield from flac_blocks(info, lambda: self._closed)
            return
        for raw, last in self._raw():
            yield _decode(raw, info), last

    def _raw(self) -> Iterator[tuple[bytes, bool]]:
        """A WAV file's audio bytes in whole frames, each block with whether it is the last."""
        info = self.info
        assert isinstance(info, WavInfo)  # noqa: S101 - only called for a WAV file
        with self._opened() as fh:
            fh.seek(info.data_offset)
            left = info.frames
            while left > 0 and not self._closed:
                n = min(left, _READ_FRAMES)
                raw = self._read(fh, n * info.block_align, info.frames - left)
                if len(raw) < n * info.block_align:
                    raise bad(info.path, "became shorter while being read")
                left -= n
                yield raw, left == 0

    def _opened(self) -> BinaryIO:
        """The file, opened again to stream it; gone or unreadable since its header was read
        is one clear error."""
        try:
            return self.info.path.open("rb")
        except FileNotFoundError:
            raise bad(self.path, "is gone (moved or deleted while being read)",
                       "check the path") from None
        except OSError as exc:
            raise bad(self.path, f"cannot be read ({exc.strerror or exc})",
                       "check the file's permissions") from None

    def _read(self, fh: BinaryIO, size: int, done_frames: int) -> bytes:
        """``size`` bytes; a read error part-way (a failing SD card or USB stick, a network
        share gone) is one clear error saying where, not a traceback."""
        try:
            return fh.read(size)
        except OSError as exc:
            at = done_frames / self.info.rate
            raise bad(self.path, f"could not be read past {at:.2f} s "
                       f"({exc.strerror or exc})", "check the disk it is on (dmesg shows its "
                       "errors) and copy the file again") from None

    def chunks(self) -> Iterator[AudioChunk]:
        step = max(1, int(round(self.chunk_s * SAMPLE_RATE)))
        pending = np.zeros(0, dtype=np.int16)
        sent = 0
        for block in self._pcm_blocks():
            pending = np.concatenate([pending, block]) if pending.size else block
            usable = pending.size - pending.size % step
            for offset in range(0, usable, step):
                yield AudioChunk(pending[offset:offset + step].tobytes(), sent / SAMPLE_RATE)
                sent += step
            pending = pending[usable:]
        if pending.size:
            yield AudioChunk(pending.tobytes(), sent / SAMPLE_RATE)

    def close(self) -> None:
        self._closed = True


def read_wav_16k(path: str | Path) -> np.ndarray:
    """The whole file (WAV or FLAC) as 16 kHz mono int16 samples."""
    blocks = list(AudioFileSource(path)._pcm_blocks())
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.int16)


def write_wav(path: str | Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """Write mono samples (int16, or float in [-1, 1]) as a 16-bit PCM WAV file."""
    data = np.asarray(samples)
    if data.ndim != 1:
        raise ValueError("write_wav takes mono (1-D) samples")
    if data.dtype != np.int16:
        if not np.issubdtype(data.dtype, np.floating):
            raise ValueError(f"write_wav takes int16 or float samples, not {data.dtype}")
        data = _to_int16(data)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(data.astype("<i2").tobytes())
