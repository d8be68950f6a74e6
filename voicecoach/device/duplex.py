"""The full-duplex gate: commands heard over the coach's own voice are dropped, except stop.

The device hears itself. Every detection carries its audio times (``start_s``/``end_s``),
and the Speaker reports when each utterance played (``speaking_intervals()``). The gate puts
both on the microphone's audio clock and:

* drops any command other than stop whose phrase overlaps the coach's speech, widened by
  ``ECHO_TAIL_S`` after the speech ends and ``ECHO_LEAD_S`` before it starts (see below);
* lets stop through always; when the coach is speaking or has speech queued (barge-in) it
  first cuts the speech off (``cancel_queued()`` + ``interrupt()``), then stops the session.

Stop itself can be heard in the coach's voice (measured: pocketsphinx found "stop" in "...
at 1.2 miles per hour" with 10 dB treadmill noise). When the coach's samples are known
(``reference``: WavSpeaker in replays, the benchmark and tests) a stop over the speech is
also checked against them: :func:`echo_residual_db` of the mic over the phrase; below
``ECHO_MAX_DB`` (-2 dB) the known speech explains it and it is dropped. Measured on the
benchmark's stop trials: echo alone -7.3 dB median (the false stop above: -3.1 dB), a spoken
stop over the echo -0.5 dB median, -0.7 dB at worst. The device loop wires it for every speaker
that hands out what it played (``played_audio``): on the audio clock for the simulated speaker,
and for the live TtsSpeaker mapped from its clock by when the microphone captured each chunk
(voicecoach.device.loop.AudioClock: however far the loop runs behind real time), searched over
``echo_search_s`` of delay (the live echo path's span); if the mapping were off by more than that
the check fails open: the stop is obeyed.

A stop the recogniser's second look heard (``Detection.verified``: Whisper heard a transcript
open with it, from the phrase's onset at the latest) skips that check. A user who says stop as
loud as the coach's echo is about half explained by the known speech (residual about -3 dB in
a reverberant room): on the real-people barge-in benchmark (40 stops, each said cold and
settled, NLMS canceller) the check dropped 25 of the 80, every one of them verified, while the
coach's own words raised as stop candidates there scored at most 0.0005 at the verifier
(threshold 0.004). No threshold was set from these counts.

A stop acted on without a look (the spotter's confident stop) is still checked. The spotter's
phrase bounds for it are the last loud run begun before its score rose (a run after that,
the coach's echo after a stop fired late, is not the word; session 9: two dev stops were
dropped reading 0.03-0.24 s of echo after the word, residual about 0 dB over the word itself).
A stop the check would still drop is given the recogniser's second look (``second_look``, the
spotter's ``look_again``) and kept if the verifier hears stop: the look is evidence of the
user's word, the residual a guess at who spoke. It only keeps stops that would be lost.

Echo cancellation (voicecoach.audio.aec, run by the device loop before the recogniser) takes
most of the coach's voice out of what the recogniser hears; the gate still sees the raw
microphone (``hear``), so the residual check above keeps its meaning, and both gates stay:
measured on the benchmark with the canceller on, see voicecoach.lab.bench.duplex.

The margins. ``ECHO_TAIL_S`` (0.35 s) covers the speaker's output buffer (50 ms blocks plus
the device latency, about 0.1 s), the room's reverberation (under 0.1 s in a treadmill room),
the microphone's 0.1 s chunk and the recogniser's word-boundary error (measured up to about
0.1 s). ``ECHO_LEAD_S`` is 0: speech that began after a phrase ended cannot
have caused it (its echo reaches the microphone later still), and a lead margin measurably
dropped a real "start" whose misheard twin made the coach answer at once.
A user command said within the tail of the coach's speech is dropped: say it again.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from voicecoach.grammar import STOP
from voicecoach.listening.recogniser import Detection
from voicecoach.speaking.speaker import Speaker, SpeechInterval

_LOGGER = logging.getLogger(__name__)

ECHO_TAIL_S = 0.35
ECHO_LEAD_S = 0.0
#: A stop over the coach's speech whose audio the known speech explains this well (residual
#: below it, dB) is the coach's own voice; only used when the speech samples are known.
ECHO_MAX_DB = -2.0
#: The echo's delay behind the known speech searched by that check (seconds).
ECHO_SEARCH_S = 0.1
MIC_KEEP_S = 8.0
#: Decisions kept for looking back (benchmarks, tests): the newest this many.
KEEP_DECISIONS = 1000
#: The echo check reads at most this much of a stop's phrase, up to its end: a stop is one
#: short word, and phrase bounds found on the loudness envelope can open on the coach's echo
#: before it (measured on a dev trial: bounds 0.41-2.08 s for a stop said at 1.00-1.99 s,
#: dropped at -2.6 dB; the coach's own words stay explained over any part of them).
STOP_CHECK_S = 0.8
#: ... and at least this much from its onset, as far as the microphone has been heard: a
#: recogniser's bounds can hold only the word's first sound (pocketsphinx: 0.13 s of a 0.44 s
#: stop, dropped as the coach's voice), too little of the user to tell from the echo.
STOP_MIN_S = 0.4


@dataclass(frozen=True)
class Decision:
    """What the gate did with a detection: ``accepted``, and why (``reason``)."""

    detection: Detection
    accepted: bool
    reason: str  # "clear", "barge-in", "stop", "over-speech"
    cut_off: int = 0  # utterances dropped or cut off by a barge-in


def identity(t: float) -> float:
    return t


class DuplexGate:
    """Decides, per detection, whether the user said it or the coach's voice did.

    ``to_audio`` maps the speaker's interval times to the microphone's audio time (identity
    for a speaker already on the audio clock, such as WavSpeaker).
    """

    def __init__(self, speaker: Speaker, tail_s: float = ECHO_TAIL_S, lead_s: float = ECHO_LEAD_S,
                 to_audio: Callable[[float], float] = identity,
                 reference: Callable[[float, float], np.ndarray] | None = None,
                 echo_max_db: float = ECHO_MAX_DB, echo_search_s: float = ECHO_SEARCH_S) -> None:
        if tail_s < 0 or lead_s < 0:
            raise ValueError("echo margins cannot be negative")
        self.speaker = speaker
        self.tail_s = tail_s
        self.lead_s = lead_s
        self.to_audio = to_audio
        self.reference = reference
        self.echo_max_db = echo_max_db
        self.echo_search_s = echo_search_s
        #: Asked before a stop the echo check would drop is dropped (the recogniser's second
        #: look, ``SpotterRecogniser.look_again``; wired by the device loop): True keeps it
        self.second_look: Callable[[Detection], bool] | None = None
        #: The newest KEEP_DECISIONS decisions (serve runs for months: never all of them).
        self.decisions: deque[Decision] = deque(maxlen=KEEP_DECISIONS)
        self._mic = np.zeros(0, dtype=np.float32)
        self._mic_end = 0.0

    def hear(self, audio: bytes, end_s: float) -> None:
        """Keep the last ``MIC_KEEP_S`` of microphone audio (only with a ``reference``)."""
        if self.reference is None:
            return
        block = np.frombuffer(audio, dtype="<i2").astype(np.float32) / 32768.0
        keep = int(MIC_KEEP_S * 16000)
        self._mic = np.concatenate([self._mic, block])[-keep:]
        self._mic_end = end_s

    def _echo_only(self, det: Detection) -> float | None:
        """Residual (dB) of the mic over ``det`` against the known speech, if it can be told."""
        if self.reference is None:
            return None
        end_s = min(max(det.end_s, det.start_s + STOP_MIN_S), self._mic_end)
        start_s = max(det.start_s, end_s - STOP_CHECK_S)
        n = int(round((end_s - start_s) * 16000))
        back = int(round((self._mic_end - end_s) * 16000))
        end = self._mic.size - back
        if n <= 0 or back < 0 or end - n < 0:
            return None
        mic = self._mic[end - n:end]
        ref = self.reference(start_s - self.echo_search_s, end_s)
        return echo_residual_db(mic, ref, max_delay_s=self.echo_search_s)

    def spans(self) -> list[tuple[float, float]]:
        """The coach's speech as (start, end) in audio time; end is +inf while it plays."""
        out = []
        for iv in self.speaker.speaking_intervals():
            out.append(_span(iv, self.to_audio))
        return out

    def echo_spans(self) -> list[tuple[float, float]]:
        """Where the coach's echo can be in the microphone: :meth:`spans` widened by the
        margins (``lead_s`` before, ``tail_s`` after)."""
        return [(a - self.lead_s, b + self.tail_s) for a, b in self.spans()]

    def over_speech(self, start_s: float, end_s: float) -> bool:
        """True if [start_s, end_s] overlaps the coach's speech widened by the margins."""
        for iv in reversed(self.speaker.speaking_intervals()):
            begin, end = _span(iv, self.to_audio)
            if end + self.tail_s < start_s:
                # intervals are in time order: older ones ended even earlier
                if iv.end is not None:
                    break
                continue
            if begin - self.lead_s <= end_s:
                return True
        return False

    def barge_in(self) -> int:
        """Cut the coach off now: drop what is queued and stop what is playing."""
        speaking = self.speaker.is_speaking()
        dropped = self.speaker.cancel_queued()
        self.speaker.interrupt()
        return dropped + (1 if speaking else 0)

    def decide(self, det: Detection) -> Decision:
        """Accept or drop ``det``; a stop also cuts the coach's speech off."""
        # a stop the recogniser's second look heard opening the phrase is not checked against
        # the known speech: said as loud as the coach's echo, it is half explained by it
        residual = self._echo_only(det) if det.command == STOP and not det.verified and \
            self.over_speech(det.start_s, det.end_s) else None
        if residual is not None and residual < self.echo_max_db and self.second_look is not None \
                and self.second_look(det):
            # a confident stop (acted on without a look) that the echo check would drop: the
            # verifier heard stop in it, and that is evidence; the residual is a guess
            _LOGGER.info("duplex: stop at %.2f s kept: the second look heard it over the coach's "
                         "voice (residual %.1f dB)", det.start_s, residual)
            det = replace(det, verified=True)
            residual = None
        if residual is not None and residual < self.echo_max_db:
            decision = Decision(det, False, "echo")
            _LOGGER.info("duplex: stop at %.2f s dropped: the coach's own voice explains it "
                         "(residual %.1f dB)", det.start_s, residual)
        elif det.command == STOP:
            cut = self.barge_in()
            decision = Decision(det, True, "barge-in" if cut else "stop", cut)
        elif self.over_speech(det.start_s, det.end_s):
            decision = Decision(det, False, "over-speech")
            _LOGGER.debug("duplex: %r at %.2f-%.2f s dropped: the coach was speaking",
                          det.phrase, det.start_s, det.end_s)
        else:
            decision = Decision(det, True, "clear")
        self.decisions.append(decision)
        return decision

    @property
    def suppressed(self) -> list[Decision]:
        """Detections dropped because they overlapped the coach's speech."""
        return [d for d in self.decisions if not d.accepted]


def _span(iv: SpeechInterval, to_audio: Callable[[float], float]) -> tuple[float, float]:
    end = math.inf if iv.end is None else to_audio(iv.end)
    return to_audio(iv.start), end


def echo_residual_db(mic: np.ndarray, reference: np.ndarray, max_delay_s: float = 0.1,
                     rate: int = 16000) -> float:
    """How much of ``mic`` the known speech ``reference`` cannot explain, in dB.

    Finds the delay (0..``max_delay_s``) and gain that best fit the reference to the mic
    (least squares) and returns 10*log10(residual energy / mic energy): near 0 dB when the
    mic holds something else (the user, noise), strongly negative when it is the echo alone.
    Both arrays start at the same audio time; ``reference`` needs ``max_delay_s`` of history
    before it, so pass it that much longer at the front.
    """
    x = np.asarray(mic, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    lag_max = int(round(max_delay_s * rate))
    n = x.size
    energy = float(np.dot(x, x))
    if n == 0 or energy <= 0:
        return 0.0
    if ref.size < lag_max + n:
        ref = np.concatenate([ref, np.zeros(lag_max + n - ref.size)])
    best = energy
    for lag in range(0, lag_max + 1, 8):
        r = ref[lag_max - lag:lag_max - lag + n]
        rr = float(np.dot(r, r))
        if rr <= 0:
            continue
        xr = float(np.dot(x, r))
        best = min(best, max(energy - xr * xr / rr, energy * 1e-9))
    return 10.0 * math.log10(best / energy)
