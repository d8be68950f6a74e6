"""A child process's config: an empty file (the defaults, with nothing said about a missing one)."""

from __future__ import annotations

from pathlib import Path


def empty_config(folder: Path) -> str:
    """An empty config file in ``folder`` (made if need be), for ``$VOICECOACH_CONFIG``: the
    defaults, whereas a missing file named there is said on stderr by the session commands."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "empty-config.toml"
    path.touch()
    return str(path)
