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
decoding option ``note_filter_threshold`` are dropped.  Since session 41 it also reads
each frame of a window around the start (``WINDOW``), and the rules start notes at lower
onset bars for it to sort: the soft notes the network nearly missed have faint onset
peaks, and so do the ghosts; the frames after the start tell them apart.

It is fitted, as the weights are, on training music rendered through the training pianos
and rooms (``amt-train fit-note-filter``), to the posteriorgrams of the weights it ships
with; the card beside those weights holds it (``note_filter``), so weights without one
decode as before.  Inference runs it in numpy.
"""

from __future__ import annotations

import json

import numpy as np

from . import constants as C
from .errors import TranscribeError

# What the filter reads of each note (``decode.note_features`` computes them, in this
# order).  Frames are counted from the note's first frame s; a window [a, b) is frames
# s + a to s + b - 1; keys an octave (12), a twelfth (19) and two octaves (24) away.
START_FRAMES = 3  # the first frames of a note, [0, 3), that the readings of its start cover
# Since session 41 the filter also reads each frame of a window around the start, frame
# by frame (the course of the onset, frame and key-down heads and of the key's level at
# each of its partials, and the keys either side): [-2, 5).  A stream keeps the two frames
# before a start (decode.NoteStream.HISTORY) and decides a note once the last has arrived.
WINDOW = range(-2, 5)
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
    # The window, frame by frame (o from -2 to 4): the key's onset, frame and key-down
    # posteriorgrams at s + o; its level at each partial p (1 the fundamental) at s + o
    # less at s - 2 (o from -1), and at s (dB).
    *(f"{head}_at_{o}" for head in ("onset", "frame", "key_down") for o in WINDOW),
    *(f"partial_{p}_rise_db_at_{o}" for p in range(1, C.VELOCITY_LEVEL_PARTIALS + 1) for o in WINDOW[1:]),
    *(f"partial_{p}_db" for p in range(1, C.VELOCITY_LEVEL_PARTIALS + 1)),
    # The keys a semitone below and above: onset posteriorgram highest over [-1, 2), level
    # at the first partial at s + 1 less at s - 2 (0 off the keyboard).
    "onset_key_below", "onset_key_above", "level_rise_db_key_below", "level_rise_db_key_above",
)
# Frames after a note's first that its features read: a stream decides a note only once
# they have arrived (decode.NoteStream).
AFTER_FRAMES = WINDOW[-1] + 1


class Perceptron:
    """A one-hidden-layer perceptron read from a card's section: features standardised by
    ``mean`` and ``scale``, a hidden layer of ReLUs (``hidden_weight`` ``(h, features)``,
    ``hidden_bias``), then ``output_weight`` and ``output_bias``: ``(h,)`` and a number for
    one output, ``(outputs, h)`` and ``(outputs,)`` for several.  A subclass names the
    card's section (``NAME``), what it must read (``FEATURES``), its outputs (``OUTPUTS``)
    and the command that fits it (``REFIT``).  Two are equal when their sections are."""

    NAME: str
    FEATURES: tuple
    OUTPUTS: int
    REFIT: str

    def __init__(self, section: dict):
        name = self.NAME
        if not isinstance(section, dict):
            raise TranscribeError(f"the card's {name} must be a JSON object")
        try:
            features = tuple(section["features"])
            mean, scale = (np.asarray(section[key], np.float64) for key in ("mean", "scale"))
            hidden_weight = np.asarray(section["hidden_weight"], np.float64)
            hidden_bias = np.asarray(section["hidden_bias"], np.float64)
            output_weight = np.asarray(section["output_weight"], np.float64)
            output_bias = np.asarray(section["output_bias"], np.float64)
        except (KeyError, TypeError, ValueError) as error:
            raise TranscribeError(f"the card's {name} is malformed ({error})") from None
        if features != tuple(self.FEATURES):
            raise TranscribeError(f"the card's {name} reads other features than this "
                                  f"version computes: fit it again ({self.REFIT})")
        n, hidden = len(self.FEATURES), hidden_weight.shape[0] if hidden_weight.ndim == 2 else -1
        outputs = () if self.OUTPUTS == 1 else (self.OUTPUTS,)
        shapes_ok = (mean.shape == scale.shape == (n,) and hidden_weight.ndim == 2
                     and hidden_weight.shape[1] == n and hidden_bias.shape == (hidden,)
                     and output_weight.shape == outputs + (hidden,)
                     and output_bias.shape == outputs)
        values = np.r_[mean, scale, hidden_weight.ravel(), hidden_bias, output_weight.ravel(),
                       output_bias.ravel()]
        if not shapes_ok or not np.isfinite(values).all() or (scale <= 0).any():
            raise TranscribeError(f"the card's {name} has arrays of the wrong shape or "
                                  "values that are not finite")
        self.section = dict(section)
        self._key = json.dumps(section, sort_keys=True)
        self.mean, self.scale = mean, scale
        self.hidden_weight, self.hidden_bias = hidden_weight, hidden_bias
        self.output_weight, self.output_bias = output_weight, output_bias

    @classmethod
    def of_card(cls, card: dict | None):
        """The section ``NAME`` of a card read (None when it has none)."""
        section = (card or {}).get(cls.NAME)
        return None if section is None else cls(section)

    def logits(self, features: np.ndarray) -> np.ndarray:
        """``(rows,)`` for one output, ``(rows, outputs)`` for several."""
        x = (np.asarray(features, np.float64) - self.mean) / self.scale
        hidden = np.maximum(x @ self.hidden_weight.T + self.hidden_bias, 0.0)
        return hidden @ self.output_weight.T + self.output_bias

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._key == self._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.hidden_bias)} hidden units)"


class NoteFilter(Perceptron):
    """The perceptron of a card's ``note_filter`` section, one logistic output."""

    NAME, FEATURES, OUTPUTS, REFIT = "note_filter", FEATURES, 1, "amt-train fit-note-filter"

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """``(notes,)``: how likely each note of ``features`` ``(notes, len(FEATURES))``
        was played."""
        return 1.0 / (1.0 + np.exp(-np.clip(self.logits(features), -60.0, 60.0)))


def section_of(mean: np.ndarray, scale: np.ndarray, hidden_weight: np.ndarray,
               hidden_bias: np.ndarray, output_weight: np.ndarray, output_bias,
               features: tuple = FEATURES, **facts) -> dict:
    """A card's ``note_filter`` section (or, with other ``features`` and several outputs,
    another ``Perceptron``'s) from the perceptron's arrays (rounded to 6 significant
    digits: the card stays readable), with ``facts`` about its fitting."""
    def rounded(array):
        return [float(f"{value:.6g}") for value in np.asarray(array, np.float64).ravel()]
    hidden = np.asarray(hidden_weight, np.float64)
    output = np.asarray(output_weight, np.float64)
    bias = np.asarray(output_bias, np.float64)
    return {"features": list(features), "mean": rounded(mean), "scale": rounded(scale),
            "hidden_weight": [rounded(row) for row in hidden],
            "hidden_bias": rounded(hidden_bias),
            "output_weight": rounded(output) if output.ndim == 1 else [rounded(row) for row in output],
            "output_bias": float(f"{float(bias):.6g}") if bias.ndim == 0 else rounded(bias),
            **facts}
