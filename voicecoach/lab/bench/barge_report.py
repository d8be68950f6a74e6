"""The barge-in bench's summary: stops caught with each echo against no echo, latency, other
words heard, the closed loops and the cost, as lines (a part of
``python -m voicecoach.lab.bench.barge_in``)."""

from __future__ import annotations

import logging
import statistics
from typing import Any

from voicecoach.lab.bench.barge_takes import NEGATIVE_WORDS

_LOGGER = logging.getLogger(__name__)


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per echo condition: stops caught (cold / settled), latency, other words heard."""
    out: dict[str, Any] = {}
    for echo in sorted({r["echo"] for r in rows}):
        mine = [r for r in rows if r["echo"] == echo and r["placed"]]
        stops = [r for r in mine if r["word"] == "stop"]
        lat = [r["latency_s"] for r in stops if r["caught"]]
        others = [r for r in mine if r["word"] != "stop"]
        out[echo] = {
            "stops": len(stops), "caught": sum(r["caught"] for r in stops),
            "cold": (sum(r["caught"] for r in stops if not r["settled"]),
                     sum(not r["settled"] for r in stops)),
            "settled": (sum(r["caught"] for r in stops if r["settled"]),
                        sum(r["settled"] for r in stops)),
            "latency_median_s": round(statistics.median(lat), 3) if lat else None,
            "latency_max_s": round(max(lat), 3) if lat else None,
            "others_heard": (sum(r["heard"] for r in others if r["word"] not in NEGATIVE_WORDS),
                             sum(r["word"] not in NEGATIVE_WORDS for r in others)),
            "negatives": (sum(bool(r.get("false")) for r in others if r["word"] in NEGATIVE_WORDS),
                          sum(r["word"] in NEGATIVE_WORDS for r in others),
                          sum("stop" in r.get("false", []) for r in others)),
            "lost": _lost(stops),
            "verify": ",".join(sorted({str(r.get("verify", "auto")) for r in mine})) or "auto",
        }
    return out


def _lost(stops: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Where the stops were lost or late (barge_trace.loss_reason): reason -> [cold, settled]."""
    out: dict[str, list[int]] = {}
    for r in stops:
        if r.get("lost_at"):
            out.setdefault(r["lost_at"], [0, 0])[int(bool(r["settled"]))] += 1
    return out


def summary_lines(summary: dict[str, Any], loops: list[dict[str, Any]],
                  costs: list[dict[str, Any]]) -> list[str]:
    lines = []
    base = summary.get("none")
    for echo, s in summary.items():
        ratio = ""
        if base and echo != "none" and base["caught"]:
            ratio = f" = {s['caught'] / base['caught']:.3f} of no echo (target >= 0.95)"
        lat = "" if s["latency_median_s"] is None else (
            f"; word end -> FTMS stop written median {s['latency_median_s']:.3f} s, max "
            f"{s['latency_max_s']:.3f} s (target 0.25 / 0.5)")
        lines.append(f"echo {echo}: stops caught {s['caught']}/{s['stops']}{ratio} (cold "
                     f"{s['cold'][0]}/{s['cold'][1]}, settled {s['settled'][0]}/"
                     f"{s['settled'][1]}){lat}; go/yes/no heard {s['others_heard'][0]}/"
                     f"{s['others_heard'][1]}")
        if s.get("negatives", (0, 0, 0))[1]:
            neg = s["negatives"]
            lines.append(f"echo {echo}: other words said over the coach acted on {neg[0]}/{neg[1]}"
                         f" ({neg[2]} as stop)")
        if s.get("lost"):
            lines.append(f"echo {echo}: lost or late at (cold, settled): " + ", ".join(
                f"{k} {v[0]}+{v[1]}" for k, v in sorted(s["lost"].items())))
    for loop in loops:
        talk = ", the coach talking throughout" if loop.get("talkative") else ""
        if loop.get("verify", "auto") != "auto":
            talk += ", no second look"
        lines.append(f"closed loop {loop['audio_s'] / 60:.0f} min{talk}, canceller {loop['canceller']}: "
                     f"{len(loop['echo'])} commands from the coach's voice or noise "
                     f"{loop['echo'] or ''}(target 0); the gate dropped {loop['suppressed']}; "
                     f"{loop['coach_speech_s']} s of coach speech; sessions {loop['outcomes']}")
        for (command, t), said in zip(loop["echo"], loop.get("echo_said", []), strict=False):
            lines.append(f"  {command} at {t} s, the coach saying: " + " | ".join(said))
    for cost in costs:
        if "error" in cost:
            lines.append(f"device loop cost, canceller {cost['canceller']}: failed: "
                         f"{cost['error']}")
            continue
        look = "" if cost.get("verify", "auto") == "auto" else ", no second look"
        lines.append(f"device loop cost, canceller {cost['canceller']}{look}: "
                     f"{100 * cost['cpu_ratio']:.1f} % of a core per audio second (target 5 %; "
                     f"the simulated room's own {100 * cost.get('room_cpu_ratio', 0.0):.1f} % "
                     f"taken off), peak RSS {cost['peak_rss_mb']:.0f} MB (target 100)"
                     + ("" if cost.get("listening_rss_mb") is None else
                        f", {cost['listening_rss_mb']:.0f} MB from the first audio on"))
    parts = []
    for echo, s in summary.items():
        if echo == "none":
            continue
        share = s["caught"] / base["caught"] if base and base["caught"] else float("nan")
        false = next((len(lp["echo"]) for lp in loops if lp["canceller"] == echo), None)
        parts.append(f"{echo} {s['caught']}/{s['stops']} ({share:.3f} of no echo "
                     f"{base['caught'] if base else '?'}/{base['stops'] if base else '?'}), "
                     f"latency median {s['latency_median_s']} max {s['latency_max_s']} s, "
                     f"false {false}")
    if not parts:  # no trials (--stops 0 ...): the closed loops are the figure
        parts = [f"{lp['canceller']} closed loop {lp['audio_s'] / 60:.0f} min, "
                 f"{lp['coach_speech_s']} s of coach speech: {len(lp['echo'])} commands from "
                 "its own voice" for lp in loops] or ["no trials and no closed loop"]
    alone = any(s.get("verify") == "off" for s in summary.values()) or any(
        lp.get("verify") == "off" for lp in loops)
    lines.append("SUMMARY barge-in, real held-out speakers"
                 + (", spotter alone (no second look)" if alone else "") + ": " + "; ".join(parts))
    return lines
