"""Clipped crests redrawn, before the network hears a clipped recording.

A converter or a gain that clips holds the wave's crests flat, and the network takes the
harmonics of those flat tops for notes that were not played.  Each run of samples held at
a value where the recording is clipped (the values of the runs the clipping warning counts,
``level.Peaks.clipped_values``; here a run of one sample too) is replaced by the cubic
through the ``CONTEXT`` samples either side of it, kept beyond the value it was held at and
within ``CAP`` times it: cubic interpolation, the simplest of the declipping methods
(Godsill and Rayner 1998 fit an autoregressive model instead).  A run with a clipped or
NaN sample among those is left as it is.  On the first 10 development excerpts clipped by
gains of 3, 4 and 8 (1.8, 5.1 and 23 % of their samples clipped), note F1 rose from 84.8,
82.4 and 76.5 to 85.6, 85.4 and 81.5 (86.3 as they are; ``benchmarks/clipping.py``).
Two samples a side were chosen over three and four on the 15 tuning excerpts.

It streams, per channel at the file's own rate, with constant memory: a run that a block
ends in is held back until the next block brings its right side.
"""

from __future__ import annotations

import numpy as np

from .level import CLIP_RUN

CONTEXT = 2  # samples either side of a run that its cubic is fitted to
CAP = 2.0  # a redrawn crest reaches at most this times the level it was held at
MAX_RUN_S = 0.05  # a run held longer is a fault (a dropout at full scale), left as it is


class Declipper:
    """Feed ``(samples, channels)`` blocks with ``__call__``; the last with ``last=True``.
    The output is the input with its clipped runs redrawn, as long in total, delayed by at
    most a run and ``CONTEXT`` samples."""

    def __init__(self, values, sample_rate: float):
        self.values = np.asarray(sorted(values), np.float32)  # where the wave was held
        self.max_run = max(CLIP_RUN, int(MAX_RUN_S * sample_rate))
        self.carry: np.ndarray | None = None  # held back: context, and a run not yet ended
        self.handed = 0  # of ``carry``'s first samples, those already handed on

    def __call__(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        mono = block.ndim == 1  # an array's (samples,)
        block = block[:, None] if mono else block
        buffer = block if self.carry is None else np.concatenate([self.carry, block])
        cut = len(buffer) if last else self._safe_cut(buffer)
        out = redraw(buffer, self.values, self.max_run, before=cut)[self.handed:cut]
        start = max(0, cut - CONTEXT)
        self.carry, self.handed = buffer[start:], cut - start
        return out[:, 0] if mono else out

    def _safe_cut(self, buffer: np.ndarray) -> int:
        """Where this block's output may end: ``CONTEXT`` samples before the buffer's end
        (the right side a run there needs is still to come), moved back to the start of a
        held run it would split (one longer than ``max_run`` is never redrawn: split)."""
        cut = max(self.handed, len(buffer) - CONTEXT)
        for back in range(self.max_run + 1):
            at = cut - back
            if at <= self.handed:
                return self.handed
            pair = buffer[at - 1:at + 1]
            if not np.any((pair[0] == pair[1]) & np.isin(pair[0], self.values)):
                return at
        return cut


def plateaus(channel: np.ndarray, values: np.ndarray,
             max_run: int) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the runs of at most ``max_run`` samples held at one of ``values``
    in a 1-D ``channel``."""
    at = np.isin(channel, values)
    goes_on = np.zeros(len(channel), bool)  # the same held value as the sample before
    goes_on[1:] = (channel[1:] == channel[:-1]) & at[1:]
    starts = np.flatnonzero(~goes_on)  # the stretches the channel falls into
    ends = np.r_[starts[1:], len(channel)]
    keep = at[starts] & (ends - starts <= max_run)
    return starts[keep], ends[keep]


def redraw(audio: np.ndarray, values, max_run: int, before: int | None = None) -> np.ndarray:
    """``(samples, channels)`` ``audio`` with each run held at one of ``values`` that starts
    before ``before`` and has ``CONTEXT`` samples either side redrawn (a copy)."""
    values = np.asarray(values, np.float32)
    out = np.array(audio, dtype=np.float32, copy=True)
    before = len(audio) if before is None else before
    for channel in range(audio.shape[1]):
        wave = out[:, channel]  # read only: _redrawn returns a new channel
        starts, ends = plateaus(wave, values, max_run)
        keep = (starts >= CONTEXT) & (ends + CONTEXT <= len(wave)) & (starts < before)
        starts, ends = starts[keep], ends[keep]
        if not len(starts):
            continue
        out[:, channel] = _redrawn(wave, starts, ends, values)
    return out


def _redrawn(wave: np.ndarray, starts: np.ndarray, ends: np.ndarray,
             values: np.ndarray) -> np.ndarray:
    """``wave`` with the runs ``starts``..``ends`` replaced by their cubics, all runs solved
    at once (as a batch of least-squares problems, which with four points each are exact
    interpolations)."""
    wave64 = wave.astype(np.float64)
    offsets = np.r_[np.arange(-CONTEXT, 0), np.arange(CONTEXT)]  # left of start, from end
    points = np.where(offsets < 0, starts[:, None] + offsets, ends[:, None] + offsets)
    context = wave64[points]
    # Not fitted to: samples clipped themselves, or NaN/Inf (made silence later).
    weight = (np.isfinite(context) & ~np.isin(context, values)).astype(np.float64)
    context = np.where(weight > 0, context, 0.0)
    centre = (starts + ends - 1) / 2.0
    scale = (ends - starts) / 2.0 + CONTEXT
    t = (points - centre[:, None]) / scale[:, None]
    basis = t[..., None] ** np.arange(4)  # (runs, points, 4): 1, t, t^2, t^3
    normal = np.einsum("rp,rpi,rpj->rij", weight, basis, basis)
    target = np.einsum("rp,rpi,rp->ri", weight, basis, context)
    fitted = weight.sum(axis=1) >= 4  # a cubic needs four points
    normal[~fitted] = np.eye(4)
    coefficients = np.linalg.solve(normal, target[..., None])[..., 0]
    lengths = ends - starts
    run = np.repeat(np.arange(len(starts)), lengths)
    first = np.cumsum(lengths) - lengths  # where each run's samples begin in ``index``
    index = starts[run] + np.arange(lengths.sum()) - first[run]
    u = (index - centre[run]) / scale[run]
    curve = np.einsum("ni,ni->n", coefficients[run], u[:, None] ** np.arange(4))
    held = wave64[index]
    sign = np.sign(held)
    # Beyond the level it was held at (it was clipped there), within CAP times it.
    curve = sign * np.clip(sign * curve, np.abs(held), CAP * np.abs(held))
    out = wave.astype(np.float32, copy=True)
    use = fitted[run]
    out[index[use]] = curve[use]
    return out
