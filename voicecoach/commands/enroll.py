"""``voicecoach enroll``: teach the command spotter a user's voice (spoken, or from recordings)."""

from __future__ import annotations

import argparse
import logging
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from voicecoach.audio.chunk import AudioChunk
from voicecoach.commands import DefaultsFormatter
from voicecoach.commands._common import settings_from_args
from voicecoach.errors import VoicecoachError
from voicecoach.events import Priority
from voicecoach.grammar import Grammar, load_grammar, normalise
from voicecoach.listening.recogniser import Recogniser
from voicecoach.listening.spotter import enroll as E
from voicecoach.listening.spotter.decide import STOP
from voicecoach.settings import Settings
from voicecoach.speaking.speaker import Speaker

_LOGGER = logging.getLogger(__name__)

WAV_SUFFIXES = (".wav", ".wave")
DEFAULT_USER = "default"


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "enroll", help="teach the command spotter your voice (a few takes of each command)",
        formatter_class=DefaultsFormatter,
        description="The coach asks you to say each command a few times and learns your "
                    "voice from the takes (hands-free: it speaks, you answer). With --from DIR "
                    "it learns from recordings instead: DIR/stop/*.wav, DIR/yes/*.wav, ... "
                    "(a folder per command name or phrase, WAVs of any rate and channel "
                    "count). Only the learnt prototypes are kept, in the data folder; nothing "
                    "leaves the machine.")
    parser.add_argument("--user", default=DEFAULT_USER, metavar="NAME",
                        help="whose voice (several users may be enrolled on one device)")
    parser.add_argument("--from", dest="from_dir", default=None, metavar="DIR",
                        help="learn from recordings in DIR/<command>/*.wav")
    parser.add_argument("--status", action="store_true",
                        help="say who is enrolled, for which commands and when, and exit")
    parser.add_argument("--forget", action="store_true",
                        help="remove the enrollment of --user (with --user all: everyone's)")
    parser.add_argument("--lang", default=None, help="grammar language (default: en; "
                        "enrollment teaches the English command spotter)")
    parser.add_argument("--keep-audio", action="store_true",
                        help="also keep the takes as WAVs in the data folder")
    parser.add_argument("--commands", default=None, metavar="LIST",
                        help="spoken flow: only these commands, comma-separated (default: "
                             "every command of the grammar)")
    parser.add_argument("--takes", type=int, default=3, metavar="N",
                        help="spoken flow: takes of each command")
    parser.add_argument("--stop-takes", type=int, default=5, metavar="N",
                        help="spoken flow: takes of 'stop'")
    parser.add_argument("--input-device", default=None, metavar="D",
                        help="microphone: a device number or part of its name")
    parser.add_argument("--output-device", default=None, metavar="D",
                        help="speaker: a device number or part of its name")
    parser.set_defaults(func=run)


# -- the checks shared by both flows -------------------------------------------------------
def session_running(data_dir: Path) -> int | None:
    """The pid of a workout session that is running now on this data folder, if any."""
    from voicecoach.history.liveness import pid_alive

    db = Path(data_dir) / "history.sqlite3"
    if not db.is_file():
        return None
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2.0)
        try:
            rows = conn.execute("SELECT pid, proc_token FROM sessions WHERE status = 'running'"
                                ).fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    for pid, token in rows:
        if pid_alive(int(pid or 0), token or ""):
            return int(pid)
    return None


def check_writable(data_dir: Path) -> None:
    """One clear error now, before any take is recorded, if the data folder is read-only."""
    folder = E.enrollment_dir(data_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise VoicecoachError(f"the data folder {data_dir} is not writable "
                              f"({exc.strerror or exc})",
                              "make it writable or choose another with --data-dir") from None


def command_of(name: str, grammar: Grammar) -> tuple[str, str]:
    """A folder name (a command name or one of its phrases) -> (command, phrase)."""
    text = normalise(name.replace("_", " ").replace("-", " "))
    if name in grammar.phrases:
        return name, grammar.phrases[name][0]
    for cmd, phrases in grammar.phrases.items():
        if text == normalise(cmd.replace("_", " ")):
            return cmd, phrases[0]
        if text in (normalise(p) for p in phrases):
            return cmd, text
    raise VoicecoachError(f"folder '{name}' is named after no command",
                          "name each folder after a command or one of its phrases: "
                          + ", ".join(grammar.commands))


class Enroller:
    """Checks and embeds takes one by one, then adapts and saves: both flows use it."""

    def __init__(self, settings: Settings, grammar: Grammar, user: str) -> None:
        from voicecoach.listening.spotter.features import EmbeddingFrontEnd
        from voicecoach.listening.spotter.model import load_model, phrase_hash, phrases_of

        self.settings = settings
        self.grammar = grammar
        self.user = E.check_user(user)
        self.model = load_model()
        self.model.check_grammar(grammar)
        self.phrases = phrases_of(grammar)
        self.phrase_hash = phrase_hash(self.phrases)
        self.fe = EmbeddingFrontEnd()
        self.silence = self.fe.warm_embeddings()
        decision = self.model.decision
        self._word_threshold = float(max(decision["stop_threshold"], decision["threshold"]))
        self.takes: list[E.EmbeddedTake] = []
        self.audio: list[tuple[str, np.ndarray]] = []
        self.rejected = 0

    def add(self, samples: np.ndarray, command: str, phrase: str) -> E.EmbeddedTake:
        """Check and embed one take; :class:`TakeRejected` saying why it cannot be used."""
        try:
            bounds = E.check_take(samples)
            take = E.embed_take(self.fe, self.model, self.silence, samples, command, phrase,
                                bounds)
            heard = E.other_word(take, self.phrases, self.model.labels, self._word_threshold)
            if heard is not None:
                raise E.TakeRejected(f"that sounded like '{self.phrases[heard][0]}', not "
                                     f"'{phrase}'", f"say '{phrase}'")
        except E.TakeRejected:
            self.rejected += 1
            raise
        self.takes.append(take)
        self.audio.append((command, np.asarray(samples, np.int16)))
        return take

    def drop(self, indices: Iterable[int]) -> None:
        """Forget these takes (odd ones)."""
        gone = set(indices)
        self.takes = [t for i, t in enumerate(self.takes) if i not in gone]
        self.audio = [a for i, a in enumerate(self.audio) if i not in gone]
        self.rejected += len(gone)

    def finish(self, keep_audio: bool) -> E.VoiceProfile:
        if not self.takes:
            raise VoicecoachError("no usable take was recorded", "run voicecoach enroll again")
        with self.fe:
            noise = E.noise_windows(self.fe, self.model, self.silence)
        profile = E.adapt(self.user, self.takes, self.model, noise, self.phrase_hash)
        profile.meta["takes_rejected"] = self.rejected
        profile.meta["audio_kept"] = keep_audio
        E.save_profile(self.settings.data_dir, profile)
        if keep_audio:
            self._keep()
        return profile

    def _keep(self) -> None:
        from voicecoach.audio.wav import write_wav

        folder = E.enrollment_dir(self.settings.data_dir) / "audio" / self.user
        count: dict[str, int] = {}
        try:
            for command, samples in self.audio:
                count[command] = count.get(command, 0) + 1
                write_wav(folder / command / f"take{count[command]}.wav", samples)
        except OSError as exc:
            raise VoicecoachError(f"cannot keep the takes in {folder} ({exc.strerror or exc})",
                                  "make the data folder writable") from None


def describe(profile: E.VoiceProfile) -> str:
    cmds = ", ".join(f"{c} ({v.takes})" for c, v in sorted(profile.commands.items()))
    return f"{profile.user}: enrolled {profile.created} for {cmds}"


# -- --from DIR ----------------------------------------------------------------------------
def takes_in(folder: Path, grammar: Grammar) -> list[tuple[str, str, list[Path]]]:
    """(command, phrase, WAV files) of every command folder in ``folder``."""
    if not folder.is_dir():
        raise VoicecoachError(f"enrollment folder {folder}: no such folder",
                              "give a folder holding one folder per command (DIR/stop/*.wav)")
    subs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subs:
        raise VoicecoachError(f"enrollment folder {folder} holds no command folders",
                              "put the takes in DIR/stop/*.wav, DIR/yes/*.wav, ...")
    out: dict[str, tuple[str, list[Path]]] = {}
    for sub in subs:
        command, phrase = command_of(sub.name, grammar)
        wavs = sorted(p for p in sub.iterdir() if p.suffix.lower() in WAV_SUFFIXES
                      and p.is_file())
        if not wavs:
            raise VoicecoachError(f"folder {sub} holds no .wav files",
                                  "record at least 2 takes of the command there")
        have = out.setdefault(command, (phrase, []))
        have[1].extend(wavs)
    for command, (_phrase, wavs) in out.items():
        if len(wavs) < 2:
            raise VoicecoachError(f"only {len(wavs)} take of '{command}' in {folder}",
                                  "record at least 2 takes of each command (3 are better, "
                                  "5 of stop)")
    return [(c, p, w) for c, (p, w) in out.items()]


def enroll_from(enroller: Enroller, folder: Path, keep_audio: bool) -> E.VoiceProfile:
    from voicecoach.audio.wav import read_wav_16k

    names: list[Path] = []
    for command, phrase, wavs in takes_in(folder, enroller.grammar):
        for wav in wavs:
            samples = read_wav_16k(wav)     # a corrupt file: one VoicecoachError naming it
            try:
                enroller.add(samples, command, phrase)
            except E.TakeRejected as exc:
                raise VoicecoachError(f"{wav}: {exc.message}",
                                      f"{exc.hint}; or remove that file") from None
            names.append(wav)
    odd = E.odd_takes(enroller.takes)
    if odd:
        files = ", ".join(str(names[i]) for i, _ in odd)
        raise VoicecoachError(f"{files}: {odd[0][1]}",
                              "record that command again, or remove the odd take")
    return enroller.finish(keep_audio)


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
                    if db > max(floor + 12.0, E.QUIET_DBFS):
                        onset = max(0, pos - frame - int(self.lead_s * 16000))
                    else:
                        floor = min(db, 0.9 * floor + 0.1 * db)
                        if pos > self.wait_s * 16000:
                            raise E.TakeRejected("I heard nothing", "say the command louder")
                    continue
                quiet = quiet + 1 if db < max(floor + 6.0, E.QUIET_DBFS) else 0
                if quiet * frame >= self.tail_s * 16000:
                    return buf[onset:pos]
                if pos - onset > E.MAX_SPEECH_S * 16000 + self.lead_s * 16000:
                    raise E.TakeRejected("you spoke for too long",
                                         "say only the command, then wait")
        if onset is None:
            raise E.TakeRejected("I heard nothing", "say the command louder")
        return buf[onset:]


def spoken_flow(enroller: Enroller, commands: Iterable[str], takes: int, stop_takes: int,
                chunks: Iterator[AudioChunk], say: Callable[[str], None],
                recorder: TakeRecorder | None = None, attempts: int = 4,
                keep_audio: bool = False) -> E.VoiceProfile:
    """Ask for each command, record, check, explain and ask again; then adapt and save."""
    rec = recorder or TakeRecorder()
    say("Let's learn your voice. After each prompt, say the word, then wait.")
    for command in commands:
        phrase = enroller.grammar.phrases[command][0]
        wanted = stop_takes if command == STOP else takes
        got = 0
        failures = 0
        while got < wanted:
            say(f"Say: {phrase}.")
            try:
                samples = rec.record(chunks)
                enroller.add(samples, command, phrase)
            except E.TakeRejected as exc:
                failures += 1
                say(f"Once more: {exc.message}. {exc.hint}.")
                if failures >= attempts:
                    raise VoicecoachError(f"enrollment of '{command}' gave up after "
                                          f"{failures} unusable takes ({exc.message})",
                                          "find a quieter moment and run voicecoach enroll "
                                          "again") from None
                continue
            got += 1
            if got == wanted:
                odd = [i for i, _ in E.odd_takes(enroller.takes)
                       if enroller.takes[i].command == command]
                if odd:
                    failures += 1
                    enroller.drop(odd)
                    got -= len(odd)
                    say(f"Once more: one take did not sound like the others. Say "
                        f"{phrase} as you would on the treadmill.")
                    if failures >= attempts:
                        raise VoicecoachError(f"enrollment of '{command}' gave up: the takes "
                                              "did not sound alike",
                                              "find a quieter moment and run voicecoach "
                                              "enroll again")
    profile = enroller.finish(keep_audio)
    say("Thank you. I know your voice now.")
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


def _live(args: argparse.Namespace, settings: Settings, enroller: Enroller,
          commands: list[str]) -> E.VoiceProfile:
    from voicecoach.audio.mic import MicSource
    from voicecoach.speaking.tts import make_speaker

    speaker = make_speaker(settings)
    source = MicSource(settings.audio.input_device)
    say, chunks = live_io(speaker, source.chunks())
    try:
        return spoken_flow(enroller, commands, args.takes, args.stop_takes, chunks, say,
                           keep_audio=args.keep_audio)
    finally:
        source.close()
        speaker.close()


# -- serve offers it the first time --------------------------------------------------------
OFFERED = ".offered"


def _model_tag(recogniser: object) -> str:
    model = getattr(recogniser, "model", None)
    try:
        return E.weights_sha256(model) if model is not None else ""
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
    if E.enrolled_files(settings.data_dir) and not getattr(recogniser, "enrollment_problems",
                                                           None):
        return False
    marker = E.enrollment_dir(settings.data_dir) / OFFERED
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
        (E.enrollment_dir(settings.data_dir) / OFFERED).write_text(_model_tag(recogniser) + "\n",
                                                                   encoding="utf-8")
    except (VoicecoachError, OSError) as exc:
        _LOGGER.warning("enrollment not offered: %s", exc)
        return False
    stale = bool(E.enrolled_files(settings.data_dir))
    say(("The command spotter was updated, and your voice must be learnt again. "
         if stale else "I can learn your voice, so that I hear you every time. ")
        + "It takes two minutes. Say yes to start, or no.")
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
        say("All right. You can do it later with voicecoach enroll.")
        return False
    try:
        spoken_flow(Enroller(settings, grammar, DEFAULT_USER),
                    list(commands or grammar.commands), 3, 5, chunks, say)
    except VoicecoachError as exc:
        print(f"voicecoach: enrollment: {exc.one_line()}", file=sys.stderr, flush=True)
        say("That did not work out. You can do it later with voicecoach enroll.")
        return False
    use = getattr(recogniser, "use_data_dir", None)
    if callable(use):
        print(f"voicecoach: {use(settings.data_dir)}", file=sys.stderr, flush=True)
    return True


# -- entry ---------------------------------------------------------------------------------
def status(settings: Settings, grammar: Grammar) -> int:
    from voicecoach.listening.spotter.model import load_model, phrase_hash, phrases_of

    files = E.enrolled_files(settings.data_dir)
    if not files:
        print(f"nobody is enrolled (data folder {settings.data_dir})")
        return 0
    model = load_model()
    ph = phrase_hash(phrases_of(grammar))
    for path in files:
        try:
            print(describe(E.load_profile(path, model, ph)))
        except VoicecoachError as exc:
            print(f"{path.stem}: cannot be used: {exc.one_line()}")
    return 0


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    grammar = load_grammar(settings.speech.language)
    if args.status:
        return status(settings, grammar)
    if args.forget:
        user = None if args.user == "all" else E.check_user(args.user)
        removed = E.forget(settings.data_dir, user)
        if not removed:
            raise VoicecoachError(f"'{args.user}' is not enrolled",
                                  "see who is: voicecoach enroll --status")
        print(f"forgot the voice of {', '.join(removed)}")
        return 0
    if grammar.language.split("-")[0].lower() != "en":
        raise VoicecoachError(f"enrollment teaches the English command spotter, and the "
                              f"language is '{grammar.language}'", "enroll with --lang en")
    if args.takes < 2 or args.stop_takes < 2:
        raise VoicecoachError("--takes and --stop-takes must be at least 2", "give 2 or more")
    if E.check_user(args.user) == "all":
        raise VoicecoachError("'all' is not a user name (--forget --user all forgets everyone)",
                              "choose another name with --user")
    pid = session_running(settings.data_dir)
    if pid is not None:
        raise VoicecoachError(f"a workout session is running (process {pid})",
                              "enroll when it has ended")
    check_writable(settings.data_dir)
    enroller = Enroller(settings, grammar, args.user)
    if args.from_dir:
        profile = enroll_from(enroller, Path(args.from_dir), args.keep_audio)
    else:
        commands = list(grammar.commands)
        if args.commands:
            commands = [command_of(c.strip(), grammar)[0] for c in args.commands.split(",")
                        if c.strip()]
        profile = _live(args, settings, enroller, commands)
    print(describe(profile) + f" (adaptation {profile.adapt_cpu_s * 1000:.0f} ms CPU)")
    return 0
