"""One voicecoach at a time per data folder: the kernel's lock that refuses a second session (in
another process) while one runs, or while ``serve``/``start``/``run`` holds the folder for its
whole life (``enroll``, and ``listen`` on the microphone, for theirs); shared within a
process by a session and the record, still being written, of the one before it. The lock
file names its holder (pid, command, systemd unit, whether it uses the microphone) for the
refusal's line, for doctor, and for a microphone ``listen``, heard beside a holder that
does not use the microphone (:func:`microphone_for`)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from voicecoach.errors import VoicecoachError
from voicecoach.history.liveness import PROC, pid_alive, process_token

_LOGGER = logging.getLogger(__name__)

#: Held (flock) by the process whose session is running on a data folder.
SESSION_LOCK = "session.lock"
#: The session locks this process holds, by the lock file's (device, inode): the open file
#: holding it, and how many of this process's sessions hold it.
_HELD: dict[tuple[int, int], tuple[TextIO, int]] = {}
_HELD_GUARD = threading.Lock()


@dataclass(frozen=True)
class Holder:
    """The voicecoach process that holds a data folder, as its lock file names it: its pid,
    its command (serve, start, run, demo; '' when unknown), when systemd runs it its unit,
    and whether it uses the microphone (None: its lock file does not say, an older
    version's)."""

    pid: int
    command: str = ""
    unit: str = ""
    microphone: bool | None = None

    @property
    def uses_microphone(self) -> bool:
        """Whether it may be listening on the microphone: unless it says it is not."""
        return self.microphone is not False

    def names(self) -> str:
        """'serve, pid 1234', or 'pid 1234' when the command is unknown."""
        return f"{self.command}, pid {self.pid}" if self.command else f"pid {self.pid}"


class DataFolderBusy(VoicecoachError):
    """Another voicecoach process holds the data folder (its history, and the microphone,
    speaker and treadmill it drives): a second one is refused, not run beside it.
    ``refused`` is the command refused: its fix is said in its own words (an enrollment or
    the microphone is not helped by another --data-dir: the holder is to be stopped)."""

    def __init__(self, data_dir: Path, holder: Holder | None, refused: str = "") -> None:
        who = f" ({holder.names()})" if holder else ""
        super().__init__(f"another voicecoach{who} is using the workout history in {data_dir}",
                         _fix(holder, refused))
        self.holder = holder


def _fix(holder: Holder | None, refused: str) -> str:
    """How to get past ``holder``: stop it (its unit, a process started by hand) or let its
    session end; then the refused command's own way on."""
    if holder is None:
        stop = "stop it first"
    elif holder.unit:
        stop = f"stop it first (sudo systemctl stop {holder.unit})"
    elif holder.command in ("serve", "listen", "enroll"):  # run until stopped by hand
        stop = f"stop it first (Ctrl-C where it runs, or kill {holder.pid})"
    else:
        stop = "let its session end first (say or type stop)"
    if refused == "enroll":  # the holder reads the enrollments only when it starts
        if holder is not None and holder.unit:
            return f"{stop}, enroll, then start it again (sudo systemctl start {holder.unit})"
        if holder is not None and holder.command == "serve":
            return f"{stop}, enroll, then start it again"
        return f"{stop}, then enroll"
    if refused == "listen":  # the microphone is the holder's whatever the data folder
        return f"{stop}, or give listen WAV files instead of the microphone"
    return f"{stop} or give another --data-dir"


@contextmanager
def one_session_at_a_time(data_dir: Path, command: str = "", *,
                          microphone: bool = True) -> Iterator[None]:
    """Refuse (one line, :class:`DataFolderBusy`) a second voicecoach on the same data
    folder while one holds it: two coaches would share one history, one microphone and one
    treadmill, and one user cannot walk two sessions. A session holds it while it runs;
    ``serve``, ``start`` and ``run`` hold it for their whole life (``command`` names the
    holder in the refusal, and the refused command's fix), so a second serve is refused at
    once, not when "start" is heard. ``enroll`` (which writes the enrollments a serve reads)
    and ``listen`` on the microphone (which a serve listens on) hold it for theirs too.
    ``microphone``: whether the holder listens on the microphone (a typed run, a replay and
    the demo do not), written in the lock file for :func:`microphone_for`.
    The lock is the kernel's (flock), so a crashed or killed holder never leaves it behind:
    the name written in the file (cleared when the holder lets go, left by a killed one) is
    only read to name a holder that still runs (:func:`holder`).

    Within one process the lock is shared: the device loop starts a session only when none is
    running, but the record of the one before may still be being written (another program
    held the history at its end, see ``DeviceLoop._end_session``), and it keeps the lock
    until it is; the next session of this process is not refused for it."""
    path = Path(data_dir) / SESSION_LOCK
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle: TextIO = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the session
        st = os.fstat(handle.fileno())
    except OSError as exc:
        # A folder nothing can be written in: the history says why, in its own words (it
        # cannot take a session there either, so there is nothing to guard).
        _LOGGER.debug("history: no session lock in %s: %s", data_dir, exc)
        yield
        return
    key = (st.st_dev, st.st_ino)
    with _HELD_GUARD:
        held = _HELD.get(key)
        if held is None:
            try:
                _take(handle, data_dir, command, microphone)
            except BaseException:
                with contextlib.suppress(OSError):
                    handle.close()
                raise
            held = (handle, 0)
        else:  # this process holds it already: a session's record still being written
            with contextlib.suppress(OSError):
                handle.close()
        _HELD[key] = (held[0], held[1] + 1)
    try:
        yield
    finally:
        with _HELD_GUARD:
            handle, count = _HELD.pop(key)
            if count > 1:
                _HELD[key] = (handle, count - 1)
            else:
                with contextlib.suppress(OSError):  # the name unmade while still held, so a
                    handle.truncate(0)  # process living on does not pass for its holder
                with contextlib.suppress(OSError):  # an unwritten pid on a full disk: no matter
                    handle.close()  # and the lock with it


def _take(handle: TextIO, data_dir: Path, command: str, microphone: bool) -> None:
    """Take the session lock on ``handle`` and write who holds it in it, or refuse."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        # unnamed only in the moment before a new holder writes its name over the last one's
        raise DataFolderBusy(data_dir, _live(handle.read()), command) from None
    pid = os.getpid()
    mine = {"pid": pid, "command": command, "token": process_token(pid), "unit": _unit(),
            "microphone": microphone}
    try:  # who holds it, for the refusal's line and doctor; a full disk only loses that
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(mine) + "\n")
        handle.flush()
    except OSError as exc:
        _LOGGER.debug("history: session lock: %s", exc)


def holder(data_dir: Path) -> Holder | None:
    """The live voicecoach process holding ``data_dir``, or None; read without taking the
    lock (doctor must never refuse a serve starting meanwhile). A holder that is gone (its
    pid dead, or reused by another process since) is None: its name stays in the file."""
    try:
        return _live((Path(data_dir) / SESSION_LOCK).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None


def _live(text: str) -> Holder | None:
    """The holder a lock file's ``text`` names if that process still runs: this version's
    JSON line (checked by pid and start token), or an older version's bare pid."""
    text = text.strip()
    if text.isdigit():
        return Holder(int(text)) if pid_alive(int(text)) else None
    try:
        data = json.loads(text)
        microphone = data.get("microphone")
        found = Holder(int(data["pid"]), str(data.get("command", "")), str(data.get("unit", "")),
                       microphone if isinstance(microphone, bool) else None)
        token = str(data.get("token", ""))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return found if pid_alive(found.pid, token) else None


@contextmanager
def microphone_for(data_dir: Path, command: str = "listen") -> Iterator[None]:
    """Hold ``data_dir`` for a command that uses only the microphone (``listen``): as
    :func:`one_session_at_a_time` does, so a serve started meanwhile is refused; but beside a
    holder that says it does not use the microphone (a typed run, a replay, the demo) it is
    not refused and goes on without the lock, which that holder keeps (the history and the
    treadmill are its own; listen touches neither). A holder that uses the microphone, or
    does not say (an older version's lock file, or none named yet), refuses it
    (:class:`DataFolderBusy`): the safe side. Beside a holder, a serve that starts after
    that holder has ended is not refused for this listen (it holds no lock to refuse it)."""
    with ExitStack() as stack:
        try:
            stack.enter_context(one_session_at_a_time(data_dir, command, microphone=True))
        except DataFolderBusy as busy:
            if busy.holder is None or busy.holder.uses_microphone:
                raise
            _LOGGER.debug("history: %s beside %s, which does not use the microphone",
                          command, busy.holder.names())
        yield


def _unit() -> str:
    """The systemd service running this process ('' when none): systemd sets INVOCATION_ID
    for a unit's processes, and the unit is the last part of the process's cgroup."""
    if not os.environ.get("INVOCATION_ID"):
        return ""
    try:
        cgroup = (PROC / "self/cgroup").read_text()
    except OSError:
        return "voicecoach"
    for line in cgroup.splitlines():
        name = line.rsplit("/", 1)[-1]
        if name.endswith(".service"):
            return name.removesuffix(".service")
    return "voicecoach"
