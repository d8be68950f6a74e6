"""The real-people barge-in benchmark on small inputs: the held-out rule, the trial through the
device loop, the summary (the full run is `python -m voicecoach.lab.bench.barge_in`)."""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path
from typing import Any

import pytest

from voicecoach.lab.bench import barge_in as B

STOP_WAV = Path(__file__).resolve().parent.parent / "audio_fixtures" / "commands" / "joe" / \
    "normal" / "stop__stop.wav"


def test_held_out_is_the_locked_crc32_fold(tmp_path: Path) -> None:
    speakers = [f"{n:08x}" for n in range(40)]
    for name in B.SETS:
        (tmp_path / name / "stop").mkdir(parents=True)
        for sp in speakers:
            shutil.copy(STOP_WAV, tmp_path / name / "stop" / f"{sp}_nohash_0.wav")
    takes = B.held_out_takes(tmp_path, ("stop",))["stop"]
    want = {sp for sp in speakers if zlib.crc32(sp.encode()) % 5 == 0}
    assert want and {t.speaker for t in takes} == want and len(takes) == 2 * len(want)
    dev = B.held_out_takes(tmp_path, ("stop",), speakers="dev")["stop"]
    assert {t.speaker for t in dev} == set(speakers) - want  # to choose on: never a locked one
    with pytest.raises(ValueError, match="speakers must be one of"):
        B.held_out_takes(tmp_path, ("stop",), speakers="all")


def test_a_take_is_levelled_and_bounded() -> None:
    clip = B.load_take(B.Take("stop", "joe", STOP_WAV))
    assert clip.command == "stop" and 0.0 < clip.speech_start_s < clip.speech_end_s <= 1.5
    assert clip.audio.dtype.name == "float32"


@pytest.mark.parametrize("echo", [None, "nlms"])
def test_a_cold_stop_through_the_device_loop_is_scored(echo: str | None,
                                                                   tmp_path: Path) -> None:
    from voicecoach.grammar import load_grammar
    from voicecoach.listening.engines import make_recogniser
    from voicecoach.settings import Settings
    from voicecoach.speaking.render import EspeakNgRenderer

    settings = Settings(data_dir=tmp_path)
    rec = make_recogniser(settings.speech, load_grammar("en"), announce=lambda x: None)
    row = B.trial(rec, EspeakNgRenderer(), B.Take("stop", "joe", STOP_WAV), 2, False, echo,
                  tmp_path, states=echo is not None)
    assert row["placed"] and row["over_speech"], row  # said while the coach talks
    # --states (training data for the over-the-coach look): each look's pooled encoder output
    looks = row["looks"] + row["echo_looks"]
    if getattr(rec, "verifier", None) is not None and looks:
        assert all(("pooled" in x) == (echo is not None) for x in looks)
        assert all(len(x["pooled"]) == 2 * 384 for x in looks if "pooled" in x)
    assert row["echo"] == (echo or "none")
    if echo is None:  # no echo in the room: the engine hears joe's stop, the belt stops
        assert row["caught"], row
    # traced: the spotter's stop score over the word, and the gate's stop decisions
    assert row["stop_max"] is not None and 0.0 <= row["stop_max"] <= 1.0
    assert row["caught"] == (row["lost_at"] is None or row["lost_at"] == "late")
    assert not row["caught"] or any(g[0] in ("barge-in", "stop") for g in row["gate"])
    if row["caught"]:
        assert -0.5 < row["latency_s"] < 0.5
    else:
        assert row["latency_s"] is None


def test_summary_compares_with_no_echo_and_ends_with_one_line() -> None:
    def row(echo: str, caught: bool, settled: bool, word: str = "stop") -> dict[str, object]:
        return {"word": word, "echo": echo, "placed": True, "caught": caught, "heard": caught,
                "settled": settled, "latency_s": 0.1 if caught else None}

    rows = [row("none", True, False), row("none", True, True), row("nlms", True, False),
            row("nlms", False, True), row("nlms", True, False, "yes")]
    summary = B.summarise(rows)
    assert summary["nlms"]["caught"] == 1 and summary["none"]["caught"] == 2
    lines = B.summary_lines(summary, [{"canceller": "nlms", "audio_s": 60.0, "echo": [],
                                       "suppressed": 0, "coach_speech_s": 1.0,
                                       "outcomes": []}], [])
    assert lines[-1].startswith("SUMMARY") and "nlms 1/2 (0.500 of no echo 2/2)" in lines[-1]
    assert "false 0" in lines[-1]
    # no trials (a closed loop alone, e.g. --stops 0 --loop-talk): the loop is the summary
    loop = {"canceller": "nlms", "audio_s": 1800.0, "echo": [("stop", 619.9)], "suppressed": 0,
            "coach_speech_s": 1173.9, "outcomes": [], "talkative": True}
    lines = B.summary_lines(B.summarise([]), [loop], [])
    assert "the coach talking throughout" in lines[0]
    assert lines[-1] == ("SUMMARY barge-in, real held-out speakers: nlms closed loop 30 min, "
                         "1173.9 s of coach speech: 1 commands from its own voice")


def test_every_stop_is_said_cold_and_settled_other_words_once() -> None:
    stop, yes = B.Take("stop", "a", STOP_WAV), B.Take("yes", "a", STOP_WAV)
    assert B.moments(stop, 3, True) == (False, True)
    assert B.moments(yes, 3, True) == (True,) and B.moments(yes, 4, True) == (False,)
    assert B.moments(stop, 4, False) == (False,)


def test_the_closed_loop_has_the_coach_talking(tmp_path: Path) -> None:
    """The false-command figure means something only if the coach talks: the session begins
    at once and its answers are typed (a fixture voice's unheard "start" left it silent)."""
    loop = B.closed_loop_session("nlms", 1.0, tmp_path)
    assert loop["coach_speech_s"] > 15.0, loop
    assert loop["echo"] == [], loop  # nothing from the coach's own voice
    # --loop-talk: the coach talks most of the time, so the figure is over its speech
    talk = B.closed_loop_session("nlms", 1.0, tmp_path, talkative=True)
    assert talk["talkative"] and talk["coach_speech_s"] > loop["coach_speech_s"] + 5.0, (talk, loop)


def test_a_lost_stop_is_put_where_the_trace_says() -> None:
    from voicecoach.lab.bench.barge_trace import loss_reason
    from voicecoach.listening.recogniser import Detection

    def decision(accepted: bool) -> Any:
        from voicecoach.device.duplex import Decision

        return Decision(Detection("stop", "stop", 1.0, 1.4, 1.5, 0.9), accepted,
                        "barge-in" if accepted else "echo")

    base = {"word": "stop", "placed": True, "caught": False, "latency_s": None,
            "stop_max": 0.1, "looks": []}
    assert loss_reason(base, [], 0.2) == "spotter"
    assert loss_reason({**base, "stop_max": 0.5}, [], 0.2) == "no-look"
    assert loss_reason({**base, "stop_max": 0.5, "looks": [{"t": 1.5}]}, [], 0.2) == "look"
    assert loss_reason(base, [decision(False)], 0.2) == "gate"
    assert loss_reason(base, [decision(True)], 0.2) == "elsewhere"
    caught = {**base, "caught": True, "latency_s": 0.3}
    assert loss_reason(caught, [decision(True)], 0.2) is None
    assert loss_reason({**caught, "latency_s": 0.6}, [decision(True)], 0.2) == "late"
    rows = [{**base, "echo": "nlms", "settled": False, "lost_at": "look"},
            {**base, "echo": "nlms", "settled": True, "lost_at": "look"}]
    assert B.summarise(rows)["nlms"]["lost"] == {"look": [1, 1]}


def test_the_cost_childs_peak_rss_is_its_own() -> None:
    """ru_maxrss in a child carries the parent's high-water mark across fork and exec; the
    cost child reads its own (VmHWM): a child of a parent grown by 256 MB says far less."""
    import subprocess
    import sys

    big = bytearray(256 << 20)
    for i in range(0, len(big), 4096):
        big[i] = 1
    out = subprocess.run([sys.executable, "-c", "from voicecoach.lab.bench.barge_cost import "
                          "_peak_rss_kb; print(_peak_rss_kb())"], capture_output=True, text=True,
                         check=True)
    del big
    assert 0 < float(out.stdout.strip()) < 192 * 1024


def test_the_cost_child_can_reset_its_peak_rss_to_measure_listening_alone() -> None:
    """A transient (loading a model) raises the high-water mark; after a reset the mark is the
    present RSS again, so the cost child's "from the first audio on" excludes start-up. Run in
    a fresh process, as the cost child is: in this one, whatever earlier tests left on the heap
    decides whether a freed transient goes back to the system."""
    import subprocess
    import sys

    code = ("from voicecoach.lab.bench.barge_cost import _peak_rss_kb, reset_peak_rss\n"
            "big = bytearray(64 << 20)\n"
            "for i in range(0, len(big), 4096):\n"
            "    big[i] = 1\n"
            "high = _peak_rss_kb()\n"
            "del big\n"
            "print(high, _peak_rss_kb() if reset_peak_rss() else -1)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    high, after = (float(x) for x in out.stdout.split())
    if after < 0:
        pytest.skip("this kernel does not let /proc/self/clear_refs reset the high-water mark")
    assert after <= high - 48 * 1024


def test_over_candidate_trials_record_their_level_and_bad_uses_are_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--over-candidate``: training data for an over-the-coach look raised at a lower stop
    candidate level; it needs --states (and so --speakers dev and --json) and a level in (0, 1)."""
    shared = tmp_path / "shared"
    (shared / B.SETS[0]).mkdir(parents=True)
    for argv in (["--over-candidate", "0.1"],
                 ["--speakers", "dev", "--states", "--json", str(tmp_path / "t.jsonl"),
                  "--over-candidate", "1.5"]):
        assert B.main(["--shared", str(shared), "--stops", "0", "--others", "0", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert "--over-candidate" in err and len(err.splitlines()) == 1
    rows = B.run_trials([B.Take("stop", "joe", STOP_WAV)], ("nlms",), tmp_path, progress=False,
                        both_moments=False, states=True, over_candidate=0.1)
    assert rows and all(r["over_candidate"] == 0.1 for r in rows)


def test_a_closed_loop_writes_its_looks_over_the_coach_for_training_and_never_the_benchmarks(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--loop-states``: the talkative loop's looks over the coach with their encoder output
    (over_probe --echo); refused on the benchmark's own loop (seed 30), whose figure they
    would train on, and without a loop."""
    shared = tmp_path / "shared"
    (shared / B.SETS[0]).mkdir(parents=True)
    out = tmp_path / "loop.jsonl"
    for argv in (["--loop-states", str(out)],                                  # the bench's seed
                 ["--loop-states", str(out), "--loop-seed", "31", "--loop-minutes", "0"]):
        assert B.main(["--shared", str(shared), "--stops", "0", "--others", "0",
                       "--cancellers", "nlms", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert "--loop-seed" in err and len(err.splitlines()) == 1
    assert not out.exists()
    loop = B.closed_loop_session("nlms", 1.0, tmp_path, talkative=True, seed=31, states=out,
                                 over_candidate=0.1)
    assert loop["coach_speech_s"] > 15.0
    [row] = [json.loads(x) for x in out.read_text().splitlines()]
    assert row["loop"] and row["seed"] == 31 and row["over_candidate"] == 0.1
    assert all(x["over"] and len(x["pooled"]) == 2 * 384 for x in row["echo_looks"])
    import importlib.util

    if importlib.util.find_spec("ctranslate2") is not None:   # with the look: it looked
        assert row["echo_looks"], row


def test_verify_off_measures_the_default_install_spotter_alone(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--verify off``: the trials run the default install's recogniser (no second look),
    each row and the summary say so; with the look's training-data options it is refused."""
    rows = B.run_trials([B.Take("stop", "joe", STOP_WAV)], (None,), tmp_path, progress=False,
                        both_moments=False, verify="off")
    [row] = rows
    assert row["verify"] == "off" and row["looks"] == [], row  # no second look was taken
    assert row["caught"], row  # the spotter alone hears joe's stop with no echo
    loop = {"canceller": "nlms", "audio_s": 60.0, "echo": [], "suppressed": 0,
            "coach_speech_s": 1.0, "outcomes": [], "verify": "off"}
    lines = B.summary_lines(B.summarise(rows), [loop], [])
    assert "no second look" in lines[-2] and "spotter alone (no second look)" in lines[-1]
    auto = B.summary_lines(B.summarise([{**row, "verify": "auto"}]), [], [])
    assert "spotter alone" not in auto[-1]
    shared = tmp_path / "shared"
    (shared / B.SETS[0]).mkdir(parents=True)
    assert B.main(["--shared", str(shared), "--stops", "0", "--others", "0", "--verify", "off",
                   "--speakers", "dev", "--states", "--json", str(tmp_path / "t.jsonl")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--verify off" in err and len(err.splitlines()) == 1


def test_a_command_from_the_coach_names_the_words_it_was_heard_in() -> None:
    """The closed loop's report says what the coach was saying when its own voice fired a
    command: the utterance playing, and one that ended less than 2 s before."""
    from voicecoach.events import Priority
    from voicecoach.speaking.speaker import SpeechInterval

    said = [SpeechInterval(0.0, 3.0, "Stand tall.", Priority.CUE, 0.0),
            SpeechInterval(4.0, 6.0, "Chest up.", Priority.CUE, 4.0),
            SpeechInterval(9.0, None, "Keep going.", Priority.CUE, 9.0)]
    assert B.said_before(said, 6.5) == ["Chest up."]
    assert B.said_before(said, 5.5) == ["Chest up."]
    assert B.said_before(said, 4.5) == ["Stand tall.", "Chest up."]
    assert B.said_before(said, 8.5) == []
    assert B.said_before(said, 10.0) == ["Keep going."]
    assert B.said_before(said, 9.0) == []  # "Keep going." begun at the command: its answer
