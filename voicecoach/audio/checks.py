"""What every audio file reader says about a bad file: one error naming it, and the checks
of its layout shared by the WAV and FLAC readers."""

from __future__ import annotations

from pathlib import Path

from voicecoach.errors import VoicecoachError

#: The fix for a file of an encoding the WAV reader does not take.
WAV_HINT = "give a PCM or float WAV file (convert with e.g. `sox in.ext -r 16000 -c 1 out.wav`)"
#: The fix for a file that is neither a WAV nor a FLAC file, or whose layout is impossible.
AUDIO_HINT = "give a WAV or FLAC file (convert with e.g. `sox in.ext -r 16000 -c 1 out.wav`)"
#: The fix for a file whose audio is not all there.
COPY_AGAIN = "record or copy the file again"
#: The file names the readers are given from a folder (``listen DIR``, ``enroll --from DIR``);
#: a file is told WAV or FLAC by its bytes, never by its name.
AUDIO_SUFFIXES = (".wav", ".wave", ".flac")


def bad(path: Path, what: str, hint: str = WAV_HINT) -> VoicecoachError:
    """The one error about the audio file ``path``: ``what`` is wrong, ``hint`` the fix."""
    return VoicecoachError(f"audio file {path}: {what}", hint)


def check_layout(path: Path, channels: int, rate: int, hint: str) -> None:
    """A channel count and a sample rate a recording can have, or the error saying the
    header is corrupt."""
    if channels < 1 or rate < 1000 or rate > 768000:
        raise bad(path, f"is corrupt: {channels} channel{'s' * (channels != 1)} at {rate} Hz",
                  hint)
