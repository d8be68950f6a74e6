"""A vosk model seen through changed decoder options: symlinks plus an edited conf/model.conf."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

import platformdirs

_LOGGER = logging.getLogger(__name__)

CACHE_ENV = "VOICECOACH_CACHE"


def cache_root() -> Path:
    """Where tuned views of models live: ``$VOICECOACH_CACHE`` or the per-user cache."""
    env = os.environ.get(CACHE_ENV)
    base = Path(env) if env else Path(platformdirs.user_cache_dir("voicecoach",
                                                                  appauthor=False))
    return base / "vosk-tuned"


def tuned_model_dir(model: Path, options: dict[str, str]) -> Path:
    """``model`` with ``options`` appended to its conf/model.conf (later lines win).

    The model is never written to: a folder in the cache holds symlinks to its parts and
    an edited copy of conf/. Without symlinks (or a writable cache) the model is used as
    it is and the options are dropped, with a log line.
    """
    model = Path(model).resolve()
    if not options:
        return model
    lines = [f"--{key}={value}" for key, value in sorted(options.items())]
    digest = hashlib.sha1("\n".join([str(model), *lines]).encode()).hexdigest()[:12]
    target = cache_root() / f"{model.name}-{digest}"
    if (target / "conf" / "model.conf").is_file():
        return target
    partial = target.with_name(target.name + ".tmp")
    try:
        shutil.rmtree(partial, ignore_errors=True)
        (partial / "conf").mkdir(parents=True)
        for part in model.iterdir():
            if part.name != "conf":
                (partial / part.name).symlink_to(part)
        for conf in (model / "conf").iterdir():
            shutil.copy2(conf, partial / "conf" / conf.name)
        text = (model / "conf" / "model.conf").read_text(encoding="utf-8").rstrip("\n")
        (partial / "conf" / "model.conf").write_text(text + "\n" + "\n".join(lines) + "\n",
                                                     encoding="utf-8")
        partial.rename(target)
    except OSError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if (target / "conf" / "model.conf").is_file():      # another process made it
            return target
        _LOGGER.warning("cannot apply vosk options %s to %s (%s): using it unchanged",
                        " ".join(lines), model, exc)
        return model
    return target
