"""The lab's learned look (session 14, not shipped): pooling, the probe, out-of-fold scoring that
never lets a fold's probe see it, and the talk and clip counts its comparison rests on."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FIXTURES

pytest.importorskip("sklearn", reason="scikit-learn (the 'test' or 'train' extra) is not installed")
from voicecoach.lab.training import look_probe as lp  # noqa: E402

SHARED = FIXTURES.parent.parent / "shared"


def test_pooling_is_mean_and_max_over_the_looks_frames() -> None:
    states = np.zeros((2, lp.FRAMES + 10, 3), np.float16)
    states[0, 0] = [1, 2, 3]
    states[0, lp.FRAMES - 1] = [3, 0, -1]
    states[1, lp.FRAMES + 5] = [100, 100, 100]     # past the look's frames: not read
    x = lp.pooled(states)
    assert x.shape == (2, 6)
    assert np.allclose(x[0, :3], np.array([4, 2, 2]) / lp.FRAMES)
    assert np.allclose(x[0, 3:], [3, 2, 3])
    assert np.allclose(x[1], 0)


def _blobs(n: int, classes: list[int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.eye(len(lp.WORDS) + 1, 8) * 4
    y = rng.choice(classes, n)
    return centres[y] + rng.standard_normal((n, 8)), y


def test_the_probe_learns_and_its_arrays_give_its_probabilities() -> None:
    x, y = _blobs(600, list(range(len(lp.WORDS) + 1)), 0)
    probe = lp.fit_probe(x, y, c=1.0)
    test_x, test_y = _blobs(300, list(range(len(lp.WORDS) + 1)), 1)
    p = lp.probe_probs(probe, test_x)
    assert np.allclose(p.sum(axis=1), 1.0)
    assert (p.argmax(axis=1) == test_y).mean() > 0.9
    # two classes only (stop against anything else): the absent classes get nothing
    x2, y2 = _blobs(400, [0, len(lp.WORDS)], 2)
    p2 = lp.probe_probs(lp.fit_probe(x2, y2, c=1.0), x2)
    assert np.allclose(p2[:, 1:len(lp.WORDS)], 0.0)
    assert p2[y2 == 0, 0].mean() > 0.8 > 0.2 > p2[y2 != 0, 0].mean()


def test_a_folds_probe_never_sees_that_fold(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    fold = np.arange(80) % 4
    feats = rng.standard_normal((80, 4)).astype(np.float16)
    feats[:, 0] = fold                              # each row says its fold in feature 0
    label = np.where(np.arange(80) % 3 == 0, 0, len(lp.WORDS))
    clips = lp.Looks(feats, np.zeros(80), label, fold)
    talk = lp.Looks(feats[:20], np.zeros(20), label[:20], fold[:20])
    seen: list[set[float]] = []
    real_fit = lp.fit_probe

    def spy(x: np.ndarray, y: np.ndarray, c: float = lp.DEFAULT_C) -> dict[str, np.ndarray]:
        seen.append(set(np.round(x[:, 0]).tolist()))
        return real_fit(x, y, c)

    monkeypatch.setattr(lp, "fit_probe", spy)
    clip_score, talk_score = lp.out_of_fold(clips, talk)
    assert seen == [{1.0, 2.0, 3.0}, {0.0, 2.0, 3.0}, {0.0, 1.0, 3.0}, {0.0, 1.0, 2.0}]
    assert clip_score.shape == (80,) and talk_score.shape == (20,)
    assert ((clip_score > 0) & (clip_score < 1)).all()


def test_the_bar_keeps_at_least_the_target_recall() -> None:
    scores = np.arange(1, 101) / 100.0              # 0.01 ... 1.00
    bar = lp.bar_for(scores, 0.95)
    assert (scores >= bar).mean() >= 0.95 and (scores >= bar + 0.01).mean() < 0.95
    assert lp.bar_for(scores, 1.0) == pytest.approx(0.01)


def test_talk_counts_stops_once_and_false_stops_once_a_second() -> None:
    where = {"at": np.array([0, 0, -1, -1, -1, 1, -1]),
             "time": np.array([5.0, 5.2, 9.0, 9.5, 10.6, 20.0, 3.0]),
             "name": np.array(["a", "a", "a", "a", "a", "a", "b"]), "stops": 3, "audio_s": 3600.0}
    score = np.array([0.9, 0.9, 0.9, 0.9, 0.9, 0.1, 0.9])
    caught, false = lp.talk_outcome(score, 0.5, where)
    # stop 0 caught (two looks), stop 1's look fails; false at 9.0 (9.5 within a second of it),
    # 10.6 and 3.0 in the other file
    assert (caught, false) == (1, 3)
    assert lp.talk_outcome(score, 0.95, where) == (0, 0)


def test_talk_looks_are_stop_on_a_stop_said_there_and_other_elsewhere() -> None:
    data = {"audio_s": 600.0,
            "stops": [{"file": "a", "start_s": 10.0, "end_s": 10.5},
                      {"file": "b", "start_s": 10.0, "end_s": 10.5}],
            "events": [{"file": "a", "emitted_s": 10.6, "fold": 1, "opening": {"stop": 0.3}},
                       {"file": "a", "emitted_s": 11.6, "fold": 1, "opening": {"stop": 0.2}},
                       {"file": "b", "emitted_s": 9.0, "fold": 2, "opening": {"go": 0.9}},
                       {"file": "b", "emitted_s": 11.4, "fold": 2, "opening": {"stop": 0.8}}],
            "feats": np.ones((4, 6), np.float16)}
    looks, where = lp.talk_table(data)
    # 11.6 is more than a second after stop 0's end; 9.0 is before stop 1 began
    assert where["at"].tolist() == [0, -1, -1, 1]
    assert looks.label.tolist() == [0, len(lp.WORDS), len(lp.WORDS), 0]
    assert looks.stop.tolist() == pytest.approx([0.3, 0.2, 0.0, 0.8])
    assert looks.fold.tolist() == [1, 1, 2, 2] and looks.feats.shape == (4, 6)
    assert where["stops"] == 2 and where["audio_s"] == 600.0


def test_a_clip_is_looked_at_up_to_the_tail_after_it() -> None:
    clip = np.full(8000, 12000, np.int16)           # half a second, loud
    window = lp.clip_window(clip, "probe-test.wav")
    tail = int(lp.CLIP_TAIL_S * 16000)
    assert window.size == int(1.2 * 16000)
    assert np.abs(window[-tail + 400:]).mean() < 0.01           # room tone after the clip
    assert np.abs(window[-tail - 6000:-tail - 400]).mean() > 0.3  # the clip itself


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "speech_commands").is_dir(),
                    reason="../shared/speech_commands is not beside this checkout")
def test_real_stops_are_told_from_other_words_by_a_probe_of_other_speakers() -> None:
    """Real speakers who are not locked: probes trained on three folds score the fourth (the
    probe never heard those speakers; Whisper is not trained here)."""
    pytest.importorskip("ctranslate2", reason="the 'verify' extra is not installed")
    from voicecoach.lab.training.data import real_sources

    sources = [s for s in real_sources(SHARED / "speech_commands", 4) if s.kind == "real"]
    stops = [s for s in sources if s.word == "stop"][::3]
    others = [s for s in sources if s.word in ("up", "left", "right", "off")][::6]
    clips = lp.clip_looks(stops + others)
    assert clips.feats.shape[1:] == (2 * 384,)
    empty = lp.Looks(clips.feats[:0], clips.stop[:0], clips.label[:0], clips.fold[:0])
    score, _ = lp.out_of_fold(clips, empty, c=lp.DEFAULT_C)
    pos = clips.label == 0
    assert pos.sum() >= 15 and (~pos).sum() >= 15
    # ranked: most stops above every other word but a few
    assert np.mean(score[pos][:, None] > score[~pos][None, :]) > 0.95


# --- the shipped side: the probe file, its checks, and the engine reading stop through it ---

def _probe_arrays(width: int = 384, stop_p: float = 0.5) -> dict[str, np.ndarray]:
    """A probe that says ``stop_p`` for stop whatever it hears (zero weights)."""
    from voicecoach.listening.spotter.look_probe import WORDS

    classes = len(WORDS) + 1
    rest = (1.0 - stop_p) / (classes - 1)
    return {"mean": np.zeros(2 * width), "scale": np.ones(2 * width),
            "coef": np.zeros((classes, 2 * width)),
            "intercept": np.log(np.array([stop_p] + [rest] * (classes - 1)))}


def _model_with_probe(tmp_path, arrays: dict[str, np.ndarray] | None,  # type: ignore[no-untyped-def]
                      over: dict[str, object] | None = None):
    """A copy of the shipped model whose card names ``arrays`` as its learned look (with
    ``over`` as its over-the-coach part, if given)."""
    import hashlib
    import json
    import shutil

    from voicecoach.listening.spotter.look_probe import LOOK_PROBE_FILE
    from voicecoach.listening.spotter.model import builtin_paths, load_model

    weights, card_path = builtin_paths()
    shutil.copy(weights, tmp_path / weights.name)
    card = json.loads(card_path.read_text())
    if arrays is not None:
        np.savez(tmp_path / LOOK_PROBE_FILE, **arrays)
        card["look_probe"] = {"file": LOOK_PROBE_FILE, "width": arrays["mean"].size // 2,
                              "sha256": hashlib.sha256((tmp_path / LOOK_PROBE_FILE).read_bytes()).hexdigest()}
        if over is not None:
            card["look_probe"]["over"] = over
    else:   # a model without a learned look (whatever the shipped card names)
        card.pop("look_probe", None)
    (tmp_path / card_path.name).write_text(json.dumps(card))
    return load_model(tmp_path / weights.name)


def test_the_shipped_probe_is_checked_before_it_is_trusted(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from voicecoach.errors import VoicecoachError
    from voicecoach.listening.spotter.look_probe import LOOK_PROBE_FILE, load_look_probe

    assert load_look_probe(_model_with_probe(tmp_path, None).path, {}) is None
    model = _model_with_probe(tmp_path, _probe_arrays(stop_p=0.7))
    probe = load_look_probe(model.path, model.card)
    assert probe is not None
    assert probe.stop(np.random.default_rng(0).standard_normal((200, 384))) == pytest.approx(0.7)
    path = tmp_path / LOOK_PROBE_FILE
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(VoicecoachError) as damaged:
        load_look_probe(model.path, model.card)
    assert "sha256 differs" in damaged.value.one_line() and "reinstall" in damaged.value.one_line()
    path.unlink()
    with pytest.raises(VoicecoachError) as missing:
        load_look_probe(model.path, model.card)
    assert "is missing" in missing.value.one_line()
    bad = _probe_arrays()
    bad["scale"][3] = np.nan
    model = _model_with_probe(tmp_path, bad)
    with pytest.raises(VoicecoachError) as nan:
        load_look_probe(model.path, model.card)
    assert "not usable numbers" in nan.value.one_line()
    model.card["look_probe"] = "yes"                  # a card that names no file
    with pytest.raises(VoicecoachError) as unnamed:
        load_look_probe(model.path, model.card)
    assert "names a learned look without its file" in unnamed.value.one_line()
    model = _model_with_probe(tmp_path, _probe_arrays(width=10))
    model.card["look_probe"]["width"] = 384
    with pytest.raises(VoicecoachError) as shape:
        load_look_probe(model.path, model.card)
    assert "of shape" in shape.value.one_line()


def test_the_engine_reads_stop_through_the_probe_but_not_over_the_coach(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("ctranslate2", reason="the 'verify' extra is not installed")
    from voicecoach.audio.chunk import AudioChunk
    from voicecoach.grammar import load_grammar
    from voicecoach.listening.spotter.engine import SpotterRecogniser
    from voicecoach.listening.spotter.verify import load_verifier

    grammar = load_grammar("en")
    verifier = load_verifier()
    rec = SpotterRecogniser(grammar, model=_model_with_probe(tmp_path, _probe_arrays(stop_p=0.61)),
                            verifier=verifier)
    assert rec.look_probe is not None and rec.verifier is verifier
    noise = (np.random.default_rng(1).standard_normal(16000) * 300).astype(np.int16)
    rec.accept(AudioChunk(noise.tobytes(), 0.0))
    end = rec._audio.size
    asked = {"stop": ["stop"], "resume": ["go"]}
    rec.verify_anywhere = frozenset({"stop"})
    seen: list[object] = []
    real_scores = verifier.scores

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs.get("anywhere"))
        return real_scores(*args, **kwargs)

    verifier.scores = spy  # type: ignore[method-assign]
    score, over = rec._look(verifier, end, 1.0, asked)
    assert not over and score["stop"] == pytest.approx(0.61)
    assert score["resume"] < 0.5                       # other commands: still the opening
    assert seen == [frozenset()]                       # no transcript read for the probe's stop
    rec.coach_speech = lambda: [(0.0, float("inf"))]   # the coach is speaking
    score, over = rec._look(verifier, end, 1.0, asked)
    assert over and score["stop"] != pytest.approx(0.61)
    assert rec.stop_bar(True) == rec.over_speech_stop_bar


def test_a_damaged_probe_turns_the_second_look_off_in_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("ctranslate2", reason="the 'verify' extra is not installed")
    from voicecoach.grammar import load_grammar
    from voicecoach.listening.spotter.engine import SpotterRecogniser
    from voicecoach.listening.spotter.look_probe import LOOK_PROBE_FILE
    from voicecoach.listening.spotter.verify import load_verifier

    model = _model_with_probe(tmp_path, _probe_arrays())
    (tmp_path / LOOK_PROBE_FILE).write_bytes(b"not an npz")
    rec = SpotterRecogniser(load_grammar("en"), model=model, verifier=load_verifier())
    assert rec.verifier is None and rec.look_probe is None
    assert rec.look_off is not None and "learned look" in rec.look_off and "\n" not in rec.look_off


def test_listen_with_a_damaged_probe_says_so_in_one_line_and_goes_on(
        tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("ctranslate2", reason="the 'verify' extra is not installed")
    from voicecoach.cli import main
    from voicecoach.listening.spotter.look_probe import LOOK_PROBE_FILE

    model = _model_with_probe(tmp_path, _probe_arrays())
    (tmp_path / LOOK_PROBE_FILE).write_bytes(b"damaged")
    monkeypatch.setenv("VOICECOACH_SPOTTER_MODEL", str(model.path))
    clip = FIXTURES / "commands" / "joe" / "normal" / "stop__stop.wav"
    assert main(["listen", str(clip)]) == 0
    out = capsys.readouterr()
    said = [line for line in (out.out + out.err).splitlines() if "learned look" in line]
    assert len(said) == 1 and "no second look" in said[0] and "sha256 differs" in said[0]
    assert "Traceback" not in out.err and "stop" in out.out


def _with_over(clean_p: float, over_p: float) -> dict[str, np.ndarray]:
    from voicecoach.listening.spotter.look_probe import OVER

    arrays = _probe_arrays(stop_p=clean_p)
    arrays.update({OVER + k: v for k, v in _probe_arrays(stop_p=over_p).items()})
    return arrays


def test_an_over_the_coach_probe_is_read_over_the_coach_at_its_own_bar(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("ctranslate2", reason="the 'verify' extra is not installed")
    from voicecoach.audio.chunk import AudioChunk
    from voicecoach.grammar import load_grammar
    from voicecoach.listening.spotter.engine import SpotterRecogniser
    from voicecoach.listening.spotter.verify import load_verifier

    model = _model_with_probe(tmp_path, _with_over(0.61, 0.23), over={"bar": 0.2})
    rec = SpotterRecogniser(load_grammar("en"), model=model, verifier=load_verifier())
    assert rec.look_probe is not None and rec.look_probe.over_bar == 0.2
    noise = (np.random.default_rng(1).standard_normal(16000) * 300).astype(np.int16)
    rec.accept(AudioChunk(noise.tobytes(), 0.0))
    end = rec._audio.size
    asked = {"stop": ["stop"], "resume": ["go"]}
    score, over = rec._look(rec.verifier, end, 1.0, asked)
    assert not over and score["stop"] == pytest.approx(0.61)   # away from the coach: the clean one
    rec.coach_speech = lambda: [(0.0, float("inf"))]
    score, over = rec._look(rec.verifier, end, 1.0, asked)
    assert over and score["stop"] == pytest.approx(0.23)       # over the coach: its own probe
    assert rec.stop_bar(True) == 0.2 and rec.stop_bar(False) != 0.2
    rec.over_speech_stop_bar = None                            # no bar of its own over the coach
    score, _over = rec._look(rec.verifier, end, 1.0, asked)
    assert score["stop"] == pytest.approx(0.61)


def test_an_over_the_coach_part_is_checked_before_it_is_trusted(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from voicecoach.errors import VoicecoachError
    from voicecoach.listening.spotter.look_probe import load_look_probe

    model = _model_with_probe(tmp_path, _probe_arrays(), over={"bar": 0.1})   # no over_ arrays
    with pytest.raises(VoicecoachError) as missing:
        load_look_probe(model.path, model.card)
    assert "has no 'over_mean'" in missing.value.one_line()
    for bar in ("high", 0.0, 2.0, None, 1.0, True, "0.1"):   # 1 / true: stop never over the coach
        model = _model_with_probe(tmp_path, _with_over(0.5, 0.5), over={"bar": bar})
        with pytest.raises(VoicecoachError) as bad:
            load_look_probe(model.path, model.card)
        assert "without a usable bar" in bad.value.one_line(), bar
    model = _model_with_probe(tmp_path, _with_over(0.5, 0.3), over={"bar": 0.1})
    probe = load_look_probe(model.path, model.card)
    assert probe is not None and probe.over_bar == 0.1
    states = np.random.default_rng(2).standard_normal((200, 384))
    assert probe.stop(states, over=True) == pytest.approx(0.3)
    clean = load_look_probe(*(lambda m: (m.path, m.card))(_model_with_probe(tmp_path, _probe_arrays())))
    assert clean is not None and clean.over is None
    with pytest.raises(ValueError):
        clean.stop(states, over=True)


def test_a_look_with_only_an_over_the_coach_probe_reads_the_opening_elsewhere(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("ctranslate2", reason="the 'verify' extra is not installed")
    import json

    from voicecoach.audio.chunk import AudioChunk
    from voicecoach.grammar import load_grammar
    from voicecoach.listening.spotter.engine import SpotterRecogniser
    from voicecoach.listening.spotter.look_probe import OVER, load_look_probe
    from voicecoach.listening.spotter.verify import load_verifier

    over_only = {OVER + k: v for k, v in _probe_arrays(stop_p=0.23).items()}
    over_only["mean"] = over_only[OVER + "mean"]                  # (the helper reads the width off it)
    model = _model_with_probe(tmp_path, over_only, over={"bar": 0.2})
    model.card["look_probe"]["clean"] = False
    (tmp_path / "en_commands.json").write_text(json.dumps(model.card))
    probe = load_look_probe(model.path, model.card)
    assert probe is not None and probe.arrays is None and probe.reads(True) and not probe.reads(False)
    assert probe.describe() == "stop over the coach by its learned look"
    rec = SpotterRecogniser(load_grammar("en"), model=model, verifier=load_verifier())
    noise = (np.random.default_rng(1).standard_normal(16000) * 300).astype(np.int16)
    rec.accept(AudioChunk(noise.tobytes(), 0.0))
    end = rec._audio.size
    asked = {"stop": ["stop"], "resume": ["go"]}
    score, over = rec._look(rec.verifier, end, 1.0, asked)
    assert not over and score["stop"] != pytest.approx(0.23)   # away from the coach: the opening
    card_bar = rec.verify_thresholds["stop"]
    assert rec.stop_bar(False) == card_bar
    rec.coach_speech = lambda: [(0.0, float("inf"))]
    score, over = rec._look(rec.verifier, end, 1.0, asked)
    assert over and score["stop"] == pytest.approx(0.23) and rec.stop_bar(True) == 0.2
    model.card["look_probe"].pop("over")                       # no probe at all: one line
    from voicecoach.errors import VoicecoachError

    with pytest.raises(VoicecoachError) as none:
        load_look_probe(model.path, model.card)
    assert "no probe at all" in none.value.one_line()


def test_an_over_the_coach_candidate_level_is_checked_and_given_to_the_decider(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``look_probe.over.candidate``: the level the over-the-coach probe's looks were raised at;
    the spotter raises stop candidates over the coach from it (and only with that probe)."""
    pytest.importorskip("ctranslate2", reason="the 'verify' extra is not installed")
    from voicecoach.errors import VoicecoachError
    from voicecoach.grammar import load_grammar
    from voicecoach.listening.spotter.engine import SpotterRecogniser
    from voicecoach.listening.spotter.look_probe import load_look_probe
    from voicecoach.listening.spotter.verify import load_verifier

    for level in ("low", 0.0, 1.0, True, -0.1):
        model = _model_with_probe(tmp_path, _with_over(0.5, 0.5), over={"bar": 0.3, "candidate": level})
        with pytest.raises(VoicecoachError) as bad:
            load_look_probe(model.path, model.card)
        assert "candidate level" in bad.value.one_line(), level
    model = _model_with_probe(tmp_path, _with_over(0.5, 0.5), over={"bar": 0.3, "candidate": 0.1})
    verifier = load_verifier()
    rec = SpotterRecogniser(load_grammar("en"), model=model, verifier=verifier)
    assert rec.look_probe is not None and rec.look_probe.over_candidate == 0.1
    assert rec.decider.over_stop_candidate == 0.1
    assert "candidates from 0.1" in rec.look_probe.describe()
    without = _model_with_probe(tmp_path, _with_over(0.5, 0.5), over={"bar": 0.3})
    rec = SpotterRecogniser(load_grammar("en"), model=without, verifier=verifier)
    assert rec.decider.over_stop_candidate is None
    # no verifier: no look, so no candidates over the coach either
    rec = SpotterRecogniser(load_grammar("en"), model=model)
    assert rec.decider.over_stop_candidate is None


def test_the_engine_tells_the_decider_when_a_step_is_over_the_coach(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("ctranslate2", reason="the 'verify' extra is not installed")
    from voicecoach.audio.chunk import AudioChunk
    from voicecoach.grammar import load_grammar
    from voicecoach.listening.spotter.engine import SpotterRecogniser
    from voicecoach.listening.spotter.verify import load_verifier

    model = _model_with_probe(tmp_path, _with_over(0.5, 0.5), over={"bar": 0.3, "candidate": 0.1})
    rec = SpotterRecogniser(load_grammar("en"), model=model, verifier=load_verifier())
    seen: list[bool] = []
    step = rec.decider.step
    rec.decider.step = lambda p, t, over=False: (seen.append(over), step(p, t, over=over))[1]  # type: ignore[method-assign]
    rec.coach_speech = lambda: [(1.0, 1.5)]
    noise = (np.random.default_rng(1).standard_normal(16000 * 5) * 300).astype(np.int16)
    rec.accept(AudioChunk(noise.tobytes(), 0.0))
    # steps end every 80 ms; over while the coach spoke within 2 s before the step's end
    ends = [(k + 1) * 0.08 for k in range(len(seen))]
    assert seen == [1.0 <= t and t - 2.0 <= 1.5 for t in ends]
    assert any(seen) and not all(seen)
