"""Regenerate the Korean fixtures (audio_fixtures/ko/) with espeak-ng's Korean voice."""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import soxr

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "ko"
RATE = 16000

#: espeak-ng settings: (name, words per minute, pitch 0-99).
VOICES = (("base", 150, 50), ("fast_high", 190, 72), ("slow_low", 120, 30))
#: Sentences a coach or a chatting user says that contain no command (checked below).
SENTENCES = (
    "허리를 곧게 펴고 발끝으로 착지하세요",
    "보폭을 양쪽 모두 같게 유지하세요",
    "어깨 힘을 빼고 숨을 편하게 쉬세요",
    "손잡이를 잡고 발을 보세요",
    "오늘은 날씨가 정말 맑아요",
    "점심으로 김치찌개를 먹었어요",
    "안전 키를 옷에 꽂으세요",
    "주말에 친구들과 영화를 봤어요",
    "물을 충분히 마시는 것이 중요합니다",
)
GAP_S = 0.6          # silence between utterances (longer than the model's 0.5 s endpoint rule)
EDGE_S = 0.5         # silence before the first and after the last utterance
THRESHOLD = 300      # |sample| above this counts as speech when trimming espeak's silence


def synth(text: str, wpm: int, pitch: int) -> np.ndarray:
    """espeak-ng's Korean voice saying ``text``: 16 kHz int16 with edge silence trimmed."""
    proc = subprocess.run(["espeak-ng", "-v", "ko", "-s", str(wpm), "-p", str(pitch),
                           "--stdout", text], capture_output=True, check=True)
    with wave.open(io.BytesIO(proc.stdout)) as wav:
        rate = wav.getframerate()
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    audio = soxr.resample(data.astype(np.float32), rate, RATE)
    audio = np.clip(np.round(audio), -32768, 32767).astype(np.int16)
    loud = np.flatnonzero(np.abs(audio.astype(np.int32)) > THRESHOLD)
    return audio[loud[0]:loud[-1] + 1] if loud.size else audio


def write_wav(path: Path, audio: np.ndarray) -> None:
    """Write 16 kHz mono int16."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(audio.astype("<i2").tobytes())


def stream(parts: list[tuple[str, str | None, np.ndarray]]) -> tuple[np.ndarray, list[dict]]:
    """Join (text, command, audio) parts with silence; return audio and expected commands."""
    gap = np.zeros(int(GAP_S * RATE), dtype=np.int16)
    pieces = [np.zeros(int(EDGE_S * RATE), dtype=np.int16)]
    at = pieces[0].size
    expected = []
    for text, command, audio in parts:
        if command is not None:
            expected.append({"command": command, "phrase": text,
                             "start_s": round(at / RATE, 3),
                             "end_s": round((at + audio.size) / RATE, 3)})
        pieces += [audio, gap]
        at += audio.size + gap.size
    pieces[-1] = np.zeros(int(EDGE_S * RATE), dtype=np.int16)
    return np.concatenate(pieces), expected


def add_stream(out: Path, files: list[dict], name: str, kind: str, voice: str, wpm: int,
               pitch: int, parts: list[tuple[str, str | None, np.ndarray]]) -> None:
    """Write ``parts`` joined as ``name`` and list it in ``files`` (the manifest)."""
    audio, expected = stream(parts)
    write_wav(out / name, audio)
    files.append({"file": name, "kind": kind, "voice": voice, "wpm": wpm, "pitch": pitch,
                  "texts": [t for t, _, _ in parts], "commands": expected})


def check_sentences(phrases: list[str]) -> None:
    """No negative sentence may contain a command phrase (one-syllable ones anywhere)."""
    for sentence in SENTENCES:
        packed = sentence.replace(" ", "")
        for phrase in phrases:
            if phrase.replace(" ", "") in packed:
                raise SystemExit(f"negative sentence {sentence!r} contains command {phrase!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT, help="output folder")
    args = parser.parse_args()
    if shutil.which("espeak-ng") is None:
        print("make_ko_fixtures: espeak-ng is not installed (apt-get install espeak-ng)",
              file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO))
    from voicecoach.grammar import STOP, load_grammar

    grammar = load_grammar("ko", REPO / "grammars" / "ko.json")
    pairs = [(p, c) for c in grammar.commands for p in grammar.phrases[c]]
    check_sentences([p for p, _ in pairs])
    args.out.mkdir(parents=True, exist_ok=True)
    files = []
    # Every phrase in the base voice; in the others every stop phrase and one per command.
    short = [(p, c) for p, c in pairs if c == STOP or p == grammar.phrases[c][0]]
    for index, (voice, wpm, pitch) in enumerate(VOICES):
        parts = [(p, c, synth(p, wpm, pitch)) for p, c in (pairs if index == 0 else short)]
        add_stream(args.out, files, f"commands_{voice}.wav", "commands",
                   f"espeak-ng ko {voice}", wpm, pitch, parts)
        negatives = [(s, None, synth(s, wpm, pitch)) for s in SENTENCES[index::len(VOICES)]]
        add_stream(args.out, files, f"sentences_{voice}.wav", "negative",
                   f"espeak-ng ko {voice}", wpm, pitch, negatives)
    # A session-like stream: coach sentences with stop and other commands between them.
    wpm, pitch = VOICES[0][1], VOICES[0][2]
    say = grammar.phrases
    script = [(SENTENCES[0], None), (say["faster"][0], "faster"), (SENTENCES[1], None),
              (say[STOP][0], STOP), (SENTENCES[2], None), (say["time_left"][0], "time_left"),
              (SENTENCES[3], None), (say[STOP][-1], STOP)]
    add_stream(args.out, files, "session.wav", "stream", "espeak-ng ko base", wpm, pitch,
               [(t, c, synth(t, wpm, pitch)) for t, c in script])
    manifest = {"language": "ko", "rate": RATE,
                "generator": "audio_fixtures/make_ko_fixtures.py (espeak-ng -v ko)",
                "files": files}
    (args.out / "manifest.json").write_text(
        json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(files)} files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
