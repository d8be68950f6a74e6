"""The barge-in bench's cost child: the device loop listening idle, CPU per audio second and
peak RSS, in a process of its own (``python -m voicecoach.lab.bench.barge_in --cost-child``)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from voicecoach.grammar import load_grammar


def device_cost_child(canceller: str, seconds: float, verify: str = "auto") -> dict[str, Any]:
    """In this (child) process: the device loop listening idle to belt noise with the
    canceller on, as on the device: CPU per audio second (the simulated room's own CPU, timed
    alone over the same audio, taken off) and peak RSS; ``verify`` "off": without the
    second look's Whisper (its load is most of the RSS). ``peak_rss_mb`` is the whole run's,
    start-up included; ``listening_rss_mb`` the peak from the first audio on (the high-water
    mark reset once the recogniser is built: loading Whisper's float16 weights into int8 is a
    transient of about 80 MB that listening never reaches again), or None where Linux does not
    let the mark be reset."""
    tmp = Path(tempfile.mkdtemp(prefix="vc-barge-"))
    from voicecoach.lab.bench.barge_in import NOISE_RMS, PLAN, _settings
    from voicecoach.lab.room import ClosedLoopSource, EchoWavSpeaker, closed_loop
    from voicecoach.listening.engines import make_recogniser
    from voicecoach.speaking.render import EspeakNgRenderer

    settings = _settings(tmp, canceller, verify)
    recogniser = make_recogniser(settings.speech, load_grammar("en"), announce=lambda x: None)
    renderer = EspeakNgRenderer(settings.speech.voice, settings.speech.rate)
    peak_at_start = _peak_rss_kb()
    reset = reset_peak_rss()
    cpu = time.process_time()
    closed_loop(recogniser, settings, PLAN, seconds, renderer=renderer, noise_rms=NOISE_RMS,
                user=False, aec=canceller != "off", sessions=None)
    used = time.process_time() - cpu
    cpu = time.process_time()  # the room alone (belt noise, no coach speech while idle)
    room = ClosedLoopSource(EchoWavSpeaker(renderer), seconds, noise_rms=NOISE_RMS)
    for _ in room.chunks():
        pass
    room_cpu = time.process_time() - cpu
    listening = _peak_rss_kb() if reset else None
    return {"canceller": canceller, "verify": verify,
            "cpu_ratio": round((used - room_cpu) / seconds, 4),
            "room_cpu_ratio": round(room_cpu / seconds, 4),
            "peak_rss_mb": round(max(peak_at_start, _peak_rss_kb()) / 1024, 1),
            "listening_rss_mb": None if listening is None else round(listening / 1024, 1)}


def reset_peak_rss() -> bool:
    """Reset this process's RSS high-water mark (VmHWM) to its current RSS (Linux 4.0 and
    later: ``5`` written to ``/proc/self/clear_refs``); False where it cannot be."""
    try:
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")
    except OSError:
        return False
    return True


def _peak_rss_kb() -> float:
    """This process's peak RSS: VmHWM (its own memory map's high-water mark). ru_maxrss is
    not it in a child: Linux carries the parent's high-water mark across fork and exec (the
    cost child of a run whose closed loop had grown to 370 MB said 370 MB, alone 97 MB)."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def device_cost(canceller: str, seconds: float, verify: str = "auto") -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "voicecoach.lab.bench.barge_in", "--cost-child",
                           canceller, str(seconds), verify], capture_output=True, text=True,
                          check=False, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode != 0:
        return {"canceller": canceller, "verify": verify, "error": proc.stderr.strip()[-300:]}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))
