"""Settings from the TOML config file, the environment and overrides; every bad value rejected."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from voicecoach import cli
from voicecoach.commands.config import init_text, show_text, write_init
from voicecoach.config import (
    CONFIG_ENV,
    SECTIONS,
    config_path,
    field_docs,
    keys,
    load_config,
    load_settings,
)
from voicecoach.errors import VoicecoachError
from voicecoach.settings import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for section in SECTIONS:
        for key in keys(section):
            monkeypatch.delenv(f"VOICECOACH_{section}_{key}".upper(), raising=False)
    monkeypatch.setenv("VOICECOACH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "absent" / "config.toml"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_missing_file_gives_the_defaults(tmp_path: Path) -> None:
    loaded = load_config()
    assert loaded.path == tmp_path / "absent" / "config.toml" and not loaded.file_found
    assert loaded.settings == Settings(data_dir=tmp_path / "home")
    assert loaded.sources == {"data_dir": "env VOICECOACH_HOME"}


def test_default_path_is_the_per_user_config_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_ENV)
    path = config_path()
    assert path.name == "config.toml" and path.parent.name == "voicecoach"


def test_file_values_and_where_they_came_from(tmp_path: Path) -> None:
    path = write(tmp_path, """
data_dir = "data"
[coach]
units = "kmh"
top_speed_mph = 2
cue_no_repeat = 6
[speech]
engine = "pocketsphinx"
model_path = "~/models/vosk-small"
voice = "en-us"
rate = 150
volume = 0.5
[audio]
input_device = 2
output_device = "Jabra"
""")
    loaded = load_config(path, environ={"VOICECOACH_SPEECH_RATE": "180"})
    s = loaded.settings
    assert s.coach.units == "kmh" and s.coach.top_speed_mph == 2.0
    assert isinstance(s.coach.top_speed_mph, float) and s.coach.cue_no_repeat == 6
    assert s.speech.engine == "pocketsphinx" and s.speech.voice == "en-us"
    assert s.speech.model_path == Path("~/models/vosk-small").expanduser()
    assert s.speech.rate == 180 and s.speech.volume == 0.5
    assert s.audio.input_device == "2" and s.audio.output_device == "Jabra"
    assert s.data_dir == tmp_path / "data"  # relative to the config file's folder
    assert loaded.sources["speech.rate"] == "env VOICECOACH_SPEECH_RATE"
    assert loaded.sources["coach.units"] == "file" and "coach.min_gap_s" not in loaded.sources


def test_overrides_win_and_none_is_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, '[speech]\nengine = "vosk"\nvolume = 0.3\n')
    s = load_settings(path, {"speech.engine": "auto", "speech.volume": None,
                             "audio": {"input_device": "USB", "output_device": None}})
    assert s.speech.engine == "auto" and s.speech.volume == 0.3
    assert s.audio.input_device == "USB" and s.audio.output_device is None


def test_empty_strings_mean_default(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, '[speech]\nvoice = ""\nmodel_path = ""\n'))
    assert s.speech.voice is None and s.speech.model_path is None


@pytest.mark.parametrize("text, named, allowed", [
    ('[speech]\nengine = "vsk"', "[speech] engine = 'vsk'", "allowed: auto, spotter, vosk, pocketsphinx"),
    ('[coach]\nunits = "miles"', "[coach] units = 'miles'", "allowed: mph, kmh"),
    ('[speech]\nlanguage = "xx"', "[speech] language = 'xx'", "allowed: en"),
    ("[speech]\nrate = 1000", "[speech] rate = 1000", "whole number from 80 to 400"),
    ("[speech]\nrate = 150.5", "[speech] rate = 150.5", "whole number"),
    ('[speech]\nrate = "fast"', "[speech] rate = 'fast'", "whole number"),
    ("[speech]\nvolume = 1.5", "[speech] volume = 1.5", "from 0.0 to 1.0"),
    ("[speech]\nvolume = true", "[speech] volume = True", "a number"),
    ("[speech]\nvolume = nan", "[speech] volume = nan", "a number"),
    ("[coach]\ntop_speed_mph = 25", "[coach] top_speed_mph = 25", "from 0.3 to 6.0"),
    ("[coach]\ncue_no_repeat = -1", "[coach] cue_no_repeat = -1", "from 0 to 20"),
    ("[coach]\nmin_gap_s = [1, 2]", "[coach] min_gap_s = [1, 2]", "a number"),
    ("[speech]\nvoice = 3.5", "[speech] voice = 3.5", "a text string"),
    ("[audio]\ninput_device = false", "[audio] input_device = False", "a text string"),
    ("data_dir = 5", "data_dir = 5", "a text string"),
    ("[coach]\ntop_speed_mph = 1" + "0" * 400, "[coach] top_speed_mph = 1" + "0" * 400,
     "from 0.3 to 6.0"),
    ('data_dir = "\\u0000x"', "data_dir = '\\x00x'", "a path cannot hold a NUL character"),
])
def test_every_bad_value_is_one_clear_error(tmp_path: Path, text: str, named: str,
                                            allowed: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(VoicecoachError) as info:
        load_settings(path)
    line = info.value.one_line()
    assert line.startswith(f"config file {path}: {named}; ") and allowed in line
    assert "\n" not in line


def test_typo_in_a_key_names_it_and_suggests_the_right_one(tmp_path: Path) -> None:
    path = write(tmp_path, '[speech]\nengien = "vosk"\n')
    with pytest.raises(VoicecoachError) as info:
        load_settings(path)
    assert f"config file {path}: unknown key in [speech]: 'engien'" in info.value.message
    assert "allowed: engine, language" in info.value.message
    assert info.value.hint == "maybe you meant 'engine'"


def test_typo_in_a_section_and_a_section_that_is_not_a_table(tmp_path: Path) -> None:
    with pytest.raises(VoicecoachError, match=r"unknown section or key 'speach'.*\[speech\]"):
        load_settings(write(tmp_path, '[speach]\nengine = "vosk"\n'))
    with pytest.raises(VoicecoachError, match=r"coach must be a \[coach\] section"):
        load_settings(write(tmp_path, "coach = 3\n"))


def test_broken_toml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(VoicecoachError, match=r"not valid TOML: .*line 2"):
        load_settings(write(tmp_path, "[speech]\nrate = = 3\n"))


def test_bad_environment_and_override_values_say_where_they_came_from() -> None:
    with pytest.raises(VoicecoachError, match=r"environment variable VOICECOACH_SPEECH_RATE: "
                                               r"\[speech\] rate = 'quick'"):
        load_config(environ={"VOICECOACH_SPEECH_RATE": "quick"})
    with pytest.raises(VoicecoachError, match=r"command line: \[coach\] units = 'furlongs'"):
        load_settings(overrides={"coach.units": "furlongs"})
    with pytest.raises(VoicecoachError, match=r"command line: unknown key in \[coach\]: 'speed'"):
        load_settings(overrides={"coach.speed": 1})


def test_not_a_file_and_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(VoicecoachError, match="is not a file"):
        load_settings(tmp_path)
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[speech]\nvoice = "caf\xe9"\n')
    with pytest.raises(VoicecoachError, match="not UTF-8"):
        load_settings(bad)


def test_init_file_has_every_setting_and_loads_to_the_defaults(tmp_path: Path) -> None:
    text = init_text()
    docs = field_docs()
    for section, cls in SECTIONS.items():
        assert f"[{section}]" in text
        for f in dataclasses.fields(cls):
            assert f"# {f.name} = " in text and (section, f.name) in docs
    path = write_init(tmp_path / "sub" / "config.toml")
    assert load_settings(path) == Settings(data_dir=Path(str(tmp_path / "home")))
    uncommented = path.read_text().replace("# rate = 160", "rate = 200")
    path.write_text(uncommented)
    assert load_settings(path).speech.rate == 200
    with pytest.raises(VoicecoachError, match="already exists"):
        write_init(path)
    assert path.read_text() == uncommented  # never overwritten


def test_show_round_trips_and_marks_sources(tmp_path: Path) -> None:
    path = write(tmp_path, '[coach]\nunits = "kmh"\n[audio]\ninput_device = "3"\n')
    shown = show_text(load_config(path))
    assert 'units = "kmh"  # file' in shown and "rate = 160  # default" in shown
    again = tmp_path / "shown.toml"
    again.write_text(shown, encoding="utf-8")
    assert load_settings(again) == load_settings(path)


def test_cli_config_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "cfg" / "config.toml"
    assert cli.main(["config", "path", "--config", str(target)]) == 0
    assert capsys.readouterr().out.strip() == str(target)
    assert cli.main(["config", "init", "--config", str(target)]) == 0
    assert target.is_file()
    assert cli.main(["config", "init", "--config", str(target)]) == 2
    assert "already exists" in capsys.readouterr().err
    target.write_text('[speech]\nengine = "vsk"\n')
    assert cli.main(["config", "show", "--config", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "allowed: auto, spotter, vosk, pocketsphinx" in err
    assert "Traceback" not in err


def test_config_init_on_a_dangling_link_says_so_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """$VOICECOACH_CONFIG naming a link to nothing: the session commands say the file does not
    exist and suggest `config init`, which must then say why it cannot write there."""
    link = tmp_path / "config.toml"
    link.symlink_to(tmp_path / "gone" / "real.toml")
    assert cli.main(["config", "init", "--config", str(link)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "is a link to" in line and "which does not exist" in line and "remove the link" in line
    assert link.is_symlink() and not link.exists()          # nothing written through it
