"""Every command, said by synthetic voices the spotter never trained on, through ``listen``.

    python -m voicecoach.lab.bench.voices [--synth DIR] [--per-family N] [--verify auto|off]

The real speech sets hold only four of the grammar's commands (stop, go, yes, no); the other
phrases ("faster", "pause", "start", "how long" ...) are learned from synthetic voices alone. This
bench asks whether they are heard from a voice the head never heard: the command clips of the
voice families held out of training (the model card's ``holdout_families``: one espeak-ng, one
flite and one festival voice) in the synthetic corpus (``lab.training.synth --kinds positive``),
a seeded sample of ``--per-family`` clips each, with half a second of room tone around them,
each in the first state that accepts its command, through ``voicecoach listen --json --state``
in a child process. It prints, per command, how many were heard as exactly that command,
missed, or heard as something else.

Synthetic voices are not people: the figure says whether the head learned the words rather than
the voices; real people's figures are the locked benchmark's (``lab.bench.locked``).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from voicecoach.audio.wav import write_wav
from voicecoach.errors import VoicecoachError, report
from voicecoach.grammar import load_grammar
from voicecoach.lab.bench.spotter import listen_child
from voicecoach.lab.corpus import POSITIVES, state_for
from voicecoach.lab.training.data import REAL_POSITIVES, in_room, read_audio
from voicecoach.lab.training.synth import read_manifest

DEFAULT_SYNTH = Path.home() / ".cache" / "voicecoach" / "spotter-train" / "synth-pos-other"


def held_out_clips(synth: Path, families: Sequence[str], per_family: int, seed: int = 0
                   ) -> list[dict[str, Any]]:
    """A seeded sample of ``per_family`` command clips of each held-out family."""
    manifest = synth / "manifest.jsonl"
    if not manifest.is_file():
        raise VoicecoachError(f"no synthetic corpus at {synth}",
                              "make it: python -m voicecoach.lab.training.synth --out "
                              f"{synth} --kinds positive --engines espeak,flite,festival")
    rows = read_manifest(synth)
    by_family: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row.get("kind") == "positive" and row.get("family") in families:
            by_family[row["family"]].append(row)
    if not by_family:
        raise VoicecoachError(f"the corpus at {synth} has no command clips of the held-out "
                              f"voices {', '.join(families) or '(none named)'}",
                              "render them with lab.training.synth --kinds positive")
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for family in sorted(by_family):
        group = sorted(by_family[family], key=lambda r: r["path"])
        out += rng.sample(group, min(per_family, len(group)))
    return out


def measure(synth: Path, clips: Sequence[dict[str, Any]], verify: str
            ) -> tuple[dict[str, Counter[str]], float, float]:
    """Per command: 'heard', 'missed' and 'as <other>' counts; CPU s and peak RSS of listen."""
    grammar = load_grammar("en")
    result: dict[str, Counter[str]] = defaultdict(Counter)
    cpu, rss = 0.0, 0.0
    with tempfile.TemporaryDirectory(prefix="voicecoach-voices-") as tmp:
        by_state: dict[str, list[tuple[Path, str]]] = defaultdict(list)
        for n, row in enumerate(clips):
            state = state_for(grammar, row["command"])
            out = Path(tmp) / state / f"{n:05d}.wav"
            out.parent.mkdir(parents=True, exist_ok=True)
            write_wav(out, in_room(read_audio(synth / row["path"]), row["path"]))
            by_state[state].append((out, row["command"]))
        for state, files in sorted(by_state.items()):
            lines, c, r = listen_child([p for p, _ in files], state=state, verify=verify)
            cpu, rss = cpu + c, max(rss, r)
            for (_path, command), line in zip(files, lines, strict=True):
                got = [d["command"] for d in line["commands"]]
                key = ("heard" if got == [command] else "missed" if not got
                       else "as " + "+".join(got))
                result[command][key] += 1
    return result, cpu, rss


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voicecoach.lab.bench.voices",
                                     description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--synth", type=Path, default=DEFAULT_SYNTH,
                        help="synthetic corpus with command clips of the held-out voices")
    parser.add_argument("--per-family", type=int, default=100, help="clips per held-out family")
    parser.add_argument("--verify", choices=["auto", "off"], default="auto")
    parser.add_argument("--json", action="store_true", help="print the counts as JSON too")
    args = parser.parse_args(argv)
    from voicecoach.listening.spotter.model import load_model

    try:
        if args.per_family < 1:
            raise VoicecoachError(f"--per-family must be at least 1, not {args.per_family}",
                                  "give a positive number of clips")
        families = load_model().card.get("holdout_families", [])
        clips = held_out_clips(args.synth, families, args.per_family)
        result, cpu, rss = measure(args.synth, clips, args.verify)
    except VoicecoachError as exc:
        return report(exc)
    total = sum(sum(c.values()) for c in result.values())
    heard = sum(c["heard"] for c in result.values())
    for command, counts in sorted(result.items()):
        rest = " ".join(f"{k} {v}" for k, v in sorted(counts.items()) if k != "heard")
        print(f"{command:>13} {counts['heard']:>3}/{sum(counts.values()):<3} {rest}")
    print(f"SUMMARY every command from {len(families)} held-out synthetic voices "
          f"({', '.join(families)}), verify {args.verify}: heard {heard}/{total} "
          f"({heard / max(1, total):.3f}); stop/go/yes/no excluded: "
          + _without_real(result)
          + f" | peak RSS {rss:.0f} MB")
    if args.json:
        print(json.dumps({c: dict(v) for c, v in result.items()}, sort_keys=True))
    return 0


def _without_real(result: dict[str, Counter[str]]) -> str:
    real = {POSITIVES[word] for word in REAL_POSITIVES}   # the commands with real recordings
    rest = {c: v for c, v in result.items() if c not in real}
    n = sum(sum(v.values()) for v in rest.values())
    h = sum(v["heard"] for v in rest.values())
    return f"{h}/{n} ({h / max(1, n):.3f})"


if __name__ == "__main__":
    raise SystemExit(main())
