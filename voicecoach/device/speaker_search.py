"""When the device loop reopens the microphone to look for a lost speaker (a planned reopen).

PortAudio reads its device list once; reading it again (voicecoach.audio.devices.refresh_devices)
closes every stream, so it is never done under a listening microphone. A separate speaker
unplugged and plugged back in was therefore only found at the next microphone loss or a
restart: a headless device stayed mute for good. While the speaker has its device given up, the
loop now closes the microphone, and its reopening re-reads the list (the path a microphone loss
takes: voicecoach.device.sources.Microphone); the speaker tries its device on the fresh list at
its next utterance (voicecoach.speaking.tts). That is a short deaf gap, so it is done only while
the workout is at rest or paused with the belt still (DeviceLoop decides), and at most once per
the speaker's retry interval of audio time.
"""

from __future__ import annotations

import logging

from voicecoach.speaking.speaker import LosesOutput

_LOGGER = logging.getLogger(__name__)


class SpeakerSearch:
    """Says when the loop should reopen the microphone for ``speaker``: one retry interval
    (``speaker.sink_retry_s``, on the loop's audio clock) after it was first seen given up,
    and one after each search while it stays given up; a search due while the belt moves
    waits until it is still."""

    def __init__(self, speaker: LosesOutput) -> None:
        self.speaker = speaker
        #: Audio time the speaker was first seen given up, or of the last search (None: it
        #: works)
        self._since: float | None = None
        self._said = False

    def due(self, t: float, still: bool) -> bool:
        """Whether to reopen the microphone now, at audio time ``t``; ``still``: the belt is
        known not to move. True is logged."""
        if not self.speaker.output_lost:
            self._since = None
            self._said = False
            return False
        if self._since is None:
            self._since = t
            return False
        retry_s = self.speaker.sink_retry_s
        if not still or t - self._since < retry_s:
            return False
        self._since = t
        # the first look of each loss is said; the later ones, every retry_s all day long
        # while the speaker stays away, only at INFO
        level = logging.INFO if self._said else logging.WARNING
        self._said = True
        _LOGGER.log(level, "speaker: still given up; the microphone is reopened to re-read the "
                    "sound devices and look for the speaker (every %g s while the workout "
                    "is at rest or paused)", retry_s)
        return True
