"""An engine is one entry of the table: the argument parser, the config, doctor and the
benchmarks all read voicecoach.listening.engines.ENGINES."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicecoach import cli, config
from voicecoach.checks import FAIL, WARN
from voicecoach.errors import VoicecoachError
from voicecoach.listening import engines
from voicecoach.listening.engines import ENGINES, Engine, EngineMissing, recognisers, resolve
from voicecoach.listening.health import check_recognisers
from voicecoach.settings import Settings, SpeechSettings


def _never(speech: SpeechSettings, grammar: object) -> tuple[object, str]:
    raise VoicecoachError("not built in this test")


def _missing() -> str:
    raise EngineMissing("cannot import (no module named 'whisper')", "pip install it")


@pytest.fixture
def extra_engine(monkeypatch: pytest.MonkeyPatch) -> Engine:
    """One more engine, added as nothing but a table entry."""
    entry = Engine("whisper", "a new engine", _never, language="en", label="whisper",
                   probe=_missing)  # type: ignore[arg-type]
    monkeypatch.setitem(ENGINES, "whisper", entry)
    return entry


def test_a_table_entry_is_an_engine_everywhere(extra_engine: Engine, tmp_path: Path) -> None:
    assert "whisper" in config.choices("speech", "engine")
    assert "whisper" in [e.name for e in recognisers()]
    run = cli.build_parser().parse_args(["listen", "--engine", "whisper"])
    assert run.engine == "whisper"
    settings = Settings(data_dir=tmp_path)
    lines = {c.name: c for c in check_recognisers(settings)}
    assert lines["whisper"].status == WARN  # not the engine in use: a warning
    assert "no module named 'whisper'" in lines["whisper"].detail
    chosen = Settings(data_dir=tmp_path, speech=SpeechSettings(engine="whisper"))
    lines = {c.name: c for c in check_recognisers(chosen)}
    assert lines["whisper"].status == FAIL  # the engine in use is missing: a failure


def test_doctor_checks_the_table_in_its_order(tmp_path: Path) -> None:
    names = [c.name for c in check_recognisers(Settings(data_dir=tmp_path))
             if c.name != "second look (verifier)"]  # the spotter's own extra line
    assert names == [e.label for e in recognisers()] + ["vosk model (en)"]
    assert names[:3] == ["command spotter", "pocketsphinx", "vosk"]


@pytest.mark.parametrize("engine, language, model, picked", [
    ("auto", "en", None, "spotter"), ("auto", "ko", None, "vosk"),
    ("auto", "en", Path("/m"), "vosk"), ("pocketsphinx", "en", None, "pocketsphinx"),
    ("vosk", "en", None, "vosk")])
def test_auto_resolves_as_the_recogniser_is_built(engine: str, language: str, model: Path | None,
                                                  picked: str) -> None:
    speech = SpeechSettings(engine=engine, language=language, model_path=model)
    assert resolve(speech).name == picked


def test_only_the_engine_table_names_engines() -> None:
    """No list of engine names elsewhere in the run time (the table's own module excepted)."""
    root = Path(engines.__file__).resolve().parents[1]
    names = [n for n in ENGINES if n != "auto"]
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if "lab" in path.relative_to(root).parts or path.name == "engines.py":
            continue
        text = path.read_text(encoding="utf-8")
        quoted = [n for n in names if f'"{n}"' in text or f"'{n}'" in text]
        if len(quoted) >= 2:
            offenders.append(f"{path.relative_to(root)}: {quoted}")
    assert not offenders, offenders
