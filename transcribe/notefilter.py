"""The note filter: a small network that tells the notes the decoding rules found that were
played from those that were not (session 39).

Decoding (``decode.py``) starts notes by thresholds on the posteriorgrams, one rule at a
time.  Of the notes it writes on the development set, a fifth were not played, 61 % of
those where a lower key sounds whose partial they are (an octave, a twelfth, two octaves
below).  Whether a note was played shows in several readings at once: how high its onset
peaks, how the frame posteriorgram and the key's level go on after it, what the keys an
octave and a twelfth below do at the same moment.  The filter weighs these
(``FEATURES``, read by ``decode.note_features`` from the frames around each note's start)
with a one-hidden-layer perceptron, as a second stage of detection does in object
detectors and in note trackers after a frame-wise network.  Notes scored below the
decoding option ``note_filter_threshold`` are dropped.

It is fitted, as the weights are, on training music rendered through the training pianos
and rooms (``amt-train fit-note-filter``), to the posteriorgrams of the weights it ships
with; the card beside those weights holds it (``note_filter``), so weights without one
decode as before.  Inference runs it in numpy.
"""

from __future__ import annotations

import json

import numpy as np

from .errors import TranscribeError

# What the filter reads of each note (``decode.note_features`` computes them, in this
# order).  Frames are counted from the note's first frame s; a window [a, b) is frames
# s + a to s + b - 1; keys an octave (12), a twelfth (19) and two octaves (24) away.
FEATURES = (
    "onset_peak",             # the key's onset posteriorgram, highest over [-2, 3)
    "onset_at_start",         # ... at s
    "frame_start",            # the key's frame posteriorgram, mean over [0, 3)
    "frame_mean",             # ... mean over the note
    "log_length_s",           # natural log of the note's length (s, on the frame grid)
    "velocity_head",          # the velocity head's value (1..127)
    "key",                    # 0 (A0) .. 87 (C8)
    "onset_octave_below",     # onset posteriorgram 12 keys below, highest over [-2, 3)
    "onset_twelfth_below",    # ... 19 keys below
    "onset_two_octaves_below",  # ... 24 keys below
    "frame_octave_below",     # frame posteriorgram 12 keys below, highest over [-1, 1)
    "frame_twelfth_below",    # ... 19 keys below
    "frame_two_octaves_below",  # ... 24 keys below
    "onset_octave_above",     # onset posteriorgram 12 keys above, highest over [-2, 3)
    "keys_struck",            # keys whose onset posteriorgram exceeds 0.5 within [-1, 2)
    "key_down",               # the key-down posteriorgram, mean over [0, 3)
    "level_rise_db",          # the key's level at its first partial: rise at the start
    "level_db",               # ... highest over [0, 3) (dB)
    "sounding_before",        # 1 if the key's frame posteriorgram exceeds 0.5 at s - 1
)
# Frames after a note's first that its features read: a stream decides a note only once
# they have arrived (decode.NoteStream).
AFTER_FRAMES = 3


class NoteFilter:
    """The perceptron of a card's ``note_filter`` section: features standardised by
    ``mean`` and ``scale``, a hidden layer of ReLUs (``hidden_weight`` ``(h, features)``,
    ``hidden_bias``), one logistic output (``output_weight`` ``(h,)``, ``output_bias``).
    Two filters are equal when their sections are."""

    def __init__(self, section: dict):
        if not isinstance(section, dict):
            raise TranscribeError("the card's note_filter must be a JSON object")
        try:
            features = tuple(section["features"])
            mean, scale = (np.asarray(section[name], np.float64) for name in ("mean", "scale"))
            hidden_weight = np.asarray(section["hidden_weight"], np.float64)
            hidden_bias = np.asarray(section["hidden_bias"], np.float64)
            output_weight = np.asarray(section["output_weight"], np.float64)
            output_bias = float(section["output_bias"])
        except (KeyError, TypeError, ValueError) as error:
            raise TranscribeError(f"the card's note_filter is malformed ({error})") from None
        if features != FEATURES:
            raise TranscribeError("the card's note_filter reads other features than this "
                                  "version computes: fit it again (amt-train fit-note-filter)")
        n = len(FEATURES)
        shapes_ok = (mean.shape == scale.shape == (n,) and hidden_weight.ndim == 2
                     and hidden_weight.shape[1] == n
                     and hidden_bias.shape == output_weight.shape == (hidden_weight.shape[0],))
        values = np.r_[mean, scale, hidden_weight.ravel(), hidden_bias, output_weight, output_bias]
        if not shapes_ok or not np.isfinite(values).all() or (scale <= 0).any():
            raise TranscribeError("the card's note_filter has arrays of the wrong shape or "
                                  "values that are not finite")
        self.section = dict(section)
        self._key = json.dumps(section, sort_keys=True)
        self.mean, self.scale = mean, scale
        self.hidden_weight, self.hidden_bias = hidden_weight, hidden_bias
        self.output_weight, self.output_bias = output_weight, output_bias

    @classmethod
    def of_card(cls, card: dict | None) -> "NoteFilter | None":
        """The filter of a card (None when it has none)."""
        section = (card or {}).get("note_filter")
        return None if section is None else cls(section)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """``(notes,)``: how likely each note of ``features`` ``(notes, len(FEATURES))``
        was played."""
        x = (np.asarray(features, np.float64) - self.mean) / self.scale
        hidden = np.maximum(x @ self.hidden_weight.T + self.hidden_bias, 0.0)
        logits = hidden @ self.output_weight + self.output_bias
        return 1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NoteFilter) and other._key == self._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        return f"NoteFilter({len(self.hidden_bias)} hidden units)"


def section_of(mean: np.ndarray, scale: np.ndarray, hidden_weight: np.ndarray,
               hidden_bias: np.ndarray, output_weight: np.ndarray, output_bias: float,
               **facts) -> dict:
    """A card's ``note_filter`` section from the perceptron's arrays (rounded to 6
    significant digits: the card stays readable), with ``facts`` about its fitting."""
    def rounded(array):
        return [float(f"{value:.6g}") for value in np.asarray(array, np.float64).ravel()]
    hidden = np.asarray(hidden_weight, np.float64)
    return {"features": list(FEATURES), "mean": rounded(mean), "scale": rounded(scale),
            "hidden_weight": [rounded(row) for row in hidden],
            "hidden_bias": rounded(hidden_bias), "output_weight": rounded(output_weight),
            "output_bias": float(f"{output_bias:.6g}"), **facts}
