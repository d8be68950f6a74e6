"""Sound devices: list them, and turn a number or part of a name into a device index."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from voicecoach.errors import VoicecoachError

_LOGGER = logging.getLogger(__name__)

_KINDS = ("input", "output")

class PortAudioStreams:
    """The PortAudio streams open that a re-read of the device list must not pull away (it
    closes every stream): the speaker's utterance, a listening microphone. A re-read waits
    until none is open, and none opens while it runs. A stream given up on (the speaker's
    write that never returns) is let go of (:meth:`let_go`): it is no longer waited for, so
    it cannot keep the list unread until a restart."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        #: The open streams: a token -> the thread that opened it
        self._open: dict[object, int] = {}
        #: How many times the device list was re-read (a speaker given up tries its device
        #: again after a re-read, whoever made it: voicecoach.speaking.tts)
        self.rereads = 0

    def opened(self) -> object:
        """A stream is open (waits while a re-read runs); the token for :meth:`closed`."""
        token = object()
        with self._cond:
            self._open[token] = threading.get_ident()
        return token

    def closed(self, token: object) -> None:
        with self._cond:
            self._open.pop(token, None)
            self._cond.notify_all()

    @contextmanager
    def held(self) -> Iterator[None]:
        """A stream open for the block (the speaker's utterance)."""
        token = self.opened()
        try:
            yield
        finally:
            self.closed(token)

    def let_go(self, thread: threading.Thread) -> None:
        """The streams ``thread`` opened are given up: a re-read no longer waits for them."""
        with self._cond:
            for token in [t for t, owner in self._open.items() if owner == thread.ident]:
                del self._open[token]
            self._cond.notify_all()

    @contextmanager
    def quiet(self, wait_s: float) -> Iterator[bool]:
        """Within: no stream open, none opening (True), or ``wait_s`` passed with one still
        open (False)."""
        with self._cond:
            yield self._cond.wait_for(lambda: not self._open, wait_s)


#: The one registry of open PortAudio streams that ``refresh_devices`` respects
PORTAUDIO_STREAMS = PortAudioStreams()


#: The longest a re-read of the device list waits for the speaker's utterance (seconds);
#: past it the re-read is skipped (the old list is kept) rather than hold the loop up.
REFRESH_WAIT_S = 5.0


def refresh_devices(sd: Any | None = None, wait_s: float = REFRESH_WAIT_S) -> bool:
    """Make PortAudio read the device list again; True if it did. The one path for the
    microphone reopened after a loss and the speaker tried again after a failure.

    PortAudio reads the list once, at start-up (python-sounddevice #125, #47; PortAudio #447):
    a USB speakerphone unplugged and plugged back in is not seen again, or is seen under an
    old number, until PortAudio is terminated and initialised again. That closes every open
    stream, so it waits until none is open (:data:`PORTAUDIO_STREAMS`: the speaker's current
    utterance, a listening microphone), ``wait_s`` at most, and is skipped past it (the old
    list kept): a working microphone is never pulled away, and a write the output device
    never returns from (a speaker pulled out under a driver that stalls instead of
    failing), once the speaker has given it up, is not waited for (before, it held the re-read
    off for good: the list stayed unread until a restart).
    """
    try:
        sd = sd or sounddevice_module()
        with PORTAUDIO_STREAMS.quiet(wait_s) as quiet:
            if not quiet:
                _LOGGER.info("sound devices not re-read: a stream (the speaker's utterance or "
                             "the microphone) stayed open for %g s", wait_s)
                return False
            sd._terminate()
            sd._initialize()
            PORTAUDIO_STREAMS.rereads += 1
    except Exception as exc:  # noqa: BLE001 - PortAudioError or no PortAudio: keep the old list
        _LOGGER.debug("could not re-read the sound devices: %s", exc)
        return False
    _LOGGER.info("sound devices re-read")
    return True


def sounddevice_module() -> Any:
    """Import sounddevice, or raise one clear error when PortAudio is missing."""
    try:
        import sounddevice
    except OSError as exc:  # sounddevice raises OSError when libportaudio cannot be loaded
        raise VoicecoachError(f"cannot use sound devices: {exc}",
                              "install PortAudio (sudo apt-get install libportaudio2)") from None
    except ImportError:
        raise VoicecoachError("cannot use sound devices: the sounddevice package is missing",
                              "pip install sounddevice") from None
    return sounddevice


def _channels_key(kind: str) -> str:
    if kind not in _KINDS:
        raise ValueError(f"kind must be 'input' or 'output', not {kind!r}")
    return f"max_{kind}_channels"


def _all_devices(sd: Any) -> list[dict[str, Any]]:
    try:
        return [dict(d) for d in sd.query_devices()]
    except sd.PortAudioError as exc:
        raise VoicecoachError(f"cannot list sound devices: {exc}",
                              "check that a sound card is present and not in use") from None


def devices_of(kind: str, sd: Any | None = None) -> list[tuple[int, str]]:
    """(index, name) of every device that can be used for ``kind`` (input or output)."""
    key = _channels_key(kind)
    sd = sd or sounddevice_module()
    return [(i, str(d.get("name", "?"))) for i, d in enumerate(_all_devices(sd))
            if int(d.get(key, 0)) > 0]


def list_devices() -> str:
    """A readable table of all devices (``>`` marks the default input, ``<`` the output)."""
    sd = sounddevice_module()
    _all_devices(sd)
    text = str(sd.query_devices())
    return text if text.strip() else "no sound devices found"


def _describe(found: list[tuple[int, str]]) -> str:
    return "; ".join(f"{i}: {name}" for i, name in found) or "none"


def resolve_device(spec: str | int | None, kind: str = "input",
                   sd: Any | None = None) -> int | None:
    """The device index for ``spec`` (a number, or part of a name, case-insensitive).

    None means the system default, which must exist. A spec that matches nothing, or several
    devices, is one clear error that lists the devices there are.
    """
    _channels_key(kind)
    sd = sd or sounddevice_module()
    found = devices_of(kind, sd)
    thing = "microphone" if kind == "input" else "speaker"
    if not found:
        raise VoicecoachError(f"no {thing} found (there is no {kind} sound device)",
                              f"connect a {thing}, check `voicecoach listen --list-devices`"
                              + (", or give WAV files instead" if kind == "input" else ""))
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        default = _default_index(sd, kind)
        if default is None or default not in {i for i, _ in found}:
            _LOGGER.debug("no default %s device; using %s", kind, found[0][1])
            return found[0][0]
        return None
    text = str(spec).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if index in {i for i, _ in found}:
            return index
        raise VoicecoachError(f"{kind} device {index} does not exist",
                              f"choose one of: {_describe(found)}")
    matches = [(i, name) for i, name in found if text.lower() in name.lower()]
    exact = [(i, name) for i, name in matches if name.lower() == text.lower()]
    if len(exact) == 1 or len(matches) == 1:
        return (exact or matches)[0][0]
    if not matches:
        raise VoicecoachError(f"no {kind} device matches '{text}'",
                              f"choose one of: {_describe(found)}")
    raise VoicecoachError(f"'{text}' matches several {kind} devices ({_describe(matches)})",
                          "give the device number instead")


def _default_index(sd: Any, kind: str) -> int | None:
    try:
        pair = sd.default.device
        value = pair[0 if kind == "input" else 1]
    except (AttributeError, IndexError, TypeError):
        return None
    try:
        index = int(value)
    except (TypeError, ValueError):
        return None
    return index if index >= 0 else None
