"""Pick and build the command recogniser: vosk when a model is found, else pocketsphinx."""

from __future__ import annotations

import logging
from collections.abc import Callable

from voicecoach.errors import VoicecoachError
from voicecoach.grammar import Grammar
from voicecoach.settings import SpeechSettings
from voicecoach.speech.models import ModelInfo, find_model, require_model, same_language
from voicecoach.speech.recogniser import Recogniser

_LOGGER = logging.getLogger(__name__)

ENGINES = ("auto", "vosk", "pocketsphinx")
#: The language of the acoustic model bundled in the pocketsphinx wheel.
SPHINX_LANGUAGE = "en"


def _vosk(info: ModelInfo, grammar: Grammar) -> Recogniser:
    from voicecoach.speech.vosk_engine import VoskRecogniser

    return VoskRecogniser(info.path, grammar)


def _sphinx(grammar: Grammar) -> Recogniser:
    if not same_language(grammar.language, SPHINX_LANGUAGE):
        raise VoicecoachError(f"the pocketsphinx engine only has a US-English model, not "
                              f"'{grammar.language}'",
                              f"use --engine vosk with a '{grammar.language}' model "
                              f"('voicecoach model download {grammar.language}')")
    from voicecoach.speech.sphinx_engine import SphinxRecogniser

    return SphinxRecogniser(grammar)


def make_recogniser(speech: SpeechSettings, grammar: Grammar, *,
                    announce: Callable[[str], None] | None = None) -> Recogniser:
    """The recogniser ``speech.engine`` asks for; "auto" says which one it picked."""
    say = announce or (lambda line: _LOGGER.info("%s", line))
    engine = speech.engine
    if engine not in ENGINES:
        raise VoicecoachError(f"unknown speech engine '{engine}'",
                              f"choose one of: {', '.join(ENGINES)}")
    if speech.language != grammar.language:
        raise VoicecoachError(f"the grammar is for '{grammar.language}' but the speech "
                              f"language is '{speech.language}'", "give the same --lang to both")
    if engine == "pocketsphinx":
        if speech.model_path is not None:
            raise VoicecoachError("--model is a vosk model folder but the engine is "
                                  "pocketsphinx", "use --engine vosk or drop --model")
        recogniser = _sphinx(grammar)
        say("listening with pocketsphinx (the US-English model bundled in its wheel)")
        return recogniser
    if engine == "vosk":
        info = require_model(grammar.language, speech.model_path)
    else:
        found = find_model(grammar.language, speech.model_path)
        if found is None:
            if not same_language(grammar.language, SPHINX_LANGUAGE):
                require_model(grammar.language)       # raises: no model, how to get one
            recogniser = _sphinx(grammar)
            say(f"listening with pocketsphinx (no vosk model for '{grammar.language}' was "
                "found; 'voicecoach model download' gets one)")
            return recogniser
        info = found
    recogniser = _vosk(info, grammar)
    say(f"listening with vosk (model {info.path}, from {info.source})")
    return recogniser
