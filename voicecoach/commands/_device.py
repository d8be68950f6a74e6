"""The one device loop's input and voice for serve, start and ``run --audio-in``.

A replayed file and the microphone differ only here: where the audio comes from, what speaks
(a simulated speaker on audio time for a replay) and which clock runs. Everything after it is
the same DeviceLoop, so the same WAV gives the same session whichever command replays it.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass

from voicecoach.device.loop import AudioClock
from voicecoach.device.sources import Microphone, SourceOpener, replay
from voicecoach.settings import Settings
from voicecoach.speaking.speaker import Speaker

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopInput:
    """What feeds a DeviceLoop: the audio, the voice, the clock and the echo canceller."""

    open_source: SourceOpener
    speaker: Speaker
    clock: AudioClock
    #: "auto": the loop cleans the mic against what the speaker played; None: no echo to clean.
    canceller: str | None


def simulated_speaker(settings: Settings, clock: AudioClock) -> Speaker:
    """A speaker that only times what it would say, on the loop's audio clock."""
    from voicecoach.speaking.render import EspeakNgRenderer
    from voicecoach.speaking.timeline import WavSpeaker

    renderer = (EspeakNgRenderer(settings.speech.voice, settings.speech.rate)
                if shutil.which("espeak-ng") else None)
    return WavSpeaker(renderer, settings.speech.volume, settings.speech.rate, clock=clock)


def replayed(settings: Settings, paths: list[str], realtime: bool = False) -> LoopInput:
    """Recordings, one after another (each checked now, before anything is recorded); the
    coach's voice is simulated and the files hold no echo of it, so nothing is cancelled."""
    clock = AudioClock(live=realtime)
    open_source = replay(paths, realtime)
    return LoopInput(open_source, simulated_speaker(settings, clock), clock, None)


def live(settings: Settings) -> LoopInput:
    """The microphone (opened now) and the real speaker; the echo canceller on."""
    from voicecoach.speaking.tts import make_speaker

    open_source = Microphone(settings.audio.input_device)
    return LoopInput(open_source, make_speaker(settings), AudioClock(live=True), "auto")
