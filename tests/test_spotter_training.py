"""The training pipeline: folds by speaker, bad data folders, resumable caches, a tiny real run."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES

from voicecoach.lab.training import train
from voicecoach.lab.training.data import (
    NOISE,
    OTHER,
    all_real_clips,
    fold_of,
    is_locked,
    real_sources,
    refuse_locked,
    speaker_of,
    synthetic_sources,
)

SPEECH_COMMANDS = FIXTURES.parent.parent / "shared" / "speech_commands"
needs_real = pytest.mark.skipif(not SPEECH_COMMANDS.is_dir(),
                                reason="../shared/speech_commands is not beside this checkout")


def test_speaker_ids_and_folds() -> None:
    assert speaker_of(Path("stop/0c40e715_nohash_1.wav")) == "0c40e715"
    assert speaker_of(Path("_unknown_/backward_0c540988_nohash_0.wav")) == "0c540988"
    assert fold_of("0c40e715", 5) == fold_of("0c40e715", 5)
    assert len({fold_of(f"speaker{i}", 5) for i in range(50)}) == 5


@needs_real
def test_real_folds_are_speaker_disjoint_and_never_hold_a_locked_speaker() -> None:
    sources = real_sources(SPEECH_COMMANDS, 4)
    folds: dict[str, set[int]] = {}
    for s in sources:
        folds.setdefault(s.group, set()).add(s.fold)
    assert all(len(f) == 1 for f in folds.values())
    assert {f for fs in folds.values() for f in fs} == {0, 1, 2, 3}
    labels = {s.label for s in sources}
    assert {"stop", "go", "yes", "no", OTHER, NOISE} <= labels
    speakers = {spk for _, _, spk in all_real_clips(SPEECH_COMMANDS)}
    locked = {spk for spk in speakers if is_locked(spk)}
    # about a fifth of the speakers are locked away, and none of them is a training source
    assert 0.1 < len(locked) / len(speakers) < 0.3
    assert not locked & {s.group for s in sources}
    with pytest.raises(Exception) as info:
        real_sources(SPEECH_COMMANDS, 5)
    assert "folds" in str(info.value)


@needs_real
def test_a_training_run_refuses_the_locked_set(tmp_path: Path) -> None:
    from voicecoach.lab.training.data import Source

    path, word, speaker = next(c for c in all_real_clips(SPEECH_COMMANDS) if is_locked(c[2]))
    sneaked = Source(path, word, "real", speaker, 0, word)
    with pytest.raises(Exception) as info:
        refuse_locked(real_sources(SPEECH_COMMANDS, 4) + [sneaked])
    assert "locked" in str(info.value) and speaker in str(info.value)


def _one_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = train.main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_missing_training_data_is_one_line(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "synth").mkdir()
    (tmp_path / "synth" / "manifest.jsonl").write_text("")
    err = _one_line(capsys, ["--speech-commands", str(tmp_path / "nothing"), "--work",
                             str(tmp_path), "--no-export"])
    assert "no Speech Commands clips" in err and "--speech-commands" in err


def test_second_look_only_without_a_full_run_is_one_line(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    err = _one_line(capsys, ["--work", str(tmp_path), "--out", str(tmp_path / "model"),
                             "--second-look-only"])
    assert "fold heads" in err and "without --second-look-only" in err


def test_a_damaged_fold_head_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "folds").mkdir()
    for k in range(4):
        (tmp_path / "folds" / f"head_{k}.npz").write_text("garbage")
    err = _one_line(capsys, ["--work", str(tmp_path), "--out", str(tmp_path / "model"),
                             "--second-look-only"])
    assert "head_0.npz is not a fold head" in err and "run the full training again" in err


def test_empty_training_data_is_one_line(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sc" / "stop").mkdir(parents=True)
    (tmp_path / "synth").mkdir()
    (tmp_path / "synth" / "manifest.jsonl").write_text("")
    err = _one_line(capsys, ["--speech-commands", str(tmp_path / "sc"), "--work",
                             str(tmp_path), "--no-export"])
    assert "holds no WAV or FLAC clips" in err


def test_an_unreadable_flac_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("soundfile")
    from voicecoach.errors import VoicecoachError
    from voicecoach.lab.training.data import read_audio

    bad = tmp_path / "stop" / "0000_nohash_0.flac"
    bad.parent.mkdir()
    bad.write_bytes(b"fLaC" + b"\0" * 40)
    with pytest.raises(VoicecoachError) as info:
        read_audio(bad)
    assert str(bad) in info.value.one_line() and "FLAC" in info.value.one_line()


def test_a_broken_corpus_manifest_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "manifest.jsonl").write_text('{"path": "a.wav"\n')
    with pytest.raises(Exception) as info:
        synthetic_sources(tmp_path, 5, ["stop"])
    assert "line 1" in str(info.value)


@needs_real
def test_a_tiny_training_run_resumes_and_exports_a_loadable_model(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Real clips (a slice) plus a corpus of fixture voices: every stage of the real pipeline,
    twice: the second run makes no new feature shard and writes the same weights."""
    synth = tmp_path / "synth"
    rows = []
    manifest = json.loads((FIXTURES / "manifest.json").read_text())
    for entry in manifest:
        if entry["kind"] == "command" and entry["speed"] == "normal":
            exp = entry["expected"][0]
            dest = synth / entry["file"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(FIXTURES / entry["file"], dest)
            rows.append({"path": entry["file"], "text": exp["phrase"], "label": exp["phrase"],
                         "kind": "positive", "voice": entry["voice"], "engine": "fixture",
                         "family": entry["voice"]})
    (synth / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    # a second real set in FLAC, as ../shared/speech_commands_train is: a few clips, converted
    import soundfile

    flac = tmp_path / "flac"
    for word in ("stop", "go", "yes", "no", "up"):
        for wav in sorted((SPEECH_COMMANDS / word).glob("*.wav"))[:12]:
            data, rate = soundfile.read(str(wav), dtype="int16")
            (flac / word).mkdir(parents=True, exist_ok=True)
            soundfile.write(str(flac / word / (wav.stem + ".flac")), data, rate)
    argv = ["--speech-commands", str(SPEECH_COMMANDS), "--speech-commands-train", str(flac),
            "--synth", str(synth), "--work", str(tmp_path / "work"), "--out", str(tmp_path / "model"),
            "--quick", "--jobs", "1", "--no-verify"]
    assert train.main(argv) == 0
    first = capsys.readouterr().out
    assert "cross-validated by speaker" in first
    shards = sorted((tmp_path / "work" / "examples").glob("*.npz"))
    stamp = [p.stat().st_mtime_ns for p in shards]
    with np.load(tmp_path / "model" / "en_commands.npz") as z:
        weights = {k: z[k].copy() for k in z.files}
    assert train.main(argv) == 0
    assert [p.stat().st_mtime_ns for p in shards] == stamp
    with np.load(tmp_path / "model" / "en_commands.npz") as z:
        assert all(np.array_equal(z[k], weights[k]) for k in weights), "not deterministic"
    # the fold heads are kept: --second-look-only reuses them and the exported head as they are
    heads = sorted(p.name for p in (tmp_path / "work" / "folds").glob("head_*.npz"))
    assert heads == ["head_0.npz", "head_1.npz"]
    capsys.readouterr()
    assert train.main(argv + ["--second-look-only"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == first.splitlines()[0]
    with np.load(tmp_path / "model" / "en_commands.npz") as z:
        assert all(np.array_equal(z[k], weights[k]) for k in weights)
    from voicecoach.grammar import load_grammar
    from voicecoach.listening.spotter.model import load_model

    model = load_model(tmp_path / "model" / "en_commands.npz")
    model.check_grammar(load_grammar("en"))
    card = json.loads((tmp_path / "model" / "en_commands.json").read_text())
    assert card["figures"]["summary"].startswith("cross-validated by speaker")
    assert len(card["data"]["corpus_sha256"]) == 64
    assert np.isfinite(card["decision"]["stop_threshold"])
    assert (tmp_path / "model" / "MODEL_CARD.md").read_text().startswith("# Model card")
    # an ensemble: a member is another run's work folder (its fold heads, full head, recipe);
    # here that run's files copied with seed 1, so the average equals the single head's
    member = tmp_path / "work1" / "folds"
    shutil.copytree(tmp_path / "work" / "folds", member)
    run = json.loads((member / "run.json").read_text())
    (member / "run.json").write_text(json.dumps({"recipe": {**run["recipe"], "seed": 1}}))
    capsys.readouterr()
    assert train.main(argv + ["--second-look-only", "--member", str(tmp_path / "work1")]) == 0
    assert capsys.readouterr().out.splitlines()[0] == first.splitlines()[0]
    both = load_model(tmp_path / "model" / "en_commands.npz")
    assert both.members == 2 and both.card["member_seeds"] == [0, 1]
    x = np.random.default_rng(0).standard_normal((3, both.window, 96)).astype(np.float32)
    assert np.allclose(both.probabilities(x), model.probabilities(x), atol=1e-6)
    # run again on the ensemble it exported: its first member is the head, not both
    assert train.main(argv + ["--second-look-only", "--member", str(tmp_path / "work1")]) == 0
    assert load_model(tmp_path / "model" / "en_commands.npz").members == 2
    # members that cannot be averaged are refused, each in one line
    (member / "run.json").write_text(json.dumps({"recipe": {**run["recipe"], "seed": 0}}))
    assert train.main(argv + ["--member", str(tmp_path / "work1")]) == 2
    assert "seed 0, which the ensemble already has" in capsys.readouterr().err
    (member / "run.json").write_text(json.dumps({"recipe": {**run["recipe"], "seed": 1,
                                                            "hidden": 99}}))
    assert train.main(argv + ["--member", str(tmp_path / "work1")]) == 2
    assert "another recipe (hidden differ)" in capsys.readouterr().err
    assert train.main(argv + ["--member", str(tmp_path / "nowhere")]) == 2
    assert "no finished full training run there" in capsys.readouterr().err


def test_running_talk_is_other_speech_but_just_after_a_stop() -> None:
    from voicecoach.lab.training.examples import Recipe
    from voicecoach.lab.training.talk_windows import STOP_LABEL, window_labels

    recipe = Recipe(talk_stride=2)
    stop = (4.0, 4.5)                          # a stop said from 4.0 s to 4.5 s
    picked = dict(window_labels(100, [stop], recipe))
    times = {j: (j + 1) * 0.08 for j in picked}
    stops = [j for j, lab in picked.items() if lab == STOP_LABEL]
    assert stops and all(4.5 + recipe.positive_after_end_s[0] <= times[j]
                         <= 4.5 + recipe.positive_after_end_s[1] for j in stops)
    # every step of the stop-labelled band, not only every second one
    assert len(stops) == sum(1 for j in range(100)
                             if 4.46 <= (j + 1) * 0.08 <= 4.78)
    # the stop's other windows are left out; the rest is other speech, every second step,
    # and never a window the ring has not filled
    others = [j for j, lab in picked.items() if lab != STOP_LABEL]
    assert all(not (4.0 <= times[j] <= 5.5) for j in others)
    assert all(j % 2 == 0 and j >= recipe.window - 1 for j in others)
    assert len(others) > 30


def test_long_form_files_of_another_name_are_other_draws(tmp_path: Path) -> None:
    from voicecoach.audio.wav import write_wav
    from voicecoach.lab.longform import make_longform

    rng = np.random.default_rng(0)
    talk = []
    for i in range(3):
        path = tmp_path / f"talk{i}.wav"
        write_wav(path, (0.1 * rng.standard_normal(8000 + 4000 * i)).astype(np.float32))
        talk.append(path)
    stop = tmp_path / "stop.wav"
    write_wav(stop, (0.1 * rng.standard_normal(6000)).astype(np.float32))
    a, truth_a = make_longform(tmp_path / "a", 600 / 3600, talk, [], [], [stop])
    b, truth_b = make_longform(tmp_path / "b", 600 / 3600, talk, [], [], [stop], name="train")
    assert a[0].name == "longform_00.wav" and b[0].name == "train_00.wav"
    assert truth_a[str(a[0])] and truth_b[str(b[0])]
    assert truth_a[str(a[0])] != truth_b[str(b[0])]


def test_a_long_form_file_is_written_whole_or_not_at_all(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from voicecoach.audio.wav import write_wav
    from voicecoach.lab import longform

    talk = tmp_path / "talk.wav"
    write_wav(talk, (0.1 * np.random.default_rng(1).standard_normal(8000)).astype(np.float32))

    def killed(path: Path, samples: np.ndarray) -> None:
        Path(path).write_bytes(b"RIFF")          # a run killed half way through the write
        raise KeyboardInterrupt

    monkeypatch.setattr(longform, "write_wav", killed)
    with pytest.raises(KeyboardInterrupt):
        longform.make_longform(tmp_path / "out", 600 / 3600, [talk], [], [])
    assert not (tmp_path / "out" / "longform_00.wav").exists()
    monkeypatch.setattr(longform, "write_wav", write_wav)
    files, _ = longform.make_longform(tmp_path / "out", 600 / 3600, [talk], [], [])
    assert files[0].stat().st_size > 600 * 16000


def test_set_reads_a_yes_no_recipe_field_as_0_or_1() -> None:
    from voicecoach.errors import VoicecoachError
    from voicecoach.lab.training.examples import Recipe
    from voicecoach.lab.training.train import recipe_with

    base = Recipe()
    assert recipe_with(base, ["coach_on_real=1"]).coach_on_real is True
    # "0" is a true string in Python: the field must still come out False
    assert recipe_with(replace(base, coach_on_real=True), ["coach_on_real=0"]).coach_on_real is False
    assert recipe_with(base, ["head=1", "alpha=2"]).head == 1
    assert recipe_with(base, ["alpha=2"]).alpha == 2.0
    assert recipe_with(base, ["speaker_share=0.25"]).speaker_share == 0.25
    assert recipe_with(base, ["head=1", "dilation=4"]).dilation == 4
    # the convolutions' settings only matter (and are only checked) for the TCN head
    assert recipe_with(base, ["dilation=5"]).dilation == 5
    for bad in (["coach_on_real=yes"], ["alpha=big"], ["nosuch=1"], ["synth_engines=1"],
                ["head=2"], ["head=1", "channels=0"], ["head=1", "dilation=0"],
                ["head=1", "dilation=5"], ["speaker_share=0"], ["speaker_share=1.5"],
                ["speaker_share=-0.5"], ["speaker_share=nan"]):
        with pytest.raises(VoicecoachError):
            recipe_with(base, bad)


@needs_real
@pytest.mark.slow
def test_a_tiny_run_with_the_learned_look_ships_it_and_a_run_without_drops_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole second look with ``--look-probe`` on a slice of real clips and fixture talk:
    the same looks are also chosen at the transcript's opening (printed), the probe ships beside
    the weights, pinned by the card, and loads; a run without it takes it away."""
    pytest.importorskip("ctranslate2", reason="the 'verify' extra is not installed")
    from voicecoach.lab.training import talk
    from voicecoach.listening.spotter.look_probe import LOOK_PROBE_FILE, load_look_probe
    from voicecoach.listening.spotter.model import load_model

    synth = tmp_path / "synth"
    rows = []
    for entry in json.loads((FIXTURES / "manifest.json").read_text()):
        if entry["kind"] == "command" and entry["speed"] == "normal":
            exp = entry["expected"][0]
            rows.append({"path": entry["file"], "text": exp["phrase"], "label": exp["phrase"],
                         "kind": "positive", "voice": entry["voice"], "engine": "fixture",
                         "family": entry["voice"]})
    for wav in sorted((FIXTURES / "sentences").glob("*/*.wav")):
        if "stop" not in wav.stem:
            rows.append({"path": str(wav.relative_to(FIXTURES)), "text": wav.stem, "label": OTHER,
                         "kind": "sentence", "voice": wav.parent.name, "engine": "fixture",
                         "family": wav.parent.name})
    for row in rows:
        dest = synth / row["path"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(FIXTURES / row["path"], dest)
    (synth / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    original = talk.fold_files     # a minute of talk per fold, not twenty
    monkeypatch.setattr(talk, "fold_files", lambda work, sources, folds: original(
        work, sources, folds, minutes=1.0))
    argv = ["--speech-commands", str(SPEECH_COMMANDS), "--synth", str(synth),
            "--work", str(tmp_path / "work"), "--out", str(tmp_path / "model"), "--quick",
            "--jobs", "1", "--verify-per-word", "12"]
    flac = tmp_path / "flac"
    (flac / "stop").mkdir(parents=True)
    import soundfile

    for wav in sorted((SPEECH_COMMANDS / "stop").glob("*.wav"))[:4]:
        data, rate = soundfile.read(str(wav), dtype="int16")
        soundfile.write(str(flac / "stop" / (wav.stem + ".flac")), data, rate)
    argv += ["--speech-commands-train", str(flac)]
    assert train.main(argv + ["--look-probe"]) == 0
    out = capsys.readouterr().out
    assert "second look, read at the opening (the same looks): cross-validated" in out
    assert "stop read by the learned look" in out
    model = load_model(tmp_path / "model" / "en_commands.npz")
    assert model.card["verify_anywhere"] == []
    assert model.card["look_probe"]["file"] == LOOK_PROBE_FILE
    assert load_look_probe(model.path, model.card) is not None
    assert "learned look" in (tmp_path / "model" / "MODEL_CARD.md").read_text()
    assert train.main(argv + ["--look-probe", "--no-verify"]) == 2
    assert "cannot go with --no-verify" in capsys.readouterr().err
    assert train.main(argv + ["--second-look-only"]) == 0
    assert not (tmp_path / "model" / LOOK_PROBE_FILE).exists()
    assert "look_probe" not in load_model(tmp_path / "model" / "en_commands.npz").card


def test_the_corpus_digest_names_what_was_trained_on() -> None:
    from voicecoach.lab.training.data import Source

    a = Source(Path("x/stop_1.wav"), "stop", "real", "spk1", 0, "stop")
    b = Source(Path("synth/joe/go.wav"), "go", "positive", "piper-joe", 1)
    c = Source(Path("synth/joe/stop.wav"), "stop", "positive", "piper-joe", 2)
    digest = train.corpus_digest([a, b])
    assert len(digest) == 64 and digest == train.corpus_digest([b, a])   # order does not matter
    assert train.corpus_digest([a, b, c]) != digest                       # one more clip does
    assert train.corpus_digest([a, Source(b.path, "go", "negative", "piper-joe", 1)]) != digest


def test_a_background_clip_the_workers_cannot_read_is_one_error_not_a_hang(
        tmp_path: Path) -> None:
    """The pool's initializer reads the noise clips; one it could not read made the pool start
    worker after worker forever. It is read first, in the caller: one error naming it."""
    from voicecoach.errors import VoicecoachError
    from voicecoach.lab.training import cache
    from voicecoach.lab.training.data import Source
    from voicecoach.lab.training.examples import Recipe

    empty = tmp_path / "_silence_" / "0000000a.wav"
    empty.parent.mkdir()
    empty.write_bytes(b"")
    sources = [Source(empty, "_noise_", "real_noise", "0000000a", 0)]
    with pytest.raises(VoicecoachError) as info:
        cache._run([(tmp_path / "shard.npz", [])], cache._make_shard, sources, Recipe(), 1,
                   "training examples")
    assert str(empty) in info.value.one_line() and "empty" in info.value.one_line()


def _clip(path: Path, rate: int = 16000, channels: int = 1) -> None:
    import wave

    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.zeros(rate * channels // 2, np.int16).tobytes())


def _speakers(locked: bool, n: int = 40) -> list[str]:
    return [s for s in (f"{k:08x}" for k in range(2000)) if is_locked(s) == locked][:n]


def test_a_folder_of_locked_speakers_only_or_without_other_words_is_refused(
        tmp_path: Path) -> None:
    from voicecoach.errors import VoicecoachError

    only_locked = tmp_path / "locked"
    for speaker in _speakers(locked=True, n=4):
        _clip(only_locked / "stop" / f"{speaker}_nohash_0.wav")
        _clip(only_locked / "up" / f"{speaker}_nohash_0.wav")
    with pytest.raises(VoicecoachError) as info:
        real_sources(only_locked, 4)
    assert "locked test speaker" in info.value.one_line()
    from voicecoach.lab.training.data import check_negatives

    no_others = tmp_path / "no_others"
    for speaker in _speakers(locked=False, n=4):
        _clip(no_others / "stop" / f"{speaker}_nohash_0.wav")
    stops_only = real_sources(no_others, 4)   # a set of stops alone is fine beside another...
    with pytest.raises(VoicecoachError) as info:
        check_negatives(stops_only, [no_others])  # ...but not as all the real data there is
    assert "no clips of other words" in info.value.one_line()
    others = tmp_path / "others"
    for speaker in _speakers(locked=False, n=4):
        _clip(others / "up" / f"{speaker}_nohash_0.wav")
        _clip(others / "stop" / f"{speaker}_nohash_1.wav")
    check_negatives(stops_only + real_sources(others, 4), [no_others, others])


@pytest.mark.parametrize(("rate", "channels"), [(8000, 1), (16000, 2), (44100, 2)])
def test_a_wav_clip_not_16k_mono_is_refused_not_resampled(tmp_path: Path, rate: int,
                                                          channels: int) -> None:
    from voicecoach.errors import VoicecoachError
    from voicecoach.lab.training.data import read_audio

    clip = tmp_path / "stop" / "0000_nohash_0.wav"
    _clip(clip, rate, channels)
    with pytest.raises(VoicecoachError) as info:
        read_audio(clip)
    assert str(clip) in info.value.one_line() and "16000 Hz mono" in info.value.one_line()
    _clip(clip)
    assert len(read_audio(clip)) == 8000


def test_a_wrong_real_data_folder_is_said_before_any_synthesis(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
        ) -> None:
    import importlib

    synth = importlib.import_module("voicecoach.lab.training.synth")
    made: list[list[str]] = []
    monkeypatch.setattr(synth, "main", lambda argv: made.append(argv) or 0)
    err = _one_line(capsys, ["--quick", "--speech-commands", str(tmp_path / "nosuch"),
                             "--work", str(tmp_path / "w"), "--no-export"])
    assert "no Speech Commands clips" in err and made == []


def test_a_corpus_with_no_fold_of_talk_and_stops_is_one_error_before_the_verifier_loads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no fold holding both running talk and stops (a tiny corpus: --quick's sample of a
    small set) the second look has no hour of talk to rate false commands by: one error saying
    to add data or --no-verify, raised before the verifier loads or a clip is looked at (it
    was a ZeroDivisionError traceback in the stop's talk cost)."""
    from voicecoach.errors import VoicecoachError
    from voicecoach.grammar import load_grammar
    from voicecoach.lab.training import out_of_fold, talk
    from voicecoach.lab.training.examples import Recipe
    from voicecoach.listening.spotter.decide import Decision
    from voicecoach.listening.spotter.model import load_model

    monkeypatch.setattr(talk, "fold_files", lambda work, sources, folds: [])

    def no_verifier() -> None:
        raise AssertionError("the verifier was loaded")

    monkeypatch.setattr("voicecoach.listening.spotter.verify.load_verifier", no_verifier)
    with pytest.raises(VoicecoachError) as err:
        out_of_fold._second_look([], [], load_grammar("en"), [], Decision.from_card(load_model().decision),
                                 Recipe(), 12, tmp_path)
    line = err.value.one_line()
    assert "no fold has both running talk and stop clips" in line and "--no-verify" in line


def test_a_share_of_the_real_speakers_trains_on_nested_subsets_and_keeps_the_rest() -> None:
    """``speaker_share`` (the learning curve) drops whole real speakers from training, a smaller
    share's speakers inside a larger one's, and never a synthetic voice or a noise clip."""
    from voicecoach.lab.training.data import Source, curve_speaker
    from voicecoach.lab.training.examples import Recipe
    from voicecoach.lab.training.head import training_rows

    sources = [Source(Path(f"s{i}.wav"), "stop", "real", f"spk{i:04d}", i % 4) for i in range(400)]
    sources += [Source(Path("n.wav"), NOISE, "real_noise", "noise0", 0),
                Source(Path("p.wav"), "stop", "positive", "piper-joe", 1)]
    data = {"source": np.array([*range(len(sources)), -1])}   # -1: a noise scene
    kept = {}
    for share in (0.25, 0.5, 1.0):
        keep, weight = training_rows(data, sources, replace(Recipe(), speaker_share=share))
        assert keep[-3:].all(), "a noise clip, a synthetic voice or a noise scene was dropped"
        kept[share] = {sources[i].group for i in np.flatnonzero(keep[:400])}
        assert kept[share] == {s.group for s in sources[:400] if curve_speaker(s.group) < share}
        assert weight.shape == keep.shape
    assert kept[0.25] < kept[0.5] < kept[1.0] and len(kept[1.0]) == 400
    # the hash spreads speakers: about the share is kept, in every fold
    assert 0.4 < len(kept[0.5]) / 400 < 0.6
    assert {int(g[3:]) % 4 for g in kept[0.25]} == {0, 1, 2, 3}
    # a share is a head setting: the features' cache key does not change with it
    assert replace(Recipe(), speaker_share=0.5).features_key() == Recipe().features_key()
