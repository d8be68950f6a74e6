"""Download a vosk model by vosk's official name: list, zip with progress, size/MD5, unzip."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

from tqdm import tqdm

from voicecoach.errors import VoicecoachError
from voicecoach.listening.models import (
    MODEL_LIST_URL,
    MODEL_PRE_URL,
    SMALL_MODELS,
    ModelInfo,
    check_model,
    default_download_dir,
    same_language,
    vosk_lang,
)

_LOGGER = logging.getLogger(__name__)

TIMEOUT_S = 15.0
BLOCK = 1 << 16


def _offline(what: str, url: str, exc: BaseException, language: str) -> VoicecoachError:
    reason = getattr(exc, "reason", None) or exc
    name = SMALL_MODELS.get(vosk_lang(language), f"vosk-model-small-{vosk_lang(language)}")
    return VoicecoachError(f"cannot download {what} from {url} ({reason})",
                           f"connect to the internet, or fetch {MODEL_PRE_URL}{name}.zip "
                           "by hand and unzip it into ~/.cache/vosk")


def fetch_model_list(language: str, list_url: str = MODEL_LIST_URL) -> list[dict[str, Any]]:
    """vosk's model list (name, lang, type, url, size, md5, obsolete per model)."""
    try:
        with urllib.request.urlopen(list_url, timeout=TIMEOUT_S) as response:
            data = json.loads(response.read().decode("utf-8"))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise _offline("the vosk model list", list_url, exc, language) from None
    if not isinstance(data, list):
        raise VoicecoachError(f"the vosk model list at {list_url} is not a JSON list",
                              "try again later or download the model by hand")
    return [m for m in data if isinstance(m, dict)]


def pick_model(models: list[dict[str, Any]], language: str) -> dict[str, Any]:
    """The current small model for ``language`` (what vosk's Model(lang=...) would choose)."""
    wanted = vosk_lang(language)
    current = [m for m in models if str(m.get("obsolete", "false")) == "false"]
    for pool in ([m for m in current if m.get("lang") == wanted],
                 [m for m in current if same_language(str(m.get("lang", "")), wanted)]):
        small = [m for m in pool if m.get("type") == "small"]
        if small or pool:
            return (small or pool)[0]
    langs = sorted({str(m.get("lang")) for m in current})
    raise VoicecoachError(f"vosk has no model for language '{language}'",
                          f"choose one of: {', '.join(langs)}")


def _fetch(url: str, target: Path, size: int | None, language: str, progress: bool) -> str:
    """Stream ``url`` into ``target`` with a progress bar; return the MD5 hex digest."""
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, \
                open(target, "wb") as out, \
                tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024,
                     desc=url.rsplit("/", 1)[-1], disable=not progress) as bar:
            while True:
                block = response.read(BLOCK)
                if not block:
                    break
                out.write(block)
                digest.update(block)
                bar.update(len(block))
    except (urllib.error.URLError, OSError) as exc:
        target.unlink(missing_ok=True)
        raise _offline("the model", url, exc, language) from None
    return digest.hexdigest()


def install_zip(archive: Path, dest: Path, language: str, *, name: str | None = None,
                size: int | None = None, md5: str | None = None,
                actual_md5: str | None = None) -> ModelInfo:
    """Check a model zip's size and MD5, unzip it into ``dest`` safely and check the folder."""
    if size is not None and archive.stat().st_size != size:
        raise VoicecoachError(f"the model download {archive.name} has {archive.stat().st_size} "
                              f"bytes, expected {size}", "the download was cut short: try again")
    if md5:
        got = actual_md5 or hashlib.md5(archive.read_bytes()).hexdigest()
        if got.lower() != md5.lower():
            raise VoicecoachError(f"the model download {archive.name} has MD5 {got}, "
                                  f"expected {md5}", "the file is damaged: try again")
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.namelist()
            root = dest.resolve()
            for member in members:
                if not (dest / member).resolve().is_relative_to(root):
                    raise VoicecoachError(f"the model zip {archive.name} has an unsafe path "
                                          f"{member!r}", "download it from vosk's site")
            tops = {m.split("/", 1)[0] for m in members if m.strip("/")}
            zf.extractall(dest)
    except zipfile.BadZipFile:
        raise VoicecoachError(f"{archive.name} is not a zip file",
                              "the download is damaged: try again") from None
    folder = dest / (name or (tops.pop() if len(tops) == 1 else archive.stem))
    return check_model(folder, source=f"downloaded to {dest}", language=language)


def download(language: str, dest: Path | None = None, *, list_url: str = MODEL_LIST_URL,
             progress: bool = True) -> ModelInfo:
    """Download vosk's small model for ``language`` into ``dest`` (default ~/.cache/vosk)."""
    dest = Path(dest) if dest is not None else default_download_dir()
    entry = pick_model(fetch_model_list(language, list_url), language)
    name = str(entry["name"])
    if (dest / name).is_dir():
        _LOGGER.info("%s is already in %s", name, dest)
        return check_model(dest / name, source=f"already in {dest}", language=language)
    url = str(entry.get("url") or f"{MODEL_PRE_URL}{name}.zip")
    size = int(entry["size"]) if str(entry.get("size", "")).isdigit() else None
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VoicecoachError(f"cannot create {dest} ({exc.strerror})",
                              "choose another folder with --dest") from None
    part = dest / f"{name}.zip.part"
    actual = _fetch(url, part, size, language, progress)
    try:
        return install_zip(part, dest, language, name=name, size=size,
                           md5=str(entry.get("md5") or "") or None, actual_md5=actual)
    except VoicecoachError:
        shutil.rmtree(dest / name, ignore_errors=True)
        raise
    finally:
        part.unlink(missing_ok=True)
