"""A named pipe given where a file or folder is expected: the program must say what it is
without opening it (opening waits for a writer, for ever)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path


def said_without_opening(fifo: Path, call: Callable[[], str], wait_s: float = 60.0) -> str:
    """Run ``call`` (about the named pipe ``fifo``) in a thread and return what it said; fails
    if it is still waiting after ``wait_s`` (it opened the pipe), after unblocking it."""
    said: list[str] = []
    worker = threading.Thread(target=lambda: said.append(call()), daemon=True)
    worker.start()
    worker.join(wait_s)
    blocked = worker.is_alive()
    if blocked:  # opened, and waiting for a writer: give it one that closes at once
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(10)
    assert not blocked, "the named pipe was opened"
    assert said, "nothing was said about the named pipe"
    return said[0]
