"""Posteriorgrams -> note events, with onset/offset logic as in Onsets and Frames.

Hawthorne et al. 2018: a note may start only where the onset posteriorgram rises
above ``onset_threshold``; it lasts while the onset or frame posteriorgram stays
above its threshold.  We add two rules of our own: the note ends where the offset
head fires (above ``offset_threshold``), and a new onset of the same key ends the
previous note, so no key ever overlaps itself.  Velocity is the mean of the
velocity head over the onset's frames, plus, given the input's key levels and a
``velocity_level_weight``, that many steps per dB by which the note's onset is louder
than the recording's median note (``blend_velocities``): the lower notes of octaves
read at their odd partials (``note_levels``), the recording's register balance removed
(``register_balanced``).  All functions are pure
numpy and vectorised per key.

A third rule recovers notes whose onset the onset head misses (most of them soft
notes, whose frame posteriorgram often rises cleanly while the onset head stays
below its threshold): where the frame posteriorgram rises above ``frame_onset_threshold`` after
``FRAME_ONSET_QUIET_FRAMES`` frames below ``FRAME_ONSET_QUIET_LEVEL``, a note
starts as if the onset head had fired, as basic-pitch infers onsets from its
frame output.  The quiet frames before the rise keep a sustained note whose frame
posteriorgram only wavers from being split.

Two more rules raise the onset bar where the onset head fires faintly without a key
struck (session 37: 42 % of the notes written that the tuning excerpts do not have start
where a lower key sounds whose partial they are, 26 % right after a note of their own
key).  An onset while the key still sounds (the frame posteriorgram above its threshold
in the frame before: a re-strike, or the sustained note's decay) starts a new note only
if the onset posteriorgram peaks at ``restrike_onset_threshold`` or above, or, given the
input's key levels, the key's level at its first partial rises (``RESTRIKE_RISE_DB``: a
re-strike adds energy, a decay does not); else the note goes on.  An onset where a key
``PARTIAL_INTERVALS`` below sounds (an octave, a twelfth, two octaves, ...: where that
key's partials lie) needs ``partial_onset_threshold``.  The peak is taken over the
onset's frames above ``onset_threshold``.  Both look only at the onset's own frames, the
frame before and (the level) the next ``RESTRIKE_RISE_FRAMES``, and a stream decides
nothing those may still change, so it decodes as the whole does.

Onsets lie between frames (session 38): the onset head answers in the frames either side
of an onset, more where it lies nearer them, so each note the onset head starts has its
onset where a Gaussian through the onset posteriorgram's peak and its two neighbours peaks
(``_onset_shifts``); a note whose frame posteriorgram ends it ends where that falls
through the frame threshold between two frames (``_end_shifts``).

Last, given weights with a note filter (session 39, ``notefilter.py``), each note the
rules found is scored from what the posteriorgrams, the key-down head and the key levels
say around its start (``note_features``), and dropped below ``note_filter_threshold``;
a stream decides a note only once the ``notefilter.AFTER_FRAMES`` it reads have arrived.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from . import constants as C
from .errors import TranscribeError
from .noteends import BEFORE_END, READINGS, EndChooser
from . import notevelocity
from .notefilter import AFTER_FRAMES, FEATURES, START_FRAMES, WINDOW, NoteFilter
from .notevelocity import VelocityModel

NOTE_FIELDS = ("onset_s", "offset_s", "pitch", "velocity")
# Columns of a notes array ``(n, 4)``, by name: ``notes[:, PITCH]``.
ONSET_S, OFFSET_S, PITCH, VELOCITY = range(4)
TIMES = slice(ONSET_S, OFFSET_S + 1)  # onset and offset, as mir_eval takes them

# A threshold of 1 turns its rule off: no probability lies above 1.
OFF = 1.0
_FALLBACK = {"onset_threshold": C.ONSET_THRESHOLD, "frame_threshold": C.FRAME_THRESHOLD,
             "offset_threshold": C.OFFSET_THRESHOLD, "min_note_ms": C.MIN_NOTE_MS,
             "frame_onset_threshold": C.FRAME_ONSET_THRESHOLD,
             "pedal_threshold": C.PEDAL_THRESHOLD, "key_threshold": C.KEY_THRESHOLD,
             "pedal_split_threshold": C.PEDAL_SPLIT_THRESHOLD,
             "velocity_level_weight": C.VELOCITY_LEVEL_WEIGHT,
             "restrike_onset_threshold": C.RESTRIKE_ONSET_THRESHOLD,
             "partial_onset_threshold": C.PARTIAL_ONSET_THRESHOLD,
             "soft_onset_threshold": C.SOFT_ONSET_THRESHOLD,
             "note_filter_threshold": C.NOTE_FILTER_THRESHOLD,
             "end_choice_threshold": C.END_CHOICE_THRESHOLD,
             "velocity_model_weight": C.VELOCITY_MODEL_WEIGHT}
# Options that are not probabilities: each is a number >= 0.
NON_NEGATIVE_OPTIONS = ("min_note_ms", "velocity_level_weight")
# Options that are shares of something, in [0, 1], not probabilities.
SHARE_OPTIONS = ("velocity_model_weight",)


@dataclass(frozen=True)
class DecodingOptions:
    """The thresholds of note decoding, the one definition used by the API, both CLIs and training.

    A field left ``None`` is unset: ``resolve`` fills it from the ``decoding``
    section of the weights' card, else from ``constants``.  Thresholds are
    probabilities in [0, 1]; 1 (``OFF``) turns a rule off (``offset_threshold``:
    notes end where the frame posteriorgram falls, not where the offset head fires;
    ``frame_onset_threshold``: no onsets inferred from the frame posteriorgram).
    ``min_note_ms`` drops shorter notes.  ``restrike_onset_threshold`` and
    ``partial_onset_threshold`` are the onset peaks a re-strike and a note on a lower
    sounding key's partial need (0 turns a rule off; the module's docstring).
    ``velocity_level_weight`` (velocity steps per
    dB, >= 0; 0: the velocity head alone) blends the measured loudness of each note's
    onset into its velocity (``blend_velocities``).  ``note_filter`` (the card's, filled by
    ``resolve``; not a threshold, so not in ``as_dict``) drops the notes it scores below
    ``note_filter_threshold`` (0 turns it off; ``notefilter.py``).  ``end_chooser`` (the
    card's ``note_ends``, filled by ``resolve``) moves a note's end where its choice is at
    least ``end_choice_threshold`` sure (1 turns it off; ``noteends.py``).
    ``velocity_model`` (the card's ``note_velocities``) decides ``velocity_model_weight``
    of each velocity, the blend the rest (0 turns it off; ``notevelocity.py``).  Bad
    values raise ``TranscribeError``.
    """

    onset_threshold: float | None = None
    frame_threshold: float | None = None
    offset_threshold: float | None = None
    min_note_ms: float | None = None
    frame_onset_threshold: float | None = None
    pedal_threshold: float | None = None  # used by models with a pedal head
    key_threshold: float | None = None  # used by models with a key-down head (--pedal cc64)
    pedal_split_threshold: float | None = None  # a press peak that splits a pedal span
    velocity_level_weight: float | None = None  # velocity steps per dB of onset level
    restrike_onset_threshold: float | None = None  # the onset peak a key re-struck needs
    partial_onset_threshold: float | None = None  # ... and a key on a sounding key's partial
    soft_onset_threshold: float | None = None  # a fainter onset where the key's level rises
    note_filter_threshold: float | None = None  # the note filter's score a note needs
    note_filter: NoteFilter | None = None  # weights with a note filter (their card's)
    end_choice_threshold: float | None = None  # how sure the end chooser must be to move an end
    end_chooser: EndChooser | None = None  # weights with an end chooser (their card's)
    velocity_model_weight: float | None = None  # how much of a velocity the model decides
    velocity_model: VelocityModel | None = None  # weights with a velocity model (their card's)

    def __post_init__(self) -> None:
        for name, value in self.as_dict().items():
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TranscribeError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise TranscribeError(f"{name} must be a finite number, got {value}")
            if name in NON_NEGATIVE_OPTIONS:
                if value < 0:
                    raise TranscribeError(f"{name} must be >= 0, got {value}")
            elif not 0 <= value <= 1:
                kind = "a share" if name in SHARE_OPTIONS else "a probability"
                raise TranscribeError(f"{name} is {kind} in [0, 1], got {value}")

    def resolve(self, card: dict | None = None) -> "DecodingOptions":
        """Every unset field filled from ``card['decoding']``, then from the constants."""
        tuned = (card or {}).get("decoding") or {}
        return DecodingOptions(**{
            name: value if (value := getattr(self, name)) is not None
            else tuned[name] if tuned.get(name) is not None else fallback
            for name, fallback in _FALLBACK.items()},
            note_filter=self.note_filter or NoteFilter.of_card(card),
            end_chooser=self.end_chooser or EndChooser.of_card(card),
            velocity_model=self.velocity_model or VelocityModel.of_card(card))

    def merged(self, **changes) -> "DecodingOptions":
        """A copy with the fields of ``changes`` that are not None replaced."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def as_dict(self) -> dict:
        """The thresholds by name (what a MIDI file's metadata records), not the filter,
        the end chooser nor the velocity model."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)
                if field.name not in ("note_filter", "end_chooser", "velocity_model")}


def _rising_edges(active: np.ndarray) -> np.ndarray:
    """Indices where a boolean series turns on."""
    previous = np.r_[False, active[:-1]]
    return np.flatnonzero(active & ~previous)


def _next_index(indices: np.ndarray, after: np.ndarray, default: int) -> np.ndarray:
    """For each value of ``after``, the first of the sorted ``indices`` strictly greater."""
    position = np.searchsorted(indices, after, side="right")
    padded = np.r_[indices, default]
    return padded[position]


def _frame_onsets(frame: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean series, true where ``frame`` (one key) rises above ``threshold`` from quiet.

    Quiet: the ``FRAME_ONSET_QUIET_FRAMES`` frames before all lie below
    ``FRAME_ONSET_QUIET_LEVEL``; the first frames of a series, without that
    history, never qualify.
    """
    quiet = C.FRAME_ONSET_QUIET_FRAMES
    found = np.zeros(len(frame), bool)
    if len(frame) <= quiet:
        return found
    rises = _rising_edges(frame > threshold)
    before = np.lib.stride_tricks.sliding_window_view(frame, quiet).max(axis=1)
    rises = rises[rises >= quiet]
    found[rises[before[rises - quiet] < C.FRAME_ONSET_QUIET_LEVEL]] = True
    return found


def _note_frames(frame: np.ndarray, onset: np.ndarray, offset: np.ndarray | None,
                 velocity: np.ndarray | None, options: DecodingOptions,
                 level: np.ndarray | None = None) -> np.ndarray:
    """All notes of the posteriorgrams as int64 rows: start frame, end frame, key, velocity.

    A note still sounding at the last frame ends there.  No length filter.
    """
    # Columns are converted to float32 one key at a time: a long file's float16
    # posteriorgrams are not copied whole.
    n_frames = len(frame)
    onset_threshold, frame_threshold = options.onset_threshold, options.frame_threshold
    offset_threshold, frame_onset_threshold = options.offset_threshold, options.frame_onset_threshold
    use_offset = offset is not None and offset_threshold < OFF
    restrike, partial = options.restrike_onset_threshold, options.partial_onset_threshold
    soft = options.soft_onset_threshold
    # Where each key sounds by the frame head alone, for the rule on partials (a column
    # at a time, as below: float16 posteriorgrams are not copied whole).
    heard = None
    if partial > onset_threshold:
        heard = np.zeros(frame.shape, bool)
        for key in range(frame.shape[1]):
            heard[:, key] = frame[:, key].astype(np.float32) > frame_threshold
    parts = []
    for key in range(frame.shape[1]):
        key_onset = onset[:, key].astype(np.float32)
        onset_on = key_onset > onset_threshold
        key_frame = frame[:, key].astype(np.float32)
        if soft < onset_threshold and level is not None:
            onset_on |= _soft_onsets(key_onset, soft, onset_threshold, level, key)
        starts = _rising_edges(onset_on)
        if len(starts) and (restrike > onset_threshold or heard is not None):
            runs_end, peaks = _run_peaks(key_onset, onset_on, starts)
            faint = np.zeros(len(starts), bool)
            if restrike > onset_threshold:  # the key sounds in the frame before
                before = np.maximum(starts - 1, 0)
                decay = (peaks < restrike) & (starts > 0) & (key_frame[before] > frame_threshold)
                if level is not None:  # and its level at the first partial does not rise
                    decay &= _level_rise(level, key, starts) < C.RESTRIKE_RISE_DB
                faint |= decay
            if heard is not None:
                lower = [key - interval for interval in C.PARTIAL_INTERVALS if key >= interval]
                if lower:
                    faint |= (peaks < partial) & heard[starts][:, lower].any(axis=1)
            for start, end in zip(starts[faint], runs_end[faint]):
                onset_on[start:end] = False  # no onset: the note before goes on, if any
        if frame_onset_threshold < OFF:
            onset_on |= _frame_onsets(key_frame, frame_onset_threshold)
        starts = _rising_edges(onset_on)
        if len(starts) == 0:
            continue
        sounding = (key_frame > frame_threshold) | onset_on
        stop = ~sounding
        if use_offset:
            stop |= (np.asarray(offset[:, key], np.float32) > offset_threshold) & ~onset_on
        ends = _next_index(np.flatnonzero(stop), starts, n_frames)
        # A re-struck key ends the previous note.
        ends = np.minimum(ends, np.r_[starts[1:], n_frames])
        if velocity is not None:
            onset_ends = _next_index(np.flatnonzero(~onset_on), starts, n_frames)
            cumulative = np.r_[0.0, np.cumsum(np.asarray(velocity[:, key], np.float64))]
            mean = (cumulative[onset_ends] - cumulative[starts]) / (onset_ends - starts)
            velocities = np.clip(np.round(mean * 127), 1, 127)
        else:
            velocities = np.full(len(starts), 80.0)
        parts.append(np.column_stack([starts, ends, np.full(len(starts), key),
                                      velocities.astype(np.int64)]))
    return np.concatenate(parts) if parts else np.zeros((0, 4), np.int64)


def _run_peaks(series: np.ndarray, above: np.ndarray,
               starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ends, peaks) of the runs of ``above`` (a boolean series over ``series``) that begin
    at ``starts`` (its rising edges, not empty): where each run stops, and the highest
    value of ``series`` within it."""
    ends = _next_index(np.flatnonzero(~above), starts, len(series))
    bounds = np.ravel(np.column_stack([starts, ends]))
    return ends, np.maximum.reduceat(np.r_[series, 0], bounds)[::2]


def _soft_onsets(key_onset: np.ndarray, soft: float, onset_threshold: float,
                 level: np.ndarray, key: int) -> np.ndarray:
    """Boolean series: the runs of ``key_onset`` above ``soft`` that stay at or below
    ``onset_threshold`` and where the key's level at its first partial rises by
    ``SOFT_RISE_DB`` or more (``_level_rise``): a soft note the onset head nearly missed."""
    low = key_onset > soft
    starts = _rising_edges(low)
    found = np.zeros(len(key_onset), bool)
    if not len(starts):
        return found
    ends, peaks = _run_peaks(key_onset, low, starts)
    chosen = (peaks <= onset_threshold) & (_level_rise(level, key, starts) >= C.SOFT_RISE_DB)
    for start, end in zip(starts[chosen], ends[chosen]):
        found[start:end] = True
    return found


def _level_rise(level: np.ndarray, key: int, starts: np.ndarray) -> np.ndarray:
    """dB by which ``key``'s level at its first partial (``level``: the input's key levels,
    ``(frames, 88 x partials)`` or ``(frames, 88)``) peaks in the ``RESTRIKE_RISE_FRAMES``
    from each of ``starts`` above its peak in the ``RESTRIKE_BEFORE_FRAMES`` before (a
    start without frames before: 0)."""
    partials = level.shape[1] // C.N_KEYS
    column = np.asarray(level[:, key * partials], np.float32)
    history = C.RESTRIKE_BEFORE_FRAMES
    padded = np.r_[np.full(history, -np.inf, np.float32), column,
                   np.full(C.RESTRIKE_RISE_FRAMES, -np.inf, np.float32)]
    after = np.lib.stride_tricks.sliding_window_view(padded[history:], C.RESTRIKE_RISE_FRAMES)
    before = np.lib.stride_tricks.sliding_window_view(padded, history)
    rise = after[starts].max(axis=1) - before[starts].max(axis=1)
    return np.where(np.isfinite(rise), rise, 0.0)


def long_enough(rows: np.ndarray, min_note_ms: float, frame_rate_hz: float) -> np.ndarray:
    """Boolean per row of ``_note_frames``: the notes ``min_note_ms`` keeps, on the frame grid."""
    min_frames = max(1, int(np.ceil(min_note_ms / 1000 * frame_rate_hz - 1e-9)))
    return rows[:, 1] - rows[:, 0] >= min_frames


def _velocity_options(options: DecodingOptions) -> dict:
    """``_to_seconds``' arguments that decide the velocities, from ``options``."""
    return {"level_weight": options.velocity_level_weight,
            "velocity_model": options.velocity_model,
            "model_weight": options.velocity_model_weight}


def _to_seconds(rows: np.ndarray, min_note_ms: float, frame_rate_hz: float,
                offset_column: int = 1, levels: np.ndarray | None = None,
                level_weight: float = 0.0, shifts: np.ndarray | None = None,
                values: np.ndarray | None = None, velocity_model: VelocityModel | None = None,
                model_weight: float = 0.0):
    """Rows of ``_note_frames`` -> ``(n, 4)`` notes in seconds, short ones dropped, sorted;
    given ``values`` (one row each per row), also those of the notes kept, in their order.

    ``offset_column`` picks the rows' column that gives the offsets (4: the key releases
    a ``NoteStream`` with keys adds); which notes are kept depends on column 1 alone.
    ``levels`` (one per row, ``_decoded_rows``' onset levels and rises) blend into the kept
    notes' velocities
    with ``level_weight`` (``blend_velocities``); given a ``velocity_model`` too, its
    velocities (``notevelocity``) take ``model_weight`` of each, the blend's the rest.
    ``shifts`` ``(rows, 2)`` (frames: ``_onset_shifts``, ``_end_shifts``) move the onsets
    and ends off the frame grid (``_refined_times``).
    """
    long = long_enough(rows, min_note_ms, frame_rate_hz)
    rows = rows[long]
    at_onset, rises = (None, None) if levels is None else \
        _split_levels(np.asarray(levels)[long])
    velocities = rows[:, 3] if levels is None else \
        blend_velocities(rows[:, 3], note_levels(rows, at_onset), level_weight, rows[:, 2])
    if levels is not None and velocity_model is not None and model_weight > 0:
        modelled = velocity_model.velocities(
            notevelocity.features(rows, at_onset, rises, frame_rate_hz), rows[:, 3])
        velocities = np.clip(np.round((1 - model_weight) * velocities
                                      + model_weight * modelled), 1, 127)
    onsets, ends = (rows[:, 0].astype(np.float64), rows[:, 1].astype(np.float64)) \
        if shifts is None else _refined_times(rows, np.asarray(shifts, np.float64)[long],
                                              min_note_ms / 1000 * frame_rate_hz)
    offsets = ends
    if offset_column != 1:  # a key's release: never after the note stops sounding, nor
        # before half a frame after the onset (a key released within the onset's frame)
        offsets = np.maximum(np.minimum(rows[:, offset_column], ends),
                             np.minimum(onsets + MIN_SHIFTED_FRAMES, ends))
    notes = np.column_stack([onsets / frame_rate_hz, offsets / frame_rate_hz,
                             rows[:, 2] + C.MIN_MIDI, velocities]).astype(np.float64).reshape(-1, 4)
    order = np.lexsort((notes[:, PITCH], notes[:, ONSET_S]))
    if values is None:
        return notes[order]
    return notes[order], np.asarray(values)[long][order]


# A note whose onset or end moved (``_refined_times``) keeps at least this many frames.
MIN_SHIFTED_FRAMES = 0.5


def _onset_shifts(rows: np.ndarray, onset: np.ndarray, floor: float) -> np.ndarray:
    """For rows ``(start frame, end frame, key, ...)`` of ``_note_frames`` over ``onset``
    ``(frames, 88)``: how far (frames, -0.5 to 1.5) each note's onset lies from its
    start frame, read off the onset posteriorgram's peak.

    The onset head is trained on one frame per onset (32 ms), the nearest; it answers in
    the frames either side as well, more where the onset lies nearer them, and a note
    starts at the first frame above the threshold, before the peak: onsets were written
    9-12 ms early at the median, spread over the whole frame (session 38).  The peak is
    the start frame or, where the onset rises into it, the next (within the note), and it
    lies between frames where a parabola through the logarithms of the peak's and its
    neighbours' values peaks (a Gaussian through three points), at most half a frame
    away.  A start whose peak is at or below ``floor`` (a note the frame head started
    without the onset head) stays on its frame, as does one without a frame either side.
    """
    shifts = np.zeros(len(rows))
    n_frames = len(onset)
    if not len(rows) or n_frames < 3:
        return shifts
    starts, ends, keys = rows[:, 0], rows[:, 1], rows[:, 2]

    def at(frames):
        return np.asarray(onset[np.clip(frames, 0, n_frames - 1), keys], np.float32)

    peaks = starts + ((starts + 1 < ends) & (at(starts + 1) > at(starts)))
    value = at(peaks)
    inside = (value > floor) & (peaks > 0) & (peaks < n_frames - 1)
    before, here, after = (np.log(np.maximum(at(frames), 1e-6)).astype(np.float64)
                           for frames in (peaks - 1, peaks, peaks + 1))
    curve = before - 2 * here + after
    offset = np.where(curve < 0, 0.5 * (before - after) / np.where(curve < 0, curve, -1.0), 0.0)
    return np.where(inside, peaks - starts + np.clip(offset, -0.5, 0.5), 0.0)


def _end_shifts(rows: np.ndarray, frame: np.ndarray, threshold: float) -> np.ndarray:
    """For rows ``(start frame, end frame, key, ...)`` of ``_note_frames`` over ``frame``
    ``(frames, 88)``: how far (frames, -1 to 0) before its end frame each note stops
    sounding, where the frame posteriorgram falls through ``threshold``, read linearly
    between the last frame above it and the first below.  A note that ends otherwise (its
    key struck again, its onset's frames, the last frame) keeps its end frame.

    Frame ``j`` is heard at ``j`` hops; a note whose frame posteriorgram is last above the
    threshold at frame ``e - 1`` stopped between the two.  Ending at ``e``, the notes
    were written late: on the development set, in rooms training never heard, note+offset
    F1 43.7 on the frame grid against 46.0 read so, with onsets between frames (session
    38, ``benchmarks/note_timing.py``)."""
    shifts = np.zeros(len(rows))
    n_frames = len(frame)
    if not len(rows):
        return shifts
    ends, keys = rows[:, 1], rows[:, 2]
    inside = ends < n_frames
    last = np.asarray(frame[np.clip(ends - 1, 0, n_frames - 1), keys], np.float64)
    first_off = np.asarray(frame[np.clip(ends, 0, n_frames - 1), keys], np.float64)
    falls = inside & (last > threshold) & (first_off <= threshold)
    fraction = (last - threshold) / np.where(falls, last - first_off, 1.0)
    return np.where(falls, fraction - 1.0, 0.0)


def _refined_times(rows: np.ndarray, shifts: np.ndarray,
                   min_frames: float) -> tuple[np.ndarray, np.ndarray]:
    """(onsets, ends) of the rows in frames: each start and end frame moved by its shift
    (``shifts`` ``(rows, 2)``), but never so that the note grows shorter than
    ``min_frames`` (or ``MIN_SHIFTED_FRAMES``; the end is moved first), nor its onset
    earlier than the end of the note of its key before it (a re-strike's start frame) or
    the first frame."""
    starts = rows[:, 0].astype(np.float64)
    if not len(rows):
        return starts, starts.copy()
    shortest = max(min_frames, MIN_SHIFTED_FRAMES)
    ends = np.maximum(rows[:, 1] + shifts[:, 1], np.minimum(starts + shortest, rows[:, 1]))
    onset_shifts = np.minimum(shifts[:, 0], np.maximum(ends - starts - shortest, 0.0))
    order = np.lexsort((rows[:, 0], rows[:, 2]))
    by_key = rows[order]
    previous_end = np.full(len(rows), -np.inf)
    same_key = np.r_[False, by_key[1:, 2] == by_key[:-1, 2]]
    previous_end[order[same_key]] = ends[order[np.flatnonzero(same_key) - 1]]
    return starts + np.maximum(onset_shifts, np.maximum(previous_end, 0.0) - starts), ends


def onset_levels(rows: np.ndarray, level: np.ndarray) -> np.ndarray:
    """For rows ``(start frame, end frame, key, ...)`` over the frames of ``level`` (the
    input's key levels, dB: ``(frames, 88 x partials)`` as ``Frontend.key_levels`` gives
    them, or ``(frames, 88)``, one level a key, as files saved before session 19 hold
    them): ``(n, partials)``, each note's loudest level at each partial in its first
    ``VELOCITY_LEVEL_FRAMES`` frames (fewer when it ends sooner)."""
    rows = np.asarray(rows, np.int64)
    level = np.asarray(level)
    per_key = level.reshape(len(level), C.N_KEYS, level.shape[1] // C.N_KEYS)
    if len(rows) == 0:
        return np.zeros((0, per_key.shape[-1]))
    frames = np.minimum(rows[:, :1] + np.arange(C.VELOCITY_LEVEL_FRAMES), rows[:, 1:2] - 1)
    return np.asarray(per_key[frames, rows[:, 2:3]], np.float64).max(axis=1)


def onset_rises(rows: np.ndarray, level: np.ndarray,
                at_onset: np.ndarray | None = None) -> np.ndarray:
    """``(n, partials)``: by how many dB each note's ``onset_levels`` (``at_onset``, when
    already read) lie above its key's level at each partial ``notevelocity.RISE_FRAMES``
    frames before its start (before the recording: ``SILENCE_DB``, silence)."""
    rows = np.asarray(rows, np.int64)
    level = np.asarray(level)
    per_key = level.reshape(len(level), C.N_KEYS, level.shape[1] // C.N_KEYS)
    if len(rows) == 0:
        return np.zeros((0, per_key.shape[-1]))
    frames = rows[:, 0] - notevelocity.RISE_FRAMES
    before = np.where((frames >= 0)[:, None], np.asarray(
        per_key[np.maximum(frames, 0), rows[:, 2]], np.float64), C.SILENCE_DB)
    return (onset_levels(rows, level) if at_onset is None else at_onset) - before


def _split_levels(levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``_decoded_rows``' levels ``(n, 2 x partials)`` -> (``onset_levels``, ``onset_rises``)."""
    half = levels.shape[1] // 2
    return levels[:, :half], levels[:, half:]


def note_levels(rows: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """One onset level a note from ``onset_levels``'s ``(n, partials)``: the loudest partial,
    but for a note struck with its octave above (one, two or three octaves, within a frame
    of it) the loudest odd partial, as that note's fundamental and partials sound where
    its even ones are (an octave in the bass read as loud as its upper note).  Rows are
    the notes' ``(start frame, end frame, key, ...)``, all the recording's."""
    levels = np.asarray(levels, np.float64)
    if levels.shape[1] < 3:
        return levels.max(axis=1)
    rows = np.asarray(rows, np.int64)
    codes = rows[:, 0] * 128 + rows[:, 2]  # keys < 88, so start and key never collide
    octave_above = np.zeros(len(rows), bool)
    for lag in (-1, 0, 1):
        for interval in (12, 24, 36):
            octave_above |= np.isin(codes + 128 * lag + interval, codes)
    return np.where(octave_above, levels[:, 0::2].max(axis=1), levels.max(axis=1))


def register_balanced(levels: np.ndarray, velocities: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """``levels`` less the recording's register balance: the part of their linear trend
    over pitch that the velocity head's ``velocities`` do not explain.

    Over the recording's notes, ``levels ~ a + b velocities + c key`` (least squares);
    ``c (key - mean key)`` is removed, ``c`` shrunk first by its own uncertainty: scaled
    by ``max(0, 1 - 1/t**2)``, ``t`` its t-statistic, so a trend the notes barely show (a
    few notes at random pitches, where part of the fit is the samples' own) is mostly
    left alone and a clear one removed nearly whole.  At equal velocity an instrument, its
    microphones and the room make one register louder than another (FluidR3's bass at
    velocity 55 reads as loud as its treble at 70), which says nothing of the playing; the
    head, trained over many pianos, judges the registers, and the level the contrast
    within them.  Fewer than ``VELOCITY_REGISTER_MIN_NOTES`` notes: ``levels`` unchanged.
    """
    levels = np.asarray(levels, np.float64)
    if len(levels) < C.VELOCITY_REGISTER_MIN_NOTES:
        return levels
    velocities = np.asarray(velocities, np.float64)
    centred = np.asarray(keys, np.float64) - np.mean(keys)
    # Fitted in one order whatever the notes' (a stream decides them in another), so the
    # same notes always get the same velocities, to the last bit.
    order = np.lexsort((levels, velocities, centred))
    design = np.column_stack([np.ones(len(levels)), velocities, centred])[order]
    fit = np.linalg.lstsq(design, levels[order], rcond=None)[0]
    residual = levels[order] - design @ fit
    trend = fit[2]
    variance = (residual @ residual / (len(levels) - 3)
                * np.linalg.pinv(design.T @ design)[2, 2])  # of the fitted trend
    shrink = 1 - variance / trend ** 2 if trend ** 2 > variance else 0.0
    return levels - shrink * trend * centred


def blend_velocities(velocities: np.ndarray, levels: np.ndarray, weight: float,
                     keys: np.ndarray | None = None) -> np.ndarray:
    """``velocities`` plus ``weight`` steps per dB by which each note's onset level lies
    above the median of ``levels`` (the recording's notes), rounded, within 1..127.

    Centred on the median, the blend keeps the recording's typical velocity (the head's,
    which hears the whole mix) and adds the contrast between its notes that the level
    measures: a quiet recording is not made softer, nor a loud one harder.  Given the
    notes' ``keys``, the levels' register balance is removed first (``register_balanced``).
    """
    velocities = np.asarray(velocities, np.float64)
    if weight == 0 or len(velocities) == 0:
        return velocities
    levels = np.asarray(levels, np.float64)
    if keys is not None:
        levels = register_balanced(levels, velocities, keys)
    return np.clip(np.round(velocities + weight * (levels - np.median(levels))), 1, 127)


def frames_to_notes(frame: np.ndarray, onset: np.ndarray, offset: np.ndarray | None = None,
                    velocity: np.ndarray | None = None,
                    options: DecodingOptions | None = None,
                    frame_rate_hz: float = C.FRAME_RATE_HZ,
                    level: np.ndarray | None = None, key: np.ndarray | None = None) -> np.ndarray:
    """Decode ``(frames, 88)`` posteriorgrams into notes with ``options`` (unset fields: defaults).

    Returns a float64 array ``(n, 4)``: onset s, offset s, MIDI pitch (21..108),
    velocity (1..127), sorted by onset then pitch.  Every note has onset < offset,
    lasts at least ``min_note_ms`` and no two notes of one key overlap.  Without an
    offset posteriorgram, or with ``offset_threshold`` 1, the offset head is ignored;
    ``frame_onset_threshold`` below 1 also starts notes where the frame posteriorgram
    rises from quiet above it (see the module's docstring).  With the input's key
    levels ``level`` (dB, ``(frames, 88 x partials)`` or ``(frames, 88)``: ``onset_levels``)
    and a ``velocity_level_weight`` above 0, the velocities blend in each note's onset
    level (``blend_velocities``).  Onsets lie between frames, where the onset
    posteriorgram peaks (``_onset_shifts``).  A note filter (``options.note_filter``) reads
    the levels and the key-down posteriorgram ``key`` too.
    """
    return decode_notes(frame, onset, offset, velocity, options, frame_rate_hz, level, key)[0]


def decode_notes(frame: np.ndarray, onset: np.ndarray, offset: np.ndarray | None = None,
                 velocity: np.ndarray | None = None, options: DecodingOptions | None = None,
                 frame_rate_hz: float = C.FRAME_RATE_HZ, level: np.ndarray | None = None,
                 key: np.ndarray | None = None,
                 between_frames: bool = True, readings: bool = False) -> tuple:
    """``frames_to_notes``' notes, and, given a key-down posteriorgram ``key`` ``(frames,
    88)``, the same notes ending at their key's release (``key_threshold``; never later
    than they sound), as a ``NoteStream`` pushed them gives (``finish``,
    ``key_release_notes``); else None.  ``between_frames=False``: onsets and ends on the
    frame grid, as before session 38 (``benchmarks/note_timing.py``).  ``readings``: a
    third item, what the end chooser reads of each note (``end_readings``; None without
    ``key``, ``level`` or ``offset``), as ``NoteStream.end_readings`` gives it."""
    options = (options or DecodingOptions()).resolve()
    frame, onset = np.asarray(frame), np.asarray(onset)
    if frame.shape != onset.shape or frame.ndim != 2:
        raise ValueError(f"frame {frame.shape} and onset {onset.shape} must both be (frames, keys)")
    key = None if key is None else np.asarray(key).reshape(-1, C.N_KEYS)
    rows, levels, shifts = _kept_rows(frame, onset, offset, velocity, options, level, key)
    if not between_frames:
        shifts = None
    read = None
    if readings and key is not None and level is not None and offset is not None:
        notes, read = _to_seconds(rows, options.min_note_ms, frame_rate_hz, levels=levels,
                                  shifts=shifts, **_velocity_options(options),
                                  values=end_readings(rows, frame, offset, key, level))
    else:
        notes = _to_seconds(rows, options.min_note_ms, frame_rate_hz, levels=levels,
                            shifts=shifts, **_velocity_options(options))
    key_notes = None if key is None else _to_seconds(
        rows, options.min_note_ms, frame_rate_hz, 4, levels, shifts=shifts,
        **_velocity_options(options))
    return (notes, key_notes, read) if readings else (notes, key_notes)


def _decoded_rows(frame: np.ndarray, onset: np.ndarray, offset: np.ndarray | None,
                  velocity: np.ndarray | None, options: DecodingOptions,
                  level: np.ndarray | None, key: np.ndarray | None
                  ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """What the whole file's decoding and a stream's buffer both take from posteriorgrams
    (frames counted from their first): the rows of ``_note_frames`` (with each note's key
    release, column 4, given a key-down posteriorgram ``key``), each row's onset levels and
    their rises side by side (``(n, 2 x partials)``: ``onset_levels``, ``onset_rises``;
    given ``level``, else None) and its shifts off the frame grid (``_shifts``)."""
    rows = _note_frames(frame, onset, offset, velocity, options, level)
    levels = None
    if level is not None:
        at_onset = onset_levels(rows, level)
        levels = np.hstack([at_onset, onset_rises(rows, level, at_onset)])
    shifts = _shifts(rows, frame, onset, options)
    if key is not None:
        rows = np.column_stack([rows, _key_release_frames(rows, key, options.key_threshold)])
    return rows, levels, shifts


def note_features(rows: np.ndarray, frame: np.ndarray, onset: np.ndarray, key: np.ndarray,
                  level: np.ndarray) -> np.ndarray:
    """``(rows, len(notefilter.FEATURES))`` float64: what the note filter reads of each row
    of ``_note_frames`` (start frame, end frame, key, velocity) in the posteriorgrams
    ``(frames, 88)`` it was decoded from, the key-down posteriorgram ``key`` and the
    input's key levels ``level`` (dB, ``(frames, 88 x partials)``).  Frames before the
    first read as silence (posteriorgrams 0, levels ``SILENCE_DB``: nothing sounded before
    the recording began), frames after the last as the last (the window at a recording's
    end); keys off the keyboard read 0."""
    rows = np.asarray(rows, np.int64)
    n_frames = len(frame)
    starts, ends, keys = rows[:, 0], rows[:, 1], rows[:, 2]

    def at(array, offset, key_offset=0, before=0.0):
        shifted = keys + key_offset
        frames = starts + offset
        values = np.asarray(array[np.clip(frames, 0, n_frames - 1),
                                  np.clip(shifted, 0, C.N_KEYS - 1)], np.float64)
        return np.where((shifted >= 0) & (shifted < C.N_KEYS),
                        np.where(frames >= 0, values, before), 0.0)

    def highest(array, first, stop, key_offset=0):
        return np.max([at(array, offset, key_offset) for offset in range(first, stop)], axis=0)

    def mean(array, first, stop):
        return np.mean([at(array, offset) for offset in range(first, stop)], axis=0)

    partials = level.shape[1] // C.N_KEYS

    def partial(index, offset, key_offset=0):  # the level at partial ``index`` (0: fundamental)
        return at(level[:, index::partials], offset, key_offset, C.SILENCE_DB)

    frame_mean = _note_means(frame, keys, starts, ends)
    level_rise = np.zeros(len(rows))
    for k in np.unique(keys):
        mine = np.flatnonzero(keys == k)
        level_rise[mine] = _level_rise(level, int(k), starts[mine])
    window = np.clip(starts[:, None] + np.arange(-1, 2), 0, n_frames - 1)
    keys_struck = (np.asarray(onset[window], np.float32) > 0.5).any(axis=1).sum(axis=1)
    below = [highest(onset, -2, 3, -interval) for interval in (12, 19, 24)]
    frame_below = [highest(frame, -1, 1, -interval) for interval in (12, 19, 24)]
    level_db = np.max([partial(0, offset) for offset in range(START_FRAMES)], axis=0)
    sounding_before = (starts > 0) & (np.asarray(
        frame[np.maximum(starts - 1, 0), keys], np.float32) > C.FRAME_THRESHOLD)
    columns = [highest(onset, -2, 3), at(onset, 0), mean(frame, 0, START_FRAMES), frame_mean,
               np.log((ends - starts) / C.FRAME_RATE_HZ), rows[:, 3], keys, *below,
               *frame_below, highest(onset, -2, 3, 12), keys_struck,
               mean(key, 0, START_FRAMES), level_rise, level_db, sounding_before]
    columns += [at(array, offset) for array in (onset, frame, key) for offset in WINDOW]
    first = WINDOW[0]
    for index in range(partials):
        before = partial(index, first)
        columns += [partial(index, offset) - before for offset in WINDOW[1:]]
    columns += [partial(index, 0) for index in range(partials)]
    columns += [highest(onset, -1, 2, side) for side in (-1, 1)]
    columns += [partial(0, 1, side) - partial(0, first, side) for side in (-1, 1)]
    return np.column_stack(columns).astype(np.float64).reshape(-1, len(FEATURES))


def _note_means(posteriorgram: np.ndarray, keys: np.ndarray, starts: np.ndarray,
                stops: np.ndarray) -> np.ndarray:
    """Each note's mean of ``posteriorgram`` ``(frames, 88)`` at its key over frames
    ``[start, stop)`` (``stop > start``), summed over exactly those frames: a stream's
    buffer gives what the whole file does."""
    means = np.zeros(len(keys))
    for k in np.unique(keys):
        mine = np.flatnonzero(keys == k)
        column = np.r_[np.asarray(posteriorgram[:, k], np.float64), 0.0]
        bounds = np.column_stack([starts[mine], stops[mine]]).ravel()
        means[mine] = np.add.reduceat(column, bounds)[::2] / (stops[mine] - starts[mine])
    return means


def end_readings(rows: np.ndarray, frame: np.ndarray, offset: np.ndarray, key: np.ndarray,
                 level: np.ndarray) -> np.ndarray:
    """``(rows, len(noteends.READINGS))`` float64: what the end chooser reads of each row of
    ``_note_frames`` (start frame, end frame, key, ...) in the frame, offset and key-down
    posteriorgrams ``(frames, 88)`` and the input's key levels ``level`` (dB, ``(frames, 88 x
    partials)``), all within the note's own frames (its end, the first frame it no longer
    sounds, counts as the last frame where the recording ends first): a stream's buffer
    gives what the whole file does."""
    rows = np.asarray(rows, np.int64)
    if not len(rows):
        return np.zeros((0, len(READINGS)))
    last = len(frame) - 1
    starts, keys = rows[:, 0], rows[:, 2]
    stops = np.minimum(rows[:, 1], last)
    partials = level.shape[1] // C.N_KEYS
    first_partial = level[:, ::partials]

    def at(array, frames):
        return np.asarray(array[frames, keys], np.float64)
    start_level = at(first_partial, starts)
    columns = []
    for frames in (np.maximum(stops - BEFORE_END, starts), stops):
        columns += [at(frame, frames), at(key, frames), at(offset, frames),
                    start_level - at(first_partial, frames)]
    key_mean = _note_means(key, keys, starts, np.maximum(stops, starts + 1))
    columns += [at(key, np.maximum(np.minimum(starts + 2, stops - 1), starts)), key_mean,
                start_level]
    return np.column_stack(columns).reshape(-1, len(READINGS))


def note_candidates(frame: np.ndarray, onset: np.ndarray, offset: np.ndarray | None,
                    velocity: np.ndarray | None, key: np.ndarray, level: np.ndarray,
                    options: DecodingOptions,
                    frame_rate_hz: float = C.FRAME_RATE_HZ) -> tuple[np.ndarray, np.ndarray]:
    """What a note filter is fitted on: every note the decoding rules of ``options`` find,
    before the filter and before ``min_note_ms`` (``(n, 4)``: onset s, offset s, pitch,
    velocity head's value; onsets and ends between frames, unsorted), and each one's
    features (``note_features``)."""
    options = options.resolve()
    rows, _, shifts = _decoded_rows(frame, onset, offset, velocity, options, level, None)
    onsets, ends = _refined_times(rows, shifts, 0.0)
    notes = np.column_stack([onsets / frame_rate_hz, ends / frame_rate_hz,
                             rows[:, 2] + C.MIN_MIDI, rows[:, 3]]).reshape(-1, 4)
    return notes, note_features(rows, frame, onset, key, level)


def velocity_readings(frame: np.ndarray, onset: np.ndarray, offset: np.ndarray | None,
                      velocity: np.ndarray, key: np.ndarray | None, level: np.ndarray,
                      options: DecodingOptions,
                      frame_rate_hz: float = C.FRAME_RATE_HZ) -> tuple[np.ndarray, np.ndarray]:
    """What a velocity model is fitted on: the notes ``options`` decode (``frames_to_notes``,
    without a velocity model) and what the model reads of each (``notevelocity.features``),
    in their order."""
    options = dataclasses.replace(options.resolve(), velocity_model=None)
    rows, levels, shifts = _kept_rows(frame, onset, offset, velocity, options, level, key)
    long = long_enough(rows, options.min_note_ms, frame_rate_hz)
    read = np.zeros((len(rows), len(notevelocity.FEATURES)))
    read[long] = notevelocity.features(rows[long], *_split_levels(levels[long]), frame_rate_hz)
    return _to_seconds(rows, options.min_note_ms, frame_rate_hz, levels=levels, shifts=shifts,
                       values=read, **_velocity_options(options))


def _kept_rows(frame: np.ndarray, onset: np.ndarray, offset: np.ndarray | None,
               velocity: np.ndarray | None, options: DecodingOptions, level: np.ndarray | None,
               key: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """``_decoded_rows`` of the whole posteriorgrams, of the notes the note filter keeps
    (all, without one)."""
    rows, levels, shifts = _decoded_rows(frame, onset, offset, velocity, options, level, key)
    kept = _filter_keeps(rows, frame, onset, key, level, options)
    return rows[kept], None if levels is None else levels[kept], shifts[kept]


def _filter_keeps(rows: np.ndarray, frame: np.ndarray, onset: np.ndarray,
                  key: np.ndarray | None, level: np.ndarray | None,
                  options: DecodingOptions) -> np.ndarray:
    """Which of ``rows`` (start, end and key in the frames of the posteriorgrams) the
    note filter of ``options`` keeps: all, when there is none or its threshold is 0."""
    note_filter = options.note_filter
    if note_filter is None or options.note_filter_threshold <= 0 or not len(rows):
        return np.ones(len(rows), bool)
    if key is None or level is None:
        raise TranscribeError("the note filter reads the key-down posteriorgram and the "
                              "input's key levels, and these were not given")
    scores = note_filter.probabilities(note_features(rows, frame, onset, key, level))
    return scores >= options.note_filter_threshold


def _filtering(options: DecodingOptions) -> bool:
    return options.note_filter is not None and options.note_filter_threshold > 0


def _shifts(rows: np.ndarray, frame: np.ndarray, onset: np.ndarray,
            options: DecodingOptions) -> np.ndarray:
    """``(rows, 2)``: how far each row's onset and end lie off their frames
    (``_onset_shifts``, below the onset peak that starts a note from the onset head no
    shift; ``_end_shifts``)."""
    floor = min(options.onset_threshold, options.soft_onset_threshold)
    return np.column_stack([_onset_shifts(rows, onset, floor),
                            _end_shifts(rows, frame, options.frame_threshold)])


def _unfinished_onsets(onset: np.ndarray, options: DecodingOptions) -> int:
    """Where the re-strike or partial bar is on, the frame from which a stream must not
    decide yet: the first frame of the earliest onset still above the threshold at the
    last frame of ``onset`` (whether it starts a note, and so where the note before it
    ends, depends on its peak, which may come later), and no later than
    ``RESTRIKE_RISE_FRAMES`` before the end (the level's rise after a start); else the
    length of ``onset``, less the ``notefilter.AFTER_FRAMES`` a note filter reads after a
    note's start."""
    n_frames = len(onset)
    bars = (options.restrike_onset_threshold, options.partial_onset_threshold)
    soft = options.soft_onset_threshold < options.onset_threshold
    # A note filter reads AFTER_FRAMES from each note's start.
    held = AFTER_FRAMES if _filtering(options) else 0
    if not n_frames or (max(bars) <= options.onset_threshold and not soft):
        return max(0, n_frames - held)
    # A start in the last frames: the level's rise after it is not all in yet.
    n_frames = max(0, n_frames - max(C.RESTRIKE_RISE_FRAMES, held))
    threshold = min(options.onset_threshold, options.soft_onset_threshold)
    rising = np.flatnonzero(np.asarray(onset[-1], np.float32) > threshold)
    first = n_frames
    for key in rising:
        below = np.flatnonzero(np.asarray(onset[:, key], np.float32) <= threshold)
        first = min(first, below[-1] + 1 if len(below) else 0)
    return first


class NoteStream:
    """``frames_to_notes`` over posteriorgrams that arrive a chunk at a time.

    ``push`` appends frames; ``finish`` returns the notes, identical to
    ``frames_to_notes`` on the whole posteriorgrams.  Only the frames from the
    earliest note still sounding onwards are kept (plus the history a start
    needs), so memory does not grow with the length of the recording, only with
    the longest note.

    Decoding a buffer that starts at frame ``a`` and ends at ``b`` gives exactly
    the whole-file notes that start at or after ``a + HISTORY`` and end before
    ``b``: a note's start needs only the ``HISTORY`` frames before it (the frame
    before an onset, the quiet frames before a frame onset), its end the first
    stop or re-strike after it.  Notes reaching ``b`` are decided by later frames.
    """

    HISTORY = C.FRAME_ONSET_QUIET_FRAMES

    def __init__(self, options: DecodingOptions | None = None,
                 frame_rate_hz: float = C.FRAME_RATE_HZ):
        self.options = (options or DecodingOptions()).resolve()
        self.frame_rate_hz = frame_rate_hz
        # frame, onset, offset, velocity, and key and level when pushed
        self.buffer: dict[str, np.ndarray] | None = None
        self.start = 0  # file frame of buffer[0]
        self.decided_before = 0  # notes ending before this frame were emitted
        self.notes: list[np.ndarray] = []
        self.levels: list[np.ndarray] = []  # each decided note's onset level, with level
        self.shifts: list[np.ndarray] = []  # each decided note's onset and end off their frames
        self.readings: list[np.ndarray] = []  # what the end chooser reads of each, with keys and level
        self.keys = False  # whether key-down posteriorgrams are pushed

    def _decode(self, final: bool) -> None:
        buffer = self.buffer
        rows, levels, shifts = _decoded_rows(
            buffer["frame"], buffer["onset"], buffer["offset"], buffer["velocity"],
            self.options, buffer.get("level"), buffer.get("key"))
        if "key" in buffer:  # a key-down head: each note's key release, column 4
            rows[:, 4] += self.start
        rows[:, :2] += self.start
        end = self.start + len(buffer["frame"])
        if not final:  # an onset still rising at the end: its peak, so whether it starts a
            end = min(end, self.start + _unfinished_onsets(buffer["onset"], self.options))
        # Starts too close to the buffer's beginning lack their history; the notes
        # they make were decided in an earlier call.
        valid = rows[:, 0] >= self.start + self.HISTORY if self.start > 0 else \
            np.ones(len(rows), bool)
        open_ = valid & (rows[:, 1] >= end)
        decided = valid & (rows[:, 1] >= self.decided_before) & (final | ~open_)
        local = rows[decided].copy()  # in the buffer's frames
        local[:, :2] -= self.start
        if _filtering(self.options):  # on the decided notes only: the open ones may go on
            keeps = _filter_keeps(local, buffer["frame"], buffer["onset"], buffer.get("key"),
                                  buffer.get("level"), self.options)
            decided[decided], local = keeps, local[keeps]
        self.notes.append(rows[decided])
        self.shifts.append(shifts[decided])
        if "key" in buffer and "level" in buffer:
            self.readings.append(end_readings(local, buffer["frame"], buffer["offset"],
                                              buffer["key"], buffer["level"]))
        if levels is not None:
            self.levels.append(levels[decided])
        self.decided_before = end
        keep_from = (rows[open_, 0].min() if open_.any() else end) - self.HISTORY
        drop = max(0, keep_from - self.start)
        self.buffer = {name: array[drop:] for name, array in buffer.items()}
        self.start += drop

    def push(self, frame: np.ndarray, onset: np.ndarray, offset: np.ndarray,
             velocity: np.ndarray, key: np.ndarray | None = None,
             level: np.ndarray | None = None) -> None:
        """Append ``(frames, 88)`` posteriorgrams that follow the frames pushed before
        (``key``: a key-down head's; ``level``: the input's key levels, dB; each given
        with every push or never)."""
        self.keys = key is not None
        new = {name: np.asarray(array) for name, array in
               (("frame", frame), ("onset", onset), ("offset", offset), ("velocity", velocity),
                ("key", key), ("level", level)) if array is not None}
        self.buffer = new if self.buffer is None else {
            name: np.concatenate([self.buffer[name], part]) for name, part in new.items()}
        self._decode(final=False)

    def finish(self) -> np.ndarray:
        """All notes, as ``frames_to_notes`` returns them."""
        if self.buffer is not None:
            self._decode(final=True)
            self.buffer = None
        return self._to_seconds(1)

    def key_release_notes(self) -> np.ndarray | None:
        """After ``finish``: the same notes ending at their key's release (the first frame
        after the note's first frame where the key-down posteriorgram falls below
        ``key_threshold``, at least half a frame after its onset, never later than the note
        sounds), as ``decode_notes`` gives them; None when no key posteriorgram was pushed."""
        if not self.keys:
            return None
        if not self.notes or not any(len(rows) for rows in self.notes):
            return np.zeros((0, 4))
        return self._to_seconds(4)

    def end_readings(self) -> np.ndarray | None:
        """After ``finish``: what the end chooser reads of each note, in the notes' order
        (``decode_notes(..., readings=True)``' third item); None without keys and levels."""
        if not self.readings:
            return None
        rows = np.concatenate(self.notes)
        shifts = np.concatenate(self.shifts)
        return _to_seconds(rows, self.options.min_note_ms, self.frame_rate_hz, shifts=shifts,
                           values=np.concatenate(self.readings))[1]

    def _to_seconds(self, offset_column: int) -> np.ndarray:
        rows = np.concatenate(self.notes) if self.notes else np.zeros((0, 4), np.int64)
        levels = np.concatenate(self.levels) if self.levels else None
        shifts = np.concatenate(self.shifts) if self.shifts else np.zeros((0, 2))
        return _to_seconds(rows, self.options.min_note_ms, self.frame_rate_hz, offset_column,
                           levels, shifts=shifts, **_velocity_options(self.options))


def _peaks(series: np.ndarray, threshold: float, min_gap: int) -> np.ndarray:
    """Frames where ``series`` has a local maximum above ``threshold``; of peaks closer
    than ``min_gap`` frames, the higher one."""
    x = np.asarray(series, np.float32).reshape(-1)
    if len(x) < 3:
        return np.zeros(0, np.int64)
    inner = np.flatnonzero((x[1:-1] > threshold) & (x[1:-1] >= x[:-2]) & (x[1:-1] > x[2:])) + 1
    kept: list[int] = []
    for index in inner:
        if kept and index - kept[-1] < min_gap:
            if x[index] > x[kept[-1]]:
                kept[-1] = index
        else:
            kept.append(int(index))
    return np.asarray(kept, np.int64)


def pedal_spans(down: np.ndarray, threshold: float = C.PEDAL_THRESHOLD,
                frame_rate_hz: float = C.FRAME_RATE_HZ,
                min_pedal_ms: float = C.MIN_PEDAL_MS,
                released: np.ndarray | None = None, pressed: np.ndarray | None = None,
                split_threshold: float = OFF) -> np.ndarray:
    """Sustain-pedal-down spans ``(k, 2)`` in seconds from the pedal-down probability ``(frames,)``.

    A gap shorter than ``min_pedal_ms`` between two presses is bridged (a flicker of
    the posteriorgram, not a re-pedal), then presses shorter than it are dropped.  With
    the press probability ``pressed`` ``(frames,)`` and a ``split_threshold`` below 1, a
    span is split at each press peak above the threshold inside it (``_split_at_presses``).
    With the release probability ``released`` ``(frames,)``, each span ends at the release
    peak nearest its end within ``PEDAL_RELEASE_WINDOW_MS`` (never at or before its start,
    never past the next span's start).
    """
    probability = np.asarray(down, np.float32).reshape(-1)
    down = probability > threshold
    edges = np.diff(np.r_[0, down.astype(np.int8), 0])
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    shortest = max(1, int(np.ceil(min_pedal_ms / 1000 * frame_rate_hz - 1e-9)))
    if len(starts) > 1:
        joined = np.r_[starts[1:] - ends[:-1] >= shortest, True]
        starts, ends = starts[np.r_[True, joined[:-1]]], ends[joined]
    long = ends - starts >= shortest
    starts, ends = starts[long], ends[long]
    if pressed is not None and split_threshold < OFF and len(starts):
        starts, ends = _split_at_presses(starts, ends, probability, pressed, released,
                                         split_threshold, shortest, frame_rate_hz)
    if released is not None and len(ends):
        window = C.PEDAL_RELEASE_WINDOW_MS / 1000 * frame_rate_hz
        peaks = _peaks(released, C.PEDAL_RELEASE_PEAK, max(1, int(round(window))))
        if len(peaks):
            # Of the peaks on either side of each end, the nearer (no spans x peaks matrix).
            after = np.minimum(np.searchsorted(peaks, ends), len(peaks) - 1)
            before = np.maximum(after - 1, 0)
            nearest = np.where(np.abs(peaks[before] - ends) <= np.abs(peaks[after] - ends),
                               peaks[before], peaks[after])
            limit = np.r_[starts[1:], np.iinfo(np.int64).max]
            moved = (np.abs(nearest - ends) <= window) & (nearest > starts) & (nearest <= limit)
            ends = np.where(moved, nearest, ends)
    return np.column_stack([starts, ends]).astype(np.float64) / frame_rate_hz


def head_pedal_spans(columns: np.ndarray, options: DecodingOptions,
                     frame_rate_hz: float = C.FRAME_RATE_HZ) -> np.ndarray:
    """``pedal_spans`` from the pedal head's columns ``(frames, 3)`` (down, pressed,
    released: ``model.PEDAL_COLUMNS``) with the resolved thresholds of ``options``."""
    return pedal_spans(columns[:, 0], options.pedal_threshold, frame_rate_hz,
                       released=columns[:, 2], pressed=columns[:, 1],
                       split_threshold=options.pedal_split_threshold)


def _split_at_presses(starts: np.ndarray, ends: np.ndarray, down: np.ndarray,
                      pressed: np.ndarray, released: np.ndarray | None, threshold: float,
                      shortest: int, frame_rate_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Spans (frame ``starts``, exclusive ``ends``) split at the press peaks above
    ``threshold`` that lie at least ``shortest`` frames inside them: a new span starts at
    the press; the one before ends at the highest release peak in the
    ``PEDAL_SPLIT_WINDOW_MS`` before it, else the frame before the press.  A part shorter
    than ``shortest`` is not split off, nor one where the pedal-down probability ``down``
    does not dip between the lift and the press ``PEDAL_SPLIT_DIP`` below its median
    over the part."""
    presses = _peaks(pressed, threshold, shortest + 1)
    lifts = np.zeros(0, np.int64) if released is None else _peaks(released, C.PEDAL_RELEASE_PEAK, 1)
    lift_strength = None if released is None else np.asarray(released, np.float32).reshape(-1)
    window = int(round(C.PEDAL_SPLIT_WINDOW_MS / 1000 * frame_rate_hz))
    new_starts, new_ends = [], []
    for start, end in zip(starts.tolist(), ends.tolist()):
        inside = presses[np.searchsorted(presses, start + shortest):
                         np.searchsorted(presses, end - shortest, side="right")]
        for press in inside.tolist():
            near = lifts[np.searchsorted(lifts, max(start + 1, press - window)):
                         np.searchsorted(lifts, press)]
            lift = int(near[np.argmax(lift_strength[near])]) if len(near) else press - 1
            if lift - start >= shortest and down[max(lift - 1, 0):press + 1].min() < \
                    np.median(down[start:lift]) - C.PEDAL_SPLIT_DIP:
                new_starts.append(start)
                new_ends.append(lift)
                start = press
        new_starts.append(start)
        new_ends.append(end)
    return np.asarray(new_starts, np.int64), np.asarray(new_ends, np.int64)


def extend_through_pedal(notes: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """Notes whose offset falls while the pedal is down, lengthened to the pedal's release.

    What a score-writer wants of a performance: each note as long as it sounds.
    A key struck again ends its previous note there, as the hammer does the string's
    sound (the MIDI file, the CSV, the JSON and ``amt-evaluate`` all see the same notes).
    """
    notes = np.array(notes, np.float64).reshape(-1, 4)
    spans = np.asarray(spans, np.float64).reshape(-1, 2)
    if len(notes) == 0 or len(spans) == 0:
        return notes
    ends = notes[:, OFFSET_S]
    index = np.searchsorted(spans[:, 0], ends, side="right") - 1
    held = (index >= 0) & (ends < spans[np.maximum(index, 0), 1])
    lengthened = np.minimum(spans[index[held], 1], next_key_onsets(notes)[held])
    notes[held, OFFSET_S] = np.maximum(ends[held], lengthened)
    return notes


def next_key_onsets(notes: np.ndarray) -> np.ndarray:
    """For each note ``(n, 4)``, in its order, the next onset of its key (inf: none).

    Notes of one key and onset are ordered by offset: each but the longest gets their
    common onset (``midi.trim_overlaps`` then drops it).
    """
    order = np.lexsort((notes[:, OFFSET_S], notes[:, ONSET_S], notes[:, PITCH]))
    by_key = notes[order]
    same_key = np.r_[by_key[1:, PITCH] == by_key[:-1, PITCH], False]
    onsets = np.empty(len(notes))
    onsets[order] = np.where(same_key, np.r_[by_key[1:, ONSET_S], np.inf], np.inf)
    return onsets


def _key_release_frames(rows: np.ndarray, key_down: np.ndarray, threshold: float) -> np.ndarray:
    """For rows ``(onset frame, offset frame, key, ...)``: the first frame after the onset
    where ``key_down[:, key]`` falls below ``threshold``, else the offset frame."""
    released = rows[:, 1].copy()
    for index, (first, last, key) in enumerate(rows[:, :3]):
        held = key_down[first + 1:last, key] >= threshold
        if len(held) and not held.all():
            released[index] = first + 1 + int(np.argmin(held))
    return released
