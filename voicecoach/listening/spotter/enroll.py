"""Enrollment: a user's own takes of each command become prototypes that add detections.

A take is checked (something said, loud enough, not clipped, not too short or long), then
embedded by the run-time front end exactly as the spotter hears it (the ring pre-filled with
the silent embedding, half a second of silence after). The windows whose last step ends just
after the speech ends (the training convention, ``positive_after_end_s``) are standardised
with the head's own feature mean and scale and L2-normalised: those are the prototypes.

At run time a command's user score is the best cosine similarity of the current window to its
prototypes. It turns into a detection only when it clears the command's threshold, calibrated
from the takes themselves (the best similarity of the user's other-command takes, of noise and
of the silent window, plus a margin) and never below a fixed floor. The generic head's
decisions are left exactly as they are: enrollment only adds detections.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import time
import zipfile
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from voicecoach.audio.samples import active_bounds, treadmill_noise
from voicecoach.errors import VoicecoachError
from voicecoach.listening.spotter.decide import STOP
from voicecoach.listening.spotter.features import SAMPLE_RATE, STEP_S, EmbeddingFrontEnd
from voicecoach.listening.spotter.model import SpotterModel

_LOGGER = logging.getLogger(__name__)

FORMAT = 1
FOLDER = "enrollment"
#: Windows ending this long after the speech ends are prototypes (as in training).
AFTER_END_S = (-0.04, 0.28)
#: Half a second of silence after a take lets its last windows be seen (as ``flush``).
TAIL_S = 0.48
#: No user threshold is ever below this cosine similarity (see README, Enrollment).
FLOOR = 0.72
#: Prototypes compare the last this many steps of the head's window (the spoken word and a
#: little context; the whole window's older steps are mostly what came before the word).
LAST = 6
#: A command's threshold sits this far above the best similarity of anything that is not it
#: (less for stop: a missed stop costs more than a false one, a false "faster" the most).
MARGIN = 0.14
STOP_MARGIN = 0.10
#: ... and no more than this below the worst match of one of the user's takes to the others.
OWN_SLACK = 0.1
#: Steps a non-stop command must stay above its threshold (stop fires on the first).
CONFIRM = 2
REFRACTORY_S = 1.0

MIN_SPEECH_S = 0.15
MAX_SPEECH_S = 3.0
MAX_TAKE_S = 8.0
MIN_TAKE_S = 0.3
QUIET_DBFS = -45.0
CLIP_LEVEL = 32000
CLIP_FRACTION = 0.01
#: A take whose speech probability (WebRTC's voice detector, the mean of its 10 best 10 ms
#: frames) stays under this holds no speech. Measured: belt and white noise 0.29-0.35 at any
#: level; 100 real Speech Commands clips of stop/go/yes/no 0.77 at the lowest; the fixture
#: voices' go/no 0.75 and up. (pymicro-vad was tried first: its probability for a short "no"
#: or "go" is as low as for noise, 0.03-0.05.)
NO_SPEECH_PROB = 0.5

_USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")


class TakeRejected(VoicecoachError):
    """A take that cannot be used, and why (the flow asks again)."""


def weights_sha256(model: SpotterModel) -> str:
    return hashlib.sha256(model.path.read_bytes()).hexdigest()


def check_user(name: str) -> str:
    if not _USER_RE.match(name):
        raise VoicecoachError(f"user name '{name}' is not usable",
                              "use 1-32 letters, digits, '-' or '_', starting with a letter "
                              "or digit")
    return name


# -- takes ---------------------------------------------------------------------------------
def speech_bounds(samples: np.ndarray) -> tuple[float, float]:
    """Start and end (seconds) of the speech in a take: the part within 30 dB of its loudest
    10 ms (the training convention)."""
    start, end = active_bounds(samples, threshold_db=-30.0)
    return start / SAMPLE_RATE, end / SAMPLE_RATE


def speech_probability(samples: np.ndarray) -> float | None:
    """How surely the take holds speech (0..1): WebRTC's voice detector (``pywebrtc-audio``)
    over the take heard twice (the first pass settles its noise estimate), the mean of its 10
    most speech-like 10 ms frames; None when the library cannot be used."""
    try:
        from pywebrtc_audio import VoiceDetector

        detector = VoiceDetector(sample_rate=SAMPLE_RATE)
        x = np.asarray(samples, np.int16)
        x = np.concatenate([x, x])
        probs = np.array([detector.process(x[i:i + 160]) for i in range(0, x.size - 159, 160)])
    except Exception as exc:  # noqa: BLE001 - missing, or a foreign extension failing
        _LOGGER.warning("voice activity: pywebrtc-audio cannot be used (%s); takes are not "
                        "checked for speech", exc)
        return None
    if probs.size == 0:
        return 0.0
    return float(np.sort(probs)[-10:].mean())


def check_take(samples: np.ndarray) -> tuple[float, float]:
    """The speech bounds of a usable take; :class:`TakeRejected` saying why otherwise."""
    x = np.asarray(samples)
    seconds = x.size / SAMPLE_RATE
    if seconds < MIN_TAKE_S:
        raise TakeRejected(f"the take is too short ({seconds:.2f} s)",
                           "say the whole command, then pause")
    if seconds > MAX_TAKE_S:
        raise TakeRejected(f"the take is too long ({seconds:.1f} s)",
                           f"say only the command (takes of at most {MAX_TAKE_S:.0f} s)")
    f = x.astype(np.float64) / 32768.0
    frame = 160
    n = f.size // frame
    energy = (f[:n * frame].reshape(n, frame) ** 2).mean(axis=1)
    peak_db = 10.0 * np.log10(float(energy.max()) + 1e-12)
    if peak_db < QUIET_DBFS:
        raise TakeRejected(f"nothing was said, or too quietly (loudest {peak_db:.0f} dBFS)",
                           "speak up or move closer to the microphone")
    clipped = float(np.mean(np.abs(x.astype(np.int32)) >= CLIP_LEVEL))
    if clipped > CLIP_FRACTION:
        raise TakeRejected(f"the take is clipped ({100 * clipped:.1f} % of samples at full "
                           "scale)", "speak a little softer or turn the microphone gain down")
    prob = speech_probability(x)
    if prob is not None and prob < NO_SPEECH_PROB:
        raise TakeRejected(f"no speech in the take, only sound or noise (voice activity "
                           f"{prob:.2f})", "say the command in a quieter moment, closer to "
                           "the microphone")
    start, end = speech_bounds(x)
    if end - start < MIN_SPEECH_S:
        raise TakeRejected(f"the take holds only a click ({end - start:.2f} s of sound)",
                           "say the whole command")
    if end - start > MAX_SPEECH_S:
        raise TakeRejected(f"the take holds {end - start:.1f} s of sound, more than one "
                           "command", "say only the command, in a quiet moment")
    return start, end


@dataclass
class EmbeddedTake:
    """A take as the spotter hears it: every window of it and the prototype windows."""

    command: str
    phrase: str
    windows: np.ndarray
    """(steps, window * 96) standardised, unit-length windows of every step."""
    proto: np.ndarray
    """Indices of the windows that end just after the speech: the prototypes."""
    probs: np.ndarray
    """(steps, classes) the generic head's probabilities (for the different-word check)."""


def unit_windows(model: SpotterModel, emb: np.ndarray, silence: np.ndarray) -> np.ndarray:
    """(steps, LAST * 96): each step's window as the engine forms it, see :func:`normalise`."""
    w = model.window
    seq = np.concatenate([np.asarray(silence).reshape(-1, silence.shape[-1])[-(w - 1):], emb])
    idx = np.arange(len(emb))[:, None] + np.arange(w)[None, :]
    x = seq[idx].reshape(len(emb), -1).astype(np.float32)
    return normalise(model, x)


def normalise(model: SpotterModel, flat: np.ndarray) -> np.ndarray:
    """Raw windows (n, window * 96) -> their last :data:`LAST` steps, standardised with the
    head's mean and scale, unit length (n, LAST * 96)."""
    dims = LAST * flat.shape[1] // model.window
    x = (flat[:, -dims:] - model.mean[-dims:]) / model.scale[-dims:]
    return (x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-6)).astype(np.float32)


def embed_take(fe: EmbeddingFrontEnd, model: SpotterModel, silence: np.ndarray,
               samples: np.ndarray, command: str, phrase: str,
               bounds: tuple[float, float] | None = None) -> EmbeddedTake:
    """Embed a checked take (int16, 16 kHz) as the engine would hear it."""
    start, end = bounds or speech_bounds(samples)
    audio = np.concatenate([np.asarray(samples, np.int16),
                            np.zeros(int(TAIL_S * SAMPLE_RATE), np.int16)])
    emb = fe.embed(audio)
    windows = unit_windows(model, emb, silence)
    times = (np.arange(len(emb)) + 1) * STEP_S
    lo, hi = AFTER_END_S
    proto = np.nonzero((times >= end + lo) & (times <= end + hi))[0]
    if proto.size == 0:
        proto = np.array([len(emb) - 1])
    w = model.window
    seq = np.concatenate([np.asarray(silence).reshape(-1, silence.shape[-1])[-(w - 1):], emb])
    idx = np.arange(len(emb))[:, None] + np.arange(w)[None, :]
    probs = model.probabilities(seq[idx])
    return EmbeddedTake(command, phrase, windows, proto, probs)


def run_statistic(sims: np.ndarray, confirm: int) -> float:
    """The highest similarity a stream holds for ``confirm`` steps running."""
    if sims.size < confirm or sims.size == 0:
        return -1.0
    if confirm > 1:
        sims = np.min(np.stack([sims[i:sims.size - confirm + 1 + i] for i in range(confirm)]),
                      axis=0)
    return float(sims.max())


def other_word(take: EmbeddedTake, phrases: Mapping[str, Sequence[str]], labels: Sequence[str],
               threshold: float) -> str | None:
    """The command the generic head clearly heard in a take instead of the one asked for."""
    index = {label: i for i, label in enumerate(labels)}
    scores = {}
    for cmd, ps in phrases.items():
        cls = [index[p] for p in ps if p in index]
        raw = take.probs[:, cls].sum(axis=1) if cls else np.zeros(len(take.probs))
        scores[cmd] = run_statistic(raw, 1)
    best = max(scores, key=lambda c: scores[c])
    if best != take.command and scores[best] >= threshold and scores[take.command] < 0.5 * threshold:
        return best
    return None


def odd_takes(takes: Sequence[EmbeddedTake]) -> list[tuple[int, str]]:
    """Takes that do not sound like the user's other takes of the same command (a different
    word, a cough, someone else talking): (index, why)."""
    out = []
    for cmd in sorted({t.command for t in takes}):
        idx = [i for i, t in enumerate(takes) if t.command == cmd]
        if len(idx) < 2:
            continue
        confirm = 1 if cmd == STOP else CONFIRM
        loo = {}
        for i in idx:
            rest = np.concatenate([takes[j].windows[takes[j].proto] for j in idx if j != i])
            loo[i] = run_statistic((takes[i].windows @ rest.T).max(axis=1), confirm)
        if len(idx) == 2 and max(loo.values()) < FLOOR:
            out += [(i, f"its two takes of '{takes[i].phrase}' do not sound alike") for i in idx]
        elif len(idx) > 2:
            out += [(i, f"it does not sound like the other takes of '{takes[i].phrase}'")
                    for i in idx if loo[i] < FLOOR]
    return out


# -- adaptation ----------------------------------------------------------------------------
@dataclass
class CommandVoice:
    """One command's prototypes for one user and the threshold they must clear."""

    phrase: str
    prototypes: np.ndarray
    threshold: float
    takes: int
    own_low: float
    """The lowest leave-one-take-out score of the takes (how well a new take should match)."""
    others_high: float
    """The highest score of anything that was not this command (other takes, noise, silence)."""


@dataclass
class VoiceProfile:
    """Everything enrollment keeps about one user."""

    user: str
    commands: dict[str, CommandVoice]
    created: str
    model_sha256: str
    phrase_hash: str
    window: int
    adapt_cpu_s: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)


def noise_windows(fe: EmbeddingFrontEnd, model: SpotterModel, silence: np.ndarray
                  ) -> np.ndarray:
    """Windows of belt, pink and brown noise at two levels, and of the quiet room the
    front end starts from (its warm-up)."""
    rng = np.random.default_rng(20261202)
    out = [normalise(model, np.asarray(silence)[-model.window:].reshape(1, -1))]
    n = int(2.0 * SAMPLE_RATE)
    for kind in range(3):
        if kind == 0:
            x = treadmill_noise(2.0, rng)[:n]
        else:
            spec = np.fft.rfft(rng.standard_normal(n))
            f = np.fft.rfftfreq(n)
            f[0] = f[1]
            x = np.fft.irfft(spec / f ** (kind / 2.0), n)
            x = x / (np.sqrt(np.mean(x ** 2)) + 1e-12)
        for dbfs in (-40.0, -20.0):
            audio = np.clip(x * 10 ** (dbfs / 20.0) * 32768.0, -32768, 32767).astype(np.int16)
            out.append(unit_windows(model, fe.embed(audio), silence))
    return np.concatenate(out)


def adapt(user: str, takes: Sequence[EmbeddedTake], model: SpotterModel,
          noise: np.ndarray, phrase_hash: str) -> VoiceProfile:
    """Prototypes and calibrated thresholds from a user's checked, embedded takes."""
    t0 = time.process_time()
    by_cmd: dict[str, list[EmbeddedTake]] = {}
    for take in takes:
        by_cmd.setdefault(take.command, []).append(take)
    commands: dict[str, CommandVoice] = {}
    for cmd, own in by_cmd.items():
        confirm = 1 if cmd == STOP else CONFIRM
        protos = [t.windows[t.proto] for t in own]
        allp = np.concatenate(protos)
        # leave one take out: how well a fresh take of this command matches the others
        loo = []
        for i, take in enumerate(own):
            rest = [p for j, p in enumerate(protos) if j != i]
            if rest:
                loo.append(run_statistic((take.windows @ np.concatenate(rest).T).max(axis=1),
                                         confirm))
        others = [run_statistic((t.windows @ allp.T).max(axis=1), confirm)
                  for t in takes if t.command != cmd]
        others.append(float((noise @ allp.T).max()))
        high = max(others)
        margin = STOP_MARGIN if cmd == STOP else MARGIN
        threshold = max(FLOOR, high + margin, (min(loo) if loo else 0.0) - OWN_SLACK)
        phrase = max({t.phrase for t in own}, key=lambda p: sum(t.phrase == p for t in own))
        commands[cmd] = CommandVoice(phrase, allp.astype(np.float32), round(threshold, 4),
                                     len(own), round(min(loo), 4) if loo else 1.0,
                                     round(high, 4))
    return VoiceProfile(user, commands, datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        weights_sha256(model), phrase_hash, model.window,
                        round(time.process_time() - t0, 4))


# -- storage -------------------------------------------------------------------------------
def enrollment_dir(data_dir: Path) -> Path:
    return Path(data_dir).expanduser() / FOLDER


def profile_path(data_dir: Path, user: str) -> Path:
    return enrollment_dir(data_dir) / f"{check_user(user)}.npz"


def save_profile(data_dir: Path, profile: VoiceProfile) -> Path:
    """Write ``<data>/enrollment/<user>.npz`` atomically (no pickles)."""
    folder = enrollment_dir(data_dir)
    path = profile_path(data_dir, profile.user)
    meta = {"format": FORMAT, "user": profile.user, "created": profile.created,
            "model_sha256": profile.model_sha256, "phrase_hash": profile.phrase_hash,
            "window": profile.window, "adapt_cpu_s": profile.adapt_cpu_s, **profile.meta,
            "commands": {c: {"phrase": v.phrase, "threshold": v.threshold, "takes": v.takes,
                             "own_low": v.own_low, "others_high": v.others_high}
                         for c, v in profile.commands.items()}}
    arrays: dict[str, Any] = {f"p_{c}": v.prototypes.astype(np.float16)
                              for c, v in profile.commands.items()}
    arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), np.uint8)
    tmp = folder / f".{profile.user}.{os.getpid()}.tmp.npz"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(tmp, **arrays)
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise VoicecoachError(f"cannot write the enrollment to {folder} ({exc.strerror or exc})",
                              "make the data folder writable or choose another with "
                              "--data-dir") from None
    return path


class StaleEnrollment(VoicecoachError):
    """An enrollment made for another version of the spotter or grammar."""


def load_profile(path: Path, model: SpotterModel | None = None,
                 phrase_hash: str | None = None) -> VoiceProfile:
    """Read one user's enrollment; :class:`StaleEnrollment` if it was made for another model."""
    user = path.stem
    redo = f"redo it: voicecoach enroll --user {user} (or remove it: voicecoach enroll " \
           f"--forget --user {user})"
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: np.asarray(npz[k]) for k in npz.files}
        meta = json.loads(arrays["meta"].tobytes().decode("utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("meta")
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, UnicodeDecodeError):
        raise VoicecoachError(f"the enrollment file {path} is unreadable (corrupt)",
                              redo) from None
    if meta.get("format") != FORMAT:
        raise StaleEnrollment(f"the enrollment of '{user}' is in format {meta.get('format')}, "
                              f"this voicecoach reads format {FORMAT}", redo)
    if model is not None and meta.get("model_sha256") != weights_sha256(model):
        raise StaleEnrollment(f"the enrollment of '{user}' was made for another version of "
                              "the command spotter", redo)
    if phrase_hash is not None and meta.get("phrase_hash") != phrase_hash:
        raise StaleEnrollment(f"the enrollment of '{user}' was made for other grammar "
                              "phrases", redo)
    try:
        commands = {c: CommandVoice(str(v["phrase"]), arrays[f"p_{c}"].astype(np.float32),
                                    float(v["threshold"]), int(v["takes"]), float(v["own_low"]),
                                    float(v["others_high"]))
                    for c, v in meta["commands"].items()}
        profile = VoiceProfile(str(meta["user"]), commands, str(meta["created"]),
                               str(meta["model_sha256"]), str(meta["phrase_hash"]),
                               int(meta["window"]), float(meta.get("adapt_cpu_s", 0.0)),
                               {k: meta[k] for k in ("takes_rejected", "audio_kept")
                                if k in meta})
    except (KeyError, TypeError, ValueError):
        raise VoicecoachError(f"the enrollment file {path} lacks a field it needs (corrupt)",
                              redo) from None
    for cmd, voice in commands.items():
        numbers = (voice.threshold, voice.own_low, voice.others_high)
        if not (np.all(np.isfinite(voice.prototypes)) and all(map(math.isfinite, numbers))):
            raise VoicecoachError(f"the enrollment of '{user}' holds values that are not "
                                  f"finite numbers (NaN or infinity) for '{cmd}': it would "
                                  "never fire", redo)
    if model is not None:
        dims = LAST * model.mean.size // model.window
        for cmd, voice in commands.items():
            if voice.prototypes.ndim != 2 or voice.prototypes.shape[1] != dims:
                raise StaleEnrollment(f"the enrollment of '{user}' has prototypes of another "
                                      f"shape for '{cmd}'", redo)
    return profile


def enrolled_files(data_dir: Path) -> list[Path]:
    folder = enrollment_dir(data_dir)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.npz") if not p.name.startswith("."))


def forget(data_dir: Path, user: str | None) -> list[str]:
    """Remove one user's enrollment (and kept audio), or everyone's; the users removed."""
    import shutil

    folder = enrollment_dir(data_dir)
    files = enrolled_files(data_dir)
    if user is not None:
        files = [p for p in files if p.stem == check_user(user)]
    removed = []
    try:
        for path in files:
            path.unlink()
            audio = folder / "audio" / path.stem
            if audio.is_dir():
                shutil.rmtree(audio)
            removed.append(path.stem)
    except OSError as exc:
        raise VoicecoachError(f"cannot remove the enrollment in {folder} "
                              f"({exc.strerror or exc})",
                              "make the data folder writable") from None
    return removed


def load_all(data_dir: Path, model: SpotterModel, phrase_hash: str
             ) -> tuple[list[VoiceProfile], list[str]]:
    """Every usable enrollment, and one line per enrollment that cannot be used (and why)."""
    profiles, problems = [], []
    for path in enrolled_files(data_dir):
        try:
            profiles.append(load_profile(path, model, phrase_hash))
        except VoicecoachError as exc:
            problems.append(exc.one_line())
    return profiles, problems


# -- run time ------------------------------------------------------------------------------
@dataclass(frozen=True)
class UserHit:
    """A detection that an enrolled user's prototypes added."""

    command: str
    phrase: str
    score: float
    user: str
    rose_s: float
    emitted_s: float


class EnrolledScorer:
    """Per-step user scores over every enrolled voice; detections the generic head missed."""

    def __init__(self, profiles: Sequence[VoiceProfile], model: SpotterModel) -> None:
        self.profiles = list(profiles)
        self._model = model
        rows, owners, thresholds = [], [], []
        self._slots: list[tuple[str, str, str]] = []
        for profile in self.profiles:
            for cmd, voice in profile.commands.items():
                rows.append(voice.prototypes)
                owners += [len(self._slots)] * len(voice.prototypes)
                thresholds.append(voice.threshold)
                self._slots.append((cmd, voice.phrase, profile.user))
        self._protos = (np.concatenate(rows) if rows
                        else np.zeros((0, LAST * model.mean.size // model.window), np.float32))
        self._owner = np.asarray(owners, dtype=np.int64)
        self._threshold = np.asarray(thresholds, dtype=np.float32)
        self._active: set[str] = {slot[0] for slot in self._slots}
        self._all = set(self._active)
        self.reset()

    def __bool__(self) -> bool:
        return bool(self._slots)

    def set_commands(self, commands: Collection[str]) -> None:
        self._active = {c for c in self._all if c in commands or c == STOP}

    def reset(self) -> None:
        self._above = np.zeros(len(self._slots), np.int64)
        self._rose = np.full(len(self._slots), np.nan)
        self._quiet_until = -1e9
        self._stop_quiet_until = -1e9
        self._last: dict[str, float] = {}

    def scores(self, flat_window: np.ndarray) -> np.ndarray:
        """Each slot's (user, command) best similarity for one raw window (window * 96,)."""
        if not self._slots:
            return np.zeros(0, np.float32)
        x = normalise(self._model, flat_window.reshape(1, -1))[0]
        sims = self._protos @ x
        best = np.full(len(self._slots), -1.0, np.float32)
        np.maximum.at(best, self._owner, sims)
        return best

    def scores_many(self, unit: np.ndarray) -> np.ndarray:
        """(steps, slots) best similarities of already normalised windows (see
        :func:`unit_windows`)."""
        out = np.full((len(unit), len(self._slots)), -1.0, np.float32)
        if self._slots and len(unit):
            sims = unit @ self._protos.T
            for k in range(len(self._slots)):
                out[:, k] = sims[:, self._owner == k].max(axis=1)
        return out

    def step(self, flat_window: np.ndarray, end_s: float, generic: Sequence[str]
             ) -> tuple[list[UserHit], list[str]]:
        """Feed one step's raw window and the commands the generic head fired at this step.

        Returns the detections to add and the generic ones to pass on: all of them, except a
        non-stop command this scorer already emitted within the refractory period (the same
        utterance heard once, earlier; stop always passes)."""
        return self.decide(self.scores(flat_window), end_s, generic)

    def decide(self, best: np.ndarray, end_s: float, generic: Sequence[str]
               ) -> tuple[list[UserHit], list[str]]:
        """:meth:`step` on the slots' scores of this step."""
        passed = [c for c in generic
                  if c == STOP or end_s - self._last.get(c, -1e9) > REFRACTORY_S]
        for c in generic:
            self._last[c] = end_s
            self._quiet_until = max(self._quiet_until, end_s + REFRACTORY_S)
            if c == STOP:
                self._stop_quiet_until = end_s + REFRACTORY_S
        if not self._slots:
            return [], passed
        above = best >= self._threshold
        self._above = np.where(above, self._above + 1, 0)
        rising = best >= 0.5 * self._threshold
        self._rose = np.where(rising, np.where(np.isnan(self._rose), end_s, self._rose), np.nan)
        hits: list[UserHit] = []
        stop_slots = [i for i, s in enumerate(self._slots) if s[0] == STOP and self._above[i] >= 1]
        if stop_slots and STOP not in generic and end_s >= self._stop_quiet_until:
            i = max(stop_slots, key=lambda k: best[k])
            hits.append(self._hit(i, best, end_s))
            self._stop_quiet_until = self._quiet_until = end_s + REFRACTORY_S
            return hits, passed
        if generic or end_s < self._quiet_until:
            return hits, passed
        ready = [i for i, s in enumerate(self._slots)
                 if s[0] != STOP and s[0] in self._active and self._above[i] >= CONFIRM]
        if ready:
            i = max(ready, key=lambda k: best[k] - self._threshold[k])
            hits.append(self._hit(i, best, end_s))
            self._quiet_until = end_s + REFRACTORY_S
        return hits, passed

    def _hit(self, i: int, best: np.ndarray, end_s: float) -> UserHit:
        cmd, phrase, user = self._slots[i]
        self._above[i] = 0
        self._last[cmd] = end_s
        rose = float(self._rose[i]) if not np.isnan(self._rose[i]) else end_s
        return UserHit(cmd, phrase, float(best[i]), user, rose, end_s)

    @property
    def users(self) -> list[str]:
        return [p.user for p in self.profiles]


def scorer_for(model: SpotterModel, phrases: Mapping[str, Sequence[str]],
               data_dir: Path | None = None) -> tuple[EnrolledScorer, list[str]]:
    """The scorer of every usable enrollment in ``data_dir`` (default: $VOICECOACH_HOME or the
    per-user data folder), and one line per enrollment that was skipped and why."""
    from voicecoach.listening.spotter.model import phrase_hash
    from voicecoach.settings import default_data_dir

    folder = Path(data_dir) if data_dir is not None else default_data_dir()
    profiles, problems = load_all(folder, model, phrase_hash({c: list(p)
                                                              for c, p in phrases.items()}))
    for line in problems:
        _LOGGER.warning("enrollment skipped: %s", line)
    return EnrolledScorer(profiles, model), problems
