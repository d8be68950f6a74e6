"""The house rules of the layout: the run time never imports the lab, and the lab's own parts
depend one way (benchmarks may use training, training never uses a benchmark)."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = REPO / "voicecoach"
LAB = PACKAGE / "lab"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(text: str, module: str, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, dotted module) of every import in the source ``text`` of ``module``, at any depth
    (function-level imports count too), relative imports resolved, plus
    ``importlib.import_module("...")`` / ``__import__("...")`` literals."""
    tree = ast.parse(text)
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:  # from voicecoach import lab
                yield node.lineno, f"{target}.{alias.name}"
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name)
                       and node.func.id in ("import_module", "__import__")))):
            yield node.lineno, node.args[0].value


def _inside(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def imports_of(path: Path, prefix: str) -> list[str]:
    text = path.read_text(encoding="utf-8")
    found = imported_names(text, module_name(path), path.name == "__init__.py")
    return sorted({f"{path.relative_to(REPO)}:{line} imports {name}"
                   for line, name in found if _inside(name, prefix)})


def run_time_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py")
                  if LAB not in p.parents and "__pycache__" not in p.parts)


def test_the_walker_sees_every_kind_of_import() -> None:
    """The checker itself: absolute, relative, nested and dynamic imports are all found."""
    source = ("import voicecoach.lab.room\n"
              "from voicecoach import lab\n"
              "from ..lab.bench import clips\n"
              "def f():\n    from voicecoach.lab.signals import power\n"
              "importlib.import_module('voicecoach.lab.training.train')\n"
              "from .. import lab as _lab\n"
              "from voicecoach.audio import chunk\n")
    lines = {line for line, name in imported_names(source, "voicecoach.audio.probe")
             if _inside(name, "voicecoach.lab")}
    assert lines == {1, 2, 3, 5, 6, 7}


def test_no_run_time_module_imports_the_lab() -> None:
    files = run_time_files()
    assert len(files) > 50  # the walk found the package
    offenders = [hit for path in files for hit in imports_of(path, "voicecoach.lab")]
    assert not offenders, "the run time must not import the lab:\n" + "\n".join(offenders)


def test_training_never_imports_a_benchmark() -> None:
    offenders = [hit for path in sorted((LAB / "training").rglob("*.py"))
                 for hit in imports_of(path, "voicecoach.lab.bench")]
    assert not offenders, "\n".join(offenders)


def test_the_lab_never_imports_the_command_line() -> None:
    offenders = [hit for path in sorted(LAB.rglob("*.py"))
                 for prefix in ("voicecoach.commands", "voicecoach.cli")
                 for hit in imports_of(path, prefix)]
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("command", ["demo", "run", "serve", "listen", "enroll", "doctor"])
def test_loading_a_command_loads_no_lab_module(command: str) -> None:
    """The same rule, at import time: a sub-command and everything it imports at module level
    leave no voicecoach.lab module in sys.modules."""
    script = ("import importlib, sys\n"
              f"importlib.import_module('voicecoach.commands.{command}')\n"
              "print(sorted(m for m in sys.modules if m.startswith('voicecoach.lab')))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=120, cwd=REPO)
    assert out.stdout.strip() == "[]"


#: Data flows one way: these packages sit below the device loop and the command line.
LOWER = ("audio", "listening", "speaking", "workout", "history", "treadmill")


@pytest.mark.parametrize("package", LOWER)
def test_lower_packages_never_import_the_device_or_the_command_line(package: str) -> None:
    offenders = [hit for path in sorted((PACKAGE / package).rglob("*.py"))
                 for prefix in ("voicecoach.device", "voicecoach.commands", "voicecoach.cli")
                 for hit in imports_of(path, prefix)]
    assert not offenders, "\n".join(offenders)


def test_the_treadmill_package_has_no_coach_inside() -> None:
    """Codec, link, client and simulator only: what follows the workout is device/belt.py."""
    offenders = [hit for path in sorted((PACKAGE / "treadmill").rglob("*.py"))
                 for prefix in ("voicecoach.workout", "voicecoach.speaking", "voicecoach.listening")
                 for hit in imports_of(path, prefix)]
    assert not offenders, "\n".join(offenders)


def _attribute_chain(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def test_the_belt_controller_never_edits_the_coach() -> None:
    """It follows the workout (Coach(..., followers=[BeltController.follow(...)])): no
    assignment to the coach's attributes and no edits of its listener or hook lists."""
    offenders = []
    parts = sorted((PACKAGE / "device").glob("belt*.py"))  # the controller and its parts
    assert len(parts) >= 2
    nodes = [node for path in parts
             for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))]
    for node in nodes:
        targets: list[ast.AST] = []
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = list(node.targets) if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            chain = _attribute_chain(target)
            if chain.startswith(("coach.", "self.coach.")):
                offenders.append(f"line {node.lineno}: assigns {chain}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            chain = _attribute_chain(node.func)
            if any(f".{name}." in f".{chain}" for name in ("listeners", "tick_hooks")):
                offenders.append(f"line {node.lineno}: calls {chain}")
    assert not offenders, offenders


def test_played_audio_reaches_the_canceller_through_the_protocol() -> None:
    """No getattr(speaker, "played_audio") in the run time: speaking.speaker.PlaysBack."""
    offenders = []
    for path in run_time_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in ("getattr", "hasattr") and len(node.args) >= 2
                    and isinstance(node.args[1], ast.Constant)
                    and node.args[1].value == "played_audio"):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not offenders, offenders
