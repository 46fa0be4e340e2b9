"""Note lists -> frame, onset, offset and velocity rolls at the model's frame rate.

Frame ``j`` is centred on ``j / frame_rate_hz`` seconds; an event at ``t`` seconds
belongs to frame ``round(t * frame_rate_hz)``.  A note covers frames from its onset
frame up to (not including) its offset frame, and at least one frame.
"""

from __future__ import annotations

import numpy as np

from .. import constants as C
from ..decode import OFFSET_S, ONSET_S, PITCH


def notes_to_rolls(notes: np.ndarray, first_frame: int, n_frames: int,
                   frame_rate_hz: float = C.FRAME_RATE_HZ) -> dict[str, np.ndarray]:
    """Rolls ``(n_frames, 88)`` for frames ``first_frame .. first_frame + n_frames``.

    ``notes`` is ``(n, 4)``: onset s, offset s, MIDI pitch, velocity (1..127).
    Returns float32 ``frame``, ``onset``, ``offset`` and ``velocity`` (velocity/127 on
    onset frames, 0 elsewhere).
    """
    rolls = {name: np.zeros((n_frames, C.N_KEYS), np.float32)
             for name in ("frame", "onset", "offset", "velocity")}
    if len(notes) == 0:
        return rolls
    onset = np.round(notes[:, ONSET_S] * frame_rate_hz).astype(np.int64) - first_frame
    offset = np.round(notes[:, OFFSET_S] * frame_rate_hz).astype(np.int64) - first_frame
    offset = np.maximum(offset, onset + 1)
    keys = notes[:, PITCH].astype(np.int64) - C.MIN_MIDI
    visible = (offset > 0) & (onset < n_frames)
    for start, end, key, velocity in zip(onset[visible], offset[visible], keys[visible],
                                         notes[visible, 3]):
        rolls["frame"][max(start, 0):min(end, n_frames), key] = 1
        if 0 <= start < n_frames:
            rolls["onset"][start, key] = 1
            rolls["velocity"][start, key] = velocity / 127
        if 0 <= end < n_frames:
            rolls["offset"][end, key] = 1
    return rolls


def pedal_to_roll(spans: np.ndarray, first_frame: int, n_frames: int,
                  frame_rate_hz: float = C.FRAME_RATE_HZ) -> np.ndarray:
    """Sustain-pedal roll ``(n_frames, 3)``: down, pressed (one frame), released (one frame).

    ``spans`` is ``(k, 2)`` seconds of pedal down (CC64 >= 64), the frame rule as for notes.
    """
    roll = np.zeros((n_frames, 3), np.float32)
    spans = np.asarray(spans, np.float64).reshape(-1, 2)
    if len(spans) == 0:
        return roll
    down = np.round(spans[:, 0] * frame_rate_hz).astype(np.int64) - first_frame
    up = np.maximum(np.round(spans[:, 1] * frame_rate_hz).astype(np.int64) - first_frame, down + 1)
    for start, end in zip(down, up):
        if end <= 0 or start >= n_frames:
            continue
        roll[max(start, 0):min(end, n_frames), 0] = 1
        if start >= 0:
            roll[start, 1] = 1
        if end < n_frames:
            roll[end, 2] = 1
    return roll
