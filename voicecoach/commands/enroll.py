"""``voicecoach enroll``: teach the command spotter a user's voice (spoken, or from recordings)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from voicecoach.commands import DefaultsFormatter
from voicecoach.commands._common import settings_from_args
from voicecoach.device.enroll import DEFAULT_USER, live_io, spoken_flow
from voicecoach.device.enroller import (
    Enroller,
    check_writable,
    command_of,
    describe,
    enroll_from,
    session_running,
)
from voicecoach.errors import VoicecoachError
from voicecoach.grammar import Grammar, load_grammar
from voicecoach.history.session_lock import one_session_at_a_time
from voicecoach.listening.spotter.profiles import enrolled_files, forget, load_profile
from voicecoach.listening.spotter.voice import VoiceProfile, check_user
from voicecoach.settings import Settings

_LOGGER = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "enroll", help="teach the command spotter your voice (a few takes of each command)",
        formatter_class=DefaultsFormatter,
        description="The coach asks you to say each command a few times and learns your "
                    "voice from the takes (hands-free: it speaks, you answer). With --from DIR "
                    "it learns from recordings instead: DIR/stop/*.wav, DIR/yes/*.wav, ... "
                    "(a folder per command name or phrase, WAV or FLAC files of any rate "
                    "and channel count). Only the learnt prototypes are kept, in the data "
                    "folder; nothing leaves the machine.")
    parser.add_argument("--user", default=DEFAULT_USER, metavar="NAME",
                        help="whose voice (several users may be enrolled on one device)")
    parser.add_argument("--from", dest="from_dir", default=None, metavar="DIR",
                        help="learn from recordings in DIR/<command>/*.wav (or .flac)")
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


def _live(args: argparse.Namespace, settings: Settings, enroller: Enroller,
          commands: list[str]) -> VoiceProfile:
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


# -- entry ---------------------------------------------------------------------------------
def status(settings: Settings, grammar: Grammar) -> int:
    from voicecoach.listening.spotter.model import load_model, phrase_hash, phrases_of

    files = enrolled_files(settings.data_dir)
    if not files:
        print(f"nobody is enrolled (data folder {settings.data_dir})")
        return 0
    model = load_model()
    ph = phrase_hash(phrases_of(grammar))
    for path in files:
        try:
            print(describe(load_profile(path, model, ph)))
        except VoicecoachError as exc:
            print(f"{path.stem}: cannot be used: {exc.one_line()}")
    return 0


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    grammar = load_grammar(settings.speech.language)
    if args.status:
        return status(settings, grammar)
    if args.forget:
        _check_forgetting(args, settings)  # nothing to forget: said before anything is made
    else:
        _check_enrolling(args, grammar)
    # held for the whole enrollment: a serve reads the enrollments and listens on the
    # microphone, so beside one (or while a session runs) this is refused in one line before
    # anything is recorded or written, and a serve started meanwhile is refused in turn
    with one_session_at_a_time(settings.data_dir, "enroll",
                               microphone=not (args.forget or args.from_dir)):
        if args.forget:
            return _forget(args, settings)
        return _enroll(args, settings, grammar)


def _check_enrolling(args: argparse.Namespace, grammar: Grammar) -> None:
    """The options of an enrollment, checked before the data folder is held."""
    if grammar.language.split("-")[0].lower() != "en":
        raise VoicecoachError(f"enrollment teaches the English command spotter, and the "
                              f"language is '{grammar.language}'", "enroll with --lang en")
    if args.takes < 2 or args.stop_takes < 2:
        raise VoicecoachError("--takes and --stop-takes must be at least 2", "give 2 or more")
    if check_user(args.user) == "all":
        raise VoicecoachError("'all' is not a user name (--forget --user all forgets everyone)",
                              "choose another name with --user")


#: Exit code of ``enroll --forget`` with nothing to forget: nothing was done, which a user who
#: meant another data folder (or a script) must see; 2 stays for refusals and bad options.
NOTHING_TO_FORGET = 1


def _check_forgetting(args: argparse.Namespace, settings: Settings) -> None:
    """Nothing to forget (no data folder, nobody or not that user enrolled in it) is one
    line naming where it looked, before the data folder is held: forgetting makes nothing,
    not the folder nor its lock file."""
    user = None if args.user == "all" else check_user(args.user)
    folder = settings.data_dir
    if not folder.is_dir():
        raise VoicecoachError(f"nothing to forget: there is no data folder {folder}",
                              "give the one the coach uses (--data-dir, VOICECOACH_HOME or "
                              "data_dir in the config)", exit_code=NOTHING_TO_FORGET)
    enrolled = [path.stem for path in enrolled_files(folder)]
    if (not enrolled) if user is None else user not in enrolled:
        raise _nothing_to_forget(args.user, folder)


def _nothing_to_forget(user: str, folder: Path) -> VoicecoachError:
    who = "nobody is enrolled" if user == "all" else f"'{user}' is not enrolled"
    return VoicecoachError(f"nothing to forget: {who} in {folder}",
                           "see who is: voicecoach enroll --status",
                           exit_code=NOTHING_TO_FORGET)


def _forget(args: argparse.Namespace, settings: Settings) -> int:
    user = None if args.user == "all" else check_user(args.user)
    removed = forget(settings.data_dir, user)
    if not removed:  # forgotten by another enroll --forget since it was checked
        raise _nothing_to_forget(args.user, settings.data_dir)
    print(f"forgot the voice of {', '.join(removed)}")
    return 0


def _enroll(args: argparse.Namespace, settings: Settings, grammar: Grammar) -> int:
    """Learn the voice, spoken or from recordings; the data folder is held."""
    pid = session_running(settings.data_dir)  # one the lock cannot show: this process's
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
