"""Enrollment's spoken dialogue: the coach asks for each command, records, checks, explains
and asks again; ``serve`` offers it once by voice. Takes are checked and embedded by
voicecoach.device.enroller."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from voicecoach.audio.chunk import AudioChunk
from voicecoach.device.enroller import Enroller, check_writable
from voicecoach.errors import VoicecoachError
from voicecoach.events import Priority
from voicecoach.grammar import Grammar
from voicecoach.listening.recogniser import Recogniser
from voicecoach.listening.spotter.calibrate import odd_takes
from voicecoach.listening.spotter.decide import STOP
from voicecoach.listening.spotter.profiles import enrolled_files, enrollment_dir
from voicecoach.listening.spotter.takes import MAX_SPEECH_S, QUIET_DBFS, TakeRejected
from voicecoach.listening.spotter.voice import VoiceProfile, weights_sha256
from voicecoach.phrases import load_phrases
from voicecoach.settings import Settings
from voicecoach.speaking.speaker import Speaker

_LOGGER = logging.getLogger(__name__)

DEFAULT_USER = "default"


# -- the spoken flow -----------------------------------------------------------------------
class TakeRecorder:
    """Cuts one take out of a live stream with an energy voice-activity detector."""

    def __init__(self, wait_s: float = 6.0, tail_s: float = 0.6, lead_s: float = 0.3) -> None:
        self.wait_s = wait_s
        self.tail_s = tail_s
        self.lead_s = lead_s

    def record(self, chunks: Iterator[AudioChunk]) -> np.ndarray:
        """Samples from just before the speech to just after it; TakeRejected if nothing
        was said within ``wait_s`` or the speech ran past the longest take."""
        frame = 480                          # 30 ms
        buf = np.zeros(0, np.int16)
        floor: float | None = None
        onset: int | None = None
        quiet = 0
        pos = 0
        for chunk in chunks:
            buf = np.concatenate([buf, np.frombuffer(chunk.audio, "<i2")])
            while pos + frame <= buf.size:
                x = buf[pos:pos + frame].astype(np.float64) / 32768.0
                db = 10.0 * np.log10(float(np.mean(x * x)) + 1e-12)
                pos += frame
                if floor is None:
                    floor = db
                if onset is None:
                    if db > max(floor + 12.0, QUIET_DBFS):
                        onset = max(0, pos - frame - int(self.lead_s * 16000))
                    else:
                        floor = min(db, 0.9 * floor + 0.1 * db)
                        if pos > self.wait_s * 16000:
                            raise TakeRejected("I heard nothing", "say the command louder")
                    continue
                quiet = quiet + 1 if db < max(floor + 6.0, QUIET_DBFS) else 0
                if quiet * frame >= self.tail_s * 16000:
                    return buf[onset:pos]
                if pos - onset > MAX_SPEECH_S * 16000 + self.lead_s * 16000:
                    raise TakeRejected("you spoke for too long",
                                         "say only the command, then wait")
        if onset is None:
            raise TakeRejected("I heard nothing", "say the command louder")
        return buf[onset:]


def spoken_flow(enroller: Enroller, commands: Iterable[str], takes: int, stop_takes: int,
                chunks: Iterator[AudioChunk], say: Callable[[str], None],
                recorder: TakeRecorder | None = None, attempts: int = 4,
                keep_audio: bool = False) -> VoiceProfile:
    """Ask for each command, record, check, explain and ask again; then adapt and save."""
    rec = recorder or TakeRecorder()
    words = load_phrases(enroller.grammar.language)
    say(words.ENROLL_INTRO)
    for command in commands:
        phrase = enroller.grammar.phrases[command][0]
        wanted = stop_takes if command == STOP else takes
        got = 0
        failures = 0
        while got < wanted:
            say(words.ENROLL_SAY.format(phrase=phrase))
            try:
                samples = rec.record(chunks)
                enroller.add(samples, command, phrase)
            except TakeRejected as exc:
                failures += 1
                say(words.ENROLL_AGAIN.format(reason=exc.message, hint=exc.hint))
                if failures >= attempts:
                    raise VoicecoachError(f"enrollment of '{command}' gave up after "
                                          f"{failures} unusable takes ({exc.message})",
                                          "find a quieter moment and run voicecoach enroll "
                                          "again") from None
                continue
            got += 1
            if got == wanted:
                odd = [i for i, _ in odd_takes(enroller.takes)
                       if enroller.takes[i].command == command]
                if odd:
                    failures += 1
                    enroller.drop(odd)
                    got -= len(odd)
                    say(words.ENROLL_NOT_ALIKE.format(phrase=phrase))
                    if failures >= attempts:
                        raise VoicecoachError(f"enrollment of '{command}' gave up: the takes "
                                              "did not sound alike",
                                              "find a quieter moment and run voicecoach "
                                              "enroll again")
    profile = enroller.finish(keep_audio)
    say(words.ENROLL_DONE)
    return profile


def live_io(speaker: Speaker, stream: Iterator[AudioChunk]
            ) -> tuple[Callable[[str], None], Iterator[AudioChunk]]:
    """A ``say`` that speaks and waits until it is said, and the microphone's chunks without
    what it heard while the coach spoke (that is not a take)."""
    def say(text: str) -> None:
        print(f"coach: {text}", file=sys.stderr, flush=True)
        speaker.say(text, Priority.ANSWER, 0.0)
        wait = getattr(speaker, "wait_idle", None)
        if callable(wait):
            wait(15.0)

    def fresh() -> Iterator[AudioChunk]:
        for chunk in stream:
            if not speaker.is_speaking():
                yield chunk
    return say, fresh()


# -- serve offers it the first time --------------------------------------------------------
OFFERED = ".offered"


def _model_tag(recogniser: object) -> str:
    model = getattr(recogniser, "model", None)
    try:
        return weights_sha256(model) if model is not None else ""
    except OSError:
        return ""


def should_offer(settings: Settings, recogniser: object) -> bool:
    """Offer enrollment by voice: a recogniser that learns voices, no usable enrollment, and
    not offered before for these weights on this data folder (an enrollment made for older
    weights is offered again once)."""
    if not callable(getattr(recogniser, "use_data_dir", None)):
        return False
    scorer = getattr(recogniser, "enrolled", None)
    if scorer:          # somebody's enrollment is in use
        return False
    if enrolled_files(settings.data_dir) and not getattr(recogniser, "enrollment_problems",
                                                           None):
        return False
    marker = enrollment_dir(settings.data_dir) / OFFERED
    try:
        return marker.read_text(encoding="utf-8").strip() != _model_tag(recogniser)
    except OSError:
        return True


def offer_by_voice(settings: Settings, grammar: Grammar, recogniser: Recogniser,
                   chunks: Iterator[AudioChunk], say: Callable[[str], None],
                   answer_s: float = 10.0, commands: Iterable[str] | None = None) -> bool:
    """Ask once whether to learn the user's voice; on "yes", run the spoken flow on the same
    microphone. Whatever happens, serving goes on: a problem is one line on stderr."""
    try:
        check_writable(settings.data_dir)
        (enrollment_dir(settings.data_dir) / OFFERED).write_text(_model_tag(recogniser) + "\n",
                                                                   encoding="utf-8")
    except (VoicecoachError, OSError) as exc:
        _LOGGER.warning("enrollment not offered: %s", exc)
        return False
    stale = bool(enrolled_files(settings.data_dir))
    words = load_phrases(grammar.language)
    say(words.ENROLL_OFFER_AGAIN if stale else words.ENROLL_OFFER)
    recogniser.reset()
    recogniser.set_commands(("yes", "no", STOP))
    answer = ""
    for chunk in chunks:
        heard = recogniser.accept(chunk)
        if heard:
            answer = heard[0].command
            break
        if chunk.end_s > answer_s:
            break
    recogniser.reset()
    if answer != "yes":
        say(words.ENROLL_LATER)
        return False
    try:
        spoken_flow(Enroller(settings, grammar, DEFAULT_USER),
                    list(commands or grammar.commands), 3, 5, chunks, say)
    except VoicecoachError as exc:
        print(f"voicecoach: enrollment: {exc.one_line()}", file=sys.stderr, flush=True)
        say(words.ENROLL_FAILED)
        return False
    use = getattr(recogniser, "use_data_dir", None)
    if callable(use):
        print(f"voicecoach: {use(settings.data_dir)}", file=sys.stderr, flush=True)
    return True
