"""Transcription metrics with mir_eval, as the literature's tables report them.

- frame: precision/recall/F1 of active pitches on the model's frame grid
  (``mir_eval.multipitch``), from the decoded notes as in Hawthorne et al. 2018;
- note: onset within 50 ms and same pitch (``offset_ratio=None``);
- note with offset: also offset within 20 % of the note or 50 ms (mir_eval's default);
- note with velocity: ``mir_eval.transcription_velocity`` (onset + velocity, no offset);
- by register: note-level recall and precision per octave of the keyboard.
All functions take and return arrays; nothing here reads files.
"""

from __future__ import annotations

import warnings

import numpy as np

from .. import constants as C
from ..decode import OFFSET_S, ONSET_S, PITCH, TIMES, VELOCITY


METRICS = ("frame", "note", "note_offset", "note_velocity")
# Octaves of the keyboard (MIDI pitch ranges, end excluded) for ``register_counts``.
REGISTERS = (("A0-B1", 21, 36), ("C2-B2", 36, 48), ("C3-B3", 48, 60), ("C4-B4", 60, 72),
             ("C5-B5", 72, 84), ("C6-C8", 84, 109))


def hertz(pitches: np.ndarray) -> np.ndarray:
    """MIDI pitches as frequencies (Hz), as mir_eval takes them."""
    return 440.0 * 2.0 ** ((np.asarray(pitches, np.float64) - 69) / 12)


def _valid_mask(notes: np.ndarray) -> np.ndarray:
    """Boolean per note: it has a length (mir_eval scores no other)."""
    notes = np.asarray(notes, np.float64).reshape(-1, 4)
    return notes[:, OFFSET_S] > notes[:, ONSET_S]


def _valid(notes: np.ndarray) -> np.ndarray:
    return np.asarray(notes, np.float64).reshape(-1, 4)[_valid_mask(notes)]


def _frame_lists(notes: np.ndarray, n_frames: int, frame_rate_hz: float):
    from .labels import notes_to_rolls
    roll = notes_to_rolls(notes, 0, n_frames, frame_rate_hz)["frame"] > 0
    times = np.arange(n_frames) / frame_rate_hz
    freqs = [hertz(np.flatnonzero(row) + C.MIN_MIDI) for row in roll]
    return times, freqs


def f1(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def score(reference: np.ndarray, estimate: np.ndarray,
          frame_rate_hz: float = C.FRAME_RATE_HZ) -> dict[str, float]:
    """Precision, recall and F1 of every level for one piece; notes ``(n, 4)``.

    Keys: ``{level}_{precision|recall|f1}`` for level in ``METRICS``.
    """
    import mir_eval
    ref, est = _valid(reference), _valid(estimate)
    out: dict[str, float] = {}
    end = max(ref[:, OFFSET_S].max(initial=0), est[:, OFFSET_S].max(initial=0))
    n_frames = int(np.ceil(end * frame_rate_hz)) + 1
    ref_t, ref_f = _frame_lists(ref, n_frames, frame_rate_hz)
    est_t, est_f = _frame_lists(est, n_frames, frame_rate_hz)
    with warnings.catch_warnings():  # "Estimate frequencies are all empty.": scored 0 below
        warnings.filterwarnings("ignore", "(Reference|Estimate) frequencies are all empty",
                                UserWarning)
        frame = mir_eval.multipitch.evaluate(ref_t, ref_f, est_t, est_f)
    out["frame_precision"], out["frame_recall"] = frame["Precision"], frame["Recall"]
    out["frame_f1"] = f1(frame["Precision"], frame["Recall"])
    args = (ref[:, TIMES], hertz(ref[:, PITCH]), est[:, TIMES], hertz(est[:, PITCH]))
    for level, ratio in (("note", None), ("note_offset", 0.2)):
        if len(ref) and len(est):
            p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(*args, offset_ratio=ratio)
        else:
            p = r = f = 0.0
        out[f"{level}_precision"], out[f"{level}_recall"], out[f"{level}_f1"] = p, r, f
    if len(ref) and len(est):
        p, r, f, _ = mir_eval.transcription_velocity.precision_recall_f1_overlap(
            ref[:, TIMES], hertz(ref[:, PITCH]), ref[:, VELOCITY], est[:, TIMES], hertz(est[:, PITCH]), est[:, VELOCITY],
            offset_ratio=None)
    else:
        p = r = f = 0.0
    out["note_velocity_precision"], out["note_velocity_recall"], out["note_velocity_f1"] = p, r, f
    return {k: float(v) for k, v in out.items()}


def register_counts(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Note-level (onset) matches by octave of the keyboard, to see where notes are missed.

    Returns int ``(len(REGISTERS), 3)``: reference notes, those matched (mir_eval's note
    level: same pitch, onset within 50 ms) and estimated notes, per register of
    ``REGISTERS``.  Sum over files, then recall = matched / reference and precision =
    matched / estimated.
    """
    ref, est = _valid(reference), _valid(estimate)
    matched = matched_reference(reference, estimate)
    counts = np.zeros((len(REGISTERS), 3), np.int64)
    for row, (_, low, high) in enumerate(REGISTERS):
        in_ref = (ref[:, PITCH] >= low) & (ref[:, PITCH] < high)
        counts[row] = (in_ref.sum(), (matched & in_ref).sum(),
                       ((est[:, PITCH] >= low) & (est[:, PITCH] < high)).sum())
    return counts


def register_recall_precision(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision per register from summed ``register_counts`` (0 where no notes)."""
    n_ref, n_matched, n_est = counts.T
    return n_matched / np.maximum(n_ref, 1), n_matched / np.maximum(n_est, 1)


def mean_scores(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean of every float score over the files that have it (pedal scores: files with pedal)."""
    keys = list(dict.fromkeys(k for row in rows for k, v in row.items() if isinstance(v, float)))
    return {k: float(np.mean([row[k] for row in rows if k in row])) for k in keys}


# Bands of the reference notes for ``band_recall`` (label, low, high; high excluded).
VELOCITY_BANDS = (("< 30", 0, 30), ("30-44", 30, 45), ("45-59", 45, 60), ("60-74", 60, 75),
                  ("75-89", 75, 90), (">= 90", 90, 128))
POLYPHONY_BANDS = (("1-4", 1, 5), ("5-9", 5, 10), ("10-14", 10, 15), (">= 15", 15, 10 ** 6))


def _note_pairs(ref: np.ndarray, est: np.ndarray) -> np.ndarray:
    """int ``(pairs, 2)``: indices of (valid) reference and estimated notes matched at
    mir_eval's note level (pitch, 50 ms onset)."""
    import mir_eval
    if not (len(ref) and len(est)):
        return np.zeros((0, 2), np.int64)
    pairs = mir_eval.transcription.match_notes(ref[:, TIMES], hertz(ref[:, PITCH]),
                                               est[:, TIMES], hertz(est[:, PITCH]),
                                               offset_ratio=None)
    return np.array(pairs, np.int64).reshape(-1, 2)


def matched_reference(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Boolean per (valid) reference note: found at mir_eval's note level (pitch, 50 ms onset)."""
    return note_matches(reference, estimate)[0][_valid_mask(reference)]


def note_matches(reference: np.ndarray, estimate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(boolean per reference note: found; boolean per estimated note: in the reference), at
    mir_eval's note level (pitch, 50 ms onset), both of every note given (a note without
    length is neither: mir_eval scores none such)."""
    pairs = note_pairs(reference, estimate)
    found, hits = np.zeros(len(reference), bool), np.zeros(len(estimate), bool)
    found[pairs[:, 0]] = True
    hits[pairs[:, 1]] = True
    return found, hits


def note_pairs(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """int ``(pairs, 2)``: indices into ``reference`` and ``estimate`` of the notes matched
    at mir_eval's note level (pitch, 50 ms onset; a note without length is never matched)."""
    reference = np.asarray(reference, np.float64).reshape(-1, 4)
    estimate = np.asarray(estimate, np.float64).reshape(-1, 4)
    ref_index, est_index = np.flatnonzero(_valid_mask(reference)), np.flatnonzero(_valid_mask(estimate))
    pairs = _note_pairs(reference[ref_index], estimate[est_index])
    return np.column_stack([ref_index[pairs[:, 0]], est_index[pairs[:, 1]]]).reshape(-1, 2)


def matched_velocities(reference: np.ndarray, estimate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(reference velocities, estimated velocities) of the notes matched at mir_eval's note
    level: what a listener compares of the dynamics, before mir_eval's velocity tolerance."""
    ref, est = _valid(reference), _valid(estimate)
    pairs = _note_pairs(ref, est)
    return ref[pairs[:, 0], VELOCITY], est[pairs[:, 1], VELOCITY]


def matched_onset_errors(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Seconds by which each note matched at mir_eval's note level (pitch, 50 ms onset) is
    written after the reference's (before: negative): how exactly onsets are timed."""
    ref, est = _valid(reference), _valid(estimate)
    pairs = _note_pairs(ref, est)
    return est[pairs[:, 1], ONSET_S] - ref[pairs[:, 0], ONSET_S]


def sounding_at_onsets(reference: np.ndarray) -> np.ndarray:
    """How many reference notes sound at each reference note's onset (itself included)."""
    ref = _valid(reference)
    starts, ends = np.sort(ref[:, ONSET_S]), np.sort(ref[:, OFFSET_S])
    onsets = ref[:, ONSET_S]
    return (np.searchsorted(starts, onsets, side="right")
            - np.searchsorted(ends, onsets, side="right"))


def band_counts(reference: np.ndarray, estimate: np.ndarray, by: str,
                bands: tuple | None = None) -> np.ndarray:
    """int ``(bands, 2)``: reference notes and those found, per velocity or polyphony band.

    ``by`` is ``velocity`` (the reference velocity, ``VELOCITY_BANDS``) or ``polyphony``
    (notes sounding at the onset, pedal included, ``POLYPHONY_BANDS``); ``bands``
    (label, low, high excluded) replaces those.  Sum over files; recall = found / reference.
    """
    ref = _valid(reference)
    matched = matched_reference(reference, estimate)
    values, default = ((ref[:, VELOCITY], VELOCITY_BANDS) if by == "velocity"
                       else (sounding_at_onsets(reference), POLYPHONY_BANDS))
    bands = default if bands is None else bands
    counts = np.zeros((len(bands), 2), np.int64)
    for row, (_, low, high) in enumerate(bands):
        inside = (values >= low) & (values < high)
        counts[row] = inside.sum(), (matched & inside).sum()
    return counts


# Where the errors lie (``error_counts``): the kinds of reference notes not found and of
# notes written that were not played, each note counted under the first kind it fits.
ERROR_KINDS = (("missed", "off in time"), ("missed", "swallowed"), ("missed", "nothing near"),
               ("not played", "off in time"), ("not played", "split"),
               ("not played", "partial"), ("not played", "other"))
ERROR_MEANINGS = {
    "off in time": "the other side (reference or transcription) has an unmatched note of its "
                   "key within 150 ms",
    "swallowed": "a longer note of its key, written before, goes on through it",
    "nothing near": "no note of its key written near it",
    "split": "inside a longer note of its key played before",
    "partial": "a lower note played with it has a partial at its pitch (an octave, a "
               "twelfth, two octaves ... below)",
}
ERROR_NEAR_S = 0.15  # how far from the onset a note of the same key counts as off in time


def error_counts(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """int ``(len(ERROR_KINDS),)``: the reference notes that mir_eval's note level (pitch,
    50 ms onset) does not find, and the estimated notes it does not match, by kind.

    A note is counted under the first kind it fits, in ``ERROR_KINDS``' order.  A missed
    note is off in time where a note of its key that is not matched was written within
    ``ERROR_NEAR_S`` of its onset, swallowed where a note of its key written before it
    still sounds at its onset (a re-strike not heard); a note not played is off in time
    likewise, split where a played note of its key began before it and still sounds, a
    partial where a note ``C.PARTIAL_INTERVALS`` below (its 2nd to 6th partials) was
    played within 50 ms of it.  Sum over files.
    """
    ref, est = _valid(reference), _valid(estimate)
    found, hits = note_matches(reference, estimate)
    found, hits = found[_valid_mask(reference)], hits[_valid_mask(estimate)]
    counts = np.zeros(len(ERROR_KINDS), np.int64)

    def kind(notes, others, others_unmatched, index, partials):
        onset, key = notes[index, ONSET_S], notes[index, PITCH]
        same = others[:, PITCH] == key
        if np.any(same & others_unmatched & (np.abs(others[:, ONSET_S] - onset) <= ERROR_NEAR_S)):
            return 0
        if np.any(same & (others[:, ONSET_S] < onset) & (others[:, OFFSET_S] > onset)):
            return 1
        if partials and np.any(np.isin(key - others[:, PITCH], C.PARTIAL_INTERVALS)
                               & (np.abs(others[:, ONSET_S] - onset) <= 0.05)):
            return 2
        return 3 if partials else 2

    for index in np.flatnonzero(~found):
        counts[kind(ref, est, ~hits, index, False)] += 1
    for index in np.flatnonzero(~hits):
        counts[3 + kind(est, ref, ~found, index, True)] += 1
    return counts


# Kong et al.'s press tolerance for pedal spans (their released scoring code), where
# notes get 50 ms: a press is heard less sharply than a hammer.
KONG_PEDAL_ONSET_S = 0.2


def pedal_scores(reference: np.ndarray, estimate: np.ndarray, duration_s: float,
                 frame_rate_hz: float = C.FRAME_RATE_HZ, window_s: float = 0.05) -> dict:
    """Sustain-pedal precision/recall/F1: frame level, presses and releases, and the
    spans as Kong et al. (2021) score them.

    ``reference`` and ``estimate`` are pedal-down spans ``(k, 2)`` in seconds.  Frame
    level on the model's frame grid; ``pedal_onset_*`` (``pedal_offset_*``): presses
    (releases) matched one to one within ``window_s`` (``mir_eval.onset.f_measure``), as
    Transkun matches pedal events.  Kong et al.'s released scoring
    (bytedance/piano_transcription, ``calculate_score_for_paper.py``) matches whole spans
    with ``mir_eval.transcription`` and a press tolerance of 200 ms: ``pedal_onset_kong_*``
    (presses alone, their "pedal onset F1", 91.9 on MAESTRO) and
    ``pedal_onset_offset_kong_*`` (releases also within 20 % of the span or 50 ms).
    """
    import mir_eval
    n_frames = int(np.ceil(duration_s * frame_rate_hz)) + 1
    ref_spans, est_spans = (np.asarray(spans, np.float64).reshape(-1, 2)
                            for spans in (reference, estimate))

    def roll(spans):
        active = np.zeros(n_frames, bool)
        for start, end in spans:
            active[int(round(start * frame_rate_hz)):int(round(end * frame_rate_hz))] = True
        return active
    ref_roll, est_roll = roll(ref_spans), roll(est_spans)
    hits = float((ref_roll & est_roll).sum())
    precision, recall = hits / max(est_roll.sum(), 1), hits / max(ref_roll.sum(), 1)
    held = float(ref_roll.mean())
    out = {"pedal_frame_precision": precision, "pedal_frame_recall": recall,
           "pedal_frame_f1": f1(precision, recall),
           "pedal_frame_f1_always_down": f1(held, 1.0 if held else 0.0)}
    for column, name in ((0, "onset"), (1, "offset")):
        ref_t, est_t = np.sort(ref_spans[:, column]), np.sort(est_spans[:, column])
        if len(ref_t) and len(est_t):
            f, p, r = mir_eval.onset.f_measure(ref_t, est_t, window=window_s)
        else:
            f = p = r = 0.0
        out.update({f"pedal_{name}_precision": p, f"pedal_{name}_recall": r,
                    f"pedal_{name}_f1": f})
    for name, offset_ratio in (("onset_kong", None), ("onset_offset_kong", 0.2)):
        if len(ref_spans) and len(est_spans):
            p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(
                ref_spans, np.ones(len(ref_spans)), est_spans, np.ones(len(est_spans)),
                onset_tolerance=KONG_PEDAL_ONSET_S, offset_ratio=offset_ratio,
                offset_min_tolerance=0.05)
        else:
            p = r = f = 0.0
        out.update({f"pedal_{name}_precision": p, f"pedal_{name}_recall": r,
                    f"pedal_{name}_f1": f})
    return {k: float(v) for k, v in out.items()}
