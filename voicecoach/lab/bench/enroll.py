"""Benchmark of enrollment, speaker by speaker, on the locked test speakers of ../shared.

    python -m voicecoach.lab.bench.enroll [--speakers N] [--work DIR] [--json FILE]

Only the locked test speakers (``training.data.is_locked``) of ../shared/speech_commands and
../shared/speech_commands_train are used: the shipped head never trained on them. Every locked
speaker with at least 3 clips of stop, go, yes or no is enrolled for each such word with
3 of them (2 when only 3 exist), through the same code as ``voicecoach enroll --from``
(checks, embedding, adaptation). Then, with the run-time scorer and the run-time decider
stepping over each clip as the engine hears it (clip, then 0.48 s of silence):
- recall on the speaker's other clips of the enrolled words, generic head alone vs with the
  speaker's enrollment (and how many the generic head already heard);
- false accepts of the speaker's enrollment on their own non-command words, on every other
  speaker's clips (a command fired that the clip is not) and on the noise clips, against the
  generic head alone on the same clips;
- stop recall of the speakers who are not enrolled for stop, with every enrollment loaded at
  once (must be unchanged: enrollment only adds);
- adaptation CPU time (one core) and the size of each stored enrollment.

With ``--verify`` the same figures are measured again as a user with the verifier installed
gets them: the real recogniser (decider, enrollment, second look) runs over every clip,
speaker by speaker, its front end replaced by the clip's cached embeddings (the same numbers:
``tests/test_enroll_bench.py``) and identical looks computed once; "generic" is then the
spotter with its second look, and enrollment is measured under both rules, before session 17
(an enrolled voice's detections acted on unverified) and now (its commands other than stop
through the second look, ``SpotterRecogniser.verify_enrolled``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voicecoach.config import number_in
from voicecoach.errors import VoicecoachError, report
from voicecoach.grammar import Grammar, load_grammar
from voicecoach.lab.training.data import (
    SILENCE,
    add_real_data_options,
    locked_clips,
    read_audio,
    speech_commands_dir,
    speech_commands_train_dir,
)
from voicecoach.listening.spotter.calibrate import (
    FLOOR,
    MARGIN,
    STOP_MARGIN,
    TAIL_S,
    EmbeddedTake,
    adapt,
    embed_take,
    noise_windows,
    odd_takes,
)
from voicecoach.listening.spotter.decide import STOP, Decider, Decision
from voicecoach.listening.spotter.enroll import EnrolledScorer
from voicecoach.listening.spotter.features import STEP_S, EmbeddingFrontEnd
from voicecoach.listening.spotter.model import SpotterModel, load_model, phrase_hash, phrases_of
from voicecoach.listening.spotter.profiles import save_profile
from voicecoach.listening.spotter.takes import TakeRejected, check_take
from voicecoach.listening.spotter.voice import VoiceProfile, unit_windows

_LOGGER = logging.getLogger(__name__)

WORD_COMMAND = {"stop": "stop", "go": "resume", "yes": "yes", "no": "no"}
STATE_OF = {"stop": "backward", "resume": "paused", "yes": "briefing", "no": "briefing"}
DEFAULT_WORK = Path.home() / ".cache" / "voicecoach" / "enroll-bench"


def clip_list(root: Path, per_folder: int | None = None, train: Path | None = None
              ) -> list[tuple[str, str, Path]]:
    """(word folder, speaker, path) of every clip of a locked speaker (and the locked noise
    clips) in ``root`` and in ``train`` (default ../shared/speech_commands_train; the first
    ``per_folder`` of each folder)."""
    out = []
    for base in (root, speech_commands_train_dir(train)):
        if not base.is_dir():
            continue
        taken: dict[str, int] = {}
        for path, folder, speaker in locked_clips([base]):
            if per_folder is not None and taken.get(folder, 0) >= per_folder:
                continue
            taken[folder] = taken.get(folder, 0) + 1
            out.append((folder, speaker if folder != SILENCE else "", path))
    return out


def embed_all(clips: Sequence[tuple[str, str, Path]], work: Path, fe: EmbeddingFrontEnd
              ) -> list[dict[str, Any]]:
    """Embeddings of each clip + 0.48 s of silence (what the engine hears), cached in ``work``."""
    cache = work / "embeddings.npz"
    names = [f"{w}/{p.name}" for w, _, p in clips]
    have: dict[str, Any] = {}
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as npz:
            have = {k: np.asarray(npz[k]) for k in npz.files}
    out, added = [], 0
    for (word, speaker, path), name in zip(clips, names, strict=True):
        samples = read_audio(path)
        key = f"{path.parent.parent.name}__{name.replace('/', '__')}"
        if key not in have:
            audio = np.concatenate([samples, np.zeros(int(TAIL_S * 16000), np.int16)])
            have[key] = fe.embed(audio).astype(np.float32)
            added += 1
        out.append({"word": word, "speaker": speaker, "path": path, "samples": samples,
                    "emb": have[key]})
    if added:
        work.mkdir(parents=True, exist_ok=True)
        np.savez(work / "embeddings.tmp.npz", **have)
        (work / "embeddings.tmp.npz").replace(cache)
    return out


def generic_fired(decider: Decider, probs: np.ndarray) -> list[list[str]]:
    """The run-time decider over one clip: the commands fired at each step."""
    decider.reset()
    return [[f.command for f in decider.step(p, (j + 1) * STEP_S)] for j, p in enumerate(probs)]


def enrolled_fired(scorer: EnrolledScorer, windows: np.ndarray, generic: list[list[str]]
                   ) -> tuple[list[str], list[str]]:
    """The run-time scorer over one clip: (added detections, generic ones passed on)."""
    scorer.reset()
    added: list[str] = []
    passed: list[str] = []
    best_all = scorer.scores_many(windows)
    for j, g in enumerate(generic):
        hits, keep = scorer.decide(best_all[j], (j + 1) * STEP_S, g)
        added += [h.command for h in hits]
        passed += keep
    return added, passed


def run(root: Path, work: Path, max_speakers: int | None, per_folder: int | None = None,
        verify: bool = False, train: Path | None = None) -> dict[str, Any]:
    grammar = load_grammar("en")
    model = load_model()
    model.check_grammar(grammar)
    phr = phrases_of(grammar)
    ph = phrase_hash(phr)
    decision = Decision.from_card(model.decision)
    with EmbeddingFrontEnd() as fe:
        silence = fe.warm_embeddings()
        clips = embed_all(clip_list(root, per_folder, train), work, fe)
        noise = noise_windows(fe, model, silence)
    w = model.window
    for clip in clips:
        emb = clip["emb"]
        seq = np.concatenate([silence[-(w - 1):], emb])
        idx = np.arange(len(emb))[:, None] + np.arange(w)[None, :]
        clip["probs"] = model.probabilities(seq[idx])
        clip["windows"] = unit_windows(model, emb, silence)
        clip["command"] = WORD_COMMAND.get(clip["word"], "")
        state = STATE_OF.get(clip["command"], "backward")
        dec = Decider(model.labels, phr, decision)
        dec.set_commands(grammar.commands_for(state))
        clip["state"] = state
        clip["generic"] = generic_fired(dec, clip["probs"])
    by_speaker: dict[str, dict[str, list[int]]] = {}
    for i, clip in enumerate(clips):
        if clip["command"]:
            by_speaker.setdefault(clip["speaker"], {}).setdefault(clip["word"], []).append(i)
    enrolled = sorted(s for s, words in by_speaker.items()
                      if any(len(v) >= 3 for v in words.values()))
    if max_speakers:
        enrolled = enrolled[:max_speakers]
    rows = []
    profiles = []
    held_of: dict[str, set[int]] = {}
    store = Path(tempfile.mkdtemp(prefix="enroll-bench-"))
    for speaker in enrolled:
        takes: list[EmbeddedTake] = []
        held: set[int] = set()
        rejected = 0
        for word, idxs in sorted(by_speaker[speaker].items()):
            if len(idxs) < 3:
                continue
            n = 3 if len(idxs) >= 4 else 2
            for i in idxs[:n]:
                clip = clips[i]
                held.add(i)
                try:
                    bounds = check_take(clip["samples"])
                except TakeRejected:
                    rejected += 1
                    continue
                takes.append(embed_take(fe_free(clip, model, silence), model, silence,
                                          clip["samples"], clip["command"], word, bounds))
        # --from refuses these and the spoken flow asks again; a simulation cannot ask again,
        # so they are counted and kept (pessimistic: dropping them would bias the recall)
        odd = len(odd_takes(takes))
        if not takes:
            continue
        t0 = time.process_time()
        profile = adapt(speaker, takes, model, noise, ph)
        adapt_s = time.process_time() - t0
        size = save_profile(store, profile).stat().st_size
        profiles.append(profile)
        held_of[speaker] = held
        rows.append(score_speaker(speaker, profile, clips, held, grammar, model, adapt_s, size,
                                  rejected))
        rows[-1]["odd_takes"] = odd
        _LOGGER.info("%s", rows[-1])
    if not rows:
        raise VoicecoachError("no locked speaker in these clips has 3 or more clips of stop, go, "
                              "yes or no: nobody to enroll",
                              "give more clips (a larger --per-folder, or none) or the whole sets")
    verified = (looked_through(clips, profiles, rows, held_of, grammar, model, silence)
                if verify else {})
    # every enrollment at once: speakers not enrolled for stop keep their stop recall
    everyone = EnrolledScorer(profiles, model)
    stop_for = {p.user for p in profiles if STOP in p.commands}
    before = after = n = 0
    for clip in clips:
        if clip["command"] == STOP and clip["speaker"] not in stop_for:
            everyone.set_commands(grammar.commands_for(clip["state"]))
            added, passed = enrolled_fired(everyone, clip["windows"], clip["generic"])
            g = any(STOP in c for c in clip["generic"])
            before += g
            after += (STOP in passed) or (STOP in added)
            n += 1
    return {"speakers": rows, "not_enrolled_stop": {"clips": n, "before": before,
                                                    "after": after},
            "decision": {"stop_threshold": decision.stop_threshold,
                         "threshold": decision.threshold},
            "model": str(model.path), "floor": FLOOR, "margin": MARGIN,
            "stop_margin": STOP_MARGIN, **({"verified": verified} if verify else {})}


RULES = {"unverified": "enrollment acted on unverified (before session 17)",
         "looked": "enrollment's commands other than stop through the look (now)"}


class CachedFrontEnd:
    """The recogniser's front end for the bench: the current clip's cached embeddings, all at
    once when its audio is fed whole (what ``EmbeddingFrontEnd.push`` gives after ``reset``)."""

    def __init__(self, silence: np.ndarray) -> None:
        self.silence = silence
        self.emb = np.zeros((0, silence.shape[1]), np.float32)

    def reset(self) -> None:
        pass

    def warm_embeddings(self) -> np.ndarray:
        return self.silence

    def push(self, samples: np.ndarray) -> np.ndarray:
        return self.emb

    def close(self) -> None:
        pass


class SameLooks:
    """The verifier, with a look at the same audio for the same question computed once (every
    enrolled speaker's recogniser looks at the same clips)."""

    def __init__(self, verifier: Any) -> None:
        self.verifier = verifier
        self.memo: dict[tuple[bytes, tuple[tuple[str, tuple[str, ...]], ...], frozenset[str]],
                        dict[str, float]] = {}
        self.looks = 0

    def scores(self, audio: np.ndarray, phrases: Any, anywhere: Any = (),
               opening: dict[str, float] | None = None,
               states: list[np.ndarray] | None = None) -> dict[str, float]:
        if opening is not None or states is not None:
            self.looks += 1
            return dict(self.verifier.scores(audio, phrases, anywhere=anywhere, opening=opening,
                                             states=states))
        key = (hashlib.sha1(np.asarray(audio, np.float32).tobytes()).digest(),
               tuple(sorted((c, tuple(p)) for c, p in phrases.items())), frozenset(anywhere))
        if key not in self.memo:
            self.looks += 1
            self.memo[key] = dict(self.verifier.scores(audio, phrases, anywhere=anywhere))
        return dict(self.memo[key])

    def close(self) -> None:
        self.verifier.close()


def heard_by(rec: Any, fe: CachedFrontEnd, clip: dict[str, Any], grammar: Grammar) -> list[str]:
    """The commands the recogniser emits over one clip (clip, then the bench's silence) in its
    state, fed whole: the engine advances in 80 ms steps of audio time, whatever the chunk."""
    from voicecoach.audio.chunk import AudioChunk

    fe.emb = clip["emb"]
    rec.reset()
    rec.set_commands(grammar.commands_for(clip["state"]))
    audio = np.concatenate([clip["samples"], np.zeros(int(TAIL_S * 16000), np.int16)])
    return [d.command for d in rec.accept(AudioChunk(audio.astype("<i2").tobytes(), 0.0))]


def looked_through(clips: list[dict[str, Any]], profiles: list[VoiceProfile],
                   rows: list[dict[str, Any]], held_of: dict[str, set[int]], grammar: Grammar,
                   model: SpotterModel, silence: np.ndarray) -> dict[str, dict[str, Any]]:
    """The figures of :func:`score_speaker` and the not-enrolled stop recall, through the real
    recogniser with the second look, under both enrollment rules (:data:`RULES`)."""
    from voicecoach.listening.spotter.engine import SpotterRecogniser
    from voicecoach.listening.spotter.verify import load_verifier

    looks = SameLooks(load_verifier())
    fe = CachedFrontEnd(silence)

    def recogniser(enrolled: EnrolledScorer, rule: str) -> SpotterRecogniser:
        rec = SpotterRecogniser(grammar, model=model, front_end=fe,  # type: ignore[arg-type]
                                enrolled=enrolled, verifier=looks)  # type: ignore[arg-type]
        if rec.verifier is None:
            raise VoicecoachError(f"the model card turns the second look off ({rec.look_off})",
                                  "use a model whose card has the verifier's thresholds")
        rec.verify_enrolled = rule == "looked"
        return rec

    generic = recogniser(EnrolledScorer([], model), "looked")
    for clip in clips:
        clip["looked"] = heard_by(generic, fe, clip, grammar)
    _LOGGER.info("generic with the look: %d looks", looks.looks)
    out: dict[str, dict[str, Any]] = {}
    by_user = {p.user: p for p in profiles}
    for rule in RULES:
        part_rows = []
        for row in rows:
            profile = by_user[row["speaker"]]
            rec = recogniser(EnrolledScorer([profile], model), rule)
            part_rows.append(score_heard(row["speaker"], profile, clips, held_of[row["speaker"]],
                                         lambda c, r=rec: heard_by(r, fe, c, grammar)))
        everyone = recogniser(EnrolledScorer(profiles, model), rule)
        stop_for = {p.user for p in profiles if STOP in p.commands}
        before = after = n = 0
        for clip in clips:
            if clip["command"] == STOP and clip["speaker"] not in stop_for:
                before += STOP in clip["looked"]
                after += STOP in heard_by(everyone, fe, clip, grammar)
                n += 1
        out[rule] = {"speakers": part_rows,
                     "not_enrolled_stop": {"clips": n, "before": before, "after": after}}
        _LOGGER.info("%s: %d looks so far", rule, looks.looks)
    for rule_rows in out.values():
        for r, row in zip(rule_rows["speakers"], rows, strict=True):
            r.update({k: row[k] for k in ("adapt_cpu_s", "bytes", "rejected_takes", "odd_takes")})
    return out


def score_heard(speaker: str, profile: VoiceProfile, clips: list[dict[str, Any]],
                held: set[int], heard: Any) -> dict[str, Any]:
    """:func:`score_speaker`'s counts with ``heard(clip)`` (the recogniser with the speaker's
    enrollment) against each clip's ``looked`` (the same recogniser without it)."""
    rec: dict[str, list[int]] = {}
    own_fa, other_fa, noise_fa = [0, 0, 0], [0, 0, 0], [0, 0, 0]
    for i, clip in enumerate(clips):
        if i in held:
            continue
        truth = clip["command"]
        mine = clip["speaker"] == speaker
        if mine and truth and truth not in profile.commands:
            continue   # the speaker's own command word that was not enrolled
        generic = clip["looked"]
        after = heard(clip)
        if mine and truth in profile.commands:
            rec.setdefault(clip["word"], []).append(2 * (truth in generic) + (truth in after))
            continue
        box = noise_fa if clip["word"] == SILENCE else own_fa if mine else other_fa
        box[0] += 1
        box[1] += any(c != truth for c in generic)
        box[2] += any(c != truth for c in after)
    recall = {w: {"clips": len(v), "generic": sum(x >= 2 for x in v),
                  "enrolled": sum(x % 2 == 1 for x in v)} for w, v in rec.items()}
    return {"speaker": speaker, "words": sorted(profile.commands), "recall": recall,
            "own_fa": own_fa, "other_fa": other_fa, "noise_fa": noise_fa}


def fe_free(clip: dict[str, Any], model: SpotterModel, silence: np.ndarray) -> Any:
    """A stand-in front end that returns the cached embeddings of this clip (same numbers)."""
    class Cached:
        def embed(self, audio: np.ndarray) -> np.ndarray:
            return np.asarray(clip["emb"])
    return Cached()


def score_speaker(speaker: str, profile: VoiceProfile, clips: list[dict[str, Any]],
                  held: set[int], grammar: Grammar, model: SpotterModel, adapt_s: float,
                  size: int, rejected: int) -> dict[str, Any]:
    scorer = EnrolledScorer([profile], model)
    rec: dict[str, list[int]] = {}
    own_fa = [0, 0, 0]     # clips, generic FA, FA with enrollment
    other_fa = [0, 0, 0]
    noise_fa = [0, 0, 0]
    for i, clip in enumerate(clips):
        if i in held:
            continue
        scorer.set_commands(grammar.commands_for(clip["state"]))
        added, passed = enrolled_fired(scorer, clip["windows"], clip["generic"])
        generic = [c for step in clip["generic"] for c in step]
        truth = clip["command"]
        mine = clip["speaker"] == speaker
        if mine and truth in profile.commands:
            g = truth in generic
            a = truth in passed or truth in added
            rec.setdefault(clip["word"], []).append(2 * g + a)
            continue
        wrong_before = any(c != truth for c in generic)
        wrong_after = any(c != truth for c in passed + added)
        box = noise_fa if clip["word"] == SILENCE else own_fa if mine else other_fa
        if mine and truth:
            continue   # the speaker's own command word that was not enrolled
        box[0] += 1
        box[1] += wrong_before
        box[2] += wrong_after
    recall = {w: {"clips": len(v), "generic": sum(x >= 2 for x in v),
                  "enrolled": sum(x % 2 == 1 for x in v)} for w, v in rec.items()}
    return {"speaker": speaker, "words": sorted(profile.commands), "recall": recall,
            "own_fa": own_fa, "other_fa": other_fa, "noise_fa": noise_fa,
            "adapt_cpu_s": round(adapt_s, 4), "bytes": size, "rejected_takes": rejected,
            "thresholds": {c: v.threshold for c, v in profile.commands.items()}}


def summary(result: dict[str, Any]) -> str:
    rows = result["speakers"]
    parts = []
    for word in ("stop", "go", "yes", "no"):
        r = [row["recall"][word] for row in rows if word in row["recall"]]
        clips = sum(x["clips"] for x in r)
        if not clips:
            continue
        g = sum(x["generic"] for x in r)
        a = sum(x["enrolled"] for x in r)
        per = [x["enrolled"] / x["clips"] for x in r if x["clips"]]
        parts.append(f"{word} {g / clips:.3f}->{a / clips:.3f} ({a}/{clips}, speakers at 1.0: "
                     f"{sum(p >= 1.0 for p in per)}/{len(per)}, min {min(per):.2f})")

    def fa(key: str) -> str:
        n = sum(row[key][0] for row in rows)
        b = sum(row[key][1] for row in rows)
        a = sum(row[key][2] for row in rows)
        return f"{100 * b / max(n, 1):.2f}%->{100 * a / max(n, 1):.2f}% ({b}->{a}/{n})"

    ne = result["not_enrolled_stop"]
    cpu = [row["adapt_cpu_s"] for row in rows]
    size = [row["bytes"] for row in rows]
    return (f"enrolled speakers {len(rows)}: recall generic->enrolled {'; '.join(parts)} | "
            f"FA own words {fa('own_fa')} | FA other speakers {fa('other_fa')} | FA noise "
            f"{fa('noise_fa')} | stop not enrolled {ne['before']}->{ne['after']}/{ne['clips']} "
            f"| takes refused by the checks {sum(r['rejected_takes'] for r in rows)}, odd "
            f"{sum(r['odd_takes'] for r in rows)} (kept) "
            f"| adapt CPU median {statistics.median(cpu) * 1000:.1f} ms max "
            f"{max(cpu) * 1000:.1f} ms | stored median {statistics.median(size) / 1024:.0f} KB")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voicecoach.lab.bench.enroll",
                                     description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_real_data_options(parser)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="embedding cache")
    parser.add_argument("--speakers", type=number_in(1, 1_000_000, whole=True), default=None,
                        help="only the first N speakers")
    parser.add_argument("--per-folder", type=number_in(1, 1_000_000, whole=True), default=None,
                        help="only the first N clips of each folder (a quick look)")
    parser.add_argument("--verify", action="store_true",
                        help="also measure through the real recogniser with the second look "
                             "(Whisper tiny.en: the verify extra), both enrollment rules")
    parser.add_argument("--json", type=Path, default=None, help="write the full result here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    root = speech_commands_dir(args.speech_commands)
    try:
        if not root.is_dir():
            raise VoicecoachError(f"no Speech Commands clips at {root}",
                                  "pass --speech-commands DIR")
        if args.json is not None and not args.json.parent.is_dir():
            raise VoicecoachError(f"--json {args.json}: the folder {args.json.parent} does not "
                                  "exist", "create it first (checked before the run, so that "
                                  "the results are not lost at its end)")
        train = speech_commands_train_dir(args.speech_commands_train)
        if not train.is_dir():
            print(f"voicecoach: warning: no second set of clips at {train}: the figures are of "
                  f"{root.name}'s locked speakers only; pass --speech-commands-train DIR",
                  file=sys.stderr)
        result = run(root, args.work, args.speakers, args.per_folder, args.verify, train)
    except VoicecoachError as exc:
        return report(exc)
    for row in result["speakers"]:
        rec = " ".join(f"{w} {v['generic']}->{v['enrolled']}/{v['clips']}"
                       for w, v in sorted(row["recall"].items()))
        print(f"speaker {row['speaker']}: {rec} | FA own {row['own_fa'][1]}->{row['own_fa'][2]}"
              f"/{row['own_fa'][0]} other {row['other_fa'][1]}->{row['other_fa'][2]}"
              f"/{row['other_fa'][0]} noise {row['noise_fa'][1]}->{row['noise_fa'][2]}"
              f"/{row['noise_fa'][0]} | thresholds "
              + " ".join(f"{c} {t:.2f}" for c, t in sorted(row["thresholds"].items())))
    line = summary(result)
    print(line)
    for rule, part in result.get("verified", {}).items():
        print(f"with the second look, {RULES[rule]}: {summary(part)}")
        line += f" || with the second look, {RULES[rule]}: {summary(part)}"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the benchmark {peak:.0f} MB (one process, one core)")
    if args.json:
        args.json.write_text(json.dumps({**result, "summary": line}, indent=1) + "\n",
                             encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
