"""The CLI end to end in a child process: demo, diagram, run with typed commands, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def vc(*args: str, stdin: str = "", home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if home is not None:
        env["VOICECOACH_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "voicecoach", *args], input=stdin, text=True,
                          capture_output=True, timeout=120, env=env)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_demo_runs_a_whole_session_without_audio(tmp_path: Path) -> None:
    result = vc("demo", "--speed-up", "100000", home=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for needle in ("state: idle -> briefing (start)", "heard: faster -> faster", "refused: faster",
                   "state: backward -> paused (pause)", "pain reported", "session finished"):
        assert needle in out


def test_demo_json_events_are_json_lines(tmp_path: Path) -> None:
    result = vc("demo", "--speed-up", "100000", "--json-events", home=tmp_path)
    assert result.returncode == 0
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert {"t", "type", "state"} <= set(events[0])
    types = {e["type"] for e in events}
    assert {"state_changed", "cue_spoken", "command_heard", "command_refused",
            "session_ended"} <= types
    assert [e["t"] for e in events] == sorted(e["t"] for e in events)


def test_diagram_prints_mermaid() -> None:
    result = vc("diagram")
    assert result.returncode == 0
    assert "stateDiagram-v2" in result.stdout and "BACKWARD --> STOPPED: stop" in result.stdout


def test_run_with_typed_commands(tmp_path: Path) -> None:
    typed = "yes\nyes\nyeah\nfaster\nfster\nincline up\nstop\n"
    result = vc("run", "--week", "1", "--speed-up", "50", "--json-events", stdin=typed,
                home=tmp_path)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    heard = [e["command"] for e in events if e["type"] == "command_heard"]
    assert heard[:1] == ["start"] and heard[-1] == "stop"
    assert "faster" in heard
    ended = [e for e in events if e["type"] == "session_ended"]
    assert len(ended) == 1 and ended[0]["outcome"] == "stopped"
    unknown = [line for line in result.stderr.splitlines() if "fster" in line]
    assert len(unknown) == 1 and "unknown command" in unknown[0]


def test_run_when_input_ends_in_the_briefing(tmp_path: Path) -> None:
    result = vc("run", "--week", "1", "--speed-up", "50", stdin="yes\n", home=tmp_path)
    assert result.returncode == 1
    assert "input ended before the safety checks" in result.stderr
    assert "session stopped" in result.stdout


@pytest.mark.parametrize(("args", "needle"), [
    (("run", "--week", "99"), "--week 99 is not in the programme"),
    (("run", "--plan", "/no/such/plan.toml"), "does not exist"),
    (("run", "--plan", "x.toml", "--week", "2"), "--plan and --week were both given"),
    (("run", "--speed-up", "0"), "give a number from 0.1"),
    *[((cmd, f"--speed-up={bad}"), "out of range") for cmd in ("run", "demo", "start")
      for bad in ("inf", "-inf", "nan", "1e300")],
    (("serve", "--sessions", "0"), "out of range"),
    *[(("treadmill", "scan", f"--timeout={bad}"), "out of range")
      for bad in ("nan", "inf", "-1", "0")],
    (("listen", "--chunk-ms", "1e9"), "invalid int value"),
    (("listen", "--chunk-ms", "99999999", "x.wav"), "longer than a minute"),
    (("run", "--week", "two"), "invalid int value"),
    (("dance",), "invalid choice"),
])
def test_bad_input_is_one_line(tmp_path: Path, args: tuple[str, ...], needle: str) -> None:
    assert_one_line_error(vc(*args, home=tmp_path), needle)


def test_plan_with_a_typo_is_one_line(tmp_path: Path) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text('[[phase]]\nkind = "backward"\nminuts = 5\nspeed = 0.6\n')
    assert_one_line_error(vc("run", "--plan", str(plan), home=tmp_path), str(plan), "minuts")


def test_start_with_a_zero_speed_up_is_one_line(tmp_path: Path) -> None:
    assert_one_line_error(vc("start", "--speed-up", "0", home=tmp_path), "give a number from 0.1")


def test_a_config_file_named_by_the_environment_but_absent_is_said_once_and_the_session_runs(
        tmp_path: Path) -> None:
    """A typo in $VOICECOACH_CONFIG would drop every setting unseen: the session commands say
    so in one line on stderr and go on with the defaults (doctor warns too)."""
    typo = tmp_path / "confg.toml"
    env = dict(os.environ, VOICECOACH_HOME=str(tmp_path / "home"), VOICECOACH_CONFIG=str(typo))
    result = subprocess.run([sys.executable, "-m", "voicecoach", "demo", "--speed-up", "100000"],
                            text=True, capture_output=True, timeout=120, env=env)
    assert result.returncode == 0 and "session finished" in result.stdout, result.stderr
    notes = [line for line in result.stderr.splitlines() if "VOICECOACH_CONFIG" in line]
    assert len(notes) == 1 and str(typo) in notes[0] and "does not exist" in notes[0]
    assert "config init" in notes[0] and "Traceback" not in result.stderr
    typo.write_text("")                                   # there now: nothing to say
    again = subprocess.run([sys.executable, "-m", "voicecoach", "demo", "--speed-up", "100000"],
                           text=True, capture_output=True, timeout=120, env=env)
    assert again.returncode == 0 and "VOICECOACH_CONFIG" not in again.stderr, again.stderr


def test_a_plan_faster_than_a_driven_treadmills_top_is_refused_and_the_programme_capped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The belt is never written above [treadmill] top_speed_mph: with a driven treadmill the
    coach may not announce and record more (it said 2.0 mph while the belt ran at 1.0)."""
    plan = tmp_path / "fast.toml"
    plan.write_text('name = "fast"\n[[phase]]\nkind = "backward"\nminutes = 1\nspeed = 2.0\n')
    monkeypatch.setenv("VOICECOACH_TREADMILL_TOP_SPEED_MPH", "1.0")
    assert_one_line_error(vc("run", "--plan", str(plan), "--treadmill", "sim", home=tmp_path),
                          "field 'speed' is 2 mph; allowed: 0.1 to 1 mph")
    # not driven: the coach's own top applies, as before
    ran = vc("run", "--plan", str(plan), "--speed-up", "1000", stdin="yes\nyes\nyes\nstop\n",
             home=tmp_path)
    assert ran.returncode == 0, ran.stderr
    # a week of the programme (and a plan from the history) is capped there when driven
    import argparse

    from voicecoach.commands._common import session_settings
    from voicecoach.workout.plan import programme_week

    for treadmill, top in (("sim", 1.0), (None, 2.5)):
        settings = session_settings(argparse.Namespace(treadmill=treadmill, config=None,
                                                       data_dir=str(tmp_path)))
        assert settings.coach.top_speed_mph == top
        week = programme_week(6, settings.coach)
        assert max(p.max_speed_mph for p in week.phases) <= top
