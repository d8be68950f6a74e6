"""The FTMS codec against byte vectors written out by hand from the FTMS 1.0 layouts."""

from __future__ import annotations

import pytest

from voicecoach.treadmill import ftms, ftms_data
from voicecoach.treadmill.ftms import FtmsError, Op
from voicecoach.treadmill.ftms_data import Range, StatusOp

# Treadmill Data vectors (hand-built from the spec's field order; not captured from a device):
#: flags 0x000c (distance + inclination): 3.50 km/h, 1234 m, 2.5 %, ramp 0x7fff (n/a)
DATA_SPEED_DIST_INCLINE = bytes.fromhex("0c00" "5e01" "d20400" "1900" "ff7f")
#: flags 0x0000: speed only, 0.00 km/h (a stopped belt)
DATA_STOPPED = bytes.fromhex("0000" "0000")
#: a pad that sends energy, heart rate and elapsed time too (flags 0x0584)
DATA_WITH_ENERGY_HR_TIME = bytes.fromhex("8405" "f401" "640000" "1200" "3400" "01" "5a" "3c00")
#: More Data split: fragment 1 has distance only (flags 0x0005), fragment 2 speed + incline
FRAGMENT_1 = bytes.fromhex("0500" "0a0000")
FRAGMENT_2 = bytes.fromhex("0800" "c800" "0a00" "0000")


def test_data_speed_distance_incline() -> None:
    d = ftms_data.decode_treadmill_data(DATA_SPEED_DIST_INCLINE)
    assert d.speed_kmh == pytest.approx(3.50)
    assert d.distance_m == 1234
    assert d.incline_pct == pytest.approx(2.5)
    assert "ramp_angle_deg" not in d.extra  # 0x7fff means "not available"
    assert d.speed_mph == pytest.approx(3.5 / 1.609344)
    assert not d.more_data


def test_data_stopped_and_other_fields() -> None:
    assert ftms_data.decode_treadmill_data(DATA_STOPPED).speed_kmh == 0.0
    d = ftms_data.decode_treadmill_data(DATA_WITH_ENERGY_HR_TIME)
    assert d.speed_kmh == pytest.approx(5.0)
    assert d.distance_m == 100
    assert d.extra == {"energy_kcal": 18, "energy_kcal_per_h": 52, "energy_kcal_per_min": 1,
                       "heart_rate_bpm": 90, "elapsed_s": 60}


def test_more_data_fragments_are_joined() -> None:
    joiner = ftms_data.DataJoiner()
    assert joiner.feed(FRAGMENT_1) is None
    d = joiner.feed(FRAGMENT_2)
    assert d is not None
    assert (d.speed_kmh, d.distance_m, d.incline_pct) == (pytest.approx(2.0), 10, pytest.approx(1.0))
    joiner.feed(FRAGMENT_1)
    joiner.reset()  # a disconnect forgets half a record
    d = joiner.feed(FRAGMENT_2)
    assert d is not None and d.distance_m is None


@pytest.mark.parametrize("data", [b"", b"\x00", bytes.fromhex("0000" "01"),
                                  bytes.fromhex("0c00" "5e01" "d204")])
def test_short_data_is_one_clear_error(data: bytes) -> None:
    with pytest.raises(FtmsError, match="treadmill data"):
        ftms_data.decode_treadmill_data(data)


def test_encoded_data_round_trips() -> None:
    raw = ftms_data.encode_treadmill_data(2.09, 1.5, 321.0)
    d = ftms_data.decode_treadmill_data(raw)
    assert (d.speed_kmh, d.incline_pct, d.distance_m) == (pytest.approx(2.09), 1.5, 321)


@pytest.mark.parametrize(("command", "raw"), [
    (ftms.request_control(), "00"),
    (ftms.start_resume(), "07"),
    (ftms.stop(), "0801"),
    (ftms.pause(), "0802"),
    (ftms.target_speed(3.22), "024201"),
    (ftms.target_incline(-1.5), "03f1ff"),
    (ftms.target_incline(2.0), "031400"),
])
def test_control_point_writes(command: ftms.Command, raw: str) -> None:
    assert command.encode().hex() == raw
    back = ftms.decode_command(bytes.fromhex(raw))
    assert back.op == command.op
    if command.value is not None:
        assert back.value == pytest.approx(command.value)


def test_moves_belt_only_for_speed_and_incline() -> None:
    assert ftms.target_speed(1).moves_belt and ftms.target_incline(1).moves_belt
    assert not any(c.moves_belt for c in (ftms.stop(), ftms.pause(), ftms.start_resume(),
                                          ftms.request_control()))


def test_responses() -> None:
    ok = ftms.decode_response(bytes.fromhex("800201"))
    assert ok.ok and ok.request == Op.SET_TARGET_SPEED
    denied = ftms.decode_response(bytes.fromhex("800205"))
    assert not denied.ok and "not permitted" in denied.text()
    assert ftms.decode_response(bytes.fromhex("800709")).text() == "unknown result code 9"
    with pytest.raises(FtmsError):
        ftms.decode_response(bytes.fromhex("0201"))


@pytest.mark.parametrize(("raw", "op", "value"), [
    ("0201", StatusOp.STOPPED_OR_PAUSED_BY_USER, 1),
    ("0202", StatusOp.STOPPED_OR_PAUSED_BY_USER, 2),
    ("03", StatusOp.STOPPED_BY_SAFETY_KEY, None),
    ("04", StatusOp.STARTED_OR_RESUMED_BY_USER, None),
    ("05c800", StatusOp.TARGET_SPEED_CHANGED, 2.0),
    ("06ecff", StatusOp.TARGET_INCLINE_CHANGED, -2.0),
    ("ff", StatusOp.CONTROL_PERMISSION_LOST, None),
])
def test_status(raw: str, op: int, value: float | None) -> None:
    status = ftms_data.decode_status(bytes.fromhex(raw))
    assert status.op == op and status.value == value
    assert status.encode().hex() == raw


def test_unknown_status_is_kept() -> None:
    assert ftms_data.decode_status(b"\x42").name == "status_0x42"


def test_ranges_and_features() -> None:
    speed = ftms_data.decode_speed_range(bytes.fromhex("6400" "dc05" "0a00"))
    assert speed == Range(1.0, 15.0, 0.1)
    assert speed.clamp(20) == 15.0 and speed.clamp(0.5) == 1.0
    incline = ftms_data.decode_incline_range(bytes.fromhex("0000" "9600" "0500"))
    assert incline == Range(0.0, 15.0, 0.5)
    assert ftms_data.decode_speed_range(ftms_data.encode_speed_range(speed)) == speed
    with pytest.raises(FtmsError, match="minimum above"):
        ftms_data.decode_speed_range(bytes.fromhex("dc05" "6400" "0a00"))
    features = ftms_data.decode_features(bytes.fromhex("0c000000" "03000000"))
    assert features.machine == {"total_distance", "inclination"}
    assert features.speed_target and features.incline_target
    assert ftms_data.decode_features(ftms_data.encode_features(features)) == features
    with pytest.raises(FtmsError):
        ftms_data.decode_features(b"\x00\x00")
