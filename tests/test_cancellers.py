"""The echo canceller protocol: WebRTC AEC3 (pywebrtc-audio) beside our NLMS filter; a
canceller that cannot start or fails mid-session is one line, and the coach goes on without."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest

from voicecoach.audio import cancellers
from voicecoach.audio.aec import EchoCanceller, erle_db
from voicecoach.audio.cancellers import CancellerError, WebRtcCanceller, build, make_canceller
from voicecoach.audio.samples import to_int16
from voicecoach.audio.suppress import ResidualSuppressor
from voicecoach.speaking.render import EspeakNgRenderer

RATE = 16000
TEXT = ("Welcome to backward walking. Safety first: three quick checks before we walk. "
        "Stand at the back of the belt and hold the rails.")


@pytest.fixture(scope="module")
def room() -> tuple[np.ndarray, np.ndarray]:
    """(what the speaker played, what the mic heard: it 30 ms late at -6 dB with a tail)."""
    ref = EspeakNgRenderer().render(TEXT).audio.astype(np.float64) * 0.8 / 32768.0
    rng = np.random.default_rng(2)
    rir = np.zeros(880)
    rir[480] = 0.5
    rir[481:] = rng.standard_normal(399) * np.exp(-np.arange(399) / 80.0) * 0.06
    mic = np.convolve(ref, rir)[:ref.size] + rng.standard_normal(ref.size) * 1e-3
    return to_int16(ref.astype(np.float32)), to_int16(mic.astype(np.float32))


def _run(canceller: cancellers.Canceller, mic: np.ndarray, ref: np.ndarray,
         chunk: int) -> np.ndarray:
    out = [canceller.process(mic[i:i + chunk], ref[i:i + chunk]) for i in range(0, mic.size, chunk)]
    for i, part in enumerate(out):
        assert part.dtype == np.int16 and part.size == mic[i * chunk:(i + 1) * chunk].size
    return np.concatenate(out)


@pytest.mark.parametrize(("kind", "suppress"), [("webrtc", False), ("nlms", False),
                                                 ("nlms", True)])
def test_both_take_the_echo_out(kind: str, suppress: bool,
                                room: tuple[np.ndarray, np.ndarray]) -> None:
    ref, mic = room
    canceller = build(kind, suppress=suppress)
    assert canceller is not None and canceller.name == kind
    out = _run(canceller, mic, ref, 1600).astype(np.float64)
    assert erle_db(mic[3 * RATE:].astype(np.float64), out[3 * RATE:]) > 10.0


def test_webrtc_gives_the_same_output_for_any_chunking_in_whole_10_ms(
        room: tuple[np.ndarray, np.ndarray]) -> None:
    ref, mic = room
    runs = [_run(WebRtcCanceller(), mic, ref, n) for n in (160, 1600, 8000)]
    assert np.array_equal(runs[0], runs[1]) and np.array_equal(runs[0], runs[2])


def test_webrtc_odd_chunks_keep_their_length_and_pass_the_unfinished_frame_as_heard(
        room: tuple[np.ndarray, np.ndarray]) -> None:
    ref, mic = room
    aec = WebRtcCanceller()
    out = aec.process(mic[:100], ref[:100])
    assert np.array_equal(out, mic[:100])  # no frame yet: as heard, nothing delayed
    rest = _run(aec, mic[100:RATE], ref[100:RATE], 333)
    assert rest.size == RATE - 100


def test_auto_is_the_default_and_off_is_none() -> None:
    auto = build("auto")
    assert auto is not None and auto.name == cancellers.DEFAULT
    assert build("off") is None
    with pytest.raises(CancellerError):
        build("speex")


def test_missing_library_is_one_warning_and_no_canceller(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "pywebrtc_audio", None)
    with caplog.at_level(logging.WARNING):
        assert make_canceller("webrtc") is None
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and "without echo cancellation" in lines[0]
    assert "pywebrtc-audio" in lines[0] and "\n" not in lines[0]
    assert isinstance(make_canceller("nlms"), EchoCanceller)  # ours needs nothing
    nlms = make_canceller("nlms", suppress=True)
    assert isinstance(nlms, ResidualSuppressor) and isinstance(nlms.inner, EchoCanceller)


def test_a_library_failing_its_first_frame_is_a_canceller_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import pywebrtc_audio

    class Broken:
        def __init__(self, **kwargs: object) -> None:
            pass

        def process(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
            raise RuntimeError("AEC3 init failed")

    monkeypatch.setattr(pywebrtc_audio, "EchoCanceller", Broken)
    with pytest.raises(CancellerError, match="failed to start"):
        WebRtcCanceller()


def test_doctor_says_when_the_canceller_cannot_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from voicecoach.doctor import check_echo_canceller
    from voicecoach.settings import AudioSettings, Settings

    webrtc = Settings(audio=AudioSettings(echo_canceller="webrtc"))
    (ok,) = check_echo_canceller(webrtc)
    assert ok.status == "ok" and "AEC3" in ok.detail
    (auto,) = check_echo_canceller(Settings())
    assert auto.status == "ok" and auto.detail.endswith("[auto]")
    monkeypatch.setitem(sys.modules, "pywebrtc_audio", None)
    (bad,) = check_echo_canceller(webrtc)
    assert bad.status == "warn" and "without echo cancellation" in bad.detail
    assert "pywebrtc-audio" in bad.fix


def test_a_canceller_failing_mid_session_is_dropped_and_the_loop_goes_on(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: object) -> None:
    from pathlib import Path

    from voicecoach.grammar import load_grammar
    from voicecoach.lab.room import closed_loop, load_clip
    from voicecoach.listening.engines import make_recogniser
    from voicecoach.settings import AudioSettings, Settings, SpeechSettings
    from voicecoach.workout.plan import programme_week

    calls = {"n": 0}
    real = WebRtcCanceller.process

    def flaky(self: WebRtcCanceller, mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 20:  # two seconds in, while the coach talks
            raise RuntimeError("AEC3 went away")
        return real(self, mic, ref)

    monkeypatch.setattr(WebRtcCanceller, "process", flaky)
    settings = Settings(data_dir=Path(str(tmp_path)), audio=AudioSettings(echo_canceller="webrtc"))
    recogniser = make_recogniser(SpeechSettings(), load_grammar("en"), announce=lambda x: None)
    clip = load_clip("stop", "stop", "joe")
    clip.at_s = 4.0
    with caplog.at_level(logging.WARNING):
        run = closed_loop(recogniser, settings, programme_week(1, settings.coach), 8.0,
                          renderer=EspeakNgRenderer(), user=False, begin_at_once=True,
                          clips=(clip,))
    warned = [r.getMessage() for r in caplog.records if "echo canceller failed" in r.getMessage()]
    assert len(warned) == 1 and "without echo cancellation" in warned[0]
    assert run.loop.canceller is None and calls["n"] == 20
    # the loop went on past the failure (2 s in) and heard the stream to the user's word at
    # least (a model that hears the stop there ends the session with it)
    assert run.loop.clock.audio_s >= clip.at_s + 0.5


@pytest.mark.parametrize(("engine", "suppressed"), [("spotter", True), ("pocketsphinx", False)])
def test_the_loop_turns_the_leftover_echo_down_for_the_engines_that_hear_better_so(
        engine: str, suppressed: bool, tmp_path: Path) -> None:
    """The spotter (its second look read the coach's leftover words first) gets the residual
    echo suppressor after the NLMS filter; pocketsphinx (which heard a stop in the musical
    noise of an early version, and missed fixture stops) gets the filter alone."""
    from voicecoach.audio.aec import ReferenceCanceller
    from voicecoach.device.loop import DeviceLoop
    from voicecoach.grammar import load_grammar
    from voicecoach.listening.engines import make_recogniser, suppresses_echo
    from voicecoach.settings import Settings, SpeechSettings
    from voicecoach.speaking.timeline import WavSpeaker

    assert suppresses_echo(engine) is suppressed
    grammar = load_grammar("en")
    recogniser = make_recogniser(SpeechSettings(engine=engine, verify="off"), grammar)
    loop = DeviceLoop(Settings(data_dir=tmp_path), grammar, recogniser, WavSpeaker(None),
                      lambda: None, lambda plan: None)  # type: ignore[arg-type]
    assert isinstance(loop.canceller, ReferenceCanceller)
    inner = loop.canceller.canceller
    assert isinstance(inner, ResidualSuppressor) is suppressed
    assert isinstance(inner.inner if suppressed else inner, EchoCanceller)  # type: ignore[attr-defined]
