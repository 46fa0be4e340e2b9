"""Random training segments from the rendered cache, with audio augmentation.

Everything is held in memory as int16 (a 24-hour cache is about 2.8 GB) and cut
on the fly, so one render serves many epochs of differently augmented segments.
Augmentations (pedalboard): random gain, room reverb, shelving and peaking EQ,
an occasional MP3-like low-pass, and background noise at a random SNR.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pedalboard as pb
import soundfile as sf

from .. import constants as C
from .labels import notes_to_rolls


class SegmentSampler:
    """Draws batches of (audio, rolls) segments of ``n_frames`` frames.

    ``context_samples`` of real audio are added on each side of every segment so
    the front end yields exactly ``n_frames`` frames (see ``features.Frontend``).
    """

    def __init__(self, audio_paths: list[Path], n_frames: int, frontend,
                 seed: int = 0, augment: bool = True):
        if not audio_paths:
            raise ValueError("no rendered audio found: run `amt-train render` first")
        self.n_frames = n_frames
        self.frontend = frontend
        self.hop = frontend.hop_length
        self.context = frontend.context_samples
        self.augment = augment
        self.rng = np.random.default_rng(seed)
        self.audio, self.notes = [], []
        for path in audio_paths:
            audio, rate = sf.read(path, dtype="int16")
            if rate != C.SAMPLE_RATE:
                raise ValueError(f"{path}: cached at {rate} Hz, expected {C.SAMPLE_RATE}")
            self.audio.append(audio)
            self.notes.append(np.load(path.with_suffix(".npy")))
        lengths = np.array([len(a) for a in self.audio], dtype=np.float64)
        self.weights = lengths / lengths.sum()
        self.hours = lengths.sum() / C.SAMPLE_RATE / 3600

    def segment_samples(self) -> int:
        return self.frontend.samples_for_frames(self.n_frames)

    def sample(self, batch_size: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Audio ``(batch, samples)`` float32 and rolls ``(batch, n_frames, 88)``."""
        length = self.segment_samples()
        audio = np.zeros((batch_size, length), np.float32)
        rolls = {name: np.zeros((batch_size, self.n_frames, C.N_KEYS), np.float32)
                 for name in ("frame", "onset", "offset", "velocity")}
        for row in range(batch_size):
            index = self.rng.choice(len(self.audio), p=self.weights)
            source = self.audio[index]
            last_frame = max(1, (len(source) - length) // self.hop)
            first_frame = int(self.rng.integers(0, last_frame))
            start = first_frame * self.hop - self.context
            piece = source[max(start, 0):start + length].astype(np.float32) / 32768
            audio[row, max(-start, 0):max(-start, 0) + len(piece)] = piece
            for name, roll in notes_to_rolls(self.notes[index], first_frame,
                                             self.n_frames, self.frontend.frame_rate_hz).items():
                rolls[name][row] = roll
            if self.augment:
                audio[row] = self.augment_audio(audio[row])
        return audio, rolls

    def augment_audio(self, audio: np.ndarray) -> np.ndarray:
        rng = self.rng
        effects = []
        if rng.random() < 0.5:
            effects.append(pb.Reverb(room_size=rng.uniform(0.1, 0.9),
                                     damping=rng.uniform(0.1, 0.9),
                                     wet_level=rng.uniform(0.05, 0.4), dry_level=1.0,
                                     width=0.0))
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
        if effects:
            audio = pb.Pedalboard(effects)(audio[None], C.SAMPLE_RATE)[0]
        if rng.random() < 0.3:
            noise = rng.standard_normal(len(audio)).astype(np.float32)
            if rng.random() < 0.5:  # pink-ish: integrate white noise a little
                noise = np.cumsum(noise) * 0.05
                noise -= np.linspace(noise[0], noise[-1], len(noise), dtype=np.float32)
            signal_rms = float(np.sqrt(np.mean(audio ** 2)) + 1e-8)
            noise_rms = float(np.sqrt(np.mean(noise ** 2)) + 1e-8)
            snr_db = rng.uniform(10, 40)
            audio = audio + noise * (signal_rms / noise_rms) * 10 ** (-snr_db / 20)
        peak = float(np.abs(audio).max()) + 1e-8
        level = float(np.exp(rng.uniform(np.log(0.02), np.log(1.0))))
        return (audio * (level / peak)).astype(np.float32)
