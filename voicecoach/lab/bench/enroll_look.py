"""The enrollment bench with the second look: the real recogniser (decider, enrollment, verifier)
over every clip, its front end the clip's cached embeddings, identical looks computed once,
under both enrollment rules (a part of ``python -m voicecoach.lab.bench.enroll --verify``)."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import numpy as np

from voicecoach.errors import VoicecoachError
from voicecoach.grammar import Grammar
from voicecoach.lab.training.data import SILENCE
from voicecoach.listening.spotter.calibrate import TAIL_S
from voicecoach.listening.spotter.decide import STOP
from voicecoach.listening.spotter.enroll import EnrolledScorer
from voicecoach.listening.spotter.model import SpotterModel
from voicecoach.listening.spotter.voice import VoiceProfile

_LOGGER = logging.getLogger(__name__)


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
