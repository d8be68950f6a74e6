"""What a vosk model's vocabulary holds: missing grammar words, its [unk] word, filler words."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from voicecoach.grammar import Grammar

_LOGGER = logging.getLogger(__name__)

#: Spellings of the unknown-word symbol in vosk models ("[unk]" in most, "<UNK>" in Korean).
UNK_SPELLINGS = ("[unk]", "<unk>", "<UNK>")
HANGUL_FIRST, HANGUL_LAST = 0xAC00, 0xD7A3
HANGUL_FINALS = 28                                  # syllable = base + 28 * (21 * L + V) + T


def has_word(model: Any, word: str) -> bool:
    """True if the model's word symbol table (Gr.fst / words.txt) holds ``word``."""
    return int(model.vosk_model_find_word(word)) >= 0


def missing_words(model: Any, words: Iterable[str]) -> list[str]:
    """The words vosk would drop from a grammar ("Ignoring word missing in vocabulary")."""
    return [w for w in words if not has_word(model, w)]


def unknown_symbol(model: Any) -> str | None:
    """The model's own unknown-word symbol, or None if it has none."""
    for spelling in UNK_SPELLINGS:
        if has_word(model, spelling):
            return spelling
    return None


def _common_open_syllables() -> list[str]:
    """Hangul syllables without a final consonant that are in KS X 1001 (common use)."""
    found = []
    for code in range(HANGUL_FIRST, HANGUL_LAST + 1, HANGUL_FINALS):
        char = chr(code)
        try:
            char.encode("euc_kr")
        except UnicodeEncodeError:
            continue
        found.append(char)
    return found


def filler_words(model: Any, grammar: Grammar, command_words: Iterable[str]) -> list[str]:
    """Words that soak up speech that is not a command (a garbage model in the grammar).

    Korean: the model's one-syllable words without a final consonant (a syllable loop).
    Other languages: the grammar's never-command words. Command words are never fillers.
    """
    exclude = set(command_words)
    fillers = [w for w in grammar.never if w not in exclude]
    if grammar.language.split("-")[0] == "ko":
        fillers += [s for s in _common_open_syllables() if s not in exclude]
    fillers = [w for w in dict.fromkeys(fillers) if has_word(model, w)]
    _LOGGER.debug("%d filler words for %s", len(fillers), grammar.language)
    return fillers
