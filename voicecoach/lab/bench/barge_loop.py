"""The barge-in bench's closed loop: minutes of the coach talking with nobody else speaking,
counting the commands heard from its own voice (a part of ``python -m voicecoach.lab.bench.barge_in``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from voicecoach.grammar import load_grammar
from voicecoach.lab.bench.barge_takes import NOISE_RMS, _settings
from voicecoach.lab.bench.barge_trace import Tracer
from voicecoach.lab.bench.barge_trials import _at_level
from voicecoach.lab.room import closed_loop
from voicecoach.speaking.speaker import SpeechInterval
from voicecoach.workout.plan import COOLDOWN, WARMUP, Phase, Plan

_LOGGER = logging.getLogger(__name__)

#: ``--loop-talk``: the coach's cue pacing for a closed loop in which it talks nearly all the
#: time (a cue after every second of quiet, none held back as recent: ``cue_no_repeat`` 0),
#: so that "no command from the coach's own voice" is measured over its speech, not its silences.
TALKATIVE_CUE_S, TALKATIVE_GAP_S = 1.0, 1.0


#: The closed loop's seed: the benchmark's own loop (its figure); ``--loop-states`` (training
#: data) must use another, so that no look the figure counts was trained on.
LOOP_SEED = 30


def closed_loop_session(canceller: str, minutes: float, tmp: Path,
                        talkative: bool = False, *, seed: int = LOOP_SEED,
                        states: Path | None = None,
                        over_candidate: float | None = None,
                        verify: str = "auto") -> dict[str, Any]:
    """``minutes`` of a closed loop (a session begun at once, the user's answers typed, the
    coach's echo in a RT60 0.45 s room, belt noise): commands from the coach's own voice (or
    noise), and what the gate dropped; ``talkative``: the coach paced by :data:`TALKATIVE_CUE_S`.
    ``states``: every look over the coach (all at its own echo: nobody else speaks) with its
    pooled encoder output is written there as one JSON line, training data for
    ``lab.training.over_probe --echo``; ``over_candidate`` as for :func:`run_trials`."""
    from voicecoach.listening.engines import make_recogniser
    from voicecoach.speaking.render import EspeakNgRenderer

    settings = _settings(tmp, canceller, verify)
    if talkative:
        settings = replace(settings, coach=replace(settings.coach, cue_interval_s=TALKATIVE_CUE_S,
                                                   min_gap_s=TALKATIVE_GAP_S, cue_no_repeat=0))
    recogniser = make_recogniser(settings.speech, load_grammar("en"), announce=lambda x: None)
    level = _at_level(recogniser, over_candidate)
    tracer = Tracer(recogniser, states=True) if states is not None else None
    renderer = EspeakNgRenderer(settings.speech.voice, settings.speech.rate)
    total = minutes * 60.0
    plan = Plan("bench-closed-loop", (replace(WARMUP, duration_s=total * 0.2),
                                      Phase("backward", total * 0.6, 0.8, 0.6, 1.2, 0.0, 1.0,
                                            "technique"),
                                      replace(COOLDOWN, duration_s=total * 0.2)))
    # the session begins at once and the answers are typed: the coach talks through its whole
    # plan whatever the engine makes of a fixture voice's "start" (unheard, the coach was silent)
    run = closed_loop(recogniser, settings, plan, total, renderer=renderer, noise_rms=NOISE_RMS,
                      voices=("joe",), seed=seed, rt60_s=0.45, echo_delay_s=0.04,
                      aec=canceller != "off", sessions=None, begin_at_once=True,
                      typed_answers=True)
    if tracer is not None and states is not None:
        tracer.close()
        row = {"loop": True, "seed": seed, "canceller": canceller, "audio_s": total,
               "over_candidate": level,
               "echo_looks": [x for x in tracer.looks if x.get("over")]}
        states.write_text(json.dumps(row) + "\n", encoding="utf-8")
    intervals = run.speaker.speaking_intervals()
    return {"canceller": canceller, "audio_s": total, "talkative": talkative, "verify": verify,
            "echo": [(e.command, round(e.t, 1)) for e in run.echo_commands()],
            "echo_said": [said_before(intervals, e.t) for e in run.echo_commands()],
            "suppressed": len(run.loop.gate.suppressed), "outcomes": run.loop.outcomes,
            "coach_speech_s": round(sum((iv.end or total) - iv.start
                                        for iv in run.speaker.speaking_intervals()), 1)}


def said_before(intervals: Sequence[SpeechInterval], t: float, within_s: float = 2.0) -> list[str]:
    """What the coach was saying at ``t`` or stopped saying less than ``within_s`` before it (the
    words a command from its own voice was heard in), oldest first; not what it began at ``t``
    (its answer to that command)."""
    return [iv.text for iv in intervals
            if iv.start < t and (iv.end is None or iv.end >= t - within_s)]
