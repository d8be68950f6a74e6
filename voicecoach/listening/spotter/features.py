"""The speech-embedding front end: 16 kHz int16 audio -> one 96-dim embedding per 80 ms step.

The two TFLite models and the TFLite C runtime ship in the PyPI package ``pyopen-wakeword``
(openWakeWord's ``melspectrogram.tflite`` and Google's ``embedding_model.tflite``). One class
serves streaming at run time and whole clips in training, with the same numbers: the batch
path computes exactly the frames the streaming path would (a test holds them equal), so a
model is scored on what it will see on the device.

Streaming state is explicit and bounded: a sample remainder, a ring of the last 76 mel frames
and nothing else. ``reset()`` is deterministic: the stream starts as if preceded by digital
silence (openWakeWord seeds its buffers with 8 s of zeros and runs them through the models; we
precompute that once).
"""

from __future__ import annotations

import ctypes as C
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from voicecoach.errors import VoicecoachError

_LOGGER = logging.getLogger(__name__)

SAMPLE_RATE = 16000
STEP_SAMPLES = 1280            # 80 ms: one embedding per step
MEL_WINDOW = 1760              # samples the mel model needs for 8 new frames
MEL_OVERLAP = MEL_WINDOW - STEP_SAMPLES   # 480
MELS_PER_STEP = 8
NUM_MELS = 32
EMB_FRAMES = 76                # mel frames per embedding (about 0.775 s)
EMB_DIM = 96
STEP_S = STEP_SAMPLES / SAMPLE_RATE

WARMUP_S = 1.2               # 15 steps of a quiet room before every stream (see reset)
WARMUP_DBFS = -65.0


def warmup_audio() -> np.ndarray:
    """Seeded white noise at -65 dBFS, a whole number of steps long (int16 scale)."""
    n = int(WARMUP_S * SAMPLE_RATE) // STEP_SAMPLES * STEP_SAMPLES
    rng = np.random.default_rng(20261202)
    return (rng.standard_normal(n) * 32768.0 * 10 ** (WARMUP_DBFS / 20)).astype(np.float32)


#: The releases whose private layout (``_MODELS_DIR``, ``_find_tensorflowlite_c``, the models'
#: file names, ``wakeword.TfLiteWakeWord(lib).lib``) this module reads; pyproject pins the same
#: compatible release and tests/test_features.py fails when the layout moves.
PYOPEN_WAKEWORD = "~=1.1.0"
_INSTALL_HINT = f"reinstall it: pip install 'pyopen-wakeword{PYOPEN_WAKEWORD}'"


def _runtime_paths() -> tuple[Path, Path, Path]:
    """The mel model, the embedding model and the TFLite C library inside pyopen-wakeword."""
    try:
        from pyopen_wakeword import openwakeword as oww
    except ImportError:
        raise VoicecoachError("the speech-embedding runtime (PyPI package 'pyopen-wakeword') "
                              "is not installed", _INSTALL_HINT) from None
    try:
        models = Path(oww._MODELS_DIR)
        find_lib = oww._find_tensorflowlite_c
    except AttributeError as exc:  # a release with another layout than the pinned one
        raise VoicecoachError(f"this pyopen-wakeword is not the release voicecoach reads ({exc})",
                              _INSTALL_HINT) from None
    mel, emb = models / "melspectrogram.tflite", models / "embedding_model.tflite"
    for path in (mel, emb):
        if not path.is_file():
            raise VoicecoachError(f"pyopen-wakeword's model {path.name} is missing ({path})",
                                  _INSTALL_HINT)
    try:
        lib = Path(find_lib())
    except (ValueError, OSError) as exc:
        raise VoicecoachError(f"pyopen-wakeword has no TFLite runtime for this machine ({exc})",
                              _INSTALL_HINT) from None
    return mel, emb, lib


class _Interpreter:
    """One TFLite model behind the C API, with its input resized on demand.

    ``xnnpack``: run the model through TFLite's XNNPACK delegate (built into the library
    pyopen-wakeword ships, not applied unless asked for): the same float32 graph on faster
    kernels, about 2.6 times less CPU for the embedding model (measured 1.2 against 3.2 ms per
    80 ms step), with outputs equal to the reference kernels' within float rounding
    (tests/test_spotter_features.py holds them equal). Without the delegate (``False``, or a
    library that cannot create it): TFLite's reference kernels."""

    def __init__(self, lib: Any, path: Path, xnnpack: bool = True) -> None:
        self._lib = lib
        self._delegate: int | None = None
        self._model = lib.TfLiteModelCreateFromFile(str(path).encode("utf-8"))
        if not self._model:
            raise VoicecoachError(f"cannot load the TFLite model {path}", _INSTALL_HINT)
        # One thread: the default spreads each small invoke over every core, which costs more
        # CPU in all than it saves in time (measured: 7.0 ms CPU per embedding on 2 threads,
        # about 4 ms on one), and the device has other work for its cores. The delegate's
        # default options (NULL) have no thread pool either: one thread.
        lib.TfLiteInterpreterOptionsCreate.restype = C.c_void_p
        lib.TfLiteInterpreterOptionsSetNumThreads.argtypes = [C.c_void_p, C.c_int32]
        lib.TfLiteInterpreterOptionsDelete.argtypes = [C.c_void_p]
        options = lib.TfLiteInterpreterOptionsCreate()
        lib.TfLiteInterpreterOptionsSetNumThreads(options, C.c_int32(1))
        problem = ""
        with _quiet_tflite(xnnpack):
            if xnnpack:
                self._delegate, problem = _xnnpack_delegate(lib)
            if self._delegate:
                lib.TfLiteInterpreterOptionsAddDelegate(options, C.c_void_p(self._delegate))
            self._interp = lib.TfLiteInterpreterCreate(self._model, options)
        if problem:
            _LOGGER.warning("%s: the speech embedding runs on TFLite's reference kernels (about "
                            "2.6 times the CPU)", problem)
        lib.TfLiteInterpreterOptionsDelete(options)
        if not self._interp:
            self.close()
            raise VoicecoachError(f"cannot create a TFLite interpreter for {path}",
                                  _INSTALL_HINT)
        self._shape: tuple[int, ...] = ()

    @property
    def accelerated(self) -> bool:
        """Whether the model runs through the XNNPACK delegate."""
        return bool(self._delegate)

    def run(self, x: np.ndarray) -> np.ndarray:
        lib = self._lib
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.shape != self._shape:
            dims = (C.c_int32 * x.ndim)(*x.shape)
            lib.TfLiteInterpreterResizeInputTensor(self._interp, C.c_int32(0), dims,
                                                   C.c_int32(x.ndim))
            lib.TfLiteInterpreterAllocateTensors(self._interp)
            self._shape = x.shape
        tin = lib.TfLiteInterpreterGetInputTensor(self._interp, C.c_int32(0))
        lib.TfLiteTensorCopyFromBuffer(tin, x.ctypes.data_as(C.c_void_p), C.c_size_t(x.nbytes))
        lib.TfLiteInterpreterInvoke(self._interp)
        tout = lib.TfLiteInterpreterGetOutputTensor(self._interp, C.c_int32(0))
        ndim = lib.TfLiteTensorNumDims(tout)
        out = np.empty([lib.TfLiteTensorDim(tout, k) for k in range(ndim)], dtype=np.float32)
        lib.TfLiteTensorCopyToBuffer(tout, out.ctypes.data_as(C.c_void_p),
                                     C.c_size_t(out.nbytes))
        return out

    def close(self) -> None:
        if self._interp:
            self._lib.TfLiteInterpreterDelete(self._interp)
            self._interp = None
        if self._delegate:  # after the interpreter that uses it
            self._lib.TfLiteXNNPackDelegateDelete(C.c_void_p(self._delegate))
            self._delegate = None
        if self._model:
            self._lib.TfLiteModelDelete(self._model)
            self._model = None


#: What TFLite prints on the process's stderr (once) when it creates the delegate: not shown.
_XNNPACK_NOTICE = "Created TensorFlow Lite XNNPACK delegate for CPU."
_QUIET = threading.Lock()
_NOTICE_SEEN = threading.Event()


@contextmanager
def _quiet_tflite(wanted: bool = True) -> Iterator[None]:
    """TFLite's C runtime writes an INFO line to file descriptor 2 the first time it creates
    an XNNPACK delegate in a process (every command would start with it): until that line has
    been seen, fd 2 goes to a temporary file meanwhile, and whatever else was written there
    comes back as warnings (TFLite's errors, or another thread's output in those
    milliseconds). One thread at a time; without a usable fd 2 nothing changes."""
    if not wanted or _NOTICE_SEEN.is_set():
        yield
        return
    with _QUIET:
        try:
            sys.stderr.flush()
            caught = tempfile.TemporaryFile()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):
            saved = -1
        if saved < 0:
            yield
            return
        with caught:
            os.dup2(caught.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                caught.seek(0)
                text = caught.read().decode("utf-8", "replace")
    for line in text.splitlines():
        if _XNNPACK_NOTICE in line:
            _NOTICE_SEEN.set()
        elif line.strip():
            _LOGGER.warning("TFLite: %s", line.strip())


def _xnnpack_delegate(lib: Any) -> tuple[int | None, str]:
    """A new XNNPACK delegate with its default options (no thread pool), or None and why."""
    try:
        create, delete = lib.TfLiteXNNPackDelegateCreate, lib.TfLiteXNNPackDelegateDelete
    except AttributeError:
        return None, "this TFLite runtime has no XNNPACK delegate"
    create.argtypes, create.restype = [C.c_void_p], C.c_void_p
    delete.argtypes, delete.restype = [C.c_void_p], None
    lib.TfLiteInterpreterOptionsAddDelegate.argtypes = [C.c_void_p, C.c_void_p]
    lib.TfLiteInterpreterOptionsAddDelegate.restype = None
    delegate = create(None)
    if not delegate:
        return None, "TFLite could not create its XNNPACK delegate"
    return int(delegate), ""


class EmbeddingFrontEnd:
    """Audio to speech embeddings, streaming (:meth:`push`) or a whole clip (:meth:`embed`)."""

    def __init__(self, xnnpack: bool = True) -> None:
        """``xnnpack``: False runs TFLite's reference kernels (the numbers before the delegate,
        for tests that hold the two equal)."""
        from pyopen_wakeword.wakeword import TfLiteWakeWord

        mel, emb, lib = _runtime_paths()
        self._lib = TfLiteWakeWord(lib).lib     # loads the library and declares its C API
        self._mel = _Interpreter(self._lib, mel, xnnpack)
        self._emb = _Interpreter(self._lib, emb, xnnpack)
        # The mel frame of digital silence: what the ring holds before any audio.
        self._silent_mel = self._mels(np.zeros(MEL_WINDOW, np.float32))[0]
        self.reset()

    @property
    def accelerated(self) -> bool:
        """Whether both models run through TFLite's XNNPACK delegate."""
        return self._mel.accelerated and self._emb.accelerated

    # -- shared maths ------------------------------------------------------------------
    def _mels(self, audio: np.ndarray) -> np.ndarray:
        """Mel frames (8, 32) of one 1760-sample window at int16 scale, rescaled as openWakeWord
        does."""
        out = self._mel.run(audio[None, :])
        return (out.reshape(-1, NUM_MELS) / 10.0 + 2.0).astype(np.float32)

    def _embed_windows(self, windows: np.ndarray) -> np.ndarray:
        """(n, 76, 32) mel windows -> (n, 96) embeddings, in batches."""
        out = np.empty((len(windows), EMB_DIM), np.float32)
        for lo in range(0, len(windows), 64):
            batch = windows[lo:lo + 64, :, :, None]
            out[lo:lo + len(batch)] = self._emb.run(batch).reshape(len(batch), EMB_DIM)
        return out

    # -- streaming ---------------------------------------------------------------------
    def _cold(self) -> None:
        self._pending = np.zeros(MEL_OVERLAP, np.float32)
        self._ring = np.tile(self._silent_mel, (EMB_FRAMES, 1))
        self.steps = 0

    def reset(self) -> None:
        """Forget all audio: the stream starts again after :data:`WARMUP_S` of a quiet room.

        A window made of digital silence is nothing the head ever heard (every training
        scene has a background), so the first second after a reset would be guesswork; the
        warm-up is deterministic (seeded) and computed once."""
        if not hasattr(self, "_warm"):
            self._cold()
            embeddings = self.push(warmup_audio())
            self._warm = (self._pending.copy(), self._ring.copy(), embeddings)
        pending, ring, _ = self._warm
        self._pending, self._ring, self.steps = pending.copy(), ring.copy(), 0

    def warm_embeddings(self) -> np.ndarray:
        """The embeddings (k, 96) the warm-up gave: what a window holds after ``reset()``."""
        return self._warm[2]

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Feed int16 samples; return the embeddings (k, 96) of every 80 ms step completed."""
        audio = np.concatenate([self._pending, np.asarray(samples, np.float32)])
        out = []
        while len(audio) >= MEL_WINDOW:
            mels = self._mels(audio[:MEL_WINDOW])
            audio = audio[STEP_SAMPLES:]
            self._ring = np.concatenate([self._ring[MELS_PER_STEP:], mels])
            out.append(self._emb.run(self._ring[None, :, :, None]).reshape(EMB_DIM))
            self.steps += 1
        self._pending = audio
        if not out:
            return np.zeros((0, EMB_DIM), np.float32)
        return np.stack(out)

    # -- whole clips -------------------------------------------------------------------
    def embed(self, samples: np.ndarray, first: int = 0, warm: bool = True) -> np.ndarray:
        """Embeddings (n, 96) of a clip, as :meth:`push` would give them after ``reset()``
        (``warm=False``: after digital silence, as training scenes are embedded: each begins
        with its own background).

        Step ``j`` is complete once ``(j + 1) * 1280`` samples have arrived; it ends at audio
        time ``(j + 1) * 0.08`` s of the clip. ``first`` skips the embeddings of the steps
        before it (their mel frames are still computed: later steps need them).
        """
        if warm:
            lead = warmup_audio()
            return self.embed(np.concatenate([lead, np.asarray(samples, np.float32)]),
                              first=first + len(lead) // STEP_SAMPLES, warm=False)
        audio = np.concatenate([np.zeros(MEL_OVERLAP, np.float32),
                                np.asarray(samples, np.float32)])
        steps = (len(audio) - MEL_OVERLAP) // STEP_SAMPLES
        if steps <= first:
            return np.zeros((0, EMB_DIM), np.float32)
        # The mel model floors its output relative to the loudest value in its whole input
        # tensor (batch included), so it runs on exactly the stream's 1760-sample windows, one
        # at a time; the embedding model has no such coupling and runs in batches.
        mels = np.concatenate([self._mels(audio[j * STEP_SAMPLES:j * STEP_SAMPLES + MEL_WINDOW])
                               for j in range(steps)])
        frames = np.concatenate([np.tile(self._silent_mel, (EMB_FRAMES - MELS_PER_STEP, 1)),
                                 mels])
        idx = np.arange(first, steps)[:, None] * MELS_PER_STEP + np.arange(EMB_FRAMES)[None, :]
        return self._embed_windows(frames[idx])

    def close(self) -> None:
        """Release the interpreters."""
        self._mel.close()
        self._emb.close()

    def __enter__(self) -> EmbeddingFrontEnd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
