"""What the synthetic corpus says: command phrases and variants, hard negatives, coach speech, sentences."""

from __future__ import annotations

import ast
import inspect
import logging
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass

from voicecoach.grammar import Grammar, load_grammar, normalise
from voicecoach.workout import coach as coach_module
from voicecoach.workout import cues
from voicecoach.workout import requests as requests_module

_LOGGER = logging.getLogger(__name__)

#: The label of every clip that is not a command.
OTHER = "_other_"
KINDS: tuple[str, ...] = ("positive", "negative", "coach", "sentence")

#: Variant templates per command; ``{p}`` is one of the command's grammar phrases. A variant keeps
#: its phrase's meaning, contains the phrase itself as whole words, and no other command's phrase
#: (checked by :func:`check_positive`). ``!`` asks the engines for an emphatic, exclaimed reading.
_EMPHATIC = ("{p}!",)
_REPEATED = ("{p} {p}", "{p}, {p}, {p}!")
_POLITE = ("okay {p}", "please {p}", "{p} please")
VARIANTS: dict[str, tuple[str, ...]] = {
    "stop": _EMPHATIC + _REPEATED + _POLITE + ("{p}, {p}!",),
    "start": _EMPHATIC + _POLITE + ("let's {p}",),
    "pause": _EMPHATIC + _REPEATED + _POLITE,
    "resume": _EMPHATIC + _POLITE + ("okay, {p} now",),
    "faster": _EMPHATIC + _POLITE + ("a bit {p}",),
    "slower": _EMPHATIC + _REPEATED + _POLITE + ("a bit {p}",),
    "incline_up": _EMPHATIC + _POLITE,
    "incline_down": _EMPHATIC + _POLITE,
    "repeat": _POLITE + ("sorry, {p}", "{p}?"),
    "time_left": ("{p}?", "okay, {p}?"),
    "louder": _EMPHATIC + _POLITE + ("a bit {p}",),
    "quieter": _POLITE + ("a bit {p}",),
    "help": _EMPHATIC + _REPEATED + ("{p} me", "{p}?"),
    "yes": _EMPHATIC + ("{p} please", "oh {p}", "{p}, {p}"),
    "no": _EMPHATIC + ("{p} thanks", "{p} thank you", "{p}, {p}"),
    "good": _EMPHATIC + ("all {p}", "feeling {p}", "{p} thanks"),
    "pain": _EMPHATIC + ("ow, {p}", "ouch, {p}", "my {p}", "{p}, {p}"),
}
#: Repetition templates are used only for phrases of at most this many words.
_REPEAT_MAX_WORDS = 2

#: Hard negatives: words that sound like a command phrase, or that are part of one but not one
#: alone. Left out on purpose: homophones of a phrase (know/no, paws/pause, soar/sore, pane/pain,
#: pours/pause, saw/sore in non-rhotic accents), words a stumbling user may mean as a command
#: (stopped, stopping, nope, yep, hurts, slowly, soft, quiet, loud) -- see README of the corpus.
CONFUSABLES: tuple[str, ...] = (
    # stop
    "top", "shop", "stock", "spot", "step", "stomp", "stuff", "stub", "stuck", "stamp", "strap",
    # go / no
    "goal", "ghost", "low", "oh", "glow", "toe", "though", "snow", "nose", "note",
    # yes / ready
    "yet", "yell", "less", "mess", "guess", "chess", "dress", "steady", "teddy", "Eddie", "already",
    # faster / louder / slower / quieter / softer
    "master", "plaster", "pastor", "after", "powder", "chowder", "cloud", "lower", "mower",
    "diet", "riot", "sofa", "often",
    # pause / resume / repeat / continue
    "cause", "pose", "post", "laws", "jaws", "assume", "presume", "perfume", "retreat", "compete",
    "complete", "receipt", "continent", "contain",
    # fine / good / pain / sore / help
    "find", "mine", "nine", "sign", "line", "wine", "could", "wood", "hood", "four", "more", "score",
    "shore", "rain", "main", "plain", "paint", "lane", "kelp", "yelp", "held", "self", "health",
    # start / begin / incline
    "star", "heart", "smart", "part", "tart", "dart", "again", "begun", "begging", "decline",
)
#: Words inside multi-word phrases that alone are no command (checked against the grammar).
PART_WORDS: tuple[str, ...] = (
    "workout", "now", "the", "more", "less", "speed", "slow", "long", "say", "again", "hold",
    "knee", "incline", "what", "how", "time", "not", "can", "it", "let's",
)

#: Word lists for everyday sentences (checked against the grammar after building).
_SUBJECTS = ("I", "We", "My sister", "The neighbours", "Our team", "The kids", "My friend", "Your uncle",
             "The teacher", "Everyone")
_VERBS = ("bought", "painted", "cleaned", "fixed", "found", "borrowed", "sold", "washed", "moved",
          "carried", "ordered", "measured")
_OBJECTS = ("a new kettle", "the garden fence", "an old bicycle", "the kitchen table", "a blue umbrella",
            "the front door", "a box of apples", "the heavy curtains", "a small lamp", "the broken chair",
            "a paper map", "the winter coats")
_TIMES = ("yesterday", "last week", "on Sunday", "this morning", "after lunch", "in March",
          "before dinner", "at the weekend")
_NOUNS = ("kettle", "garden", "library", "weather", "train", "market", "river", "bakery", "museum",
          "office", "harbour", "orchard", "bridge", "kitchen", "window")
_ADJECTIVES = ("busy", "quiet", "bright", "cold", "crowded", "empty", "warm", "windy", "muddy", "lovely")
_PLACES = ("town", "village", "city centre", "park", "street", "valley")
_TEMPLATES = (
    "{S} {V} {O} {T}.",
    "The {N} was very {A} {T}.",
    "Have you seen the {N} in the {P}?",
    "There is a {A} {N} near the {P}.",
    "{S} walked to the {N} {T}.",
    "I think the {N} opens at nine.",
    "Is the {N} {A} on Mondays?",
    "We met by the {N} and talked about {O}.",
)


@dataclass(frozen=True)
class Text:
    """One text to speak: its ``label`` (a grammar phrase or :data:`OTHER`) and ``kind``."""

    text: str
    label: str
    kind: str
    command: str = ""


def _grammar(grammar: Grammar | None) -> Grammar:
    return grammar if grammar is not None else load_grammar("en")


def phrases_in(grammar: Grammar, text: str) -> list[str]:
    """Grammar phrases that occur as a whole-word sequence in ``text``."""
    return grammar.command_phrases_in(text)


def is_free_of_commands(grammar: Grammar, text: str) -> bool:
    """True when no command phrase occurs in ``text`` as a whole-word sequence."""
    return not phrases_in(grammar, text)


def check_positive(grammar: Grammar, item: Text) -> None:
    """Raise ValueError unless ``item`` contains its label phrase and no other command's phrase."""
    command = grammar.phrase_map().get(item.label)
    if command is None or command != item.command:
        raise ValueError(f"{item.text!r}: label {item.label!r} is not a phrase of {item.command!r}")
    found = phrases_in(grammar, item.text)
    if item.label not in found:
        raise ValueError(f"{item.text!r} does not contain its phrase {item.label!r}")
    others = [p for p in found if grammar.phrase_map()[p] != command]
    if others:
        raise ValueError(f"{item.text!r} ({command}) also contains {others}")


def positives(grammar: Grammar | None = None) -> list[Text]:
    """Every phrase of every command, then its variants; label = the grammar phrase."""
    gram = _grammar(grammar)
    out: list[Text] = []
    for command, phrases in gram.phrases.items():
        for phrase in phrases:
            items = [Text(phrase, phrase, "positive", command)]
            for template in VARIANTS.get(command, ()):
                if template.count("{p}") > 1 and len(phrase.split()) > _REPEAT_MAX_WORDS:
                    continue
                items.append(Text(template.format(p=phrase), phrase, "positive", command))
            for item in items:
                check_positive(gram, item)
            out.extend(items)
    return _unique(out)


def _unique(items: Iterable[Text]) -> list[Text]:
    seen: set[tuple[str, str]] = set()
    out = []
    for item in items:
        key = (item.text, item.kind)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def negative_words(grammar: Grammar | None = None) -> list[Text]:
    """Confusable words, parts of phrases and the never-commands; none of them a phrase."""
    gram = _grammar(grammar)
    phrase_set = set(gram.all_phrases())
    words = list(CONFUSABLES) + list(PART_WORDS) + list(gram.never)
    out = []
    for word in words:
        if normalise(word) in phrase_set or not is_free_of_commands(gram, word):
            _LOGGER.debug("negative word %r is a command phrase: left out", word)
            continue
        out.append(Text(word, OTHER, "negative"))
    return _unique(out)


def split_sentences(text: str) -> list[str]:
    """``text`` cut after each ``.``, ``?`` or ``!`` (abbreviation-free coach texts)."""
    return [s.strip() for s in re.split(r"(?<=[.?!])\s+", text) if s.strip()]


def _literals_said(module: object) -> list[str]:
    """String literals passed to ``say``/``_refuse`` or returned in ``module``'s source."""
    tree = ast.parse(inspect.getsource(module))  # type: ignore[arg-type]
    found: list[str] = []
    for node in ast.walk(tree):
        values: list[ast.AST] = []
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("say", "_refuse"):
            values = list(node.args)
        elif isinstance(node, ast.Return) and node.value is not None:
            values = [node.value]
        for value in values:
            parts = [value.body, value.orelse] if isinstance(value, ast.IfExp) else [value]
            for part in parts:
                if isinstance(part, ast.Constant) and isinstance(part.value, str) \
                        and re.search(r"[.?!]$", part.value) and " " in part.value:
                    found.append(part.value)
    return found


#: Phrase-file texts the coach and its requests say that are not constants of cues.py.
COACH_TEXTS = ("REFUSE_WALKING", "REFUSE_NOT_NOW", "REFUSE_IDLE", "REFUSE_BRIEFING", "REFUSE_PAUSED",
               "UNKNOWN_COMMAND", "ONE_MINUTE_LEFT", "LAST_BLOCK_DONE", "BLOCK_DONE", "HALFWAY",
               "SLOWEST", "MOST_INCLINE", "FLAT", "TOP_SPEED_TODAY", "TOP_SPEED_SETTINGS",
               "CLOCK_RUNNING", "NOT_STARTED")


def coach_speech() -> list[str]:
    """Every sentence the coach can say (from voicecoach.workout), with sample numbers filled in."""
    texts: list[str] = []
    for cue_list in cues.CUE_SETS.values():
        texts.extend(text for _, text in cue_list)
    for name, value in sorted(vars(cues).items()):
        if name.isupper() and isinstance(value, str) and name != "STOP_SPELLED":
            texts.append(value)
    for question, fix in cues.BRIEFING_CHECKS:
        texts.extend((question, fix))
    texts.extend(cues.PHASE_NAMES.values())
    samples = ((1.2, "mph"), (2.5, "kmh"), (0.8, "mph"), (1.6, "kmh"))
    for (mph, units), kind in zip(samples * 2, ("warmup", "backward", "recovery", "cooldown") * 2,
                                  strict=True):
        texts.append(cues.phase_intro(kind, 2, 3, 150.0 if units == "mph" else 45.0, mph, units))
    texts.append(cues.summary_text(600.0, 1.0, 1.6, "mph", "finished"))
    texts.append(cues.summary_text(210.0, 1.2, 1.2, "kmh", "stopped"))
    texts.append(cues.summary_text(0.0, 1.2, 1.2, "mph", "stopped"))
    texts.append(cues.PAIN_SLOWER.format(speed=cues.speed_text(0.9, "mph")))
    texts.extend(_literals_said(coach_module))
    texts.extend(_literals_said(requests_module))
    # The answers and refusals that were literals in coach.py and requests.py, now in the
    # phrase file (grammars/phrases/en.json), in the order the literals were found.
    texts.extend(getattr(cues.ENGLISH, key) for key in COACH_TEXTS)
    sentences: list[str] = []
    for text in texts:
        if "{" in text:
            continue
        sentences.extend(split_sentences(text))
    return list(dict.fromkeys(sentences))


def coach_texts(grammar: Grammar | None = None) -> list[Text]:
    """The coach's sentences free of command phrases (its prompts such as "Say yes or no." are left
    out: they hold a command word on purpose)."""
    gram = _grammar(grammar)
    out = []
    for sentence in coach_speech():
        if is_free_of_commands(gram, sentence):
            out.append(Text(sentence, OTHER, "coach"))
        else:
            _LOGGER.debug("coach sentence %r holds a command phrase: left out", sentence)
    return out


def everyday_sentences(grammar: Grammar | None = None, count: int = 300, seed: int = 0) -> list[Text]:
    """``count`` everyday sentences from templates and word lists, none holding a command phrase."""
    gram = _grammar(grammar)
    rng = random.Random(f"sentences:{seed}")
    out: dict[str, Text] = {}
    attempts = 0
    while len(out) < count and attempts < count * 50:
        attempts += 1
        template = rng.choice(_TEMPLATES)
        text = template.format(S=rng.choice(_SUBJECTS), V=rng.choice(_VERBS), O=rng.choice(_OBJECTS),
                               T=rng.choice(_TIMES), N=rng.choice(_NOUNS), A=rng.choice(_ADJECTIVES),
                               P=rng.choice(_PLACES))
        if text not in out and is_free_of_commands(gram, text):
            out[text] = Text(text, OTHER, "sentence")
    return list(out.values())


def all_texts(grammar: Grammar | None = None, seed: int = 0) -> list[Text]:
    """Positives, negative words, coach sentences and everyday sentences, in that order."""
    gram = _grammar(grammar)
    return (positives(gram) + negative_words(gram) + coach_texts(gram)
            + everyday_sentences(gram, seed=seed))


def negative_violations(grammar: Grammar, items: Iterable[Text]) -> list[tuple[str, list[str]]]:
    """(text, phrases) for every non-positive text that holds a command phrase; empty when clean."""
    return [(item.text, phrases_in(grammar, item.text)) for item in items
            if item.kind != "positive" and phrases_in(grammar, item.text)]
