"""The barge-in bench's trials: one held-out take said over the coach in a simulated room,
through the real device loop, with each echo condition (a part of
``python -m voicecoach.lab.bench.barge_in``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from voicecoach.grammar import load_grammar
from voicecoach.lab.bench.barge_takes import (
    DELAYS_S,
    DRIVE,
    NEGATIVE_WORDS,
    NOISE_RMS,
    PLAN,
    RT60S,
    Take,
    _settings,
    load_take,
)
from voicecoach.lab.bench.barge_trace import Tracer, loss_reason
from voicecoach.lab.room import closed_loop

_LOGGER = logging.getLogger(__name__)


def trial(recogniser: Any, renderer: Any, take: Take, i: int, settled: bool, echo: str | None,
          tmp: Path, states: bool = False, verify: str = "auto") -> dict[str, Any]:
    """One trial in room ``i``: ``echo`` None for no echo, else the canceller's name;
    ``states``: every look also records its pooled encoder output (:class:`Tracer`)."""
    from voicecoach.treadmill.ftms import Op
    from voicecoach.treadmill.sim import SimTreadmill

    clip = load_take(take)
    settings = _settings(tmp, echo or "off", verify)
    rt60, delay = RT60S[i % len(RT60S)], DELAYS_S[(i // len(RT60S)) % len(DELAYS_S)]
    sim = SimTreadmill()
    tracer = Tracer(recogniser, states=states)
    common: dict[str, Any] = dict(renderer=renderer, noise_rms=NOISE_RMS, begin_at_once=True,
                                  seed=i + 1, rt60_s=rt60, echo_delay_s=delay,
                                  echo_gain_db=-6.0 if echo else -300.0, aec=echo is not None,
                                  treadmill=sim, treadmill_settings=DRIVE)
    if settled:  # the briefing answered (typed); said over an utterance 20-30 s in
        after = 20.0 + (i % 5) * 2.0
        run = closed_loop(recogniser, settings, PLAN, after + 6.0, typed_answers=True,
                          stop_over_speech=(clip, after), **common)
        placed = clip in run.source.clips
    else:
        clip.at_s = 1.0 + (i % 8) * 0.9 - clip.speech_start_s
        run = closed_loop(recogniser, settings, PLAN, clip.at_s + 4.0, user=False,
                          clips=(clip,), **common)
        placed = True
    tracer.close()
    row: dict[str, Any] = {"word": take.word, "speaker": take.speaker, "file": take.path.name,
                           "settled": settled, "room": i, "echo": echo or "none",
                           "placed": placed, "caught": False, "heard": False,
                           "latency_s": None}
    if not placed:
        return row
    row.update(tracer.around(clip.start_s, clip.end_s))
    row["word_s"] = (round(clip.start_s, 3), round(clip.end_s, 3))
    row["over_speech"] = any(iv.start <= clip.end_s and (iv.end or 1e9) >= clip.start_s
                             for iv in run.speaker.speaking_intervals())
    mine = [d for d in run.loop.gate.decisions
            if clip.start_s - 0.3 <= d.detection.end_s and d.detection.start_s <= clip.end_s + 1.5]
    row["heard"] = any(d.detection.command == clip.command for d in mine)
    if take.word in NEGATIVE_WORDS:  # acted on: a false command over the coach's speech
        row["false"] = sorted({d.detection.command for d in mine if d.accepted})
    if take.word == "stop":
        accepted = [d.detection.emitted_s for d in mine
                    if d.detection.command == "stop" and d.accepted]
        written = [t for t, c in sim.log.of(Op.STOP_PAUSE)
                   if c.value == 1 and accepted and t >= accepted[0] - 1e-9]
        if accepted and written and "stopped" in run.loop.outcomes[:1]:
            row["caught"] = True
            row["latency_s"] = round(written[0] - clip.end_s, 3)
            row["written_s"] = round(written[0], 3)
        row["gate"] = [(d.reason, round(d.detection.start_s, 2), round(d.detection.end_s, 2),
                        round(d.detection.emitted_s, 2), d.detection.verified)
                       for d in mine if d.detection.command == "stop"]
        row["lost_at"] = loss_reason(row, mine, _candidate(recogniser))
    return row


def _candidate(recogniser: Any) -> float:
    """The stop candidate level over the coach's speech (the words are said over it)."""
    decider = getattr(recogniser, "decider", None)
    return 0.0 if decider is None else float(decider.stop_candidate(over=True))


def _at_level(recogniser: Any, over_candidate: float | None) -> float | None:
    """Raise stop candidates over the coach from ``over_candidate`` (None: as the model card
    says); the level the recogniser now raises them from there (None: the card's)."""
    decider = getattr(recogniser, "decider", None)
    if over_candidate is not None and decider is not None:
        decider.over_stop_candidate = over_candidate
    return getattr(decider, "over_stop_candidate", None)


def moments(take: Take, i: int, both: bool) -> tuple[bool, ...]:
    """The moments (settled?) a take is said at: a stop at both (the locked set holds 182
    stops, so 364 stop trials), other words, or every take without ``both``, at one in turn."""
    return (False, True) if both and take.word == "stop" else (i % 2 == 1,)


def run_trials(takes: list[Take], echoes: tuple[str | None, ...], tmp: Path,
               progress: bool = True, log: Path | None = None,
               both_moments: bool = True, states: bool = False,
               over_candidate: float | None = None,
               verify: str = "auto") -> list[dict[str, Any]]:
    """Every take in its own room (a stop cold and settled, other words at one moment), once
    per echo condition (``states``: see :func:`trial`; ``over_candidate``: the stop candidate
    level over the coach's speech, for making an over-the-coach look's training data; each
    row records it)."""
    from voicecoach.listening.engines import make_recogniser
    from voicecoach.speaking.render import EspeakNgRenderer

    base = _settings(tmp, "off", verify)
    recogniser = make_recogniser(base.speech, load_grammar("en"), announce=lambda line: None)
    renderer = EspeakNgRenderer(base.speech.voice, base.speech.rate)
    level = _at_level(recogniser, over_candidate)
    rows = []
    # a word that must fire nothing is said with the echo only (no echo has nothing to compare)
    jobs = [(take, i, settled, echo) for i, take in enumerate(takes)
            for settled in moments(take, i, both_moments) for echo in echoes
            if echo is not None or take.word not in NEGATIVE_WORDS]
    bar = _bar(len(jobs), "barge-in trials", progress)
    for take, i, settled, echo in jobs:
        rows.append(trial(recogniser, renderer, take, i, settled, echo, tmp, states, verify))
        rows[-1]["over_candidate"] = level
        rows[-1]["verify"] = verify
        if log is not None:  # as it goes: a long run stopped early keeps its trials
            with log.open("a", encoding="utf-8") as out:
                out.write(json.dumps(rows[-1]) + "\n")
        bar.update(1)
    bar.close()
    return rows


def _bar(total: int, desc: str, progress: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="trial", disable=not progress or None,
                leave=False)
