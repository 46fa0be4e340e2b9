"""Note events -> Standard MIDI File, CSV or JSON, written atomically.

Times are in seconds whatever the tempo: ``tempo_bpm`` only sets the header tempo
(and so how a score editor draws bars), not when notes sound.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pretty_midi

from .decode import NOTE_FIELDS

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
    notes = notes[np.lexsort((notes[:, 1], notes[:, 0], notes[:, 2]))]  # same onset: longest last, kept
    same_key_next = np.r_[notes[1:, 2] == notes[:-1, 2], False]
    next_onset = np.r_[notes[1:, 0], np.inf]
    ends = np.where(same_key_next, np.minimum(notes[:, 1], next_onset), notes[:, 1])
    notes = np.column_stack([notes[:, 0], ends, notes[:, 2:]])
    notes = notes[notes[:, 1] - notes[:, 0] >= SHORTEST_NOTE_S]
    return notes[np.lexsort((notes[:, 2], notes[:, 0]))]


def notes_to_midi(notes: np.ndarray, tempo_bpm: float = 120.0,
                  metadata: str | None = None) -> pretty_midi.PrettyMIDI:
    """One acoustic grand piano track holding ``notes`` ``(n, 4)``: onset s, offset s, pitch, velocity.

    ``metadata`` goes into a text meta event (e.g. the version and thresholds used).
    """
    midi = pretty_midi.PrettyMIDI(resolution=TICKS_PER_BEAT, initial_tempo=float(tempo_bpm))
    piano = pretty_midi.Instrument(program=ACOUSTIC_GRAND_PIANO, name="Piano")
    for onset_s, offset_s, pitch, velocity in trim_overlaps(notes):
        piano.notes.append(pretty_midi.Note(int(velocity), int(pitch), float(onset_s),
                                            float(offset_s)))
    midi.instruments.append(piano)
    if metadata:
        midi.text_events.append(pretty_midi.Text(metadata, 0.0))
    return midi


def midi_to_notes(midi: pretty_midi.PrettyMIDI) -> np.ndarray:
    """All non-drum notes of ``midi`` as ``(n, 4)`` sorted by onset then pitch."""
    rows = [(n.start, n.end, n.pitch, n.velocity) for inst in midi.instruments
            if not inst.is_drum for n in inst.notes]
    notes = np.array(rows, np.float64).reshape(-1, 4)
    return notes[np.lexsort((notes[:, 2], notes[:, 0]))]


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


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place.

    An interrupted run leaves either the old file or none, never half a file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_notes(notes: np.ndarray, path: Path, fmt: str = "mid", tempo_bpm: float = 120.0,
                metadata: dict | None = None) -> None:
    """Write ``notes`` to ``path`` as ``mid``, ``csv`` or ``json``, atomically."""
    if fmt == "mid":
        buffer = io.BytesIO()
        text = json.dumps(metadata, sort_keys=True) if metadata else None
        notes_to_midi(notes, tempo_bpm, text).write(buffer)
        data = buffer.getvalue()
    elif fmt == "csv":
        data = notes_to_csv(notes).encode()
    elif fmt == "json":
        data = notes_to_json(notes, metadata).encode()
    else:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    write_atomic(Path(path), data)
