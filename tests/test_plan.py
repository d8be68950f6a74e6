"""Plans: the default programme and TOML plan files with every kind of mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicecoach.errors import VoicecoachError
from voicecoach.settings import CoachSettings
from voicecoach.workout.plan import PROGRAMME, load_plan, programme_week

GOOD = """
name = "easy"
units = "{units}"

[[phase]]
kind = "warmup"
minutes = 2
speed = {warm}

[[phase]]
kind = "backward"
minutes = 6
speed = {speed}
max_speed = {top}
incline = 0
max_incline = 1
"""


@pytest.mark.parametrize("week", sorted(PROGRAMME))
def test_programme_weeks_follow_coaching(week: int) -> None:
    minutes, lo, hi, inc_lo, inc_hi = PROGRAMME[week]
    plan = programme_week(week)
    backward = [p for p in plan.phases if p.kind == "backward"]
    assert plan.backward_s == minutes * 60
    assert all(p.min_speed_mph == lo and p.max_speed_mph == hi for p in backward)
    assert all(p.incline_pct == inc_lo and p.max_incline_pct == inc_hi for p in backward)
    assert plan.phases[0].kind == "warmup" and plan.phases[-1].kind == "cooldown"
    assert 120 <= plan.phases[0].duration_s <= 180 and plan.phases[-1].duration_s == 120


def test_programme_respects_the_settings_top_speed() -> None:
    plan = programme_week(6, CoachSettings(top_speed_mph=1.7))
    assert max(p.max_speed_mph for p in plan.phases) == 1.7


def test_week_out_of_range_is_one_clear_error() -> None:
    with pytest.raises(VoicecoachError) as err:
        programme_week(99)
    assert err.value.one_line() == "--week 99 is not in the programme; choose a week from 1 to 6."


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return path


def test_a_good_plan_in_mph(tmp_path: Path) -> None:
    plan = load_plan(_write(tmp_path, GOOD.format(units="mph", warm=1.5, speed=0.6, top=0.9)))
    assert [p.kind for p in plan.phases] == ["warmup", "backward"]
    back = plan.phases[1]
    assert (back.duration_s, back.speed_mph, back.min_speed_mph, back.max_speed_mph) == (
        360, 0.6, 0.6, 0.9)
    assert back.max_incline_pct == 1 and back.cues == "technique"


def test_a_good_plan_in_kmh_is_converted(tmp_path: Path) -> None:
    plan = load_plan(_write(tmp_path, GOOD.format(units="kmh", warm=2.4, speed=1.0, top=1.6)))
    assert plan.phases[1].speed_mph == pytest.approx(0.621, abs=0.001)
    assert plan.phases[1].max_speed_mph == pytest.approx(0.994, abs=0.001)


@pytest.mark.parametrize(("text", "expected"), [
    (GOOD.format(units="mph", warm=1.5, speed=0.6, top=0.9).replace("minutes = 6", "minuts = 6"),
     "phase 2: unknown field 'minuts'"),
    (GOOD.format(units="mph", warm=1.5, speed=0.6, top=0.9).replace('"backward"', '"backwards"'),
     "phase 2: field 'kind' is 'backwards'; allowed values: warmup, backward, recovery"),
    (GOOD.format(units="mph", warm=1.5, speed=9.0, top=9.0), "phase 2: field 'speed' is 9 mph"),
    (GOOD.format(units="mph", warm=1.5, speed=0.6, top=0.9).replace("minutes = 6", "minutes = -5"),
     "phase 2: field 'minutes' is -5 minutes; allowed: 0.1 to 120 minutes"),
    (GOOD.format(units="mph", warm=1.5, speed=0.6, top=0.9).replace("speed = 0.6", 'speed = "fast"'),
     "field 'speed' is 'fast', not a number"),
    (GOOD.format(units="knots", warm=1.5, speed=0.6, top=0.9), "field 'units' is 'knots'"),
    (GOOD.format(units="mph", warm=1.5, speed=0.6, top=0.9).split("[[phase]]\nkind = \"backward\"")[0],
     'no phase has kind = "backward"'),
    ("name = 'x'\n", "there are no phases"),
    ("name = 'x\n", "TOML syntax error"),
    (GOOD.format(units="mph", warm=1.5, speed=0.6, top=0.5), "'speed' is outside"),
    # a whole number too large for a float (it used to end in an OverflowError traceback)
    (GOOD.format(units="mph", warm=1.5, speed="1" + "0" * 400, top=0.9),
     "field 'speed' is far too large mph"),
    (GOOD.format(units="mph", warm=1.5, speed=0.6, top=0.9).replace(
        "minutes = 6", "minutes = 1" + "0" * 400), "field 'minutes' is far too large minutes"),
])
def test_bad_plans_name_file_field_and_fix(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(VoicecoachError) as err:
        load_plan(path)
    line = err.value.one_line()
    assert str(path) in line and expected in line
    assert "\n" not in line and err.value.hint


def test_missing_plan_file(tmp_path: Path) -> None:
    with pytest.raises(VoicecoachError, match="does not exist"):
        load_plan(tmp_path / "nope.toml")


def test_a_plan_path_that_is_a_folder_or_a_pipe_is_one_line_and_never_opened(
        tmp_path: Path) -> None:
    """--plan given a folder or a named pipe: one line saying what it is; the pipe is never
    opened (reading it waited for a writer for ever: `run --plan FIFO` hung)."""
    import os

    from fifo_helpers import said_without_opening

    with pytest.raises(VoicecoachError) as folder:
        load_plan(tmp_path)
    assert f"{tmp_path} is a folder, not a file" in folder.value.one_line()
    fifo = tmp_path / "plan.toml"
    os.mkfifo(fifo)

    def load() -> str:
        with pytest.raises(VoicecoachError) as err:
            load_plan(fifo)
        return err.value.one_line()

    said = said_without_opening(fifo, load, wait_s=30)
    assert f"{fifo} is a pipe or a device, not a file" in said, said


def test_a_plan_saved_as_utf16_is_one_clear_line(tmp_path: Path) -> None:
    """A plan saved by an editor in UTF-16 (with its byte-order mark) is not read as garbage."""
    path = tmp_path / "utf16.toml"
    path.write_text(GOOD.format(units="mph", warm=1.5, speed=0.6, top=0.9), encoding="utf-16")
    with pytest.raises(VoicecoachError) as err:
        load_plan(path)
    line = err.value.one_line()
    assert str(path) in line and "cannot be read" in line and "UTF-8 text" in line
    assert "\n" not in line
