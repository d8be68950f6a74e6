"""A speaker plugged back in under a new number: the device list is read again when the speaker is
tried again, never while the microphone listens, and a speaker given up tries its device again at
its next utterance once anyone has re-read the list."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import numpy as np
import pytest
from fake_sounddevice import FakeSoundDevice, device

from voicecoach.audio.devices import refresh_devices
from voicecoach.audio.mic import MicSource
from voicecoach.audio.playback import SoundDeviceSink
from voicecoach.lab.cached import CachedRenderer
from voicecoach.speaking.render import EspeakNgRenderer
from voicecoach.speaking.tts import TtsSpeaker

pytestmark = pytest.mark.skipif(
    __import__("shutil").which("espeak-ng") is None, reason="espeak-ng is not installed")

#: No wait here is longer than this (a hang guard, not a measurement).
STALL_S = 60.0


@pytest.fixture
def sd(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSoundDevice]:
    """A USB speakerphone (#0) whose speaker stops taking sound without failing."""
    fake = FakeSoundDevice([device("Jabra", 1, 2)], audio=np.zeros(16000, dtype=np.int16))
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    fake.output_stuck = True
    try:
        yield fake
    finally:
        fake.output_released.set()


def test_a_stuck_speaker_plugged_back_in_is_found_once_the_microphone_lets_go(
        sd: FakeSoundDevice) -> None:
    """The speaker's write never returns (given up: the coach goes on without sound); the
    speakerphone is pulled out and plugged back in, under a new number. While the microphone
    listens, the speaker's retry does not re-read the list (that would close the microphone's
    stream) nor open the stuck device again. Once the microphone has let go (lost with the
    speakerphone), the retry re-reads the list and the speaker is found under its new number.
    Before, the stuck write held PortAudio for good: the speaker was never tried again and the
    list was never re-read until a restart."""
    speaker = TtsSpeaker(CachedRenderer(EspeakNgRenderer()), SoundDeviceSink(0, sd=sd,
                                                                            spec="jabra"),
                         sink_retry_s=0.0, play_grace_s=0.2)
    try:
        speaker.say("Ready.")
        assert speaker.wait_idle(STALL_S)
        assert sd.writes_stuck.acquire(timeout=0)      # its write never returned
        sd.replugged = [device("HDMI", 0, 2), device("Jabra", 1, 2)]
        sd.output_stuck = False
        mic = MicSource(None)
        chunks = mic.chunks()
        next(chunks)                                   # the microphone listens
        speaker.say("Faster.")
        assert speaker.wait_idle(STALL_S)
        assert sd.reinitialised == 0 and len(sd.outputs) == 1
        chunks.close()                                 # the microphone lost
        speaker.say("Slower.")
        assert speaker.wait_idle(STALL_S)
    finally:
        speaker.close()
    assert sd.reinitialised == 1
    assert len(sd.outputs) == 2 and sd.outputs[-1].kwargs["device"] == 1
    assert sd.outputs[-1].written                      # it played


def test_a_speaker_given_up_tries_its_device_again_once_the_list_was_re_read(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The speaker was unplugged and plugged back in (under a new number): its utterance fails
    on PortAudio's old list and the device is given up, to be tried again in an hour. The list
    is then re-read elsewhere (the device loop's microphone reopen, or a microphone loss): the
    next utterance tries the device at once, on the new list, and plays. Before, it waited
    out its retry interval (30 s on the device) in silence even with the new list there."""
    fake = FakeSoundDevice([device("Jabra", 1, 2)])
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    fake.replugged = [device("HDMI", 0, 2), device("Jabra", 1, 2)]
    speaker = TtsSpeaker(CachedRenderer(EspeakNgRenderer()),
                         SoundDeviceSink(0, sd=fake, spec="jabra"), sink_retry_s=3600.0)
    try:
        speaker.say("Ready.")
        assert speaker.wait_idle(STALL_S)
        assert fake.outputs == []                      # it could not be opened: given up
        assert refresh_devices(fake)                   # nothing open: the list is re-read
        speaker.say("Faster.")
        assert speaker.wait_idle(STALL_S)
    finally:
        speaker.close()
    assert len(fake.outputs) == 1 and fake.outputs[0].kwargs["device"] == 1
    assert fake.outputs[0].written                     # it played
    assert not speaker.output_lost
