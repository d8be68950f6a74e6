"""The speech-embedding front end: streaming equals whole-clip, chunking changes nothing."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from conftest import FIXTURES

from voicecoach.audio.wav import read_wav_16k
from voicecoach.listening.spotter.features import EMB_DIM, STEP_SAMPLES, EmbeddingFrontEnd

CLIP = "commands/joe/normal/stop__stop.wav"


@pytest.fixture(scope="module")
def fe() -> Iterator[EmbeddingFrontEnd]:
    front = EmbeddingFrontEnd()
    yield front
    front.close()


@pytest.fixture(scope="module")
def audio() -> np.ndarray:
    return read_wav_16k(FIXTURES / CLIP)


def test_one_embedding_per_80_ms_step(fe: EmbeddingFrontEnd, audio: np.ndarray) -> None:
    emb = fe.embed(audio)
    assert emb.shape == (audio.size // STEP_SAMPLES, EMB_DIM)
    assert np.isfinite(emb).all() and emb.std() > 0.1


def test_streaming_gives_the_whole_clip_numbers(fe: EmbeddingFrontEnd, audio: np.ndarray) -> None:
    batch = fe.embed(audio)
    fe.reset()
    stream = np.concatenate([fe.push(audio[i:i + 1000]) for i in range(0, audio.size, 1000)])
    assert stream.shape == batch.shape
    assert np.abs(stream - batch).max() < 1e-3


@pytest.mark.parametrize("chunk", [160, 1600, 8000])
def test_chunk_size_does_not_change_a_bit(fe: EmbeddingFrontEnd, audio: np.ndarray,
                                          chunk: int) -> None:
    fe.reset()
    whole = fe.push(audio)
    fe.reset()
    parts = np.concatenate([fe.push(audio[i:i + chunk]) for i in range(0, audio.size, chunk)])
    assert np.array_equal(whole, parts)


def test_reset_is_deterministic(fe: EmbeddingFrontEnd, audio: np.ndarray) -> None:
    fe.reset()
    first = fe.push(audio)
    fe.push(audio[::-1].copy())
    fe.reset()
    assert np.array_equal(first, fe.push(audio))


def test_skipping_leading_steps_keeps_the_rest(fe: EmbeddingFrontEnd, audio: np.ndarray) -> None:
    full = fe.embed(audio)
    assert np.abs(fe.embed(audio, first=5) - full[5:]).max() < 1e-3


def test_mel_model_is_run_per_window_not_per_batch(fe: EmbeddingFrontEnd) -> None:
    """The mel model floors its output by the loudest value of its whole input: a loud step
    must not change the embeddings of the quiet steps before it."""
    rng = np.random.default_rng(0)
    quiet = (rng.standard_normal(STEP_SAMPLES * 15) * 30).astype(np.float32)
    loud = np.concatenate([quiet, (rng.standard_normal(STEP_SAMPLES * 5) * 20000)])
    assert np.abs(fe.embed(quiet) - fe.embed(loud)[:15]).max() < 1e-3


# -- pyopen-wakeword's private layout, which _runtime_paths reads --------------------------
def test_pyopen_wakeword_layout_is_the_one_read() -> None:
    """Fails when pyopen-wakeword moves what features.py reaches into (a new release)."""
    import importlib.metadata

    from pyopen_wakeword import openwakeword as oww
    from pyopen_wakeword.wakeword import TfLiteWakeWord

    from voicecoach.listening.spotter.features import PYOPEN_WAKEWORD, _runtime_paths

    version = importlib.metadata.version("pyopen-wakeword")
    assert PYOPEN_WAKEWORD == "~=1.1.0" and version.startswith("1.1."), version
    models = oww._MODELS_DIR
    assert (models / "melspectrogram.tflite").is_file()
    assert (models / "embedding_model.tflite").is_file()
    assert oww._find_tensorflowlite_c().is_file()
    mel, emb, lib = _runtime_paths()
    assert hasattr(TfLiteWakeWord(lib).lib, "TfLiteInterpreterCreate")


def test_pyproject_pins_the_release_read() -> None:
    from conftest import FIXTURES

    from voicecoach.listening.spotter.features import PYOPEN_WAKEWORD

    text = (FIXTURES.parent / "pyproject.toml").read_text(encoding="utf-8")
    assert f'"pyopen-wakeword{PYOPEN_WAKEWORD}"' in text


def test_another_layout_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from pyopen_wakeword import openwakeword as oww

    from voicecoach.errors import VoicecoachError
    from voicecoach.listening.spotter.features import _runtime_paths

    monkeypatch.delattr(oww, "_MODELS_DIR")
    with pytest.raises(VoicecoachError) as err:
        _runtime_paths()
    assert "pyopen-wakeword~=1.1.0" in err.value.one_line()


# -- the XNNPACK delegate against TFLite's reference kernels -------------------------------
STREAM = "streams/stream_a.wav"  # 40 s: belt noise, the coach's voice, user commands


@pytest.fixture(scope="module")
def reference() -> Iterator[EmbeddingFrontEnd]:
    front = EmbeddingFrontEnd(xnnpack=False)
    yield front
    front.close()


def _streamed(front: EmbeddingFrontEnd, samples: np.ndarray) -> np.ndarray:
    front.reset()
    return np.concatenate([front.push(samples[i:i + 1600])
                           for i in range(0, samples.size, 1600)])


@pytest.fixture(scope="module")
def stream() -> np.ndarray:
    return read_wav_16k(FIXTURES / STREAM)


@pytest.fixture(scope="module")
def streamed(fe: EmbeddingFrontEnd, reference: EmbeddingFrontEnd,
             stream: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The stream's embeddings, through XNNPACK and through the reference kernels."""
    return _streamed(fe, stream), _streamed(reference, stream)


def test_the_models_run_through_xnnpack(fe: EmbeddingFrontEnd,
                                        reference: EmbeddingFrontEnd) -> None:
    assert fe.accelerated and not reference.accelerated


def test_xnnpack_gives_the_reference_kernels_embeddings(
        fe: EmbeddingFrontEnd, reference: EmbeddingFrontEnd, stream: np.ndarray,
        streamed: tuple[np.ndarray, np.ndarray]) -> None:
    """Float rounding only (measured about 1e-6 of the embeddings' scale): what the spotter
    hears does not change with the faster kernels, streaming or whole clips (batched)."""
    fast, ref = streamed
    assert fast.shape == ref.shape == (stream.size // STEP_SAMPLES, EMB_DIM)
    scale = float(np.abs(ref).max())
    assert np.abs(fast - ref).max() <= 1e-5 * scale
    part = stream[:16000 * 10]
    assert np.abs(fe.embed(part) - reference.embed(part)).max() <= 1e-5 * scale


def test_xnnpack_changes_no_probability_and_no_detection(
        fe: EmbeddingFrontEnd, reference: EmbeddingFrontEnd, stream: np.ndarray,
        streamed: tuple[np.ndarray, np.ndarray]) -> None:
    """The head's probabilities on the faster embeddings are the reference's within float
    noise, and the spotter (no second look) hears the same commands at the same times."""
    from voicecoach.audio.chunk import split_pcm
    from voicecoach.grammar import load_grammar
    from voicecoach.listening.spotter.engine import SpotterRecogniser
    from voicecoach.listening.spotter.model import load_model

    model = load_model()
    probs = []
    for front, emb in zip((fe, reference), streamed, strict=True):
        emb = np.concatenate([front.warm_embeddings(), emb])
        windows = np.lib.stride_tricks.sliding_window_view(emb, (model.window, EMB_DIM))[:, 0]
        probs.append(model.probabilities(windows))
    assert np.abs(probs[0] - probs[1]).max() < 1e-4
    heard = []
    for front in (fe, reference):
        rec = SpotterRecogniser(load_grammar("en"), model=model, front_end=front)
        found = [d.to_dict() for chunk in split_pcm(stream.tobytes(), 0.1)
                 for d in rec.accept(chunk)]
        heard.append(found + [d.to_dict() for d in rec.flush()])
    assert heard[0], "nothing was heard in the stream"
    assert heard[0] == heard[1]


def test_a_new_process_prints_nothing_on_stderr_for_the_delegate() -> None:
    """TFLite announces the XNNPACK delegate on fd 2 once per process: not to the user."""
    import subprocess
    import sys

    code = ("from voicecoach.listening.spotter.features import EmbeddingFrontEnd\n"
            "fe = EmbeddingFrontEnd()\nassert fe.accelerated\nfe.close()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, cwd=FIXTURES.parent)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_other_output_on_fd2_while_quiet_comes_back_as_warnings(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Until the notice has been seen; after it (printed once per process) fd 2 is left alone."""
    import os
    import threading

    from voicecoach.listening.spotter import features

    monkeypatch.setattr(features, "_NOTICE_SEEN", threading.Event())  # a new process
    with caplog.at_level("WARNING"), features._quiet_tflite():
        os.write(2, f"INFO: {features._XNNPACK_NOTICE}\nERROR: something else\n".encode())
    assert [r.getMessage() for r in caplog.records] == ["TFLite: ERROR: something else"]
    assert features._NOTICE_SEEN.is_set()
