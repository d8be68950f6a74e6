"""The over-the-coach learned look's lab side: reading traced trials, labels, replay, folds."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from voicecoach.errors import VoicecoachError
from voicecoach.lab.training import over_probe as op
from voicecoach.lab.training.data import LOCK_MODULUS, speaker_fold


def _speaker(fold: int, n: int = 0) -> str:
    """A speaker id of ``fold`` (never a locked one)."""
    found = [f"s{i:05d}" for i in range(5000)
             if zlib.crc32(f"s{i:05d}".encode()) % LOCK_MODULUS == fold + 1]
    return found[n]


def _locked() -> str:
    return next(f"s{i:05d}" for i in range(5000) if zlib.crc32(f"s{i:05d}".encode()) % LOCK_MODULUS == 0)


def _look(t: float, stop: float, feat: np.ndarray, first: str = "stop", over: bool = True) -> dict:
    scores = {first: 0.5, "stop": stop} if first != "stop" else {"stop": stop, "no": 0.0}
    return {"t": t, "over": over, "scores": scores, "pooled": [float(v) for v in feat]}


def _trials(rng: np.random.Generator, per_fold: int = 12) -> list[dict]:
    """Stop trials whose looks are separable in feature 0, other words' and echo looks not."""
    rows = []
    for fold in range(LOCK_MODULUS - 1):
        for n in range(per_fold):
            speaker = _speaker(fold, n)
            stop_feat = rng.standard_normal(8) + np.eye(8)[0] * 4
            echo = [_look(0.5, 0.0001, rng.standard_normal(8))]
            rows.append({"word": "stop", "speaker": speaker, "echo": "nlms", "placed": True,
                         "word_s": [2.0, 2.5], "caught": False, "latency_s": None,
                         "looks": [_look(2.1, 0.0002, rng.standard_normal(8)),   # on its start
                                   _look(2.6, 0.0003, stop_feat)],
                         "echo_looks": echo})
            rows.append({"word": "down", "speaker": speaker, "echo": "nlms", "placed": True,
                         "word_s": [2.0, 2.5], "looks": [_look(2.6, 0.0001, rng.standard_normal(8))],
                         "echo_looks": []})
    return rows


def _plain_model(folder: Path) -> None:
    """A copy of the shipped spotter in ``folder``, its card naming no learned look."""
    import shutil

    from voicecoach.listening.spotter.model import builtin_paths

    weights, card_path = builtin_paths()
    shutil.copy(weights, folder / "en_commands.npz")
    card = json.loads(card_path.read_text())
    card.pop("look_probe", None)
    (folder / "en_commands.json").write_text(json.dumps(card))


def _write(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "trials.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_looks_are_labelled_by_their_trials_word_and_the_words_start_left_out() -> None:
    rows = _trials(np.random.default_rng(0), per_fold=1)
    looks = op.over_looks(rows)
    # per stop trial: start (-1), word (stop 0), echo (other); per down trial: other
    assert looks["y"].tolist()[:4] == [-1, 0, 4, 4]
    assert looks["echo"].tolist()[:4] == [False, False, True, False]
    assert looks["fold"].tolist()[:4] == [speaker_fold(rows[0]["speaker"])] * 4
    assert looks["x"].shape == (len(looks["y"]), 8)


def test_replay_counts_stops_in_time_false_stops_and_the_coachs_echo() -> None:
    rows = _trials(np.random.default_rng(0), per_fold=1)[:2]
    scored = op._stop_scores(rows, op.over_looks(rows), None)
    out = op.replay(rows, scored, 0.00025, default=0.4)
    assert (out["stops"], out["caught"], out["others"], out["false_others"], out["echo_false"]) \
        == (1, 1, 1, 0, 0)
    out = op.replay(rows, scored, 0.0001, default=0.4)
    assert (out["caught"], out["false_others"], out["echo_false"]) == (1, 1, 1)
    late = [dict(rows[0], word_s=[1.0, 1.5])]               # the passing look 1.1 s after the word
    assert op.replay(late, op._stop_scores(late, op.over_looks(late), None), 0.00025, 0.4)["caught"] == 0
    # a stop named at another command's candidate must clear the default bar too
    other = [dict(rows[1], looks=[_look(2.6, 0.3, np.zeros(8), first="no")])]
    scored = op._stop_scores(other, op.over_looks(other), None)
    assert op.replay(other, scored, 0.001, default=0.4)["false_others"] == 0
    assert op.replay(other, scored, 0.001, default=0.2)["false_others"] == 1


def test_the_chosen_bar_lets_no_echo_look_through() -> None:
    rows = _trials(np.random.default_rng(0), per_fold=1)[:2]
    scored = op._stop_scores(rows, op.over_looks(rows), None)
    bar = op.choose_bar(rows, scored, 0.4, grid=(0.0001, 0.00025, 0.001))
    assert bar == 0.00025                                      # 0.0001 lets the echo through


def test_out_of_fold_the_probe_learns_stop_and_never_sees_its_fold(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = _trials(np.random.default_rng(1))
    looks = op.over_looks(rows)
    seen: list[int] = []
    real_fit = op.fit_probe

    def spy(x, y, c, weight=None):  # type: ignore[no-untyped-def]
        seen.append(len(y))
        return real_fit(x, y, c, weight)

    monkeypatch.setattr(op, "fit_probe", spy)
    score = op.out_of_fold(looks, c=1.0)
    fitted = int((looks["y"] >= 0).sum())
    assert len(seen) == LOCK_MODULUS - 1 and all(n < fitted for n in seen)
    assert sum(seen) == fitted * (LOCK_MODULUS - 2)            # each fitted look in 3 of 4 probes
    stops = looks["y"] == 0
    assert score[stops].min() > score[looks["y"] == 4].max()
    result = op.cross_validate(rows, looks, score, default=0.4)
    probe = result["out_of_fold"]["probe"]
    assert probe["stops"] == 48 and probe["caught"] >= 45       # separable: caught out of fold
    assert result["out_of_fold"]["opening at 0.004"]["caught"] == 0   # the opening's scores: none
    assert result["out_of_fold"]["probe"]["echo_false"] == 0
    assert len(result["bars"]["probe"]) == LOCK_MODULUS - 1


def test_bad_trials_are_one_line_each(tmp_path: Path) -> None:
    rows = _trials(np.random.default_rng(0), per_fold=1)
    with pytest.raises(VoicecoachError) as locked:
        op.read_trials([_write(tmp_path, [dict(rows[0], speaker=_locked())])])
    assert "locked speaker" in locked.value.one_line()
    bare = dict(rows[0], looks=[{k: v for k, v in rows[0]["looks"][1].items() if k != "pooled"}])
    with pytest.raises(VoicecoachError) as no_states:
        op.read_trials([_write(tmp_path, [bare])])
    assert "--states" in no_states.value.one_line()
    (tmp_path / "junk.jsonl").write_text(json.dumps(rows[0]) + "\n\nnot json\n")
    with pytest.raises(VoicecoachError) as junk:
        op.read_trials([tmp_path / "junk.jsonl"])
    assert "cannot read" in junk.value.one_line()
    assert "line 3 is not JSON" in junk.value.one_line()  # the file's line, not json's
    assert op.main([str(tmp_path / "missing.jsonl")]) == 2
    kept = op.read_trials([_write(tmp_path, rows + [dict(rows[0], echo="none")])])
    assert len(kept) == len(rows)                               # no-echo trials are not read
    # nor unplaced ones: barge_in writes them with no word_s or looks, and they are not refused
    unplaced = {k: v for k, v in rows[0].items() if k not in ("word_s", "looks", "echo_looks")}
    assert len(op.read_trials([_write(tmp_path, rows + [dict(unplaced, placed=False)])])) == len(rows)


def test_write_adds_the_over_probe_and_its_bar_to_a_learned_look(tmp_path: Path) -> None:
    import hashlib
    import shutil

    from voicecoach.lab.training.look_probe import fit_probe
    from voicecoach.listening.spotter.look_probe import LOOK_PROBE_FILE, load_look_probe
    from voicecoach.listening.spotter.model import builtin_paths

    weights, card_path = builtin_paths()
    shutil.copy(weights, tmp_path / "en_commands.npz")
    card = json.loads(card_path.read_text())
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((60, 768)), np.arange(60) % 5
    clean = fit_probe(x, y, 0.01)
    np.savez(tmp_path / LOOK_PROBE_FILE, **clean)
    card["look_probe"] = {"file": LOOK_PROBE_FILE, "width": 384,
                          "sha256": hashlib.sha256((tmp_path / LOOK_PROBE_FILE).read_bytes()).hexdigest()}
    (tmp_path / "en_commands.json").write_text(json.dumps(card))
    op.write(tmp_path, fit_probe(x, np.where(y == 0, 0, 4), 0.01), 0.05, {"trials": 3})
    card = json.loads((tmp_path / "en_commands.json").read_text())
    assert card["look_probe"]["over"]["bar"] == 0.05 and card["look_probe"]["over"]["trials"] == 3
    assert "Over the coach's own speech** stop is read by a second probe" in \
        (tmp_path / "MODEL_CARD.md").read_text()
    probe = load_look_probe(tmp_path / "en_commands.npz", card)
    assert probe is not None and probe.over_bar == 0.05 and probe.over is not None
    (tmp_path / LOOK_PROBE_FILE).write_bytes(b"damaged")            # the look it adds to
    with pytest.raises(VoicecoachError) as damaged:
        op.write(tmp_path, clean, 0.05, {})
    assert "not a readable .npz" in damaged.value.one_line()
    with pytest.raises(VoicecoachError) as nowhere:
        op.write(tmp_path / "nowhere", clean, 0.05, {})
    assert "no readable model card" in nowhere.value.one_line()


def test_write_gives_a_model_without_a_clean_look_an_over_the_coach_one(tmp_path: Path) -> None:

    from voicecoach.lab.training.look_probe import fit_probe
    from voicecoach.listening.spotter.look_probe import load_look_probe

    _plain_model(tmp_path)
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((60, 768)), np.where(np.arange(60) % 3 == 0, 0, 4)
    op.write(tmp_path, fit_probe(x, y, 0.01), 0.3, {"trials": 5})
    card = json.loads((tmp_path / "en_commands.json").read_text())
    assert card["look_probe"]["clean"] is False and card["look_probe"]["over"]["bar"] == 0.3
    probe = load_look_probe(tmp_path / "en_commands.npz", card)
    assert probe is not None and probe.arrays is None and probe.over_bar == 0.3
    text = (tmp_path / "MODEL_CARD.md").read_text()
    assert "away from the coach the opening is read" in text and "Stop by the learned look" not in text


def test_trials_at_a_lowered_candidate_level_carry_it_to_the_card(tmp_path: Path) -> None:
    """Trials made with ``barge_in --over-candidate`` record their level; ``--write`` puts it in
    the card beside the bar (the spotter raises candidates over the coach from it), and trials
    of different levels are not fitted together."""

    from voicecoach.listening.spotter.look_probe import load_look_probe

    rows = [dict(r, over_candidate=0.1) for r in _trials(np.random.default_rng(5))]
    assert op.candidate_level(op.read_trials([_write(tmp_path, rows)])) == 0.1
    assert op.candidate_level(op.read_trials([_write(tmp_path, _trials(np.random.default_rng(5)))])) is None
    with pytest.raises(VoicecoachError) as mixed:
        op.read_trials([_write(tmp_path, rows[:4] + [dict(rows[5], over_candidate=None)])])
    assert "different stop candidate levels" in mixed.value.one_line()
    model = tmp_path / "model"
    model.mkdir()
    _plain_model(model)
    assert op.main([str(_write(tmp_path, rows)), "--write", str(model), "--default", "0.35"]) == 0
    card = json.loads((model / "en_commands.json").read_text())
    assert card["look_probe"]["over"]["candidate"] == 0.1
    probe = load_look_probe(model / "en_commands.npz", card)
    assert probe is not None and probe.over_candidate == 0.1
    assert "raises stop candidates there from 0.1" in (model / "MODEL_CARD.md").read_text()


def _loop(tmp_path: Path, feats: list[np.ndarray], level: float | None = None) -> Path:
    path = tmp_path / "loop.jsonl"
    row = {"loop": True, "seed": 31, "over_candidate": level,
           "echo_looks": [_look(1.0 + i, 0.0001, f) for i, f in enumerate(feats)]}
    path.write_text(json.dumps(row) + "\n")
    return path


def test_a_closed_loops_echo_looks_are_fitted_on_as_anything_else_in_every_fold(tmp_path: Path) -> None:
    """``--echo``: the coach's own echo from a talkative closed loop is "anything else" in every
    fold's fit (it has no speaker); echo that looks like the stop looks pulls their scores down."""
    rng = np.random.default_rng(6)
    rows = op.read_trials([_write(tmp_path, _trials(rng))])
    looks = op.over_looks(rows)
    plain = op.out_of_fold(looks)
    like_stop = [rng.standard_normal(8) + np.eye(8)[0] * 4 for _ in range(40)]
    echo = op.read_echo([_loop(tmp_path, like_stop)], None)
    assert echo.shape == (40, 8)
    with_echo = op.out_of_fold(looks, echo=echo)
    stops = looks["y"] == 0
    assert (with_echo[stops] < plain[stops]).all() and \
        with_echo[stops].mean() < plain[stops].mean() - 0.02
    # bad loop files: one line each
    (tmp_path / "junk.jsonl").write_text("{}\n")
    with pytest.raises(VoicecoachError) as junk:
        op.read_echo([tmp_path / "junk.jsonl"], None)
    assert "not a closed loop's looks" in junk.value.one_line()
    with pytest.raises(VoicecoachError) as level:
        op.read_echo([_loop(tmp_path, like_stop, level=0.1)], None)
    assert "candidate level 0.1" in level.value.one_line()
    bare = json.loads(_loop(tmp_path, like_stop[:1]).read_text())
    del bare["echo_looks"][0]["pooled"]
    (tmp_path / "bare.jsonl").write_text(json.dumps(bare) + "\n")
    with pytest.raises(VoicecoachError) as no_states:
        op.read_echo([tmp_path / "bare.jsonl"], None)
    assert "no encoder output" in no_states.value.one_line()
    with pytest.raises(VoicecoachError) as missing:
        op.read_echo([tmp_path / "nope.jsonl"], None)
    assert "cannot read" in missing.value.one_line()
    # through the command: the card says how many loop looks it was fitted on
    model = tmp_path / "model"
    model.mkdir()
    _plain_model(model)
    assert op.main([str(_write(tmp_path, _trials(rng))), "--echo", str(_loop(tmp_path, like_stop)),
                    "--write", str(model), "--default", "0.35"]) == 0
    card = json.loads((model / "en_commands.json").read_text())
    assert card["look_probe"]["over"]["loop_echo_looks"] == 40


def test_balanced_sources_weigh_the_echo_and_other_peoples_words_equally_within_anything_else() -> None:
    """``--balance-sources``: many echo looks do not drown the few looks on a word that is not
    a command; a stop-like other word ("down") then scores lower as stop, and stops stay apart."""
    y = np.array([0, 0, 4, 4, 4, 4, 4, 1])
    at_echo = np.array([False, False, True, True, True, True, False, False])
    w = op.source_weights(y, at_echo)
    assert w[0] == w[1] == w[7] == 1.0
    assert w[2:6].sum() == pytest.approx(w[6]) == pytest.approx(2.5)     # 5 looks, half each
    assert (op.source_weights(y, np.zeros(8, bool)) == 1).all()          # one source: as before
    rng = np.random.default_rng(3)
    rows = []
    for fold in range(LOCK_MODULUS - 1):
        for n in range(10):
            speaker = _speaker(fold, n)
            echo = [_look(0.3 + 0.1 * k, 0.0001, rng.standard_normal(8)) for k in range(12)]
            rows.append({"word": "stop", "speaker": speaker, "echo": "nlms", "placed": True,
                         "word_s": [2.0, 2.5], "caught": False, "latency_s": None,
                         "looks": [_look(2.6, 0.0003, rng.standard_normal(8) + np.eye(8)[0] * 3)],
                         "echo_looks": echo})
            down = rng.standard_normal(8) + np.eye(8)[0] * 3 + np.eye(8)[1] * 3
            rows.append({"word": "down", "speaker": speaker, "echo": "nlms", "placed": True,
                         "word_s": [2.0, 2.5], "looks": [_look(2.6, 0.0001, down)],
                         "echo_looks": []})
    looks = op.over_looks(rows)
    plain = op.out_of_fold(looks, c=0.01)
    balanced = op.out_of_fold(looks, c=0.01, balance=True)
    downs = (looks["y"] == 4) & ~looks["echo"]
    stops = looks["y"] == 0
    assert balanced[downs].mean() < plain[downs].mean() - 0.05
    assert np.median(balanced[stops]) > np.median(balanced[downs])


def _bad(row: dict, **change: object) -> dict:
    """``row`` with ``change`` (a value of ``...``: the key removed); looks are copied."""
    out = json.loads(json.dumps(row))
    for key, value in change.items():
        if value is ...:
            del out[key]
        else:
            out[key] = value
    return out


def _bad_look(row: dict, **change: object) -> dict:
    """``row`` with its second look (over the coach, on the word) changed as :func:`_bad`."""
    out = _bad(row)
    out["looks"][1] = _bad(out["looks"][1], **change)
    return out


_STOP = _trials(np.random.default_rng(0), per_fold=1)[0]
MALFORMED_TRIALS = [
    ([1, 2], "it is a list, not an object"),
    (7, "it is a number, not an object"),
    ("stop", "it is a string, not an object"),
    (_bad(_STOP, speaker=...), "it has no 'speaker'"),
    (_bad(_STOP, speaker=["s1"]), "its 'speaker' is a list, not a string"),
    (_bad(_STOP, word=3), "its 'word' is a number, not a string"),
    (_bad(_STOP, echo=None), "its 'echo' is null, not a string"),
    (_bad(_STOP, placed="yes"), "its 'placed' is a string, not true or false"),
    (_bad(_STOP, caught=1), "its 'caught' is a number, not true or false"),
    (_bad(_STOP, latency_s="0.2"), "its 'latency_s' is a string, not a number or null"),
    (_bad(_STOP, over_candidate=[0.1]), "its 'over_candidate' is a list, not a number or null"),
    (_bad(_STOP, looks="none"), "its 'looks' is a string, not a list"),
    (_bad(_STOP, echo_looks={"t": 1}), "its 'echo_looks' is an object, not a list"),
    (_bad(_STOP, looks=[3]), "look 1 of its 'looks' is a number, not an object"),
    (_bad_look(_STOP, over="yes"), "look 2 of its 'looks' has an 'over' that is a string"),
    (_bad_look(_STOP, t="2.6"), "look 2 of its 'looks' has no 't' that is a number"),
    (_bad_look(_STOP, t=...), "look 2 of its 'looks' has no 't' that is a number"),
    (_bad_look(_STOP, scores=[0.1]), "has no 'scores' that is an object of numbers"),
    (_bad_look(_STOP, scores={"stop": "high"}), "has no 'scores' that is an object of numbers"),
    (_bad_look(_STOP, pooled="0.1 0.2"), "has a 'pooled' that is not a list of numbers"),
    (_bad_look(_STOP, pooled=[0.1, "x"]), "has a 'pooled' that is not a list of numbers"),
    (_bad_look(_STOP, pooled=[]), "has a 'pooled' that is not a list of numbers"),
    (_bad_look(_STOP, pooled=[0.1, 0.2]), "a 'pooled' of 2 numbers, the first look's 8"),
    (_bad(_STOP, word_s=...), "its 'word_s' is not a list of two numbers"),
    (_bad(_STOP, word_s=2.0), "its 'word_s' is not a list of two numbers"),
    (_bad(_STOP, word_s=[2.0]), "its 'word_s' is not a list of two numbers"),
    (_bad(_STOP, word_s=["2.0", "2.5"]), "its 'word_s' is not a list of two numbers"),
]


@pytest.mark.parametrize(("row", "said"), MALFORMED_TRIALS)
def test_a_malformed_trial_is_one_line_naming_its_file_and_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], row: object, said: str) -> None:
    """Every field read from a trial, of the wrong type or missing: one line saying which
    file, which line and what is wrong, exit 2 (no traceback)."""
    rows: list[object] = list(_trials(np.random.default_rng(0), per_fold=1))
    rows[2] = row
    path = _write(tmp_path, rows)  # type: ignore[arg-type]
    assert op.main([str(path), "--default", "0.4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path}: line 3 is not a traced barge-in trial" in err, err
    assert said in err


@pytest.mark.parametrize(("look", "said"), [
    (5, "look 1 of its 'echo_looks' is a number, not an object"),
    ({"pooled": "0.1"}, "look 1 of its 'echo_looks' has a 'pooled' that is not a list of numbers"),
    ({"pooled": [0.1, 0.2]}, "has a 'pooled' of 2 numbers, the trials' looks' 8"),
])
def test_a_malformed_closed_loop_look_is_one_line_naming_its_file_and_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], look: object, said: str) -> None:
    loop = tmp_path / "loop.jsonl"
    loop.write_text("\n" + json.dumps({"loop": True, "over_candidate": None, "echo_looks": [look]})
                    + "\n")
    trials = _write(tmp_path, _trials(np.random.default_rng(0), per_fold=1))
    assert op.main([str(trials), "--echo", str(loop), "--default", "0.4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{loop}: line 2 is not a closed loop's looks" in err, err
    assert said in err
