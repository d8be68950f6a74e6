"""``voicecoach model``: list the vosk models found, show the one a language uses, download."""

from __future__ import annotations

import argparse
import os
import pkgutil
from pathlib import Path

from voicecoach.commands import DefaultsFormatter
from voicecoach.errors import VoicecoachError
from voicecoach.listening.models import (
    MODEL_ENV,
    MODEL_LIST_URL,
    cache_dirs,
    candidates,
    check_model,
    default_download_dir,
    guess_language,
    package_model,
    require_model,
)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser("model", help="find or download vosk speech models",
                            formatter_class=DefaultsFormatter,
                            description="vosk models are searched in --model, then "
                                        f"${MODEL_ENV}, then vosk's cache folders, then "
                                        "installed vosk-model-<lang> packages.")
    actions = parser.add_subparsers(dest="model_action", metavar="ACTION")
    listing = actions.add_parser("list", help="list the models found and where",
                                 formatter_class=DefaultsFormatter)
    listing.set_defaults(func=run_list)
    path = actions.add_parser("path", help="print the model folder a language would use",
                              formatter_class=DefaultsFormatter)
    path.add_argument("lang", help="language code, e.g. en or ko")
    path.add_argument("--model", default=None, metavar="DIR", help="check this folder instead")
    path.set_defaults(func=run_path)
    download = actions.add_parser("download", help="download vosk's small model for a language",
                                  formatter_class=DefaultsFormatter)
    download.add_argument("lang", help="language code, e.g. en or ko")
    download.add_argument("--dest", default=str(default_download_dir()), metavar="DIR",
                          help="unzip the model into this folder")
    download.add_argument("--list-url", default=MODEL_LIST_URL, metavar="URL",
                          help="vosk's model list (a mirror may be given)")
    download.add_argument("--no-progress", action="store_true", help="no progress bar")
    download.set_defaults(func=run_download)
    parser.set_defaults(func=run, model_parser=parser)


def run(args: argparse.Namespace) -> int:
    """``voicecoach model`` alone: show the help."""
    args.model_parser.print_help()
    return 2


def _packaged() -> list[Path]:
    """Model folders of installed vosk-model-<lang> packages."""
    found = []
    for module in pkgutil.iter_modules():
        if module.name.startswith("vosk_model_"):
            folder = package_model(module.name[len("vosk_model_"):].replace("_", "-"))
            if folder is not None:
                found.append(folder)
    return sorted(set(found))


def run_list(args: argparse.Namespace) -> int:
    """Print every model found, its language and where it came from."""
    rows: list[tuple[Path, str]] = list(candidates())
    rows += [(p, "package") for p in _packaged()]
    searched = ([f"${MODEL_ENV}={os.environ[MODEL_ENV]}"] if os.environ.get(MODEL_ENV) else [])
    searched += [str(d) for d in cache_dirs()] + ["installed vosk-model-* packages"]
    print("searched: " + ", ".join(searched))
    if not rows:
        print("no vosk models found; 'voicecoach model download LANG' fetches one")
        return 0
    for path, source in rows:
        try:
            info = check_model(path, source=source)
            status = "ok"
        except VoicecoachError as exc:
            info = None
            status = f"broken: {exc.message}"
        lang = (info.language if info else guess_language(path)) or "?"
        print(f"{lang:6} {path}  ({source}; {status})")
    return 0


def run_path(args: argparse.Namespace) -> int:
    """Print the model folder ``lang`` would use (an error when there is none)."""
    info = require_model(args.lang, Path(args.model) if args.model else None)
    print(info.path)
    return 0


def run_download(args: argparse.Namespace) -> int:
    """Download and unzip vosk's small model for ``lang``; print where it went."""
    from voicecoach.listening.model_download import download

    info = download(args.lang, Path(args.dest).expanduser(), list_url=args.list_url,
                    progress=not args.no_progress)
    print(info.path)
    return 0
