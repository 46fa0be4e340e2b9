"""Posteriorgrams -> note events, with onset/offset logic as in Onsets and Frames.

Hawthorne et al. 2018: a note may start only where the onset posteriorgram rises
above ``onset_threshold``; it lasts while the onset or frame posteriorgram stays
above its threshold.  We add two rules: the note ends where the offset head fires
(above ``offset_threshold``), and a new onset of the same key ends the previous
note, so no key ever overlaps itself.  Velocity is the mean of the velocity head
over the onset's frames.  All functions are pure numpy and vectorised per key.
"""

from __future__ import annotations

import numpy as np

from . import constants as C

NOTE_FIELDS = ("onset_s", "offset_s", "pitch", "velocity")


def _rising_edges(active: np.ndarray) -> np.ndarray:
    """Indices where a boolean series turns on."""
    previous = np.r_[False, active[:-1]]
    return np.flatnonzero(active & ~previous)


def _next_index(indices: np.ndarray, after: np.ndarray, default: int) -> np.ndarray:
    """For each value of ``after``, the first of the sorted ``indices`` strictly greater."""
    position = np.searchsorted(indices, after, side="right")
    padded = np.r_[indices, default]
    return padded[position]


def frames_to_notes(frame: np.ndarray, onset: np.ndarray, offset: np.ndarray | None = None,
                    velocity: np.ndarray | None = None,
                    onset_threshold: float = C.ONSET_THRESHOLD,
                    frame_threshold: float = C.FRAME_THRESHOLD,
                    offset_threshold: float | None = C.OFFSET_THRESHOLD,
                    min_note_ms: float = C.MIN_NOTE_MS,
                    frame_rate_hz: float = C.FRAME_RATE_HZ) -> np.ndarray:
    """Decode ``(frames, 88)`` posteriorgrams into notes.

    Returns a float64 array ``(n, 4)``: onset s, offset s, MIDI pitch (21..108),
    velocity (1..127), sorted by onset then pitch.  Every note has onset < offset,
    lasts at least ``min_note_ms`` and no two notes of one key overlap.  With
    ``offset_threshold=None`` (or no offset posteriorgram) the offset head is ignored.
    """
    # Columns are converted to float32 one key at a time: a long file's float16
    # posteriorgrams are not copied whole.
    frame, onset = np.asarray(frame), np.asarray(onset)
    if frame.shape != onset.shape or frame.ndim != 2:
        raise ValueError(f"frame {frame.shape} and onset {onset.shape} must both be (frames, keys)")
    n_frames = len(frame)
    min_frames = max(1, int(np.ceil(min_note_ms / 1000 * frame_rate_hz - 1e-9)))
    use_offset = offset is not None and offset_threshold is not None
    rows = []
    for key in range(frame.shape[1]):
        onset_on = onset[:, key].astype(np.float32) > onset_threshold
        starts = _rising_edges(onset_on)
        if len(starts) == 0:
            continue
        sounding = (frame[:, key].astype(np.float32) > frame_threshold) | onset_on
        stop = ~sounding
        if use_offset:
            stop |= (np.asarray(offset[:, key], np.float32) > offset_threshold) & ~onset_on
        stops = np.flatnonzero(stop)
        ends = _next_index(stops, starts, n_frames)
        # A re-struck key ends the previous note.
        ends = np.minimum(ends, np.r_[starts[1:], n_frames])
        onset_ends = _next_index(np.flatnonzero(~onset_on), starts, n_frames)
        if velocity is not None:
            cumulative = np.r_[0.0, np.cumsum(np.asarray(velocity[:, key], np.float64))]
            mean = (cumulative[onset_ends] - cumulative[starts]) / (onset_ends - starts)
            velocities = np.clip(np.round(mean * 127), 1, 127)
        else:
            velocities = np.full(len(starts), 80.0)
        long_enough = ends - starts >= min_frames
        for start, end, vel in zip(starts[long_enough], ends[long_enough],
                                   velocities[long_enough]):
            rows.append((start / frame_rate_hz, end / frame_rate_hz, key + C.MIN_MIDI, vel))
    notes = np.array(rows, dtype=np.float64).reshape(-1, 4)
    return notes[np.lexsort((notes[:, 2], notes[:, 0]))]
