"""Note ends: a small network that chooses where each note ends (session 40).

A note's end is the hardest thing a transcription writes.  The frame head hears the
string until it falls silent; the reference ends the note where the key came up, or,
with the sustain pedal down, where the pedal came up.  On the development set only 54 %
of the notes found ended within mir_eval's tolerance where the frame head let go, yet
68 % did at one of four ends the decoding already has: where the frame head lets go
(``heard``), there lengthened to the predicted pedal's release (``extended``), where the
key-down head says the key came up (``key_release``), and that lengthened through the
pedal (``key_release_extended``, how a piano would sound the key and the pedal).

Which one is right shows in the posteriorgrams around the note's end and start (does
the key-down head still hold the key, is the pedal down, how far has the key's level
fallen) and in how far apart the four are.  The chooser weighs these (``FEATURES``) with
a one-hidden-layer perceptron with a softmax over ``CANDIDATES``; a note's end moves from
``heard`` only where the chosen end's probability reaches the decoding option
``end_choice_threshold`` (1 keeps every end as heard).

It is fitted, as the note filter is, on training music rendered through the training
pianos and rooms (``amt-train fit-note-ends``), to the posteriorgrams of the weights it
ships with; the card beside those weights holds it (``note_ends``), so weights without
one decode as before.  Inference runs it in numpy, after the pedal is decoded: the
pedal's release may come long after a note's end.
"""

from __future__ import annotations

import numpy as np

from . import constants as C
from .errors import TranscribeError
from .notefilter import Perceptron

CANDIDATES = ("heard", "extended", "key_release", "key_release_extended")

# What decoding reads of each note from the posteriorgrams while they are at hand
# (``decode.end_readings``, in this order).  Frames are counted from the note's end e
# (the first frame the frame head no longer hears it, or the last frame) and start s;
# "before the end" is frame max(e - 3, s); levels are the key's first partial (dB).
READINGS = (
    "frame_before_end", "key_down_before_end", "offset_before_end", "level_fall_before_end_db",
    "frame_at_end", "key_down_at_end", "offset_at_end", "level_fall_at_end_db",
    "key_down_after_start",   # the key-down posteriorgram at min(s + 2, e - 1)
    "key_down_mean",          # ... mean over the note's frames
    "level_at_start_db",
)
# Then, from the notes and the pedal once decoded (``features``).
FEATURES = READINGS + (
    "pedal_before_end", "pedal_at_end", "pedal_at_start", "pedal_mean",
    "velocity", "key",
    *(f"log_length_{name}_s" for name in CANDIDATES),
    *(f"log_ratio_{name}" for name in CANDIDATES[1:]),
)
BEFORE_END = 3  # frames


class EndChooser(Perceptron):
    """The perceptron of a card's ``note_ends`` section: a softmax over ``CANDIDATES``."""

    NAME, FEATURES, OUTPUTS, REFIT = "note_ends", FEATURES, len(CANDIDATES), \
        "amt-train fit-note-ends"

    def __init__(self, section: dict):
        super().__init__(section)
        if tuple(section.get("candidates", CANDIDATES)) != CANDIDATES:
            raise TranscribeError("the card's note_ends chooses among other ends than this "
                                  f"version has: fit it again ({self.REFIT})")

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """``(notes, len(CANDIDATES))``: how likely each candidate end is the right one."""
        logits = self.logits(features).reshape(-1, len(CANDIDATES))
        logits = logits - logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=1, keepdims=True)


def candidate_ends(notes: np.ndarray, key_notes: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """``(notes, len(CANDIDATES))`` end times (s) of ``notes`` (as decoded), the same notes
    ending at their key's release ``key_notes``, and the pedal's down ``spans``."""
    from .decode import extend_through_pedal
    return np.column_stack([notes[:, 1], extend_through_pedal(notes, spans)[:, 1],
                            key_notes[:, 1], extend_through_pedal(key_notes, spans)[:, 1]])


def features(notes: np.ndarray, ends: np.ndarray, readings: np.ndarray,
             pedal_down: np.ndarray, frame_rate_hz: float) -> np.ndarray:
    """``(notes, len(FEATURES))``: each note's ``readings`` (``decode.end_readings``), then
    the pedal-down posteriorgram ``pedal_down`` ``(frames,)`` around its start and end, its
    velocity and key, and its ``candidate_ends``' lengths."""
    pedal = np.asarray(pedal_down, np.float64)
    last = len(pedal) - 1  # notes lie within the frames
    starts = np.clip(np.round(notes[:, 0] * frame_rate_hz).astype(np.int64), 0, last)
    stops = np.clip(np.round(notes[:, 1] * frame_rate_hz).astype(np.int64), starts, last)
    before = np.maximum(stops - BEFORE_END, starts)
    cumulative = np.r_[0.0, np.cumsum(pedal)]
    spans = np.maximum(stops - starts, 1)  # starts + spans <= last + 1
    pedal_mean = (cumulative[starts + spans] - cumulative[starts]) / spans
    lengths = np.maximum(ends - notes[:, [0]], 1e-3)
    columns = [np.asarray(readings, np.float64).reshape(-1, len(READINGS)),
               np.column_stack([pedal[before], pedal[stops], pedal[starts], pedal_mean,
                                notes[:, 3], notes[:, 2] - C.MIN_MIDI]),
               np.log(lengths), np.log(lengths[:, 1:] / lengths[:, :1])]
    return np.column_stack(columns).reshape(-1, len(FEATURES))


def choose_ends(notes: np.ndarray, key_notes: np.ndarray | None, spans: np.ndarray | None,
                pedal_down: np.ndarray | None, readings: np.ndarray | None,
                chooser: EndChooser | None, threshold: float,
                frame_rate_hz: float) -> np.ndarray:
    """``notes`` with each end moved to the candidate ``chooser`` gives the highest
    probability, where that probability reaches ``threshold``; as they are without a
    chooser, without what it reads (a key-down head, a pedal head), or at a threshold of 1."""
    if (chooser is None or threshold >= 1 or key_notes is None or spans is None
            or pedal_down is None or readings is None or not len(notes)):
        return notes
    ends = candidate_ends(notes, key_notes, spans)
    chances = chooser.probabilities(features(notes, ends, readings, pedal_down, frame_rate_hz))
    best = chances.argmax(axis=1)
    moved = (best > 0) & (chances[np.arange(len(notes)), best] >= threshold)
    chosen = notes.copy()
    chosen[moved, 1] = ends[moved, best[moved]]
    return chosen
