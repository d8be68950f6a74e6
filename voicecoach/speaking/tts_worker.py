"""The pyttsx3 speech worker process: ``python -m voicecoach.speaking.tts_worker [--voice V]``.

It renders one utterance at a time to a WAV file and sends the samples back; the parent
(voicecoach.speaking.render) does the resampling, playback and timing, and kills this process
if it hangs. It imports nothing heavy (no numpy). Protocol, one JSON line per message on
stdin/stdout, the samples as raw bytes right after their header line:

* child -> parent, once at start: ``{"ready": true, "voice_problem": ""}`` or
  ``{"ok": false, "error": "..."}``.
* parent -> child: ``{"text": "...", "rate": 160}``; child -> parent:
  ``{"ok": true, "rate": 22050, "bytes": N}`` + N bytes, or ``{"ok": false, "error": "..."}``.
  End of input makes the child exit.

One ``save_to_file`` per ``runAndWait``: several queued ones give empty files (pyttsx3 #242),
the engine stays in this one thread (#327), and empty text never reaches it (#140).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import wave
from typing import Any, BinaryIO


class EngineRenderer:
    """One pyttsx3 engine rendering to files, one utterance per event loop.

    Not ``runAndWait``: with the espeak driver it returns as soon as synthesis *starts*
    (espeak runs asynchronously), so the file may be missing, stale or cut short (its
    ``stop()`` cancels a synthesis still running: the empty files of #242), and a rate set
    just before may be lost. Here ``startLoop()`` runs until the driver has written the file,
    the "finished-utterance" callback confirms it, and ``endLoop()`` then resets the engine
    so the next loop can start (avoiding "run loop already started", #262).
    """

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self._done = threading.Event()
        engine.connect("finished-utterance", lambda name, completed: self._done.set())

    def render(self, text: str, rate: int, path: str, wait_s: float = 30.0) -> tuple[int, bytes]:
        """Render ``text`` at ``rate`` words per minute to ``path``; return (sample rate, PCM)."""
        if not text.strip():
            return 22050, b""
        if os.path.exists(path):
            os.remove(path)
        self._done.clear()
        self.engine.setProperty("rate", int(rate))
        self.engine.setProperty("volume", 1.0)  # the parent applies the volume as a gain
        self.engine.save_to_file(text, path)
        self.engine.startLoop()
        finished = self._done.wait(wait_s)
        self.engine.endLoop()
        if not finished:
            raise RuntimeError("pyttsx3 never finished the utterance")
        if not os.path.exists(path):
            raise RuntimeError("pyttsx3 wrote no file")
        with wave.open(path, "rb") as wav:
            if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
                raise RuntimeError(f"pyttsx3 wrote {wav.getnchannels()} channel(s) of "
                                   f"{8 * wav.getsampwidth()}-bit audio, expected mono 16-bit")
            pcm = wav.readframes(wav.getnframes())
            sample_rate = wav.getframerate()
        if not pcm:
            raise RuntimeError("pyttsx3 wrote an empty file")
        return sample_rate, pcm


def find_voice(voices: list[Any], wanted: str) -> str | None:
    """The id of the pyttsx3 voice called ``wanted`` (its id, the id's last part, its name or a
    language code, any case), or None. pyttsx3's espeak driver accepts any name silently."""
    key = wanted.strip().casefold()
    for voice in voices:
        vid = str(voice.id)
        names = {vid.casefold(), vid.rsplit("/", 1)[-1].casefold(), str(voice.name).casefold()}
        names.update(str(lang).casefold() for lang in (voice.languages or []))
        if key in names:
            return vid
    return None


def _send(out: BinaryIO, header: dict[str, Any], payload: bytes = b"") -> None:
    out.write(json.dumps(header).encode() + b"\n" + payload)
    out.flush()


def serve(voice: str | None, inp: BinaryIO, out: BinaryIO) -> int:
    """Start pyttsx3, then answer render requests from ``inp`` until it ends."""
    try:
        import pyttsx3

        engine = pyttsx3.init()
    except Exception as exc:  # noqa: BLE001 - any failure here is reported, not raised
        _send(out, {"ok": False, "error": f"pyttsx3 could not start: {type(exc).__name__}: {exc}"})
        return 1
    voice_problem = ""
    if voice:
        try:
            voice_id = find_voice(engine.getProperty("voices"), voice)
            if voice_id is None:
                voice_problem = f"there is no voice {voice!r}"
            else:
                engine.setProperty("voice", voice_id)
        except Exception as exc:  # noqa: BLE001
            voice_problem = f"voice {voice!r} could not be set ({exc})"
    renderer = EngineRenderer(engine)
    _send(out, {"ready": True, "voice_problem": voice_problem})
    with tempfile.TemporaryDirectory(prefix="voicecoach-tts-") as tmp:
        path = os.path.join(tmp, "utterance.wav")
        for line in inp:
            try:
                request = json.loads(line)
                sample_rate, pcm = renderer.render(str(request["text"]),
                                                   int(request["rate"]), path)
            except Exception as exc:  # noqa: BLE001
                _send(out, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})
                continue
            _send(out, {"ok": True, "rate": sample_rate, "bytes": len(pcm)}, pcm)
    return 0


def main() -> int:
    """Keep the protocol on a private copy of stdout; anything else printed there is dropped."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voice", default=None)
    args = parser.parse_args()
    out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # pyttsx3 prints "Audio saved to ..." for every file
    sys.stdout = open(devnull, "w", closefd=False)
    return serve(args.voice, sys.stdin.buffer, out)


if __name__ == "__main__":
    raise SystemExit(main())
