"""Text to 16 kHz int16 audio, off-line: pyttsx3 in a worker process, espeak-ng, and tones."""

from __future__ import annotations

import io
import json
import logging
import os
import select
import shutil
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import soxr

from voicecoach.audio.chunk import SAMPLE_RATE

_LOGGER = logging.getLogger(__name__)

DEFAULT_RATE = 160
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent.parent)


class Rendered(NamedTuple):
    """Rendered speech: int16 mono samples at 16 kHz and their length in seconds."""

    audio: np.ndarray
    seconds: float


class RenderError(RuntimeError):
    """The speech engine failed, hung past its time limit, or is missing."""


class Renderer(Protocol):
    """Anything that turns text into audio without playing it."""

    rate: int

    def render(self, text: str) -> Rendered:
        """Render ``text`` at the current ``rate``; raise RenderError if the engine fails."""
        ...

    def close(self) -> None:
        """Release the engine."""
        ...


def empty() -> Rendered:
    """No audio at all (what empty text renders to)."""
    return Rendered(np.zeros(0, dtype=np.int16), 0.0)


def to_16k(pcm: bytes, rate: int) -> Rendered:
    """Int16 mono PCM at ``rate`` Hz as a Rendered at 16 kHz."""
    samples = np.frombuffer(pcm, dtype="<i2")
    if rate != SAMPLE_RATE and samples.size:
        resampled = soxr.resample(samples.astype(np.float32), rate, SAMPLE_RATE)
        samples = np.clip(np.round(resampled), -32768, 32767).astype(np.int16)
    else:
        samples = samples.astype(np.int16)
    return Rendered(samples, samples.size / SAMPLE_RATE)


def tone(urgent: bool = False, amplitude: float = 0.3) -> Rendered:
    """The stand-in for speech when the engine fails: one beep, or three rising ones if urgent."""
    freqs = (660.0, 880.0, 1100.0) if urgent else (660.0,)
    beep_s, gap_s = 0.15, 0.08
    t = np.arange(int(beep_s * SAMPLE_RATE)) / SAMPLE_RATE
    ramp = np.minimum(1.0, np.minimum(t, beep_s - t) / 0.01)  # 10 ms fades: no clicks
    parts: list[np.ndarray] = []
    for f in freqs:
        parts.append(np.sin(2 * np.pi * f * t) * ramp * amplitude)
        parts.append(np.zeros(int(gap_s * SAMPLE_RATE)))
    audio = np.round(np.concatenate(parts) * 32767).astype(np.int16)
    return Rendered(audio, audio.size / SAMPLE_RATE)


class Pyttsx3Renderer:
    """pyttsx3 (espeak-ng on Linux) in its own process, which is killed if it hangs.

    A process, not a thread, because a hung pyttsx3 run loop (#126, #131) cannot be stopped
    from another thread, a crash in the C library must not take the coach with it, and the
    engine then lives in one thread of its own (#327, #262). A plain subprocess, not
    multiprocessing, so the parent's ``__main__`` is never re-imported. The worker starts on
    first use (or ``start()``) and is restarted after a failure. ``command`` replaces the
    worker command line (tests inject a hanging one).
    """

    def __init__(self, voice: str | None = None, rate: int = DEFAULT_RATE,
                 timeout_s: float = 4.0, timeout_per_char_s: float = 0.05,
                 startup_timeout_s: float = 15.0, command: list[str] | None = None) -> None:
        self.voice = voice
        self.rate = rate
        self.timeout_s = timeout_s
        self.timeout_per_char_s = timeout_per_char_s
        self.startup_timeout_s = startup_timeout_s
        self.voice_problem = ""
        self.command = command or [sys.executable, "-m", "voicecoach.speaking.tts_worker"]
        self._proc: subprocess.Popen[bytes] | None = None
        self._buf = b""
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the worker now (it takes a moment) rather than on the first render."""
        with self._lock:
            self._ensure_started()

    def _ensure_started(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self._stop_worker()
        cmd = list(self.command) + (["--voice", self.voice] if self.voice else [])
        env = dict(os.environ)  # the worker must find this package even when not installed
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          close_fds=True, env=env)
        except OSError as exc:
            raise RenderError(f"cannot start the speech worker ({exc})") from None
        self._buf = b""
        header = self._read_header(time.monotonic() + self.startup_timeout_s, "start")
        if not header.get("ready"):
            self._stop_worker()
            raise RenderError(str(header.get("error", header)))
        self.voice_problem = str(header.get("voice_problem", ""))
        if self.voice_problem:
            _LOGGER.warning("speech: %s; using the default voice", self.voice_problem)
        return self._proc

    def _read_until(self, deadline: float, what: str, enough: Callable[[], bool]) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        fd = proc.stdout.fileno()
        while not enough():
            left = deadline - time.monotonic()
            ready = select.select([fd], [], [], max(0.0, left))[0] if left > 0 else []
            if not ready:
                self._stop_worker()
                raise RenderError(f"pyttsx3 did not {what} in time (hung?)")
            data = os.read(fd, 65536)
            if not data:
                self._stop_worker()
                raise RenderError(f"the pyttsx3 worker died during {what}")
            self._buf += data

    def _read_header(self, deadline: float, what: str) -> dict[str, Any]:
        self._read_until(deadline, what, lambda: b"\n" in self._buf)
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            header = json.loads(line)
        except ValueError:
            header = None
        if not isinstance(header, dict):
            self._stop_worker()
            raise RenderError(f"the pyttsx3 worker sent {line[:80]!r}")
        return header

    def render(self, text: str) -> Rendered:
        if not text.strip():
            return empty()
        with self._lock:
            proc = self._ensure_started()
            assert proc.stdin is not None
            try:
                proc.stdin.write(json.dumps({"text": text, "rate": int(self.rate)}).encode()
                                 + b"\n")
                proc.stdin.flush()
            except OSError as exc:
                self._stop_worker()
                raise RenderError(f"the pyttsx3 worker is gone ({exc})") from None
            deadline = time.monotonic() + self.timeout_s + self.timeout_per_char_s * len(text)
            header = self._read_header(deadline, "render")
            if not header.get("ok"):
                raise RenderError(str(header.get("error", header)))
            size = int(header["bytes"])
            self._read_until(deadline, "render", lambda: len(self._buf) >= size)
            pcm, self._buf = self._buf[:size], self._buf[size:]
        return to_16k(pcm, int(header["rate"]))

    def _stop_worker(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        try:
            proc.wait(0.5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(2.0)

    def close(self) -> None:
        with self._lock:
            self._stop_worker()


class EspeakNgRenderer:
    """The espeak-ng command line (``--stdout``), each utterance a process with a time limit."""

    def __init__(self, voice: str | None = None, rate: int = DEFAULT_RATE,
                 timeout_s: float = 10.0, program: str = "espeak-ng") -> None:
        self.voice = voice
        self.rate = rate
        self.timeout_s = timeout_s
        self.program = program

    def render(self, text: str) -> Rendered:
        if not text.strip():
            return empty()
        exe = shutil.which(self.program)
        if exe is None:
            raise RenderError(f"{self.program} is not installed")
        cmd = [exe, "--stdout", "-s", str(int(self.rate))]
        if self.voice:
            cmd += ["-v", self.voice]
        try:
            out = subprocess.run(cmd + ["--", text], capture_output=True,
                                 timeout=self.timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise RenderError(f"{self.program} did not finish within {self.timeout_s} s") from None
        if out.returncode != 0 or not out.stdout:
            err = out.stderr.decode(errors="replace").strip()
            raise RenderError(f"{self.program} failed ({out.returncode}): {err}")
        with wave.open(io.BytesIO(out.stdout), "rb") as wav:
            return to_16k(wav.readframes(wav.getnframes()), wav.getframerate())

    def close(self) -> None:
        pass


class FallbackRenderer:
    """Renders with ``renderer`` and never fails: a tone stands in for speech that failed.

    The first failure is logged once as a warning (later ones at debug level). After
    ``give_up_after`` failures in a row the engine is closed and only tones are used, so a
    hanging engine does not delay every cue by its time limit. ``renderer`` None: tones only.
    """

    def __init__(self, renderer: Renderer | None, give_up_after: int = 3) -> None:
        self.renderer = renderer
        self.give_up_after = give_up_after
        self.failures = 0
        self.warned = False
        if renderer is None:
            self._fail("no speech engine is available")

    @property
    def working(self) -> bool:
        """False once the engine was given up (or there never was one)."""
        return self.renderer is not None

    def _fail(self, why: str) -> None:
        self.failures += 1
        if not self.warned:
            self.warned = True
            _LOGGER.warning("speech engine failed (%s); a tone replaces speech while it fails; "
                            "run `voicecoach doctor`", why)
        else:
            _LOGGER.debug("speech engine failed again (%s)", why)
        if self.renderer is not None and self.failures >= self.give_up_after:
            _LOGGER.debug("giving up on the speech engine after %d failures", self.failures)
            self.renderer.close()
            self.renderer = None

    def render(self, text: str, urgent: bool = False) -> tuple[Rendered, bool]:
        """The speech for ``text`` and False, or a tone and True if the engine failed."""
        if not text.strip():
            return empty(), False
        if self.renderer is not None:
            try:
                result = self.renderer.render(text)
            except Exception as exc:  # noqa: BLE001 - RenderError or a bug: the coach goes on
                self._fail(str(exc) or type(exc).__name__)
            else:
                if result.audio.size:
                    self.failures = 0
                    return result, False
                self._fail("it rendered no audio")
        return tone(urgent), True

    def close(self) -> None:
        if self.renderer is not None:
            self.renderer.close()
