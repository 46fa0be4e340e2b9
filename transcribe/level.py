"""A recording's level: its peak (a few clicks set aside), the share of it that is clipped,
channels that cancel, and the gain that brings it to the level the weights were measured
at.  A pass over the file before the one that transcribes it (``audio.stream``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np
import soundfile as sf

from . import constants as C
from .audio import (BLOCK_S, READ_S, AudioInfo, Reader, StreamStats, ffmpeg_blocks, probe,
                    to_mono)


def _block_peak(block: np.ndarray) -> float:
    """The largest finite magnitude in ``block`` (0 for none)."""
    if not block.size:
        return 0.0
    peak = max(float(block.max()), -float(block.min()))  # no |block| array: 10 times faster
    if not np.isfinite(peak):
        finite = block[np.isfinite(block)]
        peak = max(float(finite.max(initial=0.0)), -float(finite.min(initial=0.0)))
    return peak


class Peaks(NamedTuple):
    """A recording's largest finite sample magnitudes: of its mono mix, and of its
    loudest channel; and the peaks of the mix's loudest ``LEVEL_BLOCK_S`` blocks, by which
    a few brief spikes far above the music (clicks, a knock on the microphone) are told
    apart from it; and the runs of samples held at one value near its top and bottom, by
    which clipping is found."""

    channels: float
    loudest: tuple[float, ...] = ()  # the SPIKE_BLOCKS + 1 loudest blocks' peaks, loudest first
    held: tuple[tuple[float, int], ...] = ()  # (value, samples) of the runs (``held_runs``)
    samples: int = 0  # samples of the channels looked at
    top: float = 0.0  # the channels' largest finite sample
    bottom: float = 0.0  # and their smallest
    near_full: int = 0  # samples of the channels within NEAR_FULL_DB of full scale, or past it

    def _clipped_runs(self) -> list[tuple[float, int]]:
        """(value, samples) of the runs held where the recording is clipped: at full scale,
        or (clipped, then lowered) at its own top and bottom."""
        high, low = clip_levels(self.top, self.bottom, own_floor=True)
        return [(value, count) for value, count in self.held if value >= high or value <= low]

    @property
    def clipped(self) -> int:
        """Samples of the channels in runs held where clipped."""
        return sum(count for _, count in self._clipped_runs())

    @property
    def clipped_values(self) -> tuple[float, ...]:
        """The values at which the clipped wave is held (full scale, or its own top and
        bottom)."""
        return tuple(value for value, _ in self._clipped_runs())

    @property
    def clipped_share(self) -> float:
        """The share of the channels' samples that are clipped (0 to 1)."""
        return self.clipped / self.samples if self.samples else 0.0

    @property
    def coded_clipped_share(self) -> float:
        """Of a lossily coded recording (MP3, AAC...) that its decoder takes past full scale,
        the share of its samples within NEAR_FULL_DB of full scale or past it (0 to 1); 0
        for one that stays within full scale.  A wave clipped before it was coded is no
        longer held flat, so ``clipped_share`` misses it; the codec's ripple takes its
        crests past full scale, and they crowd there."""
        if max(self.top, -self.bottom) <= 1.0 or not self.samples:
            return 0.0
        return self.near_full / self.samples

    @property
    def clipped_level(self) -> float:
        """The magnitude at which the clipped wave is held (the highest; 0 for none)."""
        return max((abs(value) for value, _ in self._clipped_runs()), default=0.0)

    @property
    def mix(self) -> float:
        """The mono mix's peak: its loudest block's."""
        return self.loudest[0] if self.loudest else 0.0

    @property
    def cancelled(self) -> bool:
        """The mix far quieter than a channel: its channels cancel (one polarity-inverted)."""
        return self.mix < self.channels * 10 ** (-CANCELLED_DB / 20)

    @property
    def level(self) -> float:
        """The peak that sets the input gain: the mix's, unless at most ``SPIKE_BLOCKS`` of
        its blocks stand more than ``SPIKE_DB`` above the next loudest block; then the
        loudest block that does not (the music's peak, the spikes set aside)."""
        return self.loudest[self.spikes] if self.spikes else self.mix

    @property
    def spikes(self) -> int:
        """How many of the loudest blocks are set aside as spikes (0 to ``SPIKE_BLOCKS``)."""
        if len(self.loudest) <= SPIKE_BLOCKS or self.loudest[SPIKE_BLOCKS] <= 0:
            return 0
        bar = self.loudest[SPIKE_BLOCKS] * 10 ** (SPIKE_DB / 20)
        return sum(peak > bar for peak in self.loudest)


CANCELLED_DB = 20.0  # a mix this far below its loudest channel has channels that cancel
# Spikes: on the 248 files here (renders, benchmark files and their MP3 and m4a), the
# loudest 50 ms block of music stood at most 4.2 dB above the fourth loudest (median
# 1.1 dB); a click stands far higher, over a block or two.
LEVEL_BLOCK_S = 0.05
SPIKE_BLOCKS = 3
SPIKE_DB = 12.0
# Clipping: a run of at least CLIP_RUN samples of one value, at least CLIP_LEVEL of full
# scale (-0.09 dB; 8-bit PCM's top is 127/128) or beyond, the wave held where the converter,
# or a gain, stopped it; or at least CLIP_OWN of the recording's own top (or bottom), where a
# recording clipped and then lowered (by an editor, a normalizing app) holds it.  One value:
# a float file past full scale is not clipped, and its samples there vary.  Own tops below
# CLIP_OWN_FLOOR are not looked at: there a file's steps are coarse enough for a slow wave's
# crest to stand on one value (8-bit copies of our renders at -40 dBFS: 0.3-1.9 % of their
# samples, at -29 dBFS and above none; of the pianos' single notes at 0 to -29 dBFS, at most
# 0.58 %: ``benchmarks/clipping.py --false-alarms``).
CLIP_LEVEL = 0.99
CLIP_OWN = 0.99
CLIP_OWN_FLOOR = 10 ** (-30 / 20)
CLIP_RUN = 3
# The share of a recording's samples clipped above which it is said (the example, clipped by
# gain: note F1 93.1 as it ships, 92.2 at 1.3 % of its samples clipped, 93.7 at 3.1 %, 89.3
# at 5.9 % and 81.0 at 31 %, the notes added not played).
CLIPPED_WARN_SHARE = 0.01
# Clipping before lossy coding: the share of samples within NEAR_FULL_DB of full scale (or
# past it) above which it is said, when the decoded wave goes past full scale
# (``Peaks.coded_clipped_share``).  ``benchmarks/clipping.py --codec mp3``: the example
# clipped by a gain of 4 as MP3, 9.6 % (note F1 91.0 against 94.5), by 3, 3.0 % (93.6);
# development excerpts raised 26 dB through a limiter, not clipped, at most 2.9 %.
NEAR_FULL_DB = 1.0
NEAR_FULL = 10 ** (-NEAR_FULL_DB / 20)
CODED_CLIPPED_WARN_SHARE = 0.04


def clip_levels(top: float, bottom: float, own_floor: bool = False) -> tuple[float, float]:
    """(high, low): a run held at or above ``high``, or at or below ``low``, is clipping, in
    a recording whose largest sample is ``top`` and smallest ``bottom``.  Without
    ``own_floor`` these are the levels of a part of it, whose runs are kept for the whole to
    judge: its own top counts down to CLIP_OWN of the floor (quieter, it holds nothing that
    could count in a whole whose top reaches the floor; and near-silence holds its few
    values in runs that would cost a block 7 ms to count)."""
    floor = CLIP_OWN_FLOOR if own_floor else CLIP_OWN * CLIP_OWN_FLOOR

    def level(extreme: float) -> float:
        if extreme < floor:
            return CLIP_LEVEL
        return min(CLIP_LEVEL, CLIP_OWN * extreme)
    return level(top), -level(-bottom)


def held_runs(block: np.ndarray, top: float, bottom: float) -> tuple[tuple[float, int], ...]:
    """(value, samples) of the runs of at least ``CLIP_RUN`` samples of one value in a
    ``(samples, channels)`` block that may be clipping (``clip_levels`` of its own ``top``
    and ``bottom``, finite); a run across two blocks is counted as two."""
    count = len(block) - CLIP_RUN + 1
    if count <= 0:
        return ()
    high, low = clip_levels(top, bottom)
    head = block[:count]
    # Where a run may begin (flat: numpy's nonzero of a 2-D mask takes 40 times as long).
    at = np.flatnonzero((head >= high) | (head <= low))
    if not len(at):
        return ()
    rows, columns = np.divmod(at, block.shape[1])
    first = block[rows, columns]
    same = np.isfinite(first)
    for offset in range(1, CLIP_RUN):
        same &= block[rows + offset, columns] == first
    rows, columns = rows[same], columns[same]
    if not len(rows):
        return ()
    covered = np.unique(np.concatenate([(rows + offset) * block.shape[1] + columns
                                        for offset in range(CLIP_RUN)]))
    values, counts = np.unique(block.reshape(-1)[covered], return_counts=True)
    return tuple(zip(values.tolist(), counts.tolist()))


def clipped_samples(block: np.ndarray) -> int:
    """How many samples of a ``(samples, channels)`` block are clipped (held at full scale,
    or at its own top or bottom; a run across two blocks is counted as two)."""
    top, bottom = _extremes(block)
    return Peaks(0.0, held=held_runs(block, top, bottom), top=top, bottom=bottom).clipped


def _extremes(block: np.ndarray) -> tuple[float, float]:
    """(largest, smallest) finite sample of ``block``; (0, 0) for none."""
    if not block.size:
        return 0.0, 0.0
    top, bottom = float(block.max()), float(block.min())
    if not (np.isfinite(top) and np.isfinite(bottom)):
        finite = block[np.isfinite(block)]
        top, bottom = float(finite.max(initial=0.0)), float(finite.min(initial=0.0))
    return top, bottom


def _peaks(block: np.ndarray, rate: float) -> Peaks:
    """``Peaks`` of a ``(samples, channels)`` block at ``rate`` Hz."""
    mix = to_mono(block)
    length = max(1, int(LEVEL_BLOCK_S * rate))
    whole = len(mix) // length * length
    blocks = mix[:whole].reshape(-1, length)
    peaks = np.maximum(blocks.max(axis=1, initial=-np.inf), -blocks.min(axis=1, initial=np.inf))
    if whole < len(mix):
        peaks = np.append(peaks, _block_peak(mix[whole:]))
    if not np.isfinite(peaks).all():  # NaN or Inf samples: the finite ones' peaks
        peaks = np.array([_block_peak(mix[start:start + length])
                          for start in range(0, len(mix), length)], np.float32)
    loudest = tuple(float(p) for p in np.sort(peaks)[::-1][:SPIKE_BLOCKS + 1])
    top, bottom = _extremes(block)
    near_full = (int(np.count_nonzero(block >= NEAR_FULL)) if top >= NEAR_FULL else 0) + (
        int(np.count_nonzero(block <= -NEAR_FULL)) if bottom <= -NEAR_FULL else 0)
    return Peaks(max(top, -bottom) if block.shape[1] > 1 else
                 (loudest[0] if loudest else 0.0), loudest,
                 held_runs(block, top, bottom), block.size, top, bottom, near_full)


def _largest(peaks: Iterator[Peaks]) -> Peaks:
    """The ``Peaks`` of the parts together: of their runs, those that may be clipping in the
    whole (a run dropped as the parts' top and bottom grow could never count in it: see
    ``clip_levels``)."""
    channels, loudest, held, samples, top, bottom, near_full = 0.0, (), {}, 0, 0.0, 0.0, 0
    for part in peaks:
        channels = max(channels, part.channels)
        near_full += part.near_full
        loudest = tuple(sorted(loudest + part.loudest, reverse=True)[:SPIKE_BLOCKS + 1])
        samples += part.samples
        top, bottom = max(top, part.top), min(bottom, part.bottom)
        high, low = clip_levels(top, bottom)
        for value, count in part.held:
            held[value] = held.get(value, 0) + count
        held = {value: count for value, count in held.items() if value >= high or value <= low}
    return Peaks(channels, loudest, tuple(sorted(held.items())), samples, top, bottom,
                 near_full)


SEEK_EXACT = ("WAV", "WAVEX", "FLAC", "AIFF", "W64", "RF64", "CAF", "RAW")  # libsndfile's
PART_MIN_S = 30.0  # the shortest stretch of a file worth a thread of its own


def _part_peaks(info: AudioInfo, start: int, stop: int | None) -> Peaks:
    """``Peaks`` of frames ``start`` to ``stop`` (None: the end) of a file libsndfile reads,
    a second at a time as ``stream`` reads (a damaged file loses little); as far as it
    decodes."""
    read_frames = max(1, int(READ_S * info.sample_rate))

    def blocks(reader: Reader) -> Iterator[Peaks]:
        position = start
        try:
            if start:
                reader.seek(start)
            while stop is None or position < stop:
                wanted = read_frames if stop is None else min(read_frames, stop - position)
                block = reader.read(wanted)
                if not len(block):
                    return
                position += len(block)
                yield _peaks(block, info.sample_rate)
        except (sf.LibsndfileError, RuntimeError):
            return  # the transcribing pass reports the damage

    with Reader(info) as reader:
        return _largest(blocks(reader))


def peak(path: str | Path, info: AudioInfo | None = None, parts: int = 1) -> Peaks:
    """The largest finite sample magnitudes of a file (``Peaks``): a pass over the file
    before the one that transcribes it.  Read as far as it decodes; a file that cannot be
    opened raises as ``stream`` does.  ``parts`` threads read as many stretches of a long
    WAV, FLAC or AIFF file at once (decoding releases the GIL): on 2 cores a 10-minute
    stereo FLAC in about half the time."""
    info = info or probe(path)
    if info.decoder == "ffmpeg":
        return _largest(_peaks(block, info.sample_rate)
                        for block in ffmpeg_blocks(info, BLOCK_S, StreamStats()))
    parts = max(1, min(parts, int(info.duration_s // PART_MIN_S)))
    if parts == 1 or info.format not in SEEK_EXACT:
        return _part_peaks(info, 0, None)
    from concurrent.futures import ThreadPoolExecutor
    # On whole seconds, so the stretches read the blocks one reader would; the last to the end.
    second = max(1, int(READ_S * info.sample_rate))
    edges = [round(info.frames * k / parts / second) * second for k in range(parts)] + [None]
    with ThreadPoolExecutor(parts) as pool:
        return _largest(pool.map(lambda k: _part_peaks(info, edges[k], edges[k + 1]),
                                 range(parts)))


def array_peak(audio: np.ndarray, sample_rate: float) -> Peaks:
    """``peak`` of an array from ``as_samples_first``, a second at a time as a file's."""
    step = max(1, int(READ_S * sample_rate))
    return _largest(_peaks(audio[start:start + step].reshape(-1, 1) if audio.ndim == 1
                           else audio[start:start + step], sample_rate)
                    for start in range(0, len(audio), step))


def level_gain(peak_value: float, target: float = C.INPUT_PEAK,
               max_gain_db: float = C.MAX_INPUT_GAIN_DB) -> float:
    """The factor that brings a recording's ``peak_value`` to ``target``, at most
    ``max_gain_db`` up; 1 for silence."""
    if peak_value <= 0:
        return 1.0
    return float(min(target / peak_value, 10 ** (max_gain_db / 20)))


def scaled(blocks: Iterator[np.ndarray], gain: float,
           limit: float | None = None) -> Iterator[np.ndarray]:
    """``blocks`` times ``gain`` (float32), held within +-``limit`` if one is given."""
    if gain == 1.0 and limit is None:
        yield from blocks
        return
    factor = np.float32(gain)
    for block in blocks:
        block = block * factor
        yield block if limit is None else np.clip(block, -limit, limit, out=block)
