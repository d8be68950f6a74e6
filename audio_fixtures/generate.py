"""Regenerate the English audio fixtures and manifest.json: `python audio_fixtures/generate.py`."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from voices import SPEEDS, VOICES, Synthesiser, Voice  # noqa: E402

from voicecoach.audio.chunk import SAMPLE_RATE  # noqa: E402
from voicecoach.audio.samples import treadmill_noise  # noqa: E402
from voicecoach.audio.wav import write_wav  # noqa: E402
from voicecoach.grammar import Grammar, load_grammar  # noqa: E402
from voicecoach.lab.signals import add_at, delayed, mix_at_snr, power  # noqa: E402

_LOGGER = logging.getLogger("generate")

FOLDERS = ("commands", "sentences", "noisy", "negatives", "streams")
LEAD_S, TAIL_S = 0.25, 0.3  # silence around a command clip
FLOOR_DBFS = -70.0  # a faint microphone noise floor under every clip (none is pure zeros)
SNRS_DB = (20, 10, 5)
#: Commands inside longer sentences: (before, phrase, after). Each holds one grammar phrase only.
SENTENCES = (
    ("okay, can we walk", "faster", "please"),
    ("I think we should", "slow down", "a little"),
    ("could you", "repeat", "that for me"),
    ("my", "knee hurts", "a bit today"),
    ("please", "incline up", "one more step"),
    ("how much", "time left", "on this one"),
    ("can you speak", "louder", "please"),
    ("I need some", "help", "with this"),
    ("let's", "stop the workout", "here"),
    ("please", "continue", "the session"),
    ("I am", "ready", "when you are"),
    ("can we", "pause", "for a moment"),
)
#: Coach cue sentences (COACHING.md): they hold no command and must yield nothing.
COACH_CUES = (
    "Reach back with your leg.",
    "Land on your toes, then roll to your heel.",
    "Keep your strides equal.",
    "Stay upright, chest up.",
    "Relax your shoulders and breathe.",
    "Hold the handrails and look at your feet.",
    "Keep a pace at which you could still talk.",
    "Nice and steady, one step back at a time.",
)
#: Other talk that holds no command phrase.
CHATTER = (
    "What a lovely day it is outside.",
    "I had pasta for dinner yesterday.",
    "The phone is ringing in the kitchen.",
)
#: Long streams: (name, seconds, snr_db, [(at_s, voice index, text-or-(before, phrase, after))]).
STREAMS: tuple[tuple[str, float, float, list[tuple[float, int, Any]]], ...] = (
    ("stream_a", 40.0, 15.0, [(3.0, 1, "yes"), (9.5, 2, "faster"), (16.0, 3, "how long"),
                              (23.5, 4, "pause"), (29.0, 5, "go on"), (35.5, 1, "stop")]),
    ("stream_b", 55.0, 10.0, [(4.0, 2, "ready"), (11.0, 3, ("can we", "slow down", "please")),
                              (19.0, 4, "incline up"), (26.5, 5, "repeat"), (33.0, 1, "pain"),
                              (41.0, 2, "time left"), (49.0, 3, "stop now")]),
    ("stream_c", 70.0, 20.0, [(5.0, 0, "start workout"), (14.0, 4, "speed up"),
                              (24.0, 5, "quieter"), (33.0, 1, "more incline"),
                              (42.0, 2, ("I think my", "knee hurts", "now")),
                              (51.0, 3, "slower"), (58.0, 4, "say again"),
                              (65.0, 5, "stop the workout")]),
)
#: Coach cues played from the speaker into the streams (joe, delayed and attenuated).
STREAM_CUES = ((6.0, 0), (13.0, 1), (20.0, 2), (37.0, 4), (45.0, 5), (61.0, 6))


def slug(text: str) -> str:
    return "_".join("".join(c for c in text.lower() if c.isalnum() or c == " ").split())


def seed(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def with_floor(signal: np.ndarray, name: str) -> np.ndarray:
    floor = seed("floor:" + name).standard_normal(signal.size) * 10.0 ** (FLOOR_DBFS / 20.0)
    return (signal + floor).astype(np.float32)


class Builder:
    """Writes clips under ``root`` and collects their manifest entries."""

    def __init__(self, root: Path, grammar: Grammar) -> None:
        self.root = root
        self.grammar = grammar
        self.tts = Synthesiser()
        self.entries: list[dict[str, Any]] = []

    def check_phrases(self, text: str, allowed: list[str]) -> None:
        found = [p for p in self.grammar.command_phrases_in(text)
                 if not any(f" {p} " in f" {a} " for a in allowed)]
        if found or not all(a in self.grammar.command_phrases_in(text) for a in allowed):
            raise SystemExit(f"fixture text {text!r} holds phrases {found}, expected {allowed}")

    def write(self, rel: str, signal: np.ndarray, voice: str, speed: str | None,
              snr: float | None, kind: str, text: str, expected: list[dict[str, Any]],
              floor: bool = True) -> None:
        data = with_floor(signal, rel) if floor else signal
        write_wav(self.root / rel, data)
        self.entries.append({
            "file": rel, "kind": kind, "voice": voice, "speed": speed, "snr_db": snr,
            "text": text, "audio_s": round(data.size / SAMPLE_RATE, 3), "expected": expected})

    def expect(self, phrase: str, start_s: float, seconds: float) -> dict[str, Any]:
        command = self.grammar.lookup(phrase)
        assert command is not None, phrase
        return {"command": command, "phrase": phrase, "start_s": round(start_s, 3),
                "end_s": round(start_s + seconds, 3)}

    def utterance(self, voice: Voice, text: Any, speed: str = "normal"
                  ) -> tuple[np.ndarray, str, float, float]:
        """Speech for a phrase or (before, phrase, after); the phrase's offset and length (s)."""
        if isinstance(text, str):
            speech = self.tts.say(voice, text, speed)
            return speech, text, 0.0, speech.size / SAMPLE_RATE
        before, phrase, after = text
        gap = np.zeros(int(0.12 * SAMPLE_RATE), dtype=np.float32)
        parts = [self.tts.say(voice, before, speed), gap, self.tts.say(voice, phrase, speed)]
        offset = (parts[0].size + gap.size) / SAMPLE_RATE
        if after:
            parts += [gap, self.tts.say(voice, after, speed)]
        return np.concatenate(parts), phrase, offset, parts[2].size / SAMPLE_RATE

    def padded(self, speech: np.ndarray) -> np.ndarray:
        return np.concatenate([np.zeros(int(LEAD_S * SAMPLE_RATE), np.float32), speech,
                               np.zeros(int(TAIL_S * SAMPLE_RATE), np.float32)])

    def commands(self) -> None:
        for voice in VOICES:
            for speed in SPEEDS:
                for command, phrases in self.grammar.phrases.items():
                    for phrase in phrases:
                        speech = self.tts.say(voice, phrase, speed)
                        rel = f"commands/{voice.name}/{speed}/{command}__{slug(phrase)}.wav"
                        self.write(rel, self.padded(speech), voice.name, speed, None, "command",
                                   phrase, [self.expect(phrase, LEAD_S, speech.size / SAMPLE_RATE)])

    def sentences(self) -> None:
        for i, (before, phrase, after) in enumerate(SENTENCES):
            text = " ".join(p for p in (before, phrase, after) if p)
            self.check_phrases(text, [phrase])
            for voice in (VOICES[0], VOICES[1 + i % (len(VOICES) - 1)]):
                speech, _, offset, length = self.utterance(voice, (before, phrase, after))
                rel = f"sentences/{voice.name}/{slug(text)}.wav"
                self.write(rel, self.padded(speech), voice.name, "normal", None, "sentence",
                           text, [self.expect(phrase, LEAD_S + offset, length)])

    def noisy(self) -> None:
        i = 0
        for command, phrases in self.grammar.phrases.items():
            for phrase in phrases:
                voice = VOICES[i % len(VOICES)]
                i += 1
                speech = self.tts.say(voice, phrase)
                for snr in SNRS_DB:
                    rel = f"noisy/snr{snr:02d}/{voice.name}__{command}__{slug(phrase)}.wav"
                    clean = self.padded(speech)
                    noise = treadmill_noise(clean.size / SAMPLE_RATE, seed(rel))
                    mixed = mix_at_snr(clean, noise, snr, speech_power=power(speech))
                    self.write(rel, mixed, voice.name, "normal", snr, "noisy", phrase,
                               [self.expect(phrase, LEAD_S, speech.size / SAMPLE_RATE)])

    def negatives(self) -> None:
        talk = [("coach_cue", t) for t in COACH_CUES] + [("chatter", t) for t in CHATTER]
        for i, (kind, text) in enumerate(talk):
            self.check_phrases(text, [])
            for voice in (VOICES[0], VOICES[1 + i % (len(VOICES) - 1)]):
                rel = f"negatives/{kind}/{voice.name}__{slug(text)}.wav"
                self.write(rel, self.padded(self.tts.say(voice, text)), voice.name, "normal",
                           None, kind, text, [])
        for i, word in enumerate(self.grammar.never):
            voice = VOICES[i % len(VOICES)]
            rel = f"negatives/never_word/{voice.name}__{slug(word)}.wav"
            self.write(rel, self.padded(self.tts.say(voice, word)), voice.name, "normal", None,
                       "never_word", word, [])
        for n in range(3):
            rel = f"negatives/noise/treadmill_{n + 1}.wav"
            noise = treadmill_noise(8.0, seed(rel)) * np.float32(10.0 ** (-30.0 / 20.0))
            self.write(rel, noise, "", None, None, "noise", "", [])
        self.write("negatives/silence/digital_silence.wav", np.zeros(3 * SAMPLE_RATE, np.float32),
                   "", None, None, "silence", "", [], floor=False)

    def streams(self) -> None:
        coach = VOICES[0]
        for name, seconds, snr, events in STREAMS:
            signal = np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)
            expected, said, user_power = [], [], []
            for at_s, vi, text in events:
                speech, phrase, offset, length = self.utterance(VOICES[vi], text)
                signal = add_at(signal, speech, at_s)
                expected.append(self.expect(phrase, at_s + offset, length))
                said.append(text if isinstance(text, str) else " ".join(text))
                user_power.append(power(speech))
            for at_s, ci in STREAM_CUES:
                if at_s < seconds - 3:
                    cue = delayed(self.tts.say(coach, COACH_CUES[ci]), 0.02, gain_db=-6.0)
                    signal = add_at(signal, cue, at_s)
            rel = f"streams/{name}.wav"
            noise = treadmill_noise(seconds, seed(rel))
            mixed = mix_at_snr(signal[: int(seconds * SAMPLE_RATE)], noise, snr,
                               speech_power=float(np.mean(user_power)))
            self.write(rel, mixed, "mixed", "normal", snr, "stream", " | ".join(said), expected)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE, help="where to write the fixtures")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    builder = Builder(args.out, load_grammar("en"))
    for folder in FOLDERS:
        for old in sorted((args.out / folder).rglob("*.wav")):
            old.unlink()
    for step in (builder.commands, builder.sentences, builder.noisy, builder.negatives,
                 builder.streams):
        step()
        _LOGGER.info("%s: %d clips so far", step.__name__, len(builder.entries))
    manifest = args.out / "manifest.json"
    manifest.write_text(json.dumps(builder.entries, indent=1, ensure_ascii=False) + "\n",
                        encoding="utf-8")
    seconds = sum(e["audio_s"] for e in builder.entries)
    _LOGGER.info("wrote %d clips (%.0f s of audio) and %s", len(builder.entries), seconds,
                 manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
