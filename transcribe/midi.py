"""Note events -> Standard MIDI File, CSV or JSON, written atomically.

Times are in seconds whatever the tempo: ``tempo_bpm`` only sets the header tempo
(and so how a score editor draws bars), not when notes sound.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import mido
import numpy as np
import pretty_midi

from .decode import NOTE_FIELDS, OFFSET_S, ONSET_S, PITCH, VELOCITY
from .files import write_atomic

FORMATS = ("mid", "csv", "json")
ACOUSTIC_GRAND_PIANO = 0
TICKS_PER_BEAT = 960  # a tick is 0.5 ms at 120 bpm
SHORTEST_NOTE_S = 1e-3


def format_for(path: Path | None) -> str:
    """The note format a path's suffix asks for: ``csv``, ``json``, else ``mid``."""
    suffix = path.suffix.lower() if path is not None else ""
    return {".csv": "csv", ".json": "json"}.get(suffix, "mid")


def trim_overlaps(notes: np.ndarray) -> np.ndarray:
    """End each note no later than the next onset of its key; drop notes left under 1 ms.

    A MIDI file cannot hold one key sounding twice (the first note-off would end
    both), so overlapping notes of one pitch are trimmed, not emitted.
    """
    notes = np.asarray(notes, np.float64).reshape(-1, 4)
    # By key, then onset; of notes with one onset the longest comes last and is kept.
    notes = notes[np.lexsort((notes[:, OFFSET_S], notes[:, ONSET_S], notes[:, PITCH]))]
    same_key_next = np.r_[notes[1:, 2] == notes[:-1, 2], False]
    next_onset = np.r_[notes[1:, 0], np.inf]
    ends = np.where(same_key_next, np.minimum(notes[:, OFFSET_S], next_onset), notes[:, OFFSET_S])
    notes = np.column_stack([notes[:, ONSET_S], ends, notes[:, PITCH:]])
    notes = notes[notes[:, OFFSET_S] - notes[:, ONSET_S] >= SHORTEST_NOTE_S]
    return notes[np.lexsort((notes[:, PITCH], notes[:, ONSET_S]))]


def notes_to_smf(notes: np.ndarray, tempo_bpm: float = 120.0,
                 metadata: str | None = None) -> bytes:
    """A type-1 Standard MIDI File: a tempo track, then one acoustic grand piano track.

    ``notes`` ``(n, 4)``: onset s, offset s, pitch, velocity.  ``metadata`` goes
    into a text meta event (e.g. the version and thresholds used).  Ticks are
    computed with numpy and messages built unchecked (their values are checked
    here once): pretty_midi's writer spends about 75 us a note on conversions
    and checks, 2 s for an hour of piano.
    """
    notes = trim_overlaps(notes)
    ticks_per_s = TICKS_PER_BEAT * tempo_bpm / 60
    starts = np.round(notes[:, ONSET_S] * ticks_per_s).astype(np.int64)
    ends = np.maximum(np.round(notes[:, OFFSET_S] * ticks_per_s).astype(np.int64), starts + 1)
    pitches = notes[:, PITCH].astype(np.int64)
    velocities = np.clip(np.round(notes[:, VELOCITY]), 1, 127).astype(np.int64)
    if len(notes) and (pitches.min() < 0 or pitches.max() > 127):
        raise ValueError("MIDI pitches must lie in 0..127")
    # Events sorted by tick, a note-off before a note-on at the same tick, so a
    # re-struck key is released before it sounds again.
    ticks = np.r_[ends, starts]
    is_on = np.r_[np.zeros(len(ends), bool), np.ones(len(starts), bool)]
    keys, values = np.r_[pitches, pitches], np.r_[np.zeros_like(velocities), velocities]
    order = np.lexsort((keys, is_on, ticks))
    deltas = np.diff(ticks[order], prepend=0)

    tempo_track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm))])
    if metadata:
        tempo_track.append(mido.MetaMessage("text", text=metadata))
    piano = mido.MidiTrack([mido.MetaMessage("track_name", name="Piano"),
                            mido.Message("program_change", program=ACOUSTIC_GRAND_PIANO)])
    piano.extend(mido.Message("note_on" if on else "note_off", skip_checks=True, channel=0,
                              note=key, velocity=value, time=delta)
                 for on, key, value, delta in zip(is_on[order].tolist(), keys[order].tolist(),
                                                  values[order].tolist(), deltas.tolist()))
    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT, tracks=[tempo_track, piano])
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def notes_to_midi(notes: np.ndarray, tempo_bpm: float = 120.0,
                  metadata: str | None = None) -> pretty_midi.PrettyMIDI:
    """The file of ``notes_to_smf`` as a ``pretty_midi.PrettyMIDI`` (for the Python API)."""
    return pretty_midi.PrettyMIDI(io.BytesIO(notes_to_smf(notes, tempo_bpm, metadata)))


def midi_to_notes(midi: pretty_midi.PrettyMIDI) -> np.ndarray:
    """All non-drum notes of ``midi`` as ``(n, 4)`` sorted by onset then pitch."""
    rows = [(n.start, n.end, n.pitch, n.velocity) for inst in midi.instruments
            if not inst.is_drum for n in inst.notes]
    notes = np.array(rows, np.float64).reshape(-1, 4)
    return notes[np.lexsort((notes[:, PITCH], notes[:, ONSET_S]))]


def notes_to_csv(notes: np.ndarray) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(NOTE_FIELDS)
    for onset_s, offset_s, pitch, velocity in np.asarray(notes).reshape(-1, 4):
        writer.writerow([f"{onset_s:.4f}", f"{offset_s:.4f}", int(pitch), int(velocity)])
    return out.getvalue()


def notes_to_json(notes: np.ndarray, metadata: dict | None = None) -> str:
    events = [{"onset_s": round(float(a), 4), "offset_s": round(float(b), 4),
               "pitch": int(p), "velocity": int(v)} for a, b, p, v in np.asarray(notes).reshape(-1, 4)]
    return json.dumps({"metadata": metadata or {}, "notes": events}, indent=1) + "\n"


def write_notes(notes: np.ndarray, path: Path, fmt: str = "mid", tempo_bpm: float = 120.0,
                metadata: dict | None = None, overwrite: bool = True) -> None:
    """Write ``notes`` to ``path`` as ``mid``, ``csv`` or ``json``, atomically.

    With ``overwrite=False`` an existing ``path`` raises ``files.OutputExists``.
    """
    if fmt == "mid":
        text = json.dumps(metadata, sort_keys=True) if metadata else None
        data = notes_to_smf(notes, tempo_bpm, text)
    elif fmt == "csv":
        data = notes_to_csv(notes).encode()
    elif fmt == "json":
        data = notes_to_json(notes, metadata).encode()
    else:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    write_atomic(Path(path), data, overwrite)
