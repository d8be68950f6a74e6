"""Health checks for the device: sound, recognisers and models, the voice, data and config."""

from __future__ import annotations

import ctypes.util
import importlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

from voicecoach.checks import FAIL, OK, WARN, Check
from voicecoach.config import load_config, missing_config
from voicecoach.errors import VoicecoachError
from voicecoach.listening.health import check_recognisers
from voicecoach.service import check_unit, installed_unit_path
from voicecoach.settings import Settings

_LOGGER = logging.getLogger(__name__)

LOW_SPACE_MB, NO_SPACE_MB = 200.0, 20.0
#: Seconds doctor gives the configured treadmill: found, connected and read (a person waits at
#: a terminal; the coach's own setup allows 30 s). Letting go of it takes at most
#: TREADMILL_LET_GO_S more, whether it answered or not.
TREADMILL_CHECK_S = 10.0
TREADMILL_LET_GO_S = 1.0
_APT = "sudo apt install"


def _import(name: str) -> ModuleType:
    return importlib.import_module(name)


def check_config(path: Path | None, data_dir: str | None) -> tuple[Check, Settings]:
    """Does the config file parse? Returns the check and the settings to check the rest with."""
    overrides = {"data_dir": data_dir} if data_dir else {}
    try:
        loaded = load_config(path, overrides, required=path is not None)
    except VoicecoachError as exc:
        fallback = Settings(data_dir=Path(data_dir)) if data_dir else Settings()
        return Check("config file", FAIL, exc.message,
                     exc.hint or "fix the file or run `voicecoach config init`"), fallback
    missing = missing_config() if path is None else None
    if missing is not None:
        return Check("config file", WARN, *missing), loaded.settings
    stray = Path(loaded.settings.data_dir) / "config.toml"
    if stray.is_file() and stray.resolve() != Path(loaded.path).resolve():
        return Check("config file", WARN,
                     f"{stray} is not read: settings come from {loaded.path}",
                     f"move it to {loaded.path}, or set VOICECOACH_CONFIG={stray}"
                     ), loaded.settings
    state = "parsed" if loaded.file_found else "not there: defaults are used"
    return Check("config file", OK, f"{loaded.path} ({state})"), loaded.settings


def check_audio(settings: Settings, sd: ModuleType | None) -> Iterator[Check]:
    """PortAudio, the input and output devices, and the configured ones."""
    try:
        sd = sd or _import("sounddevice")
    except (ImportError, OSError) as exc:
        yield Check("sound library", FAIL, f"sounddevice/PortAudio cannot load ({exc})",
                    f"{_APT} libportaudio2, then `.venv/bin/pip install sounddevice`")
        return
    version = sd.get_portaudio_version()[1] if hasattr(sd, "get_portaudio_version") else "?"
    yield Check("sound library", OK, str(version))
    try:
        devices = list(sd.query_devices())
    except Exception as exc:  # noqa: BLE001 - PortAudioError
        devices = []
        _LOGGER.debug("query_devices failed: %s", exc)
    for kind, channels, what, configured in (
            ("input", "max_input_channels", "microphone", settings.audio.input_device),
            ("output", "max_output_channels", "speaker", settings.audio.output_device)):
        found = [d for d in devices if d.get(channels, 0) > 0]
        if not found:
            yield Check(f"{kind} devices", FAIL, f"no {what} found (no sound card?)",
                        "plug in the USB speakerphone and check that `arecord -l` and "
                        "`aplay -l` list it (if not: a cable, power or driver problem)")
        else:
            names = ", ".join(str(d.get("name", "?")) for d in found[:3])
            yield Check(f"{kind} devices", OK, f"{len(found)} ({names})")
        yield _check_configured(kind, configured, sd)


def _check_configured(kind: str, spec: str | None, sd: ModuleType) -> Check:
    name = f"configured {kind} device"
    section_key = f"[audio] {kind}_device"
    if spec is None:
        return Check(name, OK, "none set: the system default is used")
    try:
        devices = _import("voicecoach.audio.devices")
    except ImportError:
        return Check(name, WARN, f"{spec!r}: skipped (device lookup is not installed)")
    try:
        index = devices.resolve_device(spec, kind=kind, sd=sd)
    except VoicecoachError as exc:
        return Check(name, FAIL, exc.message, exc.hint or f"fix {section_key}")
    return Check(name, OK, f"{spec!r} is device #{index}")


def check_echo_canceller(settings: Settings) -> Iterator[Check]:
    """The configured echo canceller starts and cleans a frame; if not, the coach runs without."""
    from voicecoach.audio.cancellers import DEFAULT, WEBRTC_HINT, build

    kind = settings.audio.echo_canceller
    name = DEFAULT if kind == "auto" else kind
    try:
        canceller = build(kind)
        if canceller is not None:
            import numpy as np

            frame = np.zeros(160, np.int16)
            canceller.process(frame, frame)
    except Exception as exc:  # noqa: BLE001 - CancellerError, or a foreign extension failing
        yield Check("echo canceller", WARN, f"{name} cannot start ({exc}): the coach runs without "
                    "echo cancellation and may miss a stop said over its voice",
                    WEBRTC_HINT if name == "webrtc" else "set [audio] echo_canceller = \"webrtc\"")
        return
    if canceller is None:
        yield Check("echo canceller", WARN, "off ([audio] echo_canceller = \"off\"): the coach "
                    "hears its own voice", "set [audio] echo_canceller = \"auto\", or use a "
                    "speakerphone or PipeWire's echo-cancel module")
        return
    what = {"webrtc": "WebRTC AEC3 (pywebrtc-audio)", "nlms": "NLMS (voicecoach's own)"}[name]
    yield Check("echo canceller", OK, what + (" [auto]" if kind == "auto" else ""))


def check_tts(settings: Settings, render: bool = True) -> Iterator[Check]:
    """pyttsx3 and espeak-ng present, the configured voice exists, a test render works."""
    try:
        _import("pyttsx3")
        yield Check("pyttsx3", OK, "importable")
    except Exception as exc:  # noqa: BLE001
        yield Check("pyttsx3", FAIL, f"cannot import ({exc})", "`.venv/bin/pip install pyttsx3`")
        return
    lib = ctypes.util.find_library("espeak-ng")
    if lib is None:
        yield Check("espeak-ng", FAIL, "the espeak-ng library is missing",
                    f"{_APT} espeak-ng libespeak-ng1")
        return
    yield Check("espeak-ng", OK, lib)
    if not render:
        return
    from voicecoach.speaking.render import Pyttsx3Renderer, RenderError

    voice = settings.speech.voice
    renderer = Pyttsx3Renderer(voice, settings.speech.rate)
    try:
        began = time.perf_counter()
        result = renderer.render("Voice coach check. Land on your toes.")
        took = time.perf_counter() - began
    except RenderError as exc:
        yield Check("voice test render", FAIL, str(exc),
                    f"{_APT} espeak-ng libespeak-ng1; run `espeak-ng hello` to see the error")
        return
    finally:
        renderer.close()
    if voice:
        if renderer.voice_problem:
            yield Check("voice", FAIL, renderer.voice_problem,
                        "set [speech] voice to a name from `espeak-ng --voices` (e.g. en-us)")
        else:
            yield Check("voice", OK, repr(voice))
    else:
        yield Check("voice", OK, "engine default")
    rtf = took / result.seconds if result.seconds else float("inf")
    yield Check("voice test render", OK,
                f"{result.seconds:.2f} s of speech in {took:.3f} s (RTF {rtf:.3f}, "
                "including worker start-up)")


def check_data_dir(data_dir: Path) -> Iterator[Check]:
    """The data folder exists (or can be made), is writable and has room."""
    existing = data_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    fix = "pass --data-dir or set VOICECOACH_HOME to a writable folder"
    if not existing.is_dir():
        yield Check("data folder", FAIL, f"{existing} is not a folder", fix)
        return
    if existing == data_dir:
        try:
            with tempfile.TemporaryFile(dir=data_dir):
                pass
        except OSError as exc:
            yield Check("data folder", FAIL, f"{data_dir} is not writable ({exc.strerror})", fix)
            return
        yield Check("data folder", OK, f"{data_dir} (writable)")
    elif os.access(existing, os.W_OK | os.X_OK):
        yield Check("data folder", OK, f"{data_dir} (will be created)")
    else:
        yield Check("data folder", FAIL, f"{data_dir} cannot be created: {existing} is "
                    "not writable", fix)
        return
    free_mb = shutil.disk_usage(existing).free / 1e6
    status = FAIL if free_mb < NO_SPACE_MB else WARN if free_mb < LOW_SPACE_MB else OK
    yield Check("free space", status, f"{free_mb:,.0f} MB free at {existing}",
                "free some disk space or move the data folder")


def check_grammar(settings: Settings) -> Iterator[Check]:
    """The bundled grammars are installed and the configured language's one loads."""
    from voicecoach.grammar import grammar_dir, load_grammar

    folder = grammar_dir()
    found = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
    if not found:
        yield Check("grammars", FAIL, f"no grammar files in {folder} (a broken install?)",
                    "reinstall voicecoach (`.venv/bin/pip install --force-reinstall voicecoach`"
                    " or `bash .ci/setup` in a checkout)")
        return
    try:
        grammar = load_grammar(settings.speech.language)
    except VoicecoachError as exc:
        yield Check("grammar", FAIL, exc.message, exc.hint)
        return
    yield Check("grammar", OK, f"{grammar.language}: {len(grammar.commands)} commands "
                f"({grammar.path}); installed: {', '.join(found)}")


def check_history(data_dir: Path) -> Iterator[Check]:
    """The history's state: ok, none yet, read-only, damaged or a newer schema, with the fix.
    Reads only: the file is opened read-only and never changed."""
    from voicecoach.history.db import DB_NAME
    from voicecoach.history.health import inspect_history
    from voicecoach.history.schema import SCHEMA_VERSION
    from voicecoach.history.session_lock import holder

    state = inspect_history(data_dir / DB_NAME)
    if state.state == "none":
        yield Check("history", OK, f"none yet at {state.path} (made at the first session)")
        return
    if state.state in ("damaged", "newer-schema", "unreadable"):
        yield Check("history", FAIL, f"{state.state}: {state.detail}", state.fix)
        return
    detail = f"{state.path}: {state.sessions} session(s), schema v{state.version}"
    if state.version < SCHEMA_VERSION:  # sessions are counted once it is migrated
        detail = (f"{state.path}: schema v{state.version} (updated to v{SCHEMA_VERSION} at the "
                  "next session)")
    if state.odd_rows:
        detail += (f"; {state.odd_rows} row(s) hold impossible values (read as unknown: "
                   "they cannot stop a session)")
    using = holder(data_dir)  # a serve at work is not a fault: said, never called broken
    if using is not None:
        detail += f"; in use by voicecoach {using.names()}"
    if state.state == "read-only":
        yield Check("history", FAIL, f"read-only: {detail}; {state.detail}", state.fix)
        return
    if state.state == "locked":
        yield Check("history", FAIL, f"locked: {detail}; {state.detail}", state.fix)
        return
    yield Check("history", WARN if state.odd_rows else OK, f"ok: {detail}",
                "nothing needed; `voicecoach history --json` shows those rows")


def _treadmill_fix(address: str) -> str:
    return ("switch the treadmill on (wake a sleeping pad: press a key on it), disconnect any "
            f"other app from it (a phone's), pair it if it asks (bluetoothctl pair {address}), "
            "and check [treadmill] address with `voicecoach treadmill scan`")


def check_treadmill(settings: Settings) -> Iterator[Check]:
    """Bluetooth and the configured treadmill, when the coach is to use one: the treadmill
    within :data:`TREADMILL_CHECK_S`, else one FAIL line saying what did not answer."""
    t = settings.treadmill
    if t.control == "off":
        yield Check("treadmill", OK, "not used ([treadmill] control = off)")
        return
    if not t.address:
        yield Check("treadmill", FAIL, f"[treadmill] control = {t.control} but no address",
                    "run `voicecoach treadmill scan` and set [treadmill] address")
        return
    import asyncio

    from voicecoach.treadmill.client import (
        NotAnswered,
        TreadmillError,
        adapters,
        connect,
        let_go,
    )

    try:
        found = asyncio.run(adapters())  # bounded: a stuck bluetoothd is one FAIL line
    except TreadmillError as exc:
        yield Check("bluetooth", FAIL, exc.message, exc.hint)
        return
    if not found:
        yield Check("bluetooth", FAIL, "no Bluetooth adapter", "plug one in (`bluetoothctl list`)")
        return
    if not any(powered for _, powered in found):
        yield Check("bluetooth", FAIL, "Bluetooth is off", "bluetoothctl power on")
        return
    yield Check("bluetooth", OK, ", ".join(f"{n} ({'on' if p else 'off'})" for n, p in found))

    seconds = TREADMILL_CHECK_S

    async def probe() -> str:
        client, _controller, info = await connect(
            t.address or "", lambda _u: None, timeout=seconds, setup_timeout=seconds,
            undo_s=TREADMILL_LET_GO_S)
        await let_go(client, TREADMILL_LET_GO_S)
        r = info.speed_range
        return f"{info.name or info.address}: FTMS, speed {r.minimum:g}-{r.maximum:g} km/h"

    try:
        yield Check("treadmill", OK, asyncio.run(probe()))
    except NotAnswered as exc:
        if exc.what == "Bluetooth":  # the scan for it never ended
            yield Check("treadmill", FAIL, f"{exc.message} while looking for {t.address}",
                        "restart it: sudo systemctl restart bluetooth")
        else:
            yield Check("treadmill", FAIL, exc.message, _treadmill_fix(t.address or ""))
    except TreadmillError as exc:
        if "in range" in exc.message:  # not found
            yield Check("treadmill", FAIL, exc.message, _treadmill_fix(t.address or ""))
            return
        yield Check("treadmill", FAIL, exc.message, exc.hint)


def run_checks(config: Path | None = None, data_dir: str | None = None,
               sd: ModuleType | None = None, render: bool = True,
               unit: Path | None = None) -> Iterator[Check]:
    """Every check in order; a check that crashes becomes a FAIL line, never a traceback.
    ``unit``: the installed systemd unit to compare (default: ``$VOICECOACH_UNIT``, else
    /etc/systemd/system/voicecoach.service)."""
    first, settings = check_config(config, data_dir)
    yield first
    groups: list[tuple[str, Callable[[], Iterator[Check]]]] = [
        ("audio", lambda: check_audio(settings, sd)),
        ("echo canceller", lambda: check_echo_canceller(settings)),
        ("recognisers", lambda: check_recognisers(settings)),
        ("voice", lambda: check_tts(settings, render)),
        ("grammar", lambda: check_grammar(settings)),
        ("data folder", lambda: check_data_dir(settings.data_dir)),
        ("history", lambda: check_history(settings.data_dir)),
        ("treadmill", lambda: check_treadmill(settings)),
        ("systemd unit", lambda: iter([check_unit(settings, unit or installed_unit_path())])),
    ]
    for name, group in groups:
        try:
            yield from group()
        except Exception as exc:  # noqa: BLE001
            _LOGGER.debug("check %s crashed", name, exc_info=True)
            yield Check(name, FAIL, f"the check itself failed: {type(exc).__name__}: {exc}",
                        "run with --debug and report it")


def doctor(out: TextIO, **kwargs: Any) -> int:
    """Print one line per check; return 0 if nothing FAILed, else 1."""
    failed = 0
    for check in run_checks(**kwargs):
        print(check.line(), file=out, flush=True)
        failed += check.status == FAIL
    print(f"{failed} problem(s) to fix" if failed else "all checks passed", file=out)
    return 1 if failed else 0
