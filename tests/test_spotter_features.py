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
