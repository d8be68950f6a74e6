"""Progress bars for work longer than a few seconds: tqdm on a terminal, silent otherwise.

A bar is drawn on stderr only when stderr is a terminal, the output is not JSON (``--json``)
and the CI environment variable is unset; otherwise the same calls do nothing.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

_LOGGER = logging.getLogger(__name__)


def wanted(json_output: bool = False, stream: TextIO | None = None) -> bool:
    """True when a bar should be drawn (see the module docstring)."""
    stream = stream if stream is not None else sys.stderr
    if json_output or os.environ.get("CI"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(callable(isatty) and isatty())


def bar(total: float | None, desc: str, unit: str, *, json_output: bool = False,
        stream: TextIO | None = None) -> Any:
    """A tqdm bar (disabled unless :func:`wanted`); use as a context manager, ``update(n)``."""
    from tqdm import tqdm

    stream = stream if stream is not None else sys.stderr
    return tqdm(total=total, desc=desc, unit=unit, file=stream, leave=False,
                disable=not wanted(json_output, stream), dynamic_ncols=True,
                bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} {unit} [{elapsed}<{remaining}]")


def advance(progress: Any, n: float) -> None:
    """``progress.update(n)``, raising its total first when ``n`` would pass it (a file's
    header may under-state its audio by a chunk)."""
    if progress.total is not None and progress.n + n > progress.total:
        progress.total = progress.n + n
    progress.update(n)
