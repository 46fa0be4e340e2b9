"""Decode audio files, downmix to mono and resample to the model rate, in blocks.

soundfile (libsndfile) reads WAV, FLAC, OGG/Vorbis/Opus and MP3; soxr resamples with
a proper anti-aliasing filter, as a stream, so a file of any length is read a block
at a time and never sits in memory whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import soxr

from . import constants as C
from .errors import TranscribeError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff",
                    ".w64", ".rf64", ".caf")
UNSUPPORTED_EXTENSIONS = (".m4a", ".aac", ".mp4", ".wma", ".webm", ".mkv", ".ape", ".alac")
BLOCK_S = 30.0


@dataclass(frozen=True)
class AudioInfo:
    path: Path
    sample_rate: int
    channels: int
    frames: int  # at the file's own rate

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def probe(path: str | Path) -> AudioInfo:
    """Check that ``path`` is a readable audio file and return its format.

    Raises ``TranscribeError`` with a one-line reason otherwise.
    """
    path = Path(path)
    if not path.exists():
        raise TranscribeError(f"{path}: no such file")
    if path.is_dir():
        raise TranscribeError(f"{path}: is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise TranscribeError(f"{path}: the file is empty (0 bytes)")
    if path.suffix.lower() in UNSUPPORTED_EXTENSIONS:
        raise TranscribeError(f"{path}: {path.suffix} is not supported; convert it first, "
                              f"e.g. `ffmpeg -i '{path.name}' '{path.stem}.flac'`")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as error:
        raise TranscribeError(f"{path}: not a readable audio file ({_reason(error)}); "
                              "supported: WAV, FLAC, OGG, MP3") from None
    if info.samplerate <= 0 or info.channels <= 0:
        raise TranscribeError(f"{path}: the file declares no samples")
    return AudioInfo(path, int(info.samplerate), int(info.channels), int(info.frames))


def _reason(error: Exception) -> str:
    text = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
    return text.split(": ", 1)[-1][:160]


class Resampler:
    """Streaming mono resampler to ``target_rate`` (soxr, high quality)."""

    def __init__(self, source_rate: int, target_rate: int = C.SAMPLE_RATE):
        self.stream = None if source_rate == target_rate else \
            soxr.ResampleStream(source_rate, target_rate, 1, dtype="float32", quality="HQ")

    def __call__(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        block = np.ascontiguousarray(block, dtype=np.float32)
        if self.stream is None:
            return block
        return self.stream.resample_chunk(block, last=last)


@dataclass
class StreamStats:
    """Filled in while a stream is read."""

    samples: int = 0  # at the target rate
    nonfinite: int = 0  # NaN or Inf input samples, replaced by silence


def to_mono(block: np.ndarray) -> np.ndarray:
    """``(samples, channels)`` or ``(samples,)`` -> ``(samples,)`` by averaging channels."""
    return block.mean(axis=1, dtype=np.float32) if block.ndim == 2 else block.astype(np.float32)


def sanitize(block: np.ndarray, stats: StreamStats) -> np.ndarray:
    finite = np.isfinite(block)
    if not finite.all():
        stats.nonfinite += int((~finite).sum())
        block = np.where(finite, block, 0.0).astype(np.float32)
    return block


def stream(path: str | Path, target_rate: int = C.SAMPLE_RATE, block_s: float = BLOCK_S,
           stats: StreamStats | None = None, info: AudioInfo | None = None) -> Iterator[np.ndarray]:
    """Yield mono float32 blocks of ``path`` at ``target_rate``.

    Memory stays at one block whatever the file's length.  NaN/Inf samples become
    silence (counted in ``stats``).  A file that breaks off mid-way raises
    ``TranscribeError``.  ``info`` is the file's ``probe``, if already made.
    """
    info = info or probe(path)
    stats = stats if stats is not None else StreamStats()
    resample = Resampler(info.sample_rate, target_rate)
    block_frames = max(1, int(block_s * info.sample_rate))
    try:
        with sf.SoundFile(str(info.path)) as handle:
            while True:
                block = handle.read(block_frames, dtype="float32", always_2d=True)
                last = len(block) < block_frames
                out = resample(sanitize(to_mono(block), stats), last=last)
                stats.samples += len(out)
                if len(out):
                    yield out
                if last:
                    break
    except (sf.LibsndfileError, RuntimeError) as error:
        raise TranscribeError(f"{info.path}: the audio is truncated or corrupt after "
                              f"{stats.samples / target_rate:.1f} s ({_reason(error)})") from None


def stream_array(audio: np.ndarray, sample_rate: int, target_rate: int = C.SAMPLE_RATE,
                 block_s: float = BLOCK_S, stats: StreamStats | None = None) -> Iterator[np.ndarray]:
    """Like ``stream`` for an in-memory array ``(samples,)`` or ``(samples, channels)``."""
    audio = np.asarray(audio)
    if audio.ndim not in (1, 2):
        raise TranscribeError(f"audio must be (samples,) or (samples, channels), got {audio.shape}")
    if sample_rate <= 0:
        raise TranscribeError(f"sample rate must be positive, got {sample_rate}")
    stats = stats if stats is not None else StreamStats()
    resample = Resampler(int(sample_rate), target_rate)
    step = max(1, int(block_s * sample_rate))
    starts = range(0, max(len(audio), 1), step)
    for start in starts:
        block = sanitize(to_mono(audio[start:start + step]), stats)
        out = resample(block, last=start + step >= len(audio))
        stats.samples += len(out)
        if len(out):
            yield out


def load(path: str | Path, target_rate: int = C.SAMPLE_RATE) -> np.ndarray:
    """The whole file as mono float32 at ``target_rate`` (for short files and tests)."""
    blocks = list(stream(path, target_rate))
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)

