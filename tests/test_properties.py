"""Property-based: any plan file, config file, WAV header or grammar file loads or is one line."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voicecoach.audio.wav import AudioFileSource, read_wav_16k, write_wav
from voicecoach.config import load_config
from voicecoach.errors import VoicecoachError
from voicecoach.grammar import COMMANDS, bundled_grammar_dir, load_grammar
from voicecoach.workout.plan import load_plan

PROPERTY = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


def one_line_or_ok(load: Callable[[], Any]) -> Any:
    """Call ``load``: it returns, or raises VoicecoachError whose line is one line that says
    what is wrong and how to fix it. Any other exception fails the property."""
    try:
        return load()
    except VoicecoachError as exc:
        line = exc.one_line()
        assert "\n" not in line and "\r" not in line and len(line) < 2000, line
        assert exc.message and exc.exit_code != 0
        return None


# ---------------------------------------------------------------- TOML values
def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string is a JSON string


NUMBERS = st.one_of(st.integers(-10**20, 10**20), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0, -1, 0.0, 1e300, -1e-300, 5, 0.6, 2.5, 180, 15]))
VALUES = st.one_of(NUMBERS, st.booleans(), st.text(max_size=12),
                   st.sampled_from(["warmup", "backward", "recovery", "cooldown", "mph", "kmh",
                                    "technique", "none", "auto", "vosk", "pocketsphinx", "en"]),
                   st.lists(st.integers(0, 3), max_size=2))
PHASE_KEYS = ["kind", "minutes", "seconds", "speed", "min_speed", "max_speed", "incline",
              "max_incline", "cues", "speeed", "Minutes"]


@st.composite
def plan_texts(draw: st.DrawFn) -> str:
    lines = []
    for key in draw(st.lists(st.sampled_from(["name", "units", "phase", "weeks"]), max_size=3,
                             unique=True)):
        if key != "phase":
            lines.append(f"{key} = {toml_value(draw(VALUES))}")
    for _ in range(draw(st.integers(0, 4))):
        lines.append("[[phase]]")
        for key in draw(st.lists(st.sampled_from(PHASE_KEYS), max_size=6, unique=True)):
            lines.append(f"{key} = {toml_value(draw(VALUES))}")
    if draw(st.booleans()):  # now and then a line that is not TOML at all
        lines.insert(draw(st.integers(0, len(lines))), draw(st.text(max_size=20)))
    return "\n".join(lines) + "\n"


@PROPERTY
@given(text=plan_texts())
def test_any_plan_file_loads_or_is_one_line(tmp_path: Path, text: str) -> None:
    path = tmp_path / "plan.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    plan = one_line_or_ok(lambda: load_plan(path))
    if plan is not None:  # what loads is usable: finite, positive, within its window
        assert plan.phases
        for phase in plan.phases:
            assert 0 < phase.duration_s < float("inf")
            assert 0 <= phase.min_speed_mph <= phase.speed_mph <= phase.max_speed_mph < 100
            assert np.isfinite([phase.incline_pct, phase.max_incline_pct]).all()


@PROPERTY
@given(blob=st.binary(max_size=300))
def test_any_bytes_as_a_plan_file_is_one_line(tmp_path: Path, blob: bytes) -> None:
    path = tmp_path / "plan.toml"
    path.write_bytes(blob)
    one_line_or_ok(lambda: load_plan(path))


CONFIG_KEYS = {"coach": ["units", "top_speed_mph", "speed_step_mph", "max_incline_pct",
                         "cue_interval_s", "min_gap_s", "cue_no_repeat", "checkin_interval_s",
                         "top_sped"],
               "speech": ["engine", "language", "model_path", "rate", "volume", "voice"],
               "audio": ["input_device", "output_device"], "treadmil": ["x"]}


@st.composite
def config_texts(draw: st.DrawFn) -> str:
    lines = []
    if draw(st.booleans()):
        lines.append(f"data_dir = {toml_value(draw(VALUES))}")
    for section in draw(st.lists(st.sampled_from(sorted(CONFIG_KEYS)), max_size=3, unique=True)):
        lines.append(f"[{section}]")
        for key in draw(st.lists(st.sampled_from(CONFIG_KEYS[section]), max_size=4, unique=True)):
            lines.append(f"{key} = {toml_value(draw(VALUES))}")
    return "\n".join(lines) + "\n"


@PROPERTY
@given(text=config_texts(), env=st.dictionaries(
    st.sampled_from(["VOICECOACH_SPEECH_RATE", "VOICECOACH_COACH_TOP_SPEED_MPH",
                     "VOICECOACH_SPEECH_VOLUME", "VOICECOACH_SPEECH_ENGIN"]),
    st.one_of(st.sampled_from(["inf", "nan", "-1", "1e300", "170", "0.5", ""]),
              st.text(max_size=6)), max_size=2))
def test_any_config_file_and_environment_load_or_are_one_line(
        tmp_path: Path, text: str, env: dict[str, str]) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    environ = {k: v.replace("\0", "") for k, v in env.items()}
    loaded = one_line_or_ok(lambda: load_config(path, environ=environ, required=True))
    if loaded is not None:
        coach, speech = loaded.settings.coach, loaded.settings.speech
        assert np.isfinite([coach.top_speed_mph, coach.cue_interval_s, speech.volume]).all()
        assert 0 <= speech.volume <= 1 and 80 <= speech.rate <= 400


# ---------------------------------------------------------------- WAV headers
@st.composite
def wav_blobs(draw: st.DrawFn) -> bytes:
    """A RIFF/WAVE file whose header fields and chunk sizes are drawn (often nonsense)."""
    u16 = st.one_of(st.sampled_from([0, 1, 2, 3, 8, 16, 24, 32, 0xFFFE, 0xFFFF]),
                    st.integers(0, 0xFFFF))
    u32 = st.one_of(st.sampled_from([0, 1, 8000, 16000, 44100, 48000, 0xFFFFFFFF, 2**31]),
                    st.integers(0, 0xFFFFFFFF))
    fmt = struct.pack("<HHIIHH", draw(u16), draw(u16), draw(u32), draw(u32), draw(u16), draw(u16))
    fmt_size = draw(st.one_of(st.just(16), u32))
    data = draw(st.binary(max_size=400))
    data_size = draw(st.one_of(st.just(len(data)), u32))
    chunks = [b"fmt " + struct.pack("<I", fmt_size) + fmt,
              b"data" + struct.pack("<I", data_size) + data]
    if draw(st.booleans()):
        chunks.insert(draw(st.integers(0, 2)), b"LIST" + struct.pack("<I", draw(u32))
                      + draw(st.binary(max_size=20)))
    if draw(st.booleans()):
        chunks.reverse()
    body = b"WAVE" + b"".join(chunks)
    riff = draw(st.sampled_from([b"RIFF", b"RIFX", b"RF64", b"JUNK"]))
    blob = riff + struct.pack("<I", draw(st.one_of(st.just(len(body)), u32))) + body
    cut = draw(st.one_of(st.just(len(blob)), st.integers(0, len(blob))))
    return blob[:cut]


def read_all(path: Path) -> int:
    source = AudioFileSource(path)
    try:
        return sum(len(chunk.audio) for chunk in source.chunks())
    finally:
        source.close()


@PROPERTY
@given(blob=wav_blobs())
def test_any_wav_header_reads_or_is_one_line(tmp_path: Path, blob: bytes) -> None:
    path = tmp_path / "clip.wav"
    path.write_bytes(blob)
    one_line_or_ok(lambda: read_all(path))
    one_line_or_ok(lambda: read_wav_16k(path))


def test_the_wav_strategy_also_makes_readable_files(tmp_path: Path) -> None:
    """The property above is not vacuous: a real file written by write_wav reads back."""
    path = tmp_path / "ok.wav"
    write_wav(path, np.zeros(1600, dtype=np.float32))
    assert read_all(path) == 3200


# ---------------------------------------------------------------- grammar files
EN = json.loads((bundled_grammar_dir() / "en.json").read_text(encoding="utf-8"))
JUNK = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=8),
                 st.lists(st.text(max_size=6), max_size=3), st.dictionaries(
                     st.text(max_size=5), st.text(max_size=5), max_size=2))


@st.composite
def grammar_data(draw: st.DrawFn) -> object:
    """The English grammar with parts replaced by junk, removed or renamed."""
    data = json.loads(json.dumps(EN))
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.sampled_from(["top", "command", "phrases", "state", "never", "whole"]))
        if where == "whole":
            return draw(JUNK)
        if where == "top":
            data[draw(st.sampled_from(["language", "commands", "states", "never_commands"]))] = \
                draw(JUNK)
        elif where == "command" and isinstance(data.get("commands"), dict):
            name = draw(st.sampled_from([*COMMANDS, "jump", ""]))
            data["commands"][name] = draw(st.one_of(JUNK, st.fixed_dictionaries(
                {"phrases": st.lists(st.sampled_from(["stop", "go", "up", "", "  ", "faster"]),
                                     max_size=3)})))
        elif where == "phrases" and isinstance(data.get("commands"), dict) and data["commands"]:
            name = draw(st.sampled_from(sorted(data["commands"])))
            if isinstance(data["commands"][name], dict):
                data["commands"][name]["phrases"] = draw(JUNK)
        elif where == "state" and isinstance(data.get("states"), dict):
            data["states"][draw(st.sampled_from(["idle", "paused", "new"]))] = draw(JUNK)
        elif where == "never":
            data["never_commands"] = draw(st.one_of(JUNK, st.lists(st.sampled_from(
                ["stop", "up", "yes"]), max_size=2)))
    return data


@PROPERTY
@given(data=grammar_data(), raw=st.booleans(), blob=st.binary(max_size=80))
def test_any_grammar_file_loads_or_is_one_line(tmp_path: Path, data: object, raw: bool,
                                               blob: bytes) -> None:
    path = tmp_path / "xx.json"
    if raw:
        path.write_bytes(blob)
    else:
        path.write_text(json.dumps(data), encoding="utf-8")
    grammar = one_line_or_ok(lambda: load_grammar(path=path))
    if grammar is not None:
        assert "stop" in grammar.commands
        assert all("stop" in names for names in grammar.states.values())
