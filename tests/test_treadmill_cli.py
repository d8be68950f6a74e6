"""The treadmill on the command line: demo --treadmill sim, and bad input as one line."""

from __future__ import annotations

import re
from pathlib import Path

from test_cli_session import vc


def test_demo_against_a_simulated_treadmill(tmp_path: Path) -> None:
    result = vc("demo", "--treadmill", "sim", "--speed-up", "100000", home=tmp_path)
    assert result.returncode == 0, result.stderr
    belt = re.findall(r"belt: (\d+\.\d) mph", result.stdout)
    assert len(belt) > 10
    assert "1.3" in belt  # "faster" in the warm-up
    assert belt[-1] == "0.0"  # and the belt slowed to a halt at the end
    last = result.stdout.strip().splitlines()[-1]
    assert last.endswith("belt: 0.0 mph")
    ready = result.stdout.index("Say ready.")
    assert "belt: 0.3 mph" in result.stdout[ready:]
    assert not re.search(r"belt: [1-9]", result.stdout[:ready])  # nothing moved before ready
