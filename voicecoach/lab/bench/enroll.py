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

The bench in parts: the clips and the scoring with the spotter alone (enroll_score.py), the
figures with the second look (enroll_look.py); here, the run, its summary and the command line.
"""

from __future__ import annotations

import argparse
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
from voicecoach.grammar import load_grammar
from voicecoach.lab.bench.enroll_look import RULES, CachedFrontEnd, heard_by, looked_through
from voicecoach.lab.bench.enroll_score import (
    clip_list,
    embed_all,
    enrolled_fired,
    fe_free,
    generic_fired,
    score_speaker,
)
from voicecoach.lab.training.data import add_real_data_options, speech_commands_dir, speech_commands_train_dir
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
from voicecoach.listening.spotter.features import EmbeddingFrontEnd
from voicecoach.listening.spotter.model import load_model, phrase_hash, phrases_of
from voicecoach.listening.spotter.profiles import save_profile
from voicecoach.listening.spotter.takes import TakeRejected, check_take
from voicecoach.listening.spotter.voice import unit_windows

_LOGGER = logging.getLogger(__name__)

#: Importable from here as before the bench was split (the tests).
__all__ = ["CachedFrontEnd", "TAIL_S", "heard_by", "main", "run", "summary"]

WORD_COMMAND = {"stop": "stop", "go": "resume", "yes": "yes", "no": "no"}
STATE_OF = {"stop": "backward", "resume": "paused", "yes": "briefing", "no": "briefing"}
DEFAULT_WORK = Path.home() / ".cache" / "voicecoach" / "enroll-bench"

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
