"""Enrollment's takes: checked and embedded one by one, then adapted and saved; also from a
folder of recordings (``voicecoach enroll --from DIR``). The checks, calibration, storage
and scoring are voicecoach.listening.spotter.takes, .calibrate, .profiles and .enroll; the
spoken dialogue is voicecoach.device.enroll."""

from __future__ import annotations

import logging
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from voicecoach.audio.checks import AUDIO_SUFFIXES
from voicecoach.errors import VoicecoachError
from voicecoach.grammar import Grammar, normalise
from voicecoach.listening.spotter.calibrate import (
    EmbeddedTake,
    adapt,
    embed_take,
    noise_windows,
    odd_takes,
    other_word,
)
from voicecoach.listening.spotter.profiles import (
    enrollment_dir,
    load_profile,
    profile_path,
    save_profile,
)
from voicecoach.listening.spotter.takes import TakeRejected, check_take
from voicecoach.listening.spotter.voice import VoiceProfile, check_user
from voicecoach.settings import Settings

_LOGGER = logging.getLogger(__name__)


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
    folder = enrollment_dir(data_dir)
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
        self.user = check_user(user)
        self.model = load_model()
        self.model.check_grammar(grammar)
        self.phrases = phrases_of(grammar)
        self.phrase_hash = phrase_hash(self.phrases)
        self.fe = EmbeddingFrontEnd()
        self.silence = self.fe.warm_embeddings()
        decision = self.model.decision
        self._word_threshold = float(max(decision["stop_threshold"], decision["threshold"]))
        self.takes: list[EmbeddedTake] = []
        self.audio: list[tuple[str, np.ndarray]] = []
        self.rejected = 0
        #: commands kept from the user's earlier enrollment by :meth:`finish`
        self.kept: list[str] = []

    def add(self, samples: np.ndarray, command: str, phrase: str) -> EmbeddedTake:
        """Check and embed one take; :class:`TakeRejected` saying why it cannot be used."""
        try:
            bounds = check_take(samples)
            take = embed_take(self.fe, self.model, self.silence, samples, command, phrase,
                                bounds)
            heard = other_word(take, self.phrases, self.model.labels, self._word_threshold)
            if heard is not None:
                raise TakeRejected(f"that sounded like '{self.phrases[heard][0]}', not "
                                     f"'{phrase}'", f"say '{phrase}'")
        except TakeRejected:
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

    def finish(self, keep_audio: bool) -> VoiceProfile:
        if not self.takes:
            raise VoicecoachError("no usable take was recorded", "run voicecoach enroll again")
        with self.fe:
            noise = noise_windows(self.fe, self.model, self.silence)
        profile = adapt(self.user, self.takes, self.model, noise, self.phrase_hash)
        profile.meta["takes_rejected"] = self.rejected
        profile.meta["audio_kept"] = keep_audio
        # commands enrolled before and not recorded again now are kept (enrolling stop again
        # must not forget yes and no); an enrollment for other weights cannot be kept
        self.kept = self._earlier_commands(profile)
        save_profile(self.settings.data_dir, profile)
        if keep_audio:
            self._keep()
        return profile

    def _earlier_commands(self, profile: VoiceProfile) -> list[str]:
        path = profile_path(self.settings.data_dir, self.user)
        if not path.is_file():
            return []
        try:
            earlier = load_profile(path, self.model, self.phrase_hash)
        except VoicecoachError:  # damaged, or made for other weights or phrases: replaced
            return []
        kept = sorted(c for c in earlier.commands if c not in profile.commands)
        for command in kept:
            profile.commands[command] = earlier.commands[command]
        return kept

    def _keep(self) -> None:
        from voicecoach.audio.wav import write_wav

        folder = enrollment_dir(self.settings.data_dir) / "audio" / self.user
        count: dict[str, int] = {}
        try:
            for command, samples in self.audio:
                count[command] = count.get(command, 0) + 1
                write_wav(folder / command / f"take{count[command]}.wav", samples)
        except OSError as exc:
            raise VoicecoachError(f"cannot keep the takes in {folder} ({exc.strerror or exc})",
                                  "make the data folder writable") from None


def describe(profile: VoiceProfile) -> str:
    cmds = ", ".join(f"{c} ({v.takes})" for c, v in sorted(profile.commands.items()))
    return f"{profile.user}: enrolled {profile.created} for {cmds}"


# -- --from DIR ----------------------------------------------------------------------------
def takes_in(folder: Path, grammar: Grammar, problems: list[str] | None = None
             ) -> list[tuple[str, str, list[Path]]]:
    """(command, phrase, audio files: WAV or FLAC) of every usable command folder in ``folder``. A folder
    named after no command, one with no .wav or .flac file, or a command with fewer than 2 takes is
    left out and said in ``problems`` (all of them, not the first); no usable folder at all is
    one error listing them; a folder that cannot be looked into (permissions) is one error."""
    try:
        return _takes_in(folder, grammar, problems)
    except OSError as exc:
        raise VoicecoachError(f"enrollment folder {folder} cannot be read "
                              f"({exc.strerror or exc}{': ' + exc.filename if exc.filename else ''})",
                              "check that you may read it and every folder in it "
                              "(ls -l, chmod)") from None


def _takes_in(folder: Path, grammar: Grammar, problems: list[str] | None
              ) -> list[tuple[str, str, list[Path]]]:
    if not folder.is_dir():
        how = "give a folder holding one folder per command (DIR/stop/*.wav)"
        if folder.exists():  # looked at (stat), never opened: opening a named pipe would block
            kind = "a file" if folder.is_file() else "a pipe or a device"
            raise VoicecoachError(f"enrollment folder {folder} is {kind}, not a folder", how)
        raise VoicecoachError(f"enrollment folder {folder}: no such folder", how)
    subs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subs:
        raise VoicecoachError(f"enrollment folder {folder} holds no command folders",
                              "put the takes in DIR/stop/*.wav, DIR/yes/*.wav, ...")
    said: list[str] = [] if problems is None else problems
    out: dict[str, tuple[str, list[Path]]] = {}
    for sub in subs:
        try:
            command, phrase = command_of(sub.name, grammar)
        except VoicecoachError as exc:
            said.append(exc.one_line())
            continue
        wavs = sorted(p for p in sub.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES
                      and p.is_file())
        if not wavs:
            said.append(f"folder {sub} holds no .wav or .flac files (record at least 2 takes "
                        "there)")
            continue
        have = out.setdefault(command, (phrase, []))
        have[1].extend(wavs)
    for command, (_phrase, wavs) in list(out.items()):
        if len(wavs) < 2:
            said.append(f"only {len(wavs)} take of '{command}' in {folder} (record at least 2, "
                        "3 are better, 5 of stop)")
            del out[command]
    if not out:
        listed = "; ".join(p.rstrip(".") for p in said)
        raise VoicecoachError(f"no command folder in {folder} can be used: {listed}",
                              "name each folder after a command and put at least 2 takes "
                              "(.wav or .flac) in it")
    return [(c, p, w) for c, (p, w) in out.items()]


def enroll_from(enroller: Enroller, folder: Path, keep_audio: bool,
                warn: Callable[[str], None] | None = None) -> VoiceProfile:
    """Every take is checked first (read, usable, the word asked, alike); problems are
    reported all at once. A bad or odd take among good ones is dropped with a warning; a
    command left with fewer than 2 good takes is left out with a warning; nothing usable at
    all is one error listing every problem."""
    from voicecoach.audio.wav import read_wav_16k
    from voicecoach.progress import bar

    say = warn or (lambda line: print(f"voicecoach: warning: {line}", file=sys.stderr))
    left_out: list[str] = []
    found = takes_in(folder, enroller.grammar, left_out)
    problems: list[str] = []
    names: list[Path] = []
    good: dict[str, int] = {}
    with bar(sum(len(w) for _, _, w in found), "checking takes", "take") as progress:
        for command, phrase, wavs in found:
            good.setdefault(command, 0)
            for wav in wavs:
                progress.update(1)
                try:
                    samples = read_wav_16k(wav)
                    enroller.add(samples, command, phrase)
                except TakeRejected as exc:
                    problems.append(f"{wav}: {exc.message} ({exc.hint})")
                    continue
                except VoicecoachError as exc:  # unreadable, corrupt: a take left out too
                    problems.append(exc.one_line())
                    enroller.rejected += 1
                    continue
                names.append(wav)
                good[command] += 1
    odd = odd_takes(enroller.takes)
    if odd:
        for i, why in odd:
            problems.append(f"{names[i]}: {why}")
        gone = {i for i, _ in odd}
        for i in gone:
            good[enroller.takes[i].command] -= 1
        enroller.drop(gone)
        names = [n for i, n in enumerate(names) if i not in gone]
    short = sorted(c for c, n in good.items() if n < 2)
    if short:
        keep = [i for i, t in enumerate(enroller.takes) if t.command not in short]
        enroller.drop(set(range(len(enroller.takes))) - set(keep))
        names = [names[i] for i in keep]
    if not enroller.takes:
        # each problem may end in a full stop of its own (an error's one line): one separator
        listed = "; ".join(p.rstrip(".") for p in left_out + problems) or "no usable take"
        raise VoicecoachError(f"no command has 2 usable takes in {folder}: {listed}",
                              "record those takes again, or remove the bad files")
    for line in left_out:
        say(f"left out: {line}")
    for line in problems:
        say(f"take left out: {line}")
    for command in short:
        say(f"'{command}' is not enrolled: fewer than 2 usable takes (record it again)")
    profile = enroller.finish(keep_audio)
    if enroller.kept:
        say(f"kept from {enroller.user}'s earlier enrollment: {', '.join(enroller.kept)} "
            "(not recorded again now)")
    return profile
