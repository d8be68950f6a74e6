"""Speech out: real pyttsx3/espeak-ng renders, the speaker queue, pre-emption, faults."""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from voicecoach.audio.chunk import SAMPLE_RATE
from voicecoach.audio.playback import SinkError
from voicecoach.events import Priority
from voicecoach.lab.cached import CachedRenderer as LabCachedRenderer
from voicecoach.settings import AudioSettings, Settings
from voicecoach.speaking.render import EspeakNgRenderer, Pyttsx3Renderer, Rendered, tone
from voicecoach.speaking.tts import (
    ConsoleSpeaker,
    NullSpeaker,
    TtsSpeaker,
    WavSpeaker,
    make_speaker,
)
from voicecoach.speaking.tts_worker import find_voice

pytestmark = pytest.mark.skipif(
    __import__("shutil").which("espeak-ng") is None, reason="espeak-ng is not installed")

CUE, ANN, ANS, URG = Priority.CUE, Priority.ANNOUNCEMENT, Priority.ANSWER, Priority.URGENT


class FakeSink:
    """The sound card: records what it is given. ``hold`` keeps each utterance "playing"
    until ``release()`` or until it is cut off, so the queue can be observed mid-utterance."""

    def __init__(self, hold: bool = False, fail: bool = False) -> None:
        self.hold = hold
        self.fail = fail
        self.played: list[np.ndarray] = []
        self.cut: list[bool] = []
        self.started = threading.Semaphore(0)
        self._release = threading.Event()

    def play(self, audio: np.ndarray, stop: threading.Event,
             on_start: Callable[[], None] | None = None) -> bool:
        if self.fail:
            raise SinkError("output device #7 failed: unplugged")
        if on_start:
            on_start()
        self.played.append(audio.copy())
        self.started.release()
        if self.hold:
            while not stop.is_set() and not self._release.is_set():
                stop.wait(0.01)
        self.cut.append(stop.is_set())
        return not stop.is_set()

    def release(self) -> None:
        self._release.set()

    def wait_started(self, n: int = 1) -> None:
        for _ in range(n):
            assert self.started.acquire(timeout=30), "nothing started playing"

    def close(self) -> None:
        pass


class CachedRenderer(LabCachedRenderer):
    """The lab's caching renderer over the real pyttsx3 one (espeak's output for the same text
    can differ by a few samples from one call to the next), keeping every text sent to it."""

    def __init__(self, inner: Pyttsx3Renderer) -> None:
        super().__init__(inner)
        self.texts: list[str] = []

    def render(self, text: str) -> Rendered:
        self.texts.append(text)
        return super().render(text)


@pytest.fixture(scope="module")
def engine() -> Iterator[CachedRenderer]:
    """One real pyttsx3 worker for the module, its renders kept."""
    r = CachedRenderer(Pyttsx3Renderer())
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def renders(engine: CachedRenderer) -> dict[str, Rendered]:
    """Real renders of the phrases used below, at the default rate."""
    engine.rate = 160
    return {t: engine.render(t) for t in ("Land on your toes.", "Stand tall.", "Stop.", "Go.")}


@pytest.fixture
def speaker(engine: CachedRenderer) -> Callable[..., TtsSpeaker]:
    engine.rate = 160
    engine.texts.clear()

    def make(sink: FakeSink, **kwargs: object) -> TtsSpeaker:
        ticks = iter(range(1_000_000))
        return TtsSpeaker(engine, sink, clock=lambda: float(next(ticks)),  # type: ignore
                          **kwargs)  # type: ignore[arg-type]
    return make


def texts_played(sink: FakeSink, renders: dict[str, Rendered], volume: float) -> list[str]:
    """Which rendered phrase each played buffer is (compared sample for sample)."""
    names = []
    for audio in sink.played:
        for text, r in renders.items():
            expect = np.clip(r.audio.astype(np.float32) * volume, -32768, 32767).astype(np.int16)
            if audio.size == expect.size and np.array_equal(audio, expect):
                names.append(text)
                break
        else:
            names.append("?")
    return names


def test_pyttsx3_renders_real_speech_at_16k() -> None:
    r = Pyttsx3Renderer(rate=160)
    try:
        audio, seconds = r.render("Land on your toes.")
        r.rate = 320
        fast = r.render("Land on your toes.")
    finally:
        r.close()
    assert audio.dtype == np.int16 and audio.size == round(seconds * SAMPLE_RATE)
    assert 0.5 < seconds < 5.0
    assert np.sqrt(np.mean(audio.astype(np.float64) ** 2)) > 300  # speech, not silence
    assert fast.seconds < 0.75 * seconds  # double the rate: clearly shorter


def test_espeak_ng_cli_renders_about_as_long_as_pyttsx3(renders: dict[str, Rendered]) -> None:
    rendered = EspeakNgRenderer(rate=160).render("Land on your toes.")
    assert rendered.audio.dtype == np.int16
    assert 0.8 < rendered.seconds / renders["Land on your toes."].seconds < 1.25


def test_several_renders_in_a_row_are_never_empty() -> None:
    r = Pyttsx3Renderer()  # pyttsx3 #242: queued save_to_file calls gave empty files
    try:
        lengths = [r.render(t).seconds for t in ("One.", "Two and three.", "One.")]
    finally:
        r.close()
    assert all(s > 0.2 for s in lengths)
    assert lengths[0] == pytest.approx(lengths[2], rel=0.05) and lengths[1] > lengths[0]


def test_empty_text_is_never_sent_to_the_engine(speaker: Callable[..., TtsSpeaker]) -> None:
    sink = FakeSink()
    sp = speaker(sink)
    renderer = sp._engine.renderer
    assert isinstance(renderer, CachedRenderer)
    for text in ("", "   ", "\n"):
        sp.say(text, CUE, 0.0)
    sp.say("Go.", CUE, 1.0)
    assert sp.wait_idle(30)
    sp.close()
    assert renderer.texts == ["Go."] and len(sink.played) == 1
    assert Pyttsx3Renderer().render("").seconds == 0.0


def test_queue_plays_by_priority_then_order(renders: dict[str, Rendered],
                                            speaker: Callable[..., TtsSpeaker]) -> None:
    sink = FakeSink(hold=True)
    sp = speaker(sink, volume=1.0)
    sp.say("Go.", CUE, 0.0)
    sink.wait_started()
    for text, prio in (("Stand tall.", CUE), ("Land on your toes.", ANS), ("Stop.", ANN)):
        sp.say(text, prio, 1.0)
    assert sp.is_speaking()
    sink.release()
    assert sp.wait_idle(30)
    sp.close()
    assert texts_played(sink, renders, 1.0) == ["Go.", "Land on your toes.", "Stop.",
                                                "Stand tall."]
    assert [i.text for i in sp.speaking_intervals()] == texts_played(sink, renders, 1.0)


def test_cancel_queued_drops_what_has_not_started(speaker: Callable[..., TtsSpeaker]) -> None:
    sink = FakeSink(hold=True)
    sp = speaker(sink)
    sp.say("Go.", CUE, 0.0)
    sink.wait_started()
    sp.say("Stand tall.", CUE, 1.0)
    sp.say("Stop.", ANS, 1.0)
    assert sp.cancel_queued() == 2
    sink.release()
    assert sp.wait_idle(30)
    sp.close()
    assert len(sink.played) == 1 and sink.cut == [False]


def test_urgent_cuts_off_a_cue_but_an_answer_does_not(
        renders: dict[str, Rendered], speaker: Callable[..., TtsSpeaker]) -> None:
    sink = FakeSink(hold=True)
    sp = speaker(sink, volume=1.0)
    sp.say("Land on your toes.", CUE, 0.0)
    sink.wait_started()
    sp.say("Stand tall.", ANS, 1.0)  # waits its turn
    sp.say("Stop.", URG, 2.0)         # cuts the cue off now
    sink.wait_started()
    sink.release()
    assert sp.wait_idle(30)
    sp.close()
    assert texts_played(sink, renders, 1.0) == ["Land on your toes.", "Stop.", "Stand tall."]
    intervals = sp.speaking_intervals()
    assert [i.completed for i in intervals] == [False, True, True]
    assert all(i.end is not None and i.end > i.start for i in intervals)


def test_interrupt_cuts_the_current_utterance_only(speaker: Callable[..., TtsSpeaker]) -> None:
    sink = FakeSink(hold=True)
    sp = speaker(sink)
    sp.say("Land on your toes.", CUE, 0.0)
    sink.wait_started()
    sp.say("Go.", CUE, 1.0)
    sp.interrupt()
    sink.wait_started()
    sink.release()
    assert sp.wait_idle(30)
    sp.close()
    assert sink.cut == [True, False]


def test_listener_hears_start_and_end_of_each_utterance(speaker: Callable[..., TtsSpeaker]) -> None:
    sink = FakeSink()
    sp = speaker(sink)
    seen: list[tuple[str, bool]] = []
    sp.add_listener(lambda i: seen.append((i.text, i.end is None)))
    sp.say("Go.", CUE, 0.0)
    sp.say("Stop.", URG, 0.0)
    assert sp.wait_idle(30)
    sp.close()
    assert seen == [("Stop.", True), ("Stop.", False), ("Go.", True), ("Go.", False)]


def test_volume_scales_the_samples_and_rate_reaches_the_engine(
        speaker: Callable[..., TtsSpeaker]) -> None:
    sink = FakeSink()
    sp = speaker(sink, volume=0.8)
    sp.say("Land on your toes.", CUE, 0.0)
    assert sp.wait_idle(30)
    assert sp.set_volume(0.4) == 0.4
    sp.say("Land on your toes.", CUE, 1.0)
    assert sp.wait_idle(30)
    assert sp.set_rate(320) == 320
    sp.say("Land on your toes.", CUE, 2.0)
    assert sp.wait_idle(30)
    sp.close()
    loud, quiet, fast = (np.abs(a.astype(np.float64)).max() for a in sink.played)
    assert quiet / loud == pytest.approx(0.5, rel=0.01)
    assert sink.played[2].size < 0.75 * sink.played[0].size
    assert (sp.set_volume(1.7), sp.set_volume(-1), sp.set_rate(10), sp.set_rate(999)) \
        == (1.0, 0.0, 80, 400)


HANG = ("import json, sys, time\n"
        "print(json.dumps({'ready': True, 'voice_problem': ''}), flush=True)\n"
        "sys.stdin.readline(); time.sleep(600)\n")


def test_hanging_engine_gives_a_tone_and_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    renderer = Pyttsx3Renderer(timeout_s=0.3, timeout_per_char_s=0.0,
                               command=[sys.executable, "-c", HANG])
    sink = FakeSink()
    sp = TtsSpeaker(renderer, sink, volume=1.0)
    with caplog.at_level(logging.WARNING):
        sp.say("Land on your toes.", CUE, 0.0)
        sp.say("Stop.", URG, 1.0)
        assert sp.wait_idle(60)
    sp.close()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "speech engine failed" in warnings[0].getMessage()
    assert [a.tobytes() for a in sink.played] == [tone(True).audio.tobytes(),
                                                  tone(False).audio.tobytes()]
    assert all(i.tone for i in sp.speaking_intervals())
    assert renderer._proc is None  # the hung worker was killed


def test_engine_that_cannot_start_is_given_up_after_three_failures(
        caplog: pytest.LogCaptureFixture) -> None:
    broken = [sys.executable, "-c", "import sys; sys.exit(3)"]
    sink = FakeSink()
    sp = TtsSpeaker(Pyttsx3Renderer(command=broken), sink)
    with caplog.at_level(logging.WARNING):
        for n in range(5):
            sp.say(f"Cue {n}.", CUE, float(n))
        assert sp.wait_idle(60)
    sp.close()
    assert len(sink.played) == 5 and not sp.engine_working
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1


def test_missing_sound_card_is_logged_once_and_speech_goes_on(
        caplog: pytest.LogCaptureFixture, speaker: Callable[..., TtsSpeaker]) -> None:
    sink = FakeSink(fail=True)
    sp = speaker(sink)
    with caplog.at_level(logging.WARNING):
        sp.say("Go.", CUE, 0.0)
        sp.say("Stop.", CUE, 1.0)
        assert sp.wait_idle(30)
    sp.close()
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(messages) == 1 and "without sound" in messages[0]
    assert [i.text for i in sp.speaking_intervals()] == ["Go.", "Stop."]


def test_console_speaker_prints_workout_time() -> None:
    out = io.StringIO()
    sp = ConsoleSpeaker(out)
    sp.say("Land on your toes.", CUE, 185.4)
    sp.say("  ", CUE, 186.0)
    sp.say("Stop.", URG, 3601.0)
    assert out.getvalue() == "[  3:05] coach: Land on your toes.\n[ 60:01] coach: Stop.\n"
    null = NullSpeaker()
    null.say("", CUE, 0.0)
    null.say("Go.", ANS, 2.0)
    assert null.said == [(2.0, ANS, "Go.")] and not null.is_speaking()


def test_wav_speaker_lays_speech_out_like_the_live_queue(
        renders: dict[str, Rendered], engine: CachedRenderer) -> None:
    def session() -> tuple[list[tuple[float, float | None, str, bool]], np.ndarray]:
        sp = WavSpeaker(engine, volume=1.0)
        sp.say("Land on your toes.", CUE, 1.0)
        sp.say("Stand tall.", CUE, 1.2)
        sp.say("Go.", ANS, 1.3)
        sp.say("Stop.", URG, 1.5)
        spans = [(i.start, i.end, i.text, i.completed) for i in sp.finish()]
        audio = sp.audio(total_s=10.0)
        return spans, audio

    spans, audio = session()
    stop, go = renders["Stop."].seconds, renders["Go."].seconds
    assert spans == [(1.0, 1.5, "Land on your toes.", False), (1.5, 1.5 + stop, "Stop.", True),
                     (1.5 + stop, 1.5 + stop + go, "Go.", True),
                     (1.5 + stop + go, 1.5 + stop + go + renders["Stand tall."].seconds,
                      "Stand tall.", True)]
    assert audio.size == 10 * SAMPLE_RATE
    assert not audio[:SAMPLE_RATE].any()  # silence before the first cue
    at = int(1.5 * SAMPLE_RATE)
    assert np.array_equal(audio[at:at + renders["Stop."].audio.size], renders["Stop."].audio)
    again_spans, again = session()
    assert again_spans == spans and np.array_equal(again, audio)  # deterministic


def test_wav_speaker_waits_for_the_speaker_to_be_free_and_can_cancel(
        engine: CachedRenderer) -> None:
    sp = WavSpeaker(engine)
    sp.say("Land on your toes.", CUE, 0.0)
    sp.say("Stand tall.", CUE, 0.5)
    assert sp.is_speaking() and sp.cancel_queued() == 1
    sp.say("Go.", CUE, 30.0)
    assert [i.text for i in sp.finish()] == ["Land on your toes.", "Go."]
    assert sp.finish()[1].start == 30.0


def test_find_voice_matches_ids_names_and_languages() -> None:
    class V:
        def __init__(self, id: str, name: str, languages: list[str]) -> None:
            self.id, self.name, self.languages = id, name, languages

    voices = [V("gmw/en", "English (Great Britain)", ["en-gb"]),
              V("gmw/en-us", "English (America)", ["en-us"])]
    assert find_voice(voices, "EN-US") == "gmw/en-us"
    assert find_voice(voices, "English (Great Britain)") == "gmw/en"
    assert find_voice(voices, "klingon") is None


def test_make_speaker_runs_on_a_machine_without_a_sound_card(
        caplog: pytest.LogCaptureFixture) -> None:
    import sounddevice

    try:
        has_output = any(d["max_output_channels"] > 0 for d in sounddevice.query_devices())
    except Exception:  # noqa: BLE001
        has_output = False
    if has_output:
        pytest.skip("this machine has a sound card")
    settings = Settings(audio=AudioSettings(output_device="Jabra"))
    with caplog.at_level(logging.WARNING):
        sp = make_speaker(settings)
        sp.say("Go.", CUE, 0.0)
        assert sp.wait_idle(30)
        sp.close()
    assert [i.text for i in sp.speaking_intervals()] == ["Go."]
    assert [i.completed for i in sp.speaking_intervals()] == [True]
    assert any("without sound" in r.getMessage() for r in caplog.records)


class FakeStream:
    """A PortAudio output stream that only takes 48 kHz, like many USB speakerphones."""

    opened: list[FakeStream] = []

    def __init__(self, samplerate: int, channels: int, dtype: str, device: int | None) -> None:
        if samplerate != 48000:
            raise RuntimeError("Invalid sample rate")
        self.samplerate, self.device, self.written, self.aborted = samplerate, device, [], False
        FakeStream.opened.append(self)

    def __enter__(self) -> FakeStream:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def write(self, block: np.ndarray) -> None:
        self.written.append(block.copy())
        if len(self.written) == 3 and self.stop_after_three is not None:
            self.stop_after_three.set()

    def abort(self) -> None:
        self.aborted = True

    stop_after_three: threading.Event | None = None


def test_sounddevice_sink_resamples_writes_blocks_and_cuts_off() -> None:
    import types

    from voicecoach.audio.playback import SoundDeviceSink

    sd = types.ModuleType("sounddevice")
    sd.OutputStream = FakeStream  # type: ignore[attr-defined]
    sd.query_devices = lambda device=None, kind=None: {  # type: ignore[attr-defined]
        "default_samplerate": 48000.0}
    sink = SoundDeviceSink(device=3, block_s=0.05, sd=sd)
    one_second = np.zeros(SAMPLE_RATE, dtype=np.int16)
    started: list[bool] = []
    assert sink.play(one_second, threading.Event(), lambda: started.append(True))
    stream = FakeStream.opened[-1]
    assert stream.device == 3 and started == [True] and not stream.aborted
    assert sum(b.shape[0] for b in stream.written) == 48000  # resampled to the device rate
    assert all(b.shape[0] <= 2400 and b.shape[1] == 1 for b in stream.written)
    stop = threading.Event()
    FakeStream.stop_after_three = stop
    try:
        assert not sink.play(one_second, stop)
    finally:
        FakeStream.stop_after_three = None
    assert FakeStream.opened[-1].aborted and len(FakeStream.opened[-1].written) == 3

    def unplugged(**kwargs: object) -> None:
        raise OSError("Device unavailable")

    sd.OutputStream = unplugged  # type: ignore[attr-defined]
    with pytest.raises(SinkError, match="output device #3 failed"):
        sink.play(one_second, threading.Event())


def test_a_replugged_speaker_is_found_again_under_its_new_number() -> None:
    """PortAudio keeps the device list it read at start-up: reopening the microphone after a
    loss re-reads it (waiting for the speaker's utterance), and the speaker, configured by
    name, is looked up again at each utterance."""
    import types

    from voicecoach.audio.devices import PORTAUDIO_STREAMS, refresh_devices
    from voicecoach.audio.playback import SoundDeviceSink

    calls: list[str] = []
    devices = [{"name": "HDMI", "max_input_channels": 0, "max_output_channels": 2},
               {"name": "Jabra Speak 410 USB", "max_input_channels": 1,
                "max_output_channels": 2}]
    sd = types.ModuleType("sounddevice")

    def query_devices(device: object = None, kind: object = None) -> object:
        return devices if device is None else {"default_samplerate": 48000.0}

    def reinit() -> None:
        calls.append("initialize")
        devices.insert(1, {"name": "USB hub", "max_input_channels": 0,
                           "max_output_channels": 2})  # the speakerphone is now #2

    sd.query_devices = query_devices  # type: ignore[attr-defined]
    sd.default = types.SimpleNamespace(device=(None, None))  # type: ignore[attr-defined]
    sd.PortAudioError = RuntimeError  # type: ignore[attr-defined]
    sd.OutputStream = FakeStream  # type: ignore[attr-defined]
    sd._terminate = lambda: calls.append("terminate")  # type: ignore[attr-defined]
    sd._initialize = reinit  # type: ignore[attr-defined]
    sink = SoundDeviceSink(1, sd=sd, spec="jabra")
    assert sink.play(np.zeros(800, dtype=np.int16), threading.Event())
    assert FakeStream.opened[-1].device == 1
    with PORTAUDIO_STREAMS.held():  # the speaker is mid-utterance: the re-read waits for it
        waiter = threading.Thread(target=lambda: calls.append(str(refresh_devices(sd))))
        waiter.start()
        waiter.join(0.2)
        assert calls == []
    waiter.join(30)
    assert calls == ["terminate", "initialize", "True"]
    assert sink.play(np.zeros(800, dtype=np.int16), threading.Event())
    assert FakeStream.opened[-1].device == 2  # the same speaker, found under its new number

    def broken() -> None:
        raise RuntimeError("PortAudio cannot initialise")

    sd._initialize = broken  # type: ignore[attr-defined]
    assert refresh_devices(sd) is False  # logged, never raised: the old list is kept
