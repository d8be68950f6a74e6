"""``voicecoach listen``: run the recogniser on WAV or FLAC files or folders, or on the microphone."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from voicecoach.audio.checks import AUDIO_SUFFIXES
from voicecoach.audio.chunk import AudioChunk
from voicecoach.commands import DefaultsFormatter
from voicecoach.commands._common import add_engine_options, settings_from_args
from voicecoach.errors import VoicecoachError, describe, where_raised
from voicecoach.grammar import Grammar, load_grammar
from voicecoach.history.session_lock import microphone_for
from voicecoach.listening.recogniser import Detection, Recogniser

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(
        "listen", help="print the commands heard in WAV or FLAC files, or on the microphone",
        formatter_class=DefaultsFormatter,
        description="Run the command recogniser on WAV or FLAC files (any rate, width and "
                    "channel count) or folders of them, searched recursively; with no path, "
                    "listen to the microphone until Ctrl-C. The model loads once for all files.")
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="WAV or FLAC files or folders (default: the microphone)")
    parser.add_argument("--json", action="store_true",
                        help="one JSON line per file: file, audio_s and the commands heard")
    add_engine_options(parser)
    parser.add_argument("--state", default=None, metavar="NAME",
                        help="listen only for the commands of this workout state "
                             "(default: every command of the grammar)")
    parser.add_argument("--chunk-ms", type=int, default=100, metavar="N",
                        help="feed the recogniser N ms of audio at a time")
    parser.add_argument("--device", dest="input_device", default=None, metavar="D",
                        help="microphone: a device number or part of its name")
    parser.add_argument("--list-devices", action="store_true",
                        help="list the sound devices and exit")
    parser.set_defaults(func=run)


def audio_files(paths: Iterable[str]) -> Iterator[tuple[str, VoicecoachError | None]]:
    """Each WAV or FLAC file under ``paths`` (folders recursively, sorted) with None, or a
    bad path with the error that says why."""
    for text in paths:
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*")
                           if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
            if not found:
                yield text, VoicecoachError(f"folder {path} holds no .wav or .flac files",
                                            "give WAV or FLAC files or a folder with some")
            for file in found:
                yield str(file), None
        elif path.exists():
            yield text, None
        else:
            yield text, VoicecoachError(f"audio file {path}: no such file or folder",
                                        "check the path")


def commands_to_hear(grammar: Grammar, state: str | None) -> tuple[str, ...]:
    """Every command, or those of ``state`` (which must be one of the grammar's)."""
    if state is None:
        return grammar.commands
    if state not in grammar.states:
        raise VoicecoachError(f"unknown state '{state}'",
                              f"choose one of: {', '.join(grammar.states)}")
    return grammar.states[state]


class RecogniserFailed(VoicecoachError):
    """The recogniser raised something unexpected (a bug, a foreign runtime failing): one
    line, its traceback in the log at DEBUG."""

    def __init__(self, exc: Exception, where: str) -> None:
        _LOGGER.debug("the recogniser's traceback on %s:", where, exc_info=exc)
        super().__init__(f"the recogniser failed on {where}: {describe(exc)} "
                         f"(at {where_raised(exc)})", "run with --debug for the traceback")


def recognising(where: str, step: Callable[..., T], *args: Any) -> T:
    """``step(*args)``, a call into the recogniser while it hears ``where`` (a file, the
    microphone); an unexpected exception from it is RecogniserFailed."""
    try:
        return step(*args)
    except VoicecoachError:
        raise
    except Exception as exc:  # noqa: BLE001 - one line, not a traceback
        raise RecogniserFailed(exc, where) from exc


def listen_to(recogniser: Recogniser, chunks: Iterable[AudioChunk],
              progress: Any = None, where: str = "the audio") -> tuple[list[Detection], float]:
    """Feed every chunk, then flush; the detections and the seconds of audio heard.
    ``progress``: a bar advanced by the audio seconds heard. The recogniser raising
    something unexpected is RecogniserFailed (``where``: what it was hearing)."""
    recognising(where, recogniser.reset)
    heard: list[Detection] = []
    seconds = 0.0
    for chunk in chunks:
        heard += recognising(where, recogniser.accept, chunk)
        if progress is not None:
            from voicecoach.progress import advance

            advance(progress, chunk.end_s - seconds)
        seconds = chunk.end_s
    heard += recognising(where, recogniser.flush)
    return heard, seconds


def readable(detection: Detection, where: str = "") -> str:
    d = detection
    prefix = f"{where}: " if where else ""
    return (f"{prefix}{d.start_s:7.2f}-{d.end_s:.2f} s  {d.command:<12} \"{d.phrase}\"  "
            f"confidence {d.confidence:.2f}, emitted at {d.emitted_s:.2f} s")


def run(args: argparse.Namespace) -> int:
    if args.list_devices:
        from voicecoach.audio.devices import list_devices

        print(list_devices())
        return 0
    if args.chunk_ms <= 0:
        raise VoicecoachError(f"--chunk-ms {args.chunk_ms} is not positive",
                              "give a chunk length in milliseconds, e.g. 100")
    if args.chunk_ms > 60_000:
        raise VoicecoachError(f"--chunk-ms {args.chunk_ms} is longer than a minute",
                              "give a chunk length in milliseconds from 1 to 60000, e.g. 100")
    settings = settings_from_args(args)
    grammar = load_grammar(settings.speech.language)
    commands = commands_to_hear(grammar, args.state)
    chunk_s = args.chunk_ms / 1000.0
    if args.paths:
        return _run_files(args, settings, grammar, commands, chunk_s)
    return _run_microphone(args, settings, grammar, commands, chunk_s)


def _make(settings: Any, grammar: Grammar, commands: tuple[str, ...]) -> Recogniser:
    from voicecoach.listening.engines import make_recogniser

    recogniser = make_recogniser(settings.speech, grammar,
                                 announce=lambda line: print(line, file=sys.stderr),
                                 data_dir=settings.data_dir)
    recogniser.set_commands(commands)
    return recogniser


def _run_files(args: argparse.Namespace, settings: Any, grammar: Grammar,
               commands: tuple[str, ...], chunk_s: float) -> int:
    from voicecoach.audio.wav import AudioFileSource
    from voicecoach.progress import bar

    files = list(audio_files(args.paths))
    total = 0.0
    for name, problem in files:  # the bar counts audio seconds: one long file shows it too
        if problem is None:
            try:
                total += AudioFileSource(name, chunk_s).seconds
            except VoicecoachError:
                pass  # reported when its turn comes
    with bar(total, "listening", "audio s", json_output=args.json) as progress:
        failed, faults = _listen_files(args, settings, grammar, commands, chunk_s, files,
                                       progress)
    if failed:
        if len(files) > 1:  # one input: its own error line says it all
            how = "read or recognised" if faults else "read"
            print(f"voicecoach: {failed} of the {len(files)} inputs could not be {how}",
                  file=sys.stderr)
        return 1
    return 0


def _listen_files(args: argparse.Namespace, settings: Any, grammar: Grammar,
                  commands: tuple[str, ...], chunk_s: float,
                  files: list[tuple[str, VoicecoachError | None]], progress: Any
                  ) -> tuple[int, int]:
    """Each file in turn; the number that could not be read or recognised, and of those the
    number the recogniser failed on (each one line; the next file is heard afresh: the
    recogniser is reset at every file)."""
    from voicecoach.audio.wav import AudioFileSource

    recogniser: Recogniser | None = None
    failed = faults = 0

    def report(name: str, exc: VoicecoachError) -> None:
        print(f"voicecoach: error: {exc.one_line()}", file=sys.stderr)
        if args.json:
            print(json.dumps({"file": name, "audio_s": None, "commands": [],
                              "error": exc.one_line()}, ensure_ascii=False), flush=True)

    for name, problem in files:
        try:
            if problem is not None:
                raise problem
            source = AudioFileSource(name, chunk_s)
        except VoicecoachError as exc:
            failed += 1
            report(name, exc)
            continue
        try:
            if recogniser is None:  # loaded once, at the first readable file; errors end all
                recogniser = _make(settings, grammar, commands)
            heard, seconds = listen_to(recogniser, source.chunks(), progress, name)
        except VoicecoachError as exc:
            if recogniser is None:
                raise
            failed += 1
            faults += isinstance(exc, RecogniserFailed)
            report(name, exc)
            continue
        finally:
            source.close()
        if args.json:
            print(json.dumps({"file": name, "audio_s": round(seconds, 3),
                              "commands": [d.to_dict() for d in heard]}, ensure_ascii=False),
                  flush=True)
        elif heard:
            for detection in heard:
                print(readable(detection, name), flush=True)
        else:
            print(f"{name}: nothing heard ({seconds:.2f} s of audio)", flush=True)
    return failed, faults


def _run_microphone(args: argparse.Namespace, settings: Any, grammar: Grammar,
                    commands: tuple[str, ...], chunk_s: float) -> int:
    """Listen on the microphone until Ctrl-C, holding the data folder: a serve listens on
    that microphone (refused in one line before it is opened; files are heard beside one).
    Beside a holder that does not use the microphone (a typed run) it is heard."""
    with microphone_for(settings.data_dir, "listen"):
        return _hear_microphone(args, settings, grammar, commands, chunk_s)


def _hear_microphone(args: argparse.Namespace, settings: Any, grammar: Grammar,
                     commands: tuple[str, ...], chunk_s: float) -> int:
    from voicecoach.audio.mic import MicSource

    source = MicSource(settings.audio.input_device, chunk_s)
    recogniser = _make(settings, grammar, commands)
    print("Listening on the microphone; Ctrl-C stops.", file=sys.stderr)
    live = "the microphone's audio"
    try:
        recognising(live, recogniser.reset)
        for chunk in source.chunks():
            for detection in recognising(live, recogniser.accept, chunk):
                _show_live(args, detection)
    except KeyboardInterrupt:
        pass
    finally:
        source.close()
    for detection in recognising(live, recogniser.flush):
        _show_live(args, detection)
    return 0


def _show_live(args: argparse.Namespace, detection: Detection) -> None:
    if args.json:
        print(json.dumps({"source": "microphone", **detection.to_dict()}, ensure_ascii=False),
              flush=True)
    else:
        print(readable(detection), flush=True)
