"""Doctor's look at the recognisers: every engine of the table loads and runs on a test clip,
the model the language needs is there, and the spotter's second look works."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from voicecoach.checks import FAIL, OK, WARN, Check
from voicecoach.errors import VoicecoachError
from voicecoach.settings import Settings

_LOGGER = logging.getLogger(__name__)


#: What a device without the second look loses, measured (README, "Barge-in with real people",
#: session 18): locked speakers' stops said over the coach's voice, NLMS, 200 trials, caught by
#: the spotter alone (the default install) and with the look (the verify extra).
BARGE_IN_ALONE, BARGE_IN_LOOKED, BARGE_IN_TRIALS = 81, 175, 200
WITHOUT_LOOK = (f"alone it catches {BARGE_IN_ALONE} of {BARGE_IN_TRIALS} real stops said over "
                f"the coach's voice, {BARGE_IN_LOOKED} with the look (README, barge-in)")
LOOK_HINT = ("pip install 'voicecoach[verify]' (about 265 MB; on a device that drives a belt, "
             "install it)")


def driving_without_look(recogniser: object, drives: bool) -> str | None:
    """The one line a device says at start-up when it will drive the belt with the command
    spotter but without its second look (None: nothing to say)."""
    if not drives or not hasattr(recogniser, "verifier") or \
            getattr(recogniser, "verifier", None) is not None:
        return None
    return (f"voicecoach: warning: the coach drives the belt without the spotter's second look: "
            f"{WITHOUT_LOOK}; install it: {LOOK_HINT}")


def check_second_look(settings: Settings) -> Check:
    """The spotter's verifier (the 'verify' extra): loads it and scores a second of room tone.
    Without it the spotter goes on alone, and this line says so and what it costs: a warning,
    and a failure where the coach drives the belt (``[treadmill] control = drive``), since
    without the look most stops said over the coach's voice are missed (README, barge-in)."""
    name = "second look (verifier)"
    drives = settings.treadmill.control == "drive"
    if settings.speech.verify == "off":  # the user's choice: said, never a failure
        return Check(name, WARN if drives else OK, f"off (speech.verify = off): the spotter "
                     f"decides alone; {WITHOUT_LOOK}", "set speech.verify = auto" if drives else "")
    missing = FAIL if drives else WARN
    try:
        verify = importlib.import_module("voicecoach.listening.spotter.verify")
        verifier = verify.load_verifier()
        scores = verifier.scores(np.zeros(16000, np.float32), {"stop": ["stop"]})
        if not all(np.isfinite(v) for v in scores.values()):
            raise VoicecoachError("the verifier's scores are not finite numbers",
                                  "reinstall: pip install --force-reinstall 'voicecoach[verify]'")
    except VoicecoachError as exc:
        return Check(name, missing, f"{exc.message}: the spotter goes on alone; {WITHOUT_LOOK}",
                     exc.hint or LOOK_HINT)
    except Exception as exc:  # noqa: BLE001 - a broken wheel of ctranslate2 or tokenizers
        return Check(name, missing, f"cannot run ({exc}): the spotter goes on alone; "
                                    f"{WITHOUT_LOOK}",
                     "pip install --force-reinstall 'voicecoach[verify]'")
    learned = ""
    try:
        from voicecoach.listening.spotter.look_probe import load_look_probe
        from voicecoach.listening.spotter.model import load_model

        model = load_model()
    except VoicecoachError:
        model = None    # the spotter's own line says what is wrong with its model
    if model is not None:
        try:
            probe = load_look_probe(model.path, model.card)
            if probe is not None:
                learned = f"; {probe.describe()}"
        except VoicecoachError as exc:
            return Check(name, missing, f"{exc.message}: the second look is off, the spotter "
                                        "goes on alone", exc.hint)
    return Check(name, OK, f"{verifier.name} from {verify.PACKAGE} {verify.PACKAGE_VERSION} "
                           f"(sha256 checked, ran on a test clip){learned}")


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
            yield check_second_look(settings)  # the spotter's verifier (a failure only if the
            # coach drives the belt without it)
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
        models = importlib.import_module("voicecoach.listening.models")
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
