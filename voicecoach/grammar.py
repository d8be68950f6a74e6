"""Command grammars: load ``grammars/<lang>.json``, validate it, and map phrases to commands."""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from voicecoach.errors import VoicecoachError

_LOGGER = logging.getLogger(__name__)

#: Every command the coach understands; a grammar may not name any other.
COMMANDS: tuple[str, ...] = (
    "stop", "start", "pause", "resume", "faster", "slower", "incline_up", "incline_down",
    "repeat", "time_left", "louder", "quieter", "help", "yes", "no", "good", "pain",
)
#: The command that must be accepted in every state.
STOP = "stop"

GRAMMAR_DIR_ENV = "VOICECOACH_GRAMMARS"


def bundled_grammar_dir() -> Path:
    """The grammars the program ships with.

    An installed wheel holds them as ``voicecoach/grammars/`` (pyproject maps the top-level
    ``grammars/`` there); a checkout or an editable install reads the top-level folder itself.
    """
    installed = resources.files("voicecoach") / "grammars"
    if installed.is_dir():
        return Path(str(installed))
    return Path(__file__).resolve().parent.parent / "grammars"


def grammar_dir() -> Path:
    """Where grammar files live: ``$VOICECOACH_GRAMMARS``, else the bundled grammars."""
    env = os.environ.get(GRAMMAR_DIR_ENV)
    if env:
        return Path(env)
    return bundled_grammar_dir()


def normalise(text: str) -> str:
    """Lower-case, strip punctuation and fold spaces, as phrases are compared."""
    text = re.sub(r"[^\w' ]+", " ", text.lower())
    return " ".join(text.split())


@dataclass(frozen=True)
class Grammar:
    """A validated grammar: phrases per command, commands per state, and help texts."""

    language: str
    phrases: dict[str, tuple[str, ...]]
    states: dict[str, tuple[str, ...]]
    help: dict[str, str]
    never: tuple[str, ...]
    path: Path | None = None

    @property
    def commands(self) -> tuple[str, ...]:
        """The command names this grammar defines."""
        return tuple(self.phrases)

    def phrase_map(self, commands: tuple[str, ...] | list[str] | None = None) -> dict[str, str]:
        """Phrase -> command for ``commands`` (all commands when None)."""
        names = self.commands if commands is None else commands
        return {p: c for c in names for p in self.phrases.get(c, ())}

    def commands_for(self, state: str) -> tuple[str, ...]:
        """The commands accepted in ``state`` (all commands for an unknown state)."""
        return self.states.get(state, self.commands)

    def all_phrases(self) -> list[str]:
        """Every phrase of every command."""
        return [p for ps in self.phrases.values() for p in ps]

    def lookup(self, text: str) -> str | None:
        """The command whose phrase is exactly ``text`` (after normalising), else None."""
        return self.phrase_map().get(normalise(text))

    def command_phrases_in(self, text: str) -> list[str]:
        """Grammar phrases that occur as whole words inside ``text``."""
        padded = f" {normalise(text)} "
        return [p for p in self.all_phrases() if f" {p} " in padded]


def _fail(path: Path, what: str, fix: str) -> VoicecoachError:
    return VoicecoachError(f"grammar file {path}: {what}", fix)


def parse_grammar(data: object, path: Path) -> Grammar:
    """Validate parsed JSON ``data`` from ``path`` and build a :class:`Grammar`."""
    if not isinstance(data, dict):
        raise _fail(path, "the top level is not a JSON object", "see grammars/en.json for the layout")
    language = data.get("language")
    if not isinstance(language, str) or not language:
        raise _fail(path, "'language' is missing", 'add "language": "<code>", e.g. "en"')
    raw_never = data.get("never_commands", [])
    if not isinstance(raw_never, list) or not all(isinstance(w, str) for w in raw_never):
        raise _fail(path, "'never_commands' is not a list of words",
                    'write it as a list of strings, e.g. ["up", "down"]')
    never = tuple(normalise(w) for w in raw_never)
    raw_commands = data.get("commands")
    if not isinstance(raw_commands, dict) or not raw_commands:
        raise _fail(path, "'commands' is missing or empty", "add an object of command -> phrases")
    phrases: dict[str, tuple[str, ...]] = {}
    helps: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name, spec in raw_commands.items():
        if not isinstance(spec, dict):
            raise _fail(path, f"command '{name}' is not an object",
                        'write it as {"phrases": [...], "help": "..."}')
        if name not in COMMANDS:
            raise _fail(path, f"unknown command '{name}'",
                        f"use one of: {', '.join(COMMANDS)}")
        plist = spec.get("phrases") if isinstance(spec, dict) else None
        if not isinstance(plist, list) or not plist:
            raise _fail(path, f"command '{name}' has an empty phrase list",
                        "give it at least one phrase")
        cleaned = []
        for phrase in plist:
            if not isinstance(phrase, str) or not normalise(phrase):
                raise _fail(path, f"command '{name}' has an empty phrase",
                            "remove it or write the words")
            norm = normalise(phrase)
            if norm in never:
                raise _fail(path, f"phrase '{norm}' of '{name}' is in never_commands",
                            "single words easily misheard on a treadmill cannot be commands")
            if norm in seen and seen[norm] != name:
                raise _fail(path, f"phrase '{norm}' belongs to both '{seen[norm]}' and '{name}'",
                            "give each phrase to one command")
            seen[norm] = name
            cleaned.append(norm)
        phrases[name] = tuple(cleaned)
        text = spec.get("help", name.replace("_", " "))
        if not isinstance(text, str):
            raise _fail(path, f"command '{name}' has a 'help' that is not text",
                        "write the help as a string")
        helps[name] = text
    if STOP not in phrases:
        raise _fail(path, "there is no 'stop' command", "stop must be in every grammar")
    raw_states = data.get("states", {})
    if not isinstance(raw_states, dict):
        raise _fail(path, "'states' is not an object", "map each state to a list of commands")
    states: dict[str, tuple[str, ...]] = {}
    for state, names in raw_states.items():
        if not isinstance(names, list) or not names:
            raise _fail(path, f"state '{state}' has no commands", "list the commands it accepts")
        for name in names:
            if not isinstance(name, str) or name not in phrases:
                raise _fail(path, f"state '{state}' names unknown command '{name}'",
                            f"use one of: {', '.join(phrases)}")
        if STOP not in names:
            raise _fail(path, f"state '{state}' does not accept 'stop'",
                        "stop must work from every state")
        states[state] = tuple(names)
    return Grammar(language, phrases, states, helps, never, path)


def load_grammar(language: str = "en", path: Path | None = None) -> Grammar:
    """Load and validate the grammar for ``language`` (or the file at ``path``)."""
    file = path or grammar_dir() / f"{language}.json"
    folder = grammar_dir()
    if path is None and not folder.is_dir():
        where = (f"${GRAMMAR_DIR_ENV} = {os.environ[GRAMMAR_DIR_ENV]}"
                 if os.environ.get(GRAMMAR_DIR_ENV) else "the installed grammars")
        raise VoicecoachError(
            f"the grammar folder {folder} ({where}) "
            f"{'is not a folder' if folder.exists() else 'does not exist'}",
            f"point {GRAMMAR_DIR_ENV} at a folder of grammar files (<language>.json), or "
            "unset it to use the installed ones")
    if not file.is_file():
        available = sorted(p.stem for p in grammar_dir().glob("*.json"))
        raise VoicecoachError(f"no grammar file {file}",
                              f"choose a language with a grammar: {', '.join(available) or 'none'}")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise _fail(file, f"JSON syntax error at line {exc.lineno} column {exc.colno}: {exc.msg}",
                    "fix the JSON (a missing comma or quote is usual)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(file, f"cannot be read ({exc})", "check the file's permissions and encoding") from None
    return parse_grammar(data, file)
