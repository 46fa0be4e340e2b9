"""Note velocities: a small network that weighs what decoding knows of each note's loudness
(session 42).

The velocity head hears the whole mix and gives each note a velocity; since session 18 the
decoding has blended in how much louder the note's attack is, at its key's partials, than
the recording's median note (``decode.blend_velocities``: a fixed 3 steps a dB, the
register's balance removed).  How much the level should count differs from note to note:
a note struck in a chord shares its partials with the others, a bass note's fundamental is
weak, a short note's attack is cut.  The velocity model weighs these readings
(``FEATURES``, read by ``features`` from the notes and their onset levels) with a
one-hidden-layer perceptron, and gives each note's velocity as the recording's median head
velocity plus how far above the recording's typical note the model puts it: a quiet
recording is not made softer, nor a loud one harder (the recording's level is the head's
to judge), and what changes is the contrast between its notes, which is what mir_eval's
note+velocity measure and a listener both hear.

It is fitted, as the note filter is, on training music rendered through the training
pianos and rooms (``amt-train fit-velocities``), to the posteriorgrams of the weights it
ships with; the card beside those weights holds it (``note_velocities``), so weights
without one decode as before.  The decoding option ``velocity_model_weight`` mixes its
velocities with the blend's (1: the model's alone; 0 turns it off).  Inference runs it
in numpy, once a recording's notes are all known, where the blend ran.
"""

from __future__ import annotations

import numpy as np

from . import constants as C
from .notefilter import Perceptron

# What the model reads of each note, in this order.  "The recording's" median or mean is
# over the notes decoded (those kept: long enough, passed by the filter); levels are dB
# (``decode.onset_levels``: the loudest frame of the first ``VELOCITY_LEVEL_FRAMES``).
FEATURES = (
    "velocity_head",                 # the velocity head's value (1..127)
    "velocity_head_from_median",     # ... less the recording's median
    "level_from_median_db",          # the note's level (decode.note_levels) less the median
    "balanced_level_from_median_db",  # ... its register balance removed (register_balanced)
    *(f"partial_{p}_from_median_db" for p in range(1, C.VELOCITY_LEVEL_PARTIALS + 1)),
    # the level at each partial less the key's RISE_FRAMES before the start (decode.onset_rises)
    *(f"partial_{p}_rise_db" for p in range(1, C.VELOCITY_LEVEL_PARTIALS + 1)),
    "key",                           # 0 (A0) .. 87 (C8), over 88
    "key_from_mean",                 # ... less the recording's mean
    "notes_struck_with_it",          # notes starting within a frame of it, itself included
    "median_level_db",               # the recording's median note level
    "log_length_s",                  # natural log of its length as heard (s)
)
CHORD_FRAMES = 1  # how near two starts are to count as struck together
RISE_FRAMES = 2  # how far before a note's start its rise is measured from (a stream keeps them)


class VelocityModel(Perceptron):
    """The perceptron of a card's ``note_velocities`` section, one linear output: how many
    velocity steps above the recording's median head velocity a note lies."""

    NAME, FEATURES, OUTPUTS, REFIT = "note_velocities", FEATURES, 1, "amt-train fit-velocities"

    def velocities(self, features: np.ndarray, head: np.ndarray) -> np.ndarray:
        """``(notes,)`` float: the recording's median of ``head`` (the head's velocities
        of the same notes) plus the model's output, not rounded."""
        if not len(head):
            return np.zeros(0)
        return float(np.median(head)) + self.logits(features)


def features(rows: np.ndarray, levels: np.ndarray, rises: np.ndarray,
             frame_rate_hz: float) -> np.ndarray:
    """``(notes, len(FEATURES))`` float64 for a recording's notes: ``rows`` ``(start frame,
    end frame, key, head velocity, ...)``, their onset levels and their rises ``(notes,
    partials)`` (``decode.onset_levels``, ``decode.onset_rises``), all the recording's.
    Saves with one level a key (before session 19) repeat it at every partial."""
    from .decode import note_levels, register_balanced
    rows = np.asarray(rows, np.int64)
    if not len(rows):
        return np.zeros((0, len(FEATURES)))
    levels, rises = np.asarray(levels, np.float64), np.asarray(rises, np.float64)
    head = rows[:, 3].astype(np.float64)
    keys = rows[:, 2].astype(np.float64)
    loud = note_levels(rows, levels)
    balanced = register_balanced(loud, head, rows[:, 2])
    median = float(np.median(loud))
    starts = np.sort(rows[:, 0])
    struck = (np.searchsorted(starts, rows[:, 0] + CHORD_FRAMES, side="right")
              - np.searchsorted(starts, rows[:, 0] - CHORD_FRAMES, side="left"))
    partials = levels[:, np.minimum(np.arange(C.VELOCITY_LEVEL_PARTIALS), levels.shape[1] - 1)]
    rises = rises[:, np.minimum(np.arange(C.VELOCITY_LEVEL_PARTIALS), rises.shape[1] - 1)]
    columns = [head, head - np.median(head), loud - median, balanced - np.median(balanced),
               *(partials - median).T, *rises.T, keys / C.N_KEYS, (keys - keys.mean()) / C.N_KEYS,
               struck, np.full(len(rows), median),
               np.log((rows[:, 1] - rows[:, 0]) / frame_rate_hz)]
    return np.column_stack(columns).astype(np.float64).reshape(-1, len(FEATURES))
