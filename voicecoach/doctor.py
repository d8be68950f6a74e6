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
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

import numpy as np

from voicecoach.config import load_config
from voicecoach.errors import VoicecoachError
from voicecoach.settings import Settings

_LOGGER = logging.getLogger(__name__)

OK, WARN, FAIL = "ok", "warn", "FAIL"
LOW_SPACE_MB, NO_SPACE_MB = 200.0, 20.0
_APT = "sudo apt install"


@dataclass(frozen=True)
class Check:
    """One result: what was checked, ok/warn/FAIL, what was found and, for problems, the fix."""

    name: str
    status: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<4}  {self.name}: {self.detail}"
        return text + (f" -> fix: {self.fix}" if self.fix and self.status != OK else "")


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


def check_second_look(settings: Settings) -> Check:
    """The spotter's verifier (the 'verify' extra): loads it and scores a second of room tone.
    Never a failure: without it the spotter goes on alone, and this line says so."""
    name = "second look (verifier)"
    if settings.speech.verify == "off":
        return Check(name, OK, "off (speech.verify = off): the spotter decides alone")
    try:
        verify = _import("voicecoach.listening.spotter.verify")
        verifier = verify.load_verifier()
        scores = verifier.scores(np.zeros(16000, np.float32), {"stop": ["stop"]})
        if not all(np.isfinite(v) for v in scores.values()):
            raise VoicecoachError("the verifier's scores are not finite numbers",
                                  "reinstall: pip install --force-reinstall 'voicecoach[verify]'")
    except VoicecoachError as exc:
        return Check(name, WARN, f"{exc.message}: the spotter goes on alone",
                     exc.hint or "pip install 'voicecoach[verify]'")
    except Exception as exc:  # noqa: BLE001 - a broken wheel of ctranslate2 or tokenizers
        return Check(name, WARN, f"cannot run ({exc}): the spotter goes on alone",
                     "pip install --force-reinstall 'voicecoach[verify]'")
    return Check(name, OK, f"{verifier.name} from {verify.PACKAGE} {verify.PACKAGE_VERSION} "
                           "(sha256 checked, ran on a test clip)")


def run_engine(settings: Settings, engine: str) -> str:
    """Build ``engine`` exactly as `listen` does and run it on a short built-in clip (a
    second of seeded room noise then silence): what doctor calls ok loads and runs. Returns
    what it heard; raises VoicecoachError (or whatever the engine raised) when it cannot."""
    from voicecoach.audio.chunk import AudioChunk
    from voicecoach.grammar import load_grammar
    from voicecoach.listening.engines import ENGINES, make_recogniser

    speech = replace(settings.speech, engine=engine)
    entry = ENGINES.get(engine)
    grammar = load_grammar((entry.language if entry else None) or speech.language)
    logging.disable(logging.WARNING)  # what the engine notes at loading has its own line
    try:
        rec = make_recogniser(speech, grammar, data_dir=settings.data_dir)
    finally:
        logging.disable(logging.NOTSET)
    rec.set_commands(grammar.commands)
    rec.reset()
    rng = np.random.default_rng(18)
    clip = np.concatenate([rng.normal(0, 300, 16000), np.zeros(8000)]).astype(np.int16)
    heard = []
    for start in range(0, clip.size, 1600):
        heard += rec.accept(AudioChunk(clip[start:start + 1600].tobytes(), start / 16000))
    heard += rec.flush()
    for det in heard:
        if not np.isfinite(det.confidence):
            raise VoicecoachError(f"the {engine} engine gives scores that are not numbers",
                                  "reinstall voicecoach, or retrain the model")
    close = getattr(rec, "close", None)
    if callable(close):
        close()
    return ", ".join(d.command for d in heard) or "nothing"


def _ran(settings: Settings, engine: str, needed: bool) -> Check | None:
    """None if ``engine`` ran on the test clip; else the check that says why not."""
    try:
        run_engine(settings, engine)
    except VoicecoachError as exc:
        return Check(engine, FAIL if needed else WARN, f"loads but cannot run: {exc.message}",
                     exc.hint)
    except Exception as exc:  # noqa: BLE001 - whatever a broken engine raises
        return Check(engine, FAIL if needed else WARN, f"cannot run ({type(exc).__name__}: "
                     f"{' '.join(str(exc).split())})", "reinstall it (see README)")
    return None


def check_recognisers(settings: Settings) -> Iterator[Check]:
    """Every engine of the table (voicecoach.listening.engines.ENGINES), then the model for the
    language if an engine needs one. A missing engine fails if it is the one in use (the
    configured engine, or the one "auto" picks), else warns."""
    from voicecoach.listening.engines import engine_installed, install_hint, recognisers, resolve

    chosen = resolve(settings.speech)
    found: dict[str, bool] = {}
    for engine in recognisers():
        assert engine.probe is not None
        try:
            detail = engine.probe()
        except VoicecoachError as exc:
            found[engine.name] = False
            if engine is not chosen and not engine_installed(engine.name):
                yield Check(engine.label, OK, f"not installed (optional: {install_hint(engine.name)})")
            else:
                yield Check(engine.label, FAIL if engine is chosen else WARN, exc.message,
                            exc.hint or "")
        else:
            found[engine.name] = True
            # what doctor calls ok loads and runs: the engine hears a test clip (vosk needs its
            # model, checked with it below)
            failed = None if engine.needs_model else _ran(settings, engine.name, engine is chosen)
            if failed is not None:
                found[engine.name] = False
                yield Check(engine.label, failed.status, failed.detail, failed.fix)
            else:
                yield Check(engine.label, OK, detail + ("" if engine.needs_model
                                                        else " (ran on a test clip)"))
        if engine.second_look and settings.speech.language.split("-")[0] == "en":
            yield check_second_look(settings)  # the spotter's verifier, never a failure
    needing = [e for e in recognisers() if e.needs_model]
    if needing:
        yield _check_model(settings, needing[0].label, found[needing[0].name])


def _language_name(language: str) -> str:
    return "English" if language.split("-")[0].lower() == "en" else f"'{language}'"


def _check_model(settings: Settings, engine_label: str, engine_ok: bool) -> Check:
    """The model for the language, for the engines that need one downloaded (vosk)."""
    from voicecoach.listening.engines import ENGINES, resolve
    from voicecoach.listening.models import same_language

    speech = settings.speech
    name = f"{engine_label} model ({speech.language})"
    asked = ENGINES[speech.engine]
    if asked.language is not None:          # an engine with its own model, named in the config
        if same_language(speech.language, asked.language):
            return Check(name, OK, f"not needed ([speech] engine = {speech.engine})")
        return Check(name, FAIL, f"{speech.engine} only knows {_language_name(asked.language)}, "
                     f"not '{speech.language}'",
                     f"set [speech] engine = \"{engine_label}\" (or \"auto\") and get a model with "
                     f"`voicecoach model download {speech.language}`")
    try:
        models = _import("voicecoach.listening.models")
    except ImportError:
        return Check(name, WARN, "skipped (model lookup is not installed)")
    chosen = resolve(speech)
    if not chosen.needs_model:              # "auto" picked an engine with its own model
        return Check(name, OK, f"not needed ({_language_name(chosen.language or '')} uses the "
                               f"{chosen.label})")
    needed = speech.engine != "auto" or not same_language(speech.language, "en")
    try:
        info = models.find_model(speech.language, speech.model_path)
    except VoicecoachError as exc:
        return Check(name, FAIL, exc.message, exc.hint or "fix [speech] model_path")
    if info is None:
        fallback = "" if needed else "; the command spotter is used instead"
        return Check(name, FAIL if needed else WARN, f"none found{fallback}",
                     f"`voicecoach model download {speech.language}` or set "
                     "[speech] model_path")
    note = "" if engine_ok else f" (but {engine_label} itself is missing)"
    if engine_ok:
        speech_here = replace(speech, model_path=info.path)
        failed = _ran(replace(settings, speech=speech_here), chosen.name, needed)
        if failed is not None:
            return Check(name, failed.status, f"{info.path}: {failed.detail}", failed.fix)
        note = " (ran on a test clip)"
    return Check(name, OK if engine_ok else FAIL, f"{info.path} ({info.source}){note}",
                 f"pip install 'voicecoach[{engine_label}]'")


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
    if state.state == "read-only":
        yield Check("history", FAIL, f"read-only: {detail}; {state.detail}", state.fix)
        return
    if state.state == "locked":
        yield Check("history", FAIL, f"locked: {detail}; {state.detail}", state.fix)
        return
    yield Check("history", WARN if state.odd_rows else OK, f"ok: {detail}",
                "nothing needed; `voicecoach history --json` shows those rows")


def check_treadmill(settings: Settings) -> Iterator[Check]:
    """Bluetooth and the configured treadmill, when the coach is to use one."""
    t = settings.treadmill
    if t.control == "off":
        yield Check("treadmill", OK, "not used ([treadmill] control = off)")
        return
    if not t.address:
        yield Check("treadmill", FAIL, f"[treadmill] control = {t.control} but no address",
                    "run `voicecoach treadmill scan` and set [treadmill] address")
        return
    import asyncio

    from voicecoach.treadmill.client import TreadmillError, adapters, connect

    try:
        found = asyncio.run(adapters())
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

    async def probe() -> str:
        client, _controller, info = await connect(t.address or "", lambda _u: None, timeout=10.0)
        await client.disconnect()
        r = info.speed_range
        return f"{info.name or info.address}: FTMS, speed {r.minimum:g}-{r.maximum:g} km/h"

    try:
        yield Check("treadmill", OK, asyncio.run(probe()))
    except TreadmillError as exc:
        yield Check("treadmill", FAIL, exc.message, exc.hint)


def run_checks(config: Path | None = None, data_dir: str | None = None,
               sd: ModuleType | None = None, render: bool = True) -> Iterator[Check]:
    """Every check in order; a check that crashes becomes a FAIL line, never a traceback."""
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
