"""Pick and build the command recogniser from one table of engines.

English: the trained command spotter (``voicecoach.listening.spotter``, weights inside the package).
Other languages: vosk with a model for the language. pocketsphinx (its bundled US-English
model) stays available by name. The argument parser, the config file and ``doctor`` all read
:data:`ENGINES`, so an engine is named in one place.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from voicecoach.errors import VoicecoachError
from voicecoach.grammar import Grammar
from voicecoach.listening.models import find_model, require_model, same_language
from voicecoach.listening.recogniser import Recogniser
from voicecoach.settings import SpeechSettings

_LOGGER = logging.getLogger(__name__)

#: The language of the acoustic model bundled in the pocketsphinx wheel and of the spotter.
SPHINX_LANGUAGE = "en"
SPOTTER_LANGUAGE = "en"


class EngineMissing(VoicecoachError):
    """An engine cannot run here: its package is missing or broken (doctor says which)."""


@dataclass(frozen=True)
class Engine:
    """One recogniser: how to build it, what to say when it was picked, and what ``doctor``
    checks for it. Adding an engine is adding one entry to :data:`ENGINES`."""

    name: str
    help: str
    build: Callable[[SpeechSettings, Grammar], tuple[Recogniser, str]]
    #: The one language its bundled model knows; None: any language with a vosk model.
    language: str | None = None
    #: Needs a model downloaded for the language (doctor checks one is found).
    needs_model: bool = False
    #: doctor's name for the check, and the check: a detail line, or EngineMissing.
    label: str = ""
    probe: Callable[[], str] | None = None
    #: Takes a second look before acting (the verifier of the 'verify' extra; doctor checks it).
    second_look: bool = False
    #: Hears better with the echo the canceller leaves turned down (voicecoach.audio.suppress),
    #: as measured on the barge-in benchmarks: the spotter's second look reads the coach's
    #: leftover words first without it; pocketsphinx, on the fixture voices, heard a stop in
    #: belt noise and missed two it hears without it.
    suppress_echo: bool = False


#: Engines installed as extras of the package: engine name -> (module it needs, extra).
EXTRAS: dict[str, tuple[str, str]] = {
    "vosk": ("vosk", "vosk"),
    "pocketsphinx": ("pocketsphinx", "pocketsphinx"),
}


def install_hint(engine: str) -> str:
    """How to install an engine's extra into the environment running this program."""
    extra = EXTRAS[engine][1]
    return f"pip install 'voicecoach[{extra}]' (in the venv that runs voicecoach)"


def engine_installed(engine: str) -> bool:
    """True unless ``engine`` lives in an extra whose module is not installed."""
    if engine not in EXTRAS:
        return True
    return importlib.util.find_spec(EXTRAS[engine][0]) is not None


def require_engine(engine: str) -> None:
    """Raise one clear error, naming the extra to install, for an engine that is missing."""
    if not engine_installed(engine):
        raise VoicecoachError(f"the {engine} engine is not installed (it is an optional extra)",
                              install_hint(engine))


def _english_only(what: str, speech: SpeechSettings, grammar: Grammar) -> None:
    """The checks of an engine that has an English model only and no --model folder."""
    if speech.model_path is not None:
        raise VoicecoachError(f"--model is a vosk model folder but the engine is {speech.engine}",
                              "use --engine vosk or drop --model")
    if not same_language(grammar.language, SPOTTER_LANGUAGE):
        raise VoicecoachError(f"{what}, not '{grammar.language}'",
                              f"use --engine vosk with a '{grammar.language}' model "
                              f"('voicecoach model download {grammar.language}')")


def second_look(speech: SpeechSettings) -> tuple[object | None, str]:
    """The spotter's verifier as the settings ask for it, and a line that says what is used; a
    missing or damaged verifier is said, never fatal: the spotter goes on alone."""
    if speech.verify == "off":
        return None, "no second look (verify = off)"
    from voicecoach.listening.spotter.verify import load_verifier

    try:
        return load_verifier(), "second look by Whisper tiny.en"
    except VoicecoachError as exc:
        return None, f"no second look: {exc.one_line()}"
    except Exception as exc:  # noqa: BLE001 - a foreign runtime failing to load: go on without
        return None, f"no second look: the verifier does not load ({type(exc).__name__}: {exc})"


def _spotter(speech: SpeechSettings, grammar: Grammar) -> tuple[Recogniser, str]:
    _english_only("the command spotter is trained for English", speech, grammar)
    from voicecoach.listening.spotter.engine import SpotterRecogniser
    from voicecoach.listening.spotter.verify import WhisperVerifier

    verifier, look = second_look(speech)
    rec = SpotterRecogniser(grammar, verifier=verifier if isinstance(verifier, WhisperVerifier) else None)
    if verifier is not None and rec.verifier is None:
        look = f"no second look ({rec.look_off})"
    elif rec.look_probe is not None:
        look += f", {rec.look_probe.describe()}"
    heads = (f"{rec.model.members} trained heads averaged, {rec.model.path.name}"
             if rec.model.members > 1 else f"trained head {rec.model.path.name}")
    return rec, (f"listening with the command spotter ({heads} on the pretrained speech "
                 f"embedding; {look})")


def _sphinx(speech: SpeechSettings, grammar: Grammar) -> tuple[Recogniser, str]:
    _english_only("the pocketsphinx engine only has a US-English model", speech, grammar)
    require_engine("pocketsphinx")
    from voicecoach.listening.sphinx_engine import SphinxRecogniser

    return SphinxRecogniser(grammar), ("listening with pocketsphinx (the US-English model "
                                       "bundled in its wheel)")


def _vosk(speech: SpeechSettings, grammar: Grammar) -> tuple[Recogniser, str]:
    require_engine("vosk")
    info = require_model(grammar.language, speech.model_path)
    from voicecoach.listening.vosk_engine import VoskRecogniser

    return VoskRecogniser(info.path, grammar), f"listening with vosk (model {info.path}, from {info.source})"


def _auto(speech: SpeechSettings, grammar: Grammar) -> tuple[Recogniser, str]:
    if same_language(grammar.language, SPOTTER_LANGUAGE) and speech.model_path is None:
        rec, line = _spotter(speech, grammar)
        return rec, line + " [auto: English]"
    require_engine("vosk")
    found = find_model(grammar.language, speech.model_path)
    if found is None:
        require_model(grammar.language)       # raises: no model, and how to get one
    return _vosk(speech, grammar)


def _probe_spotter() -> str:
    """Runtime, weights, model card, and the English grammar they were trained for."""
    try:
        from voicecoach.grammar import load_grammar
        from voicecoach.listening.spotter import features
        from voicecoach.listening.spotter.model import load_model

        model = load_model()
        model.check_grammar(load_grammar(SPOTTER_LANGUAGE))
        features._runtime_paths()
    except ImportError as exc:
        raise EngineMissing(f"cannot import ({exc})", "`.venv/bin/pip install pyopen-wakeword`") from None
    card = model.card
    return (f"{model.path.name} ({len(model.labels)} classes, sha256 "
            f"{card.get('weights_sha256', '')[:12]}, trained for this grammar)")


def _probe_sphinx() -> str:
    """The pocketsphinx wheel and its bundled US-English model."""
    if not engine_installed("pocketsphinx"):
        raise EngineMissing("not installed", install_hint("pocketsphinx"))
    try:
        import pocketsphinx

        model = Path(pocketsphinx.get_model_path()) / "en-us"
    except Exception as exc:  # noqa: BLE001 - ImportError or a broken wheel
        raise EngineMissing(f"cannot import ({exc})", install_hint("pocketsphinx")) from None
    if not model.is_dir():
        raise EngineMissing(f"bundled model missing at {model}",
                            "`.venv/bin/pip install --force-reinstall pocketsphinx`")
    return f"bundled model {model}"


def _probe_vosk() -> str:
    if not engine_installed("vosk"):
        raise EngineMissing("not installed", install_hint("vosk"))
    try:
        import vosk  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        raise EngineMissing(f"cannot import ({exc})", install_hint("vosk")) from None
    return "importable"


ENGINES: dict[str, Engine] = {
    "auto": Engine("auto", "the spotter for English (vosk when --model is given), vosk for "
                   "other languages", _auto),
    "spotter": Engine("spotter", "the trained English command spotter (weights in the "
                      "package)", _spotter, language=SPOTTER_LANGUAGE, label="command spotter",
                      second_look=True, suppress_echo=True,
                      probe=_probe_spotter),
    "vosk": Engine("vosk", "vosk with a model for the language", _vosk, needs_model=True,
                   label="vosk", probe=_probe_vosk),
    "pocketsphinx": Engine("pocketsphinx", "pocketsphinx with its bundled US-English model",
                           _sphinx, language=SPHINX_LANGUAGE, label="pocketsphinx",
                           probe=_probe_sphinx),
}


def suppresses_echo(recogniser_name: str) -> bool:
    """True if the engine of that name hears better with the canceller's leftover echo turned
    down (:attr:`Engine.suppress_echo`); False for a name not in the table."""
    engine = ENGINES.get(recogniser_name)
    return engine is not None and engine.suppress_echo


def engine_names() -> list[str]:
    """Every engine name, "auto" first."""
    return list(ENGINES)


def recognisers() -> list[Engine]:
    """The real engines (not "auto"): those with their own model first, then those that need
    a downloaded one (doctor's and the benchmarks' order)."""
    return sorted((e for e in ENGINES.values() if e.probe is not None), key=lambda e: e.needs_model)


def resolve(speech: SpeechSettings) -> Engine:
    """The engine ``speech.engine`` stands for: "auto" picks the spotter for English with no
    --model folder, else vosk (as :func:`make_recogniser` does)."""
    engine = ENGINES.get(speech.engine)
    if engine is None:
        raise VoicecoachError(f"unknown speech engine '{speech.engine}'",
                              f"choose one of: {', '.join(ENGINES)}")
    if engine.name != "auto":
        return engine
    if same_language(speech.language, SPOTTER_LANGUAGE) and speech.model_path is None:
        return ENGINES["spotter"]
    return ENGINES["vosk"]


def make_recogniser(speech: SpeechSettings, grammar: Grammar, *,
                    announce: Callable[[str], None] | None = None,
                    data_dir: Path | None = None) -> Recogniser:
    """The recogniser ``speech.engine`` asks for; says which one it built. With ``data_dir``,
    a recogniser that learns voices (the spotter) uses the enrollments kept there."""
    say = announce or (lambda line: _LOGGER.info("%s", line))
    engine = ENGINES.get(speech.engine)
    if engine is None:
        raise VoicecoachError(f"unknown speech engine '{speech.engine}'",
                              f"choose one of: {', '.join(ENGINES)}")
    if speech.language != grammar.language:
        raise VoicecoachError(f"the grammar is for '{grammar.language}' but the speech "
                              f"language is '{speech.language}'", "give the same --lang to both")
    recogniser, line = engine.build(speech, grammar)
    use_data_dir = getattr(recogniser, "use_data_dir", None)  # enrollment (spotter only)
    if data_dir is not None and callable(use_data_dir):
        line += f"; {use_data_dir(data_dir)}"
    say(line)
    return recogniser
