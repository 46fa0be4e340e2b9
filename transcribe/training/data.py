"""Random training segments from the rendered cache, with audio augmentation.

Everything is held in memory as int16 (a 24-hour cache is about 2.8 GB) and cut
on the fly, so one render serves many epochs of differently augmented segments.
Augmentations, as the strongest peers use them (Kong et al. 2021, basic-pitch):
a room (a measured response, or a modelled one of random decay), shelving and
peaking EQ, an occasional MP3-like low-pass, compression, background noise at
3-40 dB SNR, random gain, and the sum of two segments with their labels united
(denser polyphony).  Detuning and transposition happen at render time (corpus.py),
where the labels can follow exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pedalboard as pb
import soundfile as sf
import soxr
from scipy.signal import fftconvolve

from .. import constants as C
from .labels import notes_to_rolls, pedal_to_roll

ROLLS = ("frame", "onset", "offset", "velocity")
# Audio drawn before each augmented segment, heard only through the room it is convolved
# with: without it every segment would start in a silent room, with no tail of the notes
# before it (the modelled rooms ring for up to 2 s).
ROOM_PREROLL_S = 2.0
# Measured rooms kept for the development set, never convolved in training.
DEVELOPMENT_ROOMS = ("openair_st_margarets_church",)


def training_rooms(folder: Path) -> list[Path]:
    """The measured rooms under ``folder`` (OpenAIR's FLACs) except the development rooms.

    Voxengo's modelled rooms (WAV) are kept for the development set too.
    """
    return sorted(p for p in folder.rglob("*.flac") if p.stem not in DEVELOPMENT_ROOMS)


def load_rooms(paths: list[Path], sample_rate: int = C.SAMPLE_RATE) -> list[np.ndarray]:
    """Room impulse responses as mono float32 at ``sample_rate``, peak 1."""
    rooms = []
    for path in paths:
        response, rate = sf.read(path, dtype="float32", always_2d=True)
        response = soxr.resample(response.mean(axis=1), rate, sample_rate)
        rooms.append((response / (np.abs(response).max() + 1e-9)).astype(np.float32))
    return rooms


def modelled_room(rng: np.random.Generator, sample_rate: int = C.SAMPLE_RATE) -> np.ndarray:
    """A room response of random size: a direct sound, then exponentially decaying noise
    (RT60 0.2-2.0 s) whose highs die faster, as in real rooms."""
    rt60 = float(rng.uniform(0.2, 2.0))
    length = int(rt60 * sample_rate)
    t = np.arange(length) / sample_rate
    noise = rng.standard_normal(length).astype(np.float32)
    bright = np.exp(-6.9 * t / rt60)
    dark = np.convolve(noise, np.ones(8) / 8, mode="same")
    mix = np.exp(-t / (0.3 * rt60))  # early sound bright, the tail darker
    tail = (mix * noise + (1 - mix) * dark) * bright
    tail[:int(rng.uniform(0.005, 0.03) * sample_rate)] = 0  # gap before the first reflections
    tail *= float(rng.uniform(0.05, 0.5)) / (np.abs(tail).max() + 1e-9)
    tail[0] = 1.0
    return tail.astype(np.float32)


class SegmentSampler:
    """Draws batches of (audio, rolls) segments of ``n_frames`` frames.

    ``frontend`` is the model's (its hop and context): real audio is added on each
    side of every segment so the front end yields exactly ``n_frames`` frames.
    Files rendered with their pedal (a ``.pedal.npy`` beside the audio) give pedal
    labels; for the others ``pedal_known`` is 0 and the pedal loss skips them.  Likewise
    a ``.keys.npy`` (the notes as the keys were held) gives the ``key`` roll, with
    ``key_known``.
    """

    def __init__(self, audio_paths: list[Path], n_frames: int, frontend,
                 seed: int = 0, augment: bool = True, rooms: list[np.ndarray] | None = None,
                 mix_probability: float = 0.0):
        if not audio_paths:
            raise ValueError("no rendered audio found: run `amt-train render` first")
        self.n_frames = n_frames
        self.frontend = frontend
        self.hop = frontend.hop_length
        self.context = frontend.context_samples
        self.augment = augment
        self.rooms = rooms or []
        self.mix_probability = mix_probability
        self.rng = np.random.default_rng(seed)
        self.audio, self.notes, self.pedal, self.keys = [], [], [], []
        self.add(audio_paths)

    def add(self, audio_paths: list[Path]) -> None:
        """Load more rendered files; segments are drawn from all, in proportion to length
        (a run on a lent machine takes in what its background render finishes)."""
        for path in audio_paths:
            audio, rate = sf.read(path, dtype="int16")
            if rate != C.SAMPLE_RATE:
                raise ValueError(f"{path}: cached at {rate} Hz, expected {C.SAMPLE_RATE}")
            self.audio.append(audio)
            self.notes.append(np.load(path.with_suffix(".npy")))
            pedal = path.with_suffix(".pedal.npy")
            self.pedal.append(np.load(pedal) if pedal.exists() else None)
            keys = path.with_suffix(".keys.npy")
            self.keys.append(np.load(keys) if keys.exists() else None)
        lengths = np.array([len(a) for a in self.audio], dtype=np.float64)
        self.weights = lengths / lengths.sum()
        self.hours = lengths.sum() / C.SAMPLE_RATE / 3600

    def segment_samples(self) -> int:
        return self.frontend.samples_for_frames(self.n_frames)

    def _segment(self, preroll: int = 0) -> tuple[np.ndarray, dict]:
        """A segment's audio (``preroll`` samples of what came before it first) and rolls."""
        length = self.segment_samples()
        index = self.rng.choice(len(self.audio), p=self.weights)
        source = self.audio[index]
        last_frame = max(1, (len(source) - length) // self.hop)
        first_frame = int(self.rng.integers(0, last_frame))
        start = first_frame * self.hop - self.context - preroll
        length += preroll
        audio = np.zeros(length, np.float32)
        piece = source[max(start, 0):start + length].astype(np.float32) / 32768
        audio[max(-start, 0):max(-start, 0) + len(piece)] = piece
        rate = self.frontend.frame_rate_hz
        rolls = notes_to_rolls(self.notes[index], first_frame, self.n_frames, rate)
        pedal, keys = self.pedal[index], self.keys[index]
        rolls["pedal"] = pedal_to_roll(pedal if pedal is not None else [], first_frame,
                                       self.n_frames, rate)
        rolls["key"] = notes_to_rolls(keys if keys is not None else np.zeros((0, 4)),
                                      first_frame, self.n_frames, rate)["frame"]
        rolls["pedal_known"], rolls["key_known"] = float(pedal is not None), float(keys is not None)
        return audio, rolls

    def sample(self, batch_size: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Audio ``(batch, samples)`` float32; rolls ``(batch, n_frames, 88)`` per note head
        and ``key``, ``pedal`` ``(batch, n_frames, 3)``, ``pedal_known`` and ``key_known``
        ``(batch,)``."""
        audio = np.zeros((batch_size, self.segment_samples()), np.float32)
        rolls = {name: np.zeros((batch_size, self.n_frames, C.N_KEYS), np.float32)
                 for name in ROLLS}
        rolls["pedal"] = np.zeros((batch_size, self.n_frames, 3), np.float32)
        rolls["key"] = np.zeros((batch_size, self.n_frames, C.N_KEYS), np.float32)
        rolls["pedal_known"] = np.zeros(batch_size, np.float32)
        rolls["key_known"] = np.zeros(batch_size, np.float32)
        # With augmentation a segment comes with what was played before it, so that a room
        # rings on with the notes before the segment as a recording's room does.
        preroll = int(ROOM_PREROLL_S * C.SAMPLE_RATE) if self.augment else 0
        for row in range(batch_size):
            segment, labels = self._segment(preroll)
            if self.augment and self.rng.random() < self.mix_probability:
                # Two pieces at once: audio summed at a random balance, labels united.
                # The pedal (the keys) of the sum are known only if both pieces' are.
                other, other_labels = self._segment(preroll)
                balance = float(self.rng.uniform(0.3, 1.0))
                segment = segment + balance * other
                labels = {name: (min if name.endswith("_known") else np.maximum)(
                    value, other_labels[name]) for name, value in labels.items()}
            audio[row] = self.augment_audio(segment, preroll) if self.augment else segment
            for name, value in labels.items():
                rolls[name][row] = value
        return audio, rolls

    def augment_audio(self, audio: np.ndarray, preroll: int = 0) -> np.ndarray:
        """``audio`` augmented, less its first ``preroll`` samples (heard only through the
        room's tail)."""
        rng = self.rng
        if rng.random() < 0.6:  # a room: measured when we have some, else modelled
            room = self.rooms[rng.integers(len(self.rooms))] \
                if self.rooms and rng.random() < 0.5 else modelled_room(rng)
            wet = fftconvolve(audio, room)[preroll:len(audio)]
            audio = audio[preroll:]
            audio = (wet / (np.abs(wet).max() + 1e-9) * (np.abs(audio).max() + 1e-9)).astype(np.float32)
        else:
            audio = audio[preroll:]
        effects = []
        if rng.random() < 0.7:
            effects += [
                pb.LowShelfFilter(cutoff_frequency_hz=rng.uniform(80, 400),
                                  gain_db=rng.uniform(-8, 8)),
                pb.PeakFilter(cutoff_frequency_hz=float(np.exp(rng.uniform(np.log(300),
                                                                           np.log(4000)))),
                              gain_db=rng.uniform(-8, 8), q=rng.uniform(0.5, 2.0)),
                pb.HighShelfFilter(cutoff_frequency_hz=rng.uniform(2000, 6000),
                                   gain_db=rng.uniform(-10, 6))]
        if rng.random() < 0.15:  # bandwidth of a low-bitrate MP3
            effects.append(pb.LowpassFilter(cutoff_frequency_hz=rng.uniform(3000, 7000)))
        if rng.random() < 0.3:  # a recording engineer's (or a phone's) compressor
            effects.append(pb.Compressor(threshold_db=rng.uniform(-30, -10),
                                         ratio=rng.uniform(2, 8),
                                         attack_ms=rng.uniform(1, 20),
                                         release_ms=rng.uniform(50, 300)))
        if effects:
            audio = pb.Pedalboard(effects)(audio[None], C.SAMPLE_RATE)[0]
        if rng.random() < 0.4:
            noise = rng.standard_normal(len(audio)).astype(np.float32)
            if rng.random() < 0.5:  # pink-ish: integrate white noise a little
                noise = np.cumsum(noise) * 0.05
                noise -= np.linspace(noise[0], noise[-1], len(noise), dtype=np.float32)
            signal_rms = float(np.sqrt(np.mean(audio ** 2)) + 1e-8)
            noise_rms = float(np.sqrt(np.mean(noise ** 2)) + 1e-8)
            snr_db = rng.uniform(3, 40)
            audio = audio + noise * (signal_rms / noise_rms) * 10 ** (-snr_db / 20)
        peak = float(np.abs(audio).max()) + 1e-8
        level = float(np.exp(rng.uniform(np.log(0.02), np.log(1.0))))
        return (audio * (level / peak)).astype(np.float32)
