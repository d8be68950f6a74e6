"""The treadmill on the command line: demo --treadmill sim, bad input as one line, and the line
for a stop `treadmill test --move` could not confirm."""

from __future__ import annotations

import re
from pathlib import Path

from test_cli_session import vc

from voicecoach.commands.treadmill import Readings, unconfirmed
from voicecoach.device.belt_halt import STILL_READING_S
from voicecoach.treadmill.ftms_data import TreadmillData


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


def test_a_stop_not_confirmed_says_the_belt_is_still_only_when_it_was_read_at_0_lately() -> None:
    """`treadmill test --move`'s line for a stop not confirmed: 'not moving now' only when the
    belt was read at 0 within the coach's 3 s (STOP_UNCONFIRMED_STILL's rule), else that it
    may still be moving; how to halt it either way (over bleak: test_treadmill_bluez_cli)."""
    now = [0.0]
    belt = Readings(clock=lambda: now[0])
    assert not belt.known_still()                       # never read: no knowledge
    belt.take(TreadmillData(speed_kmh=0.8))
    assert not belt.known_still()                       # read moving
    now[0] = 10.0
    belt.take(TreadmillData(speed_kmh=0.0))
    now[0] = 10.0 + STILL_READING_S
    assert belt.known_still()                           # read at 0, 3 s ago
    now[0] += 0.1
    assert not belt.known_still()                       # too long ago: it may have started
    why = "the treadmill did not answer 'stop' within 3 s"
    assert unconfirmed(why, still=True).one_line() == (
        f"{why}: the stop is not confirmed, but the belt is not moving now; if it moves, halt "
        "it on the console or pull the safety key.")
    assert unconfirmed(why, still=False).one_line() == (
        f"{why}: the belt may still be moving; halt it on the console or pull the safety key.")
