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

from .decode import NOTE_FIELDS, OFFSET_S, ONSET_S, PITCH, VELOCITY, next_key_onsets
from .files import write_atomic

FORMATS = ("mid", "csv", "json")
ACOUSTIC_GRAND_PIANO = 0
SUSTAIN_CC = 64
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
    # Of notes with one key and onset the longest is kept (the others end where they begin).
    ends = np.minimum(notes[:, OFFSET_S], next_key_onsets(notes))
    notes = np.column_stack([notes[:, ONSET_S], ends, notes[:, PITCH:]])
    notes = notes[notes[:, OFFSET_S] - notes[:, ONSET_S] >= SHORTEST_NOTE_S]
    return notes[np.lexsort((notes[:, PITCH], notes[:, ONSET_S]))]


def notes_to_smf(notes: np.ndarray, tempo_bpm: float = 120.0,
                 metadata: str | None = None, pedal: np.ndarray | None = None) -> bytes:
    """A type-1 Standard MIDI File: a tempo track, then one acoustic grand piano track.

    ``notes`` ``(n, 4)``: onset s, offset s, pitch, velocity.  ``pedal`` ``(k, 2)``:
    sustain-pedal spans in seconds, written as CC64 127 (down) and 0 (up).  ``metadata`` goes
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
    # re-struck key is released before it sounds again; a pedal release before
    # a note-on too, and a pedal press after it (it then catches that note).
    # Kinds: 0 note-off, 1 pedal up, 2 note-on, 3 pedal down.
    pedal = np.zeros((0, 2)) if pedal is None else np.asarray(pedal, np.float64).reshape(-1, 2)
    downs = np.round(pedal[:, 0] * ticks_per_s).astype(np.int64)
    ups = np.maximum(np.round(pedal[:, 1] * ticks_per_s).astype(np.int64), downs + 1)
    ticks = np.r_[ends, starts, ups, downs]
    kinds = np.r_[np.zeros(len(ends), np.int64), np.full(len(starts), 2),
                  np.ones(len(ups), np.int64), np.full(len(downs), 3)]
    keys = np.r_[pitches, pitches, np.full(len(ups) + len(downs), SUSTAIN_CC)]
    values = np.r_[np.zeros_like(velocities), velocities, np.zeros(len(ups), np.int64),
                   np.full(len(downs), 127)]
    order = np.lexsort((keys, kinds, ticks))
    deltas = np.diff(ticks[order], prepend=0)

    tempo_track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm))])
    if metadata:
        tempo_track.append(mido.MetaMessage("text", text=metadata))
    piano = mido.MidiTrack([mido.MetaMessage("track_name", name="Piano"),
                            mido.Message("program_change", program=ACOUSTIC_GRAND_PIANO)])
    piano.extend(_message(kind, key, value, delta) for kind, key, value, delta in zip(
        kinds[order].tolist(), keys[order].tolist(), values[order].tolist(), deltas.tolist()))
    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT, tracks=[tempo_track, piano])
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def _message(kind: int, key: int, value: int, delta: int) -> mido.Message:
    if kind in (1, 3):
        return mido.Message("control_change", skip_checks=True, channel=0, control=key,
                            value=value, time=delta)
    return mido.Message("note_on" if kind == 2 else "note_off", skip_checks=True, channel=0,
                        note=key, velocity=value, time=delta)


def notes_to_midi(notes: np.ndarray, tempo_bpm: float = 120.0, metadata: str | None = None,
                  pedal: np.ndarray | None = None) -> pretty_midi.PrettyMIDI:
    """The file of ``notes_to_smf`` as a ``pretty_midi.PrettyMIDI`` (for the Python API)."""
    return pretty_midi.PrettyMIDI(io.BytesIO(notes_to_smf(notes, tempo_bpm, metadata, pedal)))


def midi_to_notes(midi: pretty_midi.PrettyMIDI) -> np.ndarray:
    """All non-drum notes of ``midi`` as ``(n, 4)`` sorted by onset then pitch."""
    rows = [(n.start, n.end, n.pitch, n.velocity) for inst in midi.instruments
            if not inst.is_drum for n in inst.notes]
    notes = np.array(rows, np.float64).reshape(-1, 4)
    return notes[np.lexsort((notes[:, PITCH], notes[:, ONSET_S]))]


def notes_to_csv(notes: np.ndarray, pedal: np.ndarray | None = None) -> str:
    """One row per note; with ``pedal``, an ``event`` column and one ``sustain`` row per
    pedal span (its pitch and velocity empty)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    with_pedal = pedal is not None
    writer.writerow(NOTE_FIELDS + (("event",) if with_pedal else ()))
    rows = [(a, b, str(int(p)), str(int(v)), "note") for a, b, p, v in np.asarray(notes).reshape(-1, 4)]
    if with_pedal:
        rows += [(a, b, "", "", "sustain") for a, b in np.asarray(pedal).reshape(-1, 2)]
        rows.sort(key=lambda row: row[0])
    for onset_s, offset_s, pitch, velocity, event in rows:
        writer.writerow([f"{onset_s:.4f}", f"{offset_s:.4f}", pitch, velocity]
                        + ([event] if with_pedal else []))
    return out.getvalue()


def notes_to_json(notes: np.ndarray, metadata: dict | None = None,
                  pedal: np.ndarray | None = None) -> str:
    """``{"metadata", "notes"}``, and ``"pedal"`` (sustain spans) when given."""
    events = [{"onset_s": round(float(a), 4), "offset_s": round(float(b), 4),
               "pitch": int(p), "velocity": int(v)} for a, b, p, v in np.asarray(notes).reshape(-1, 4)]
    document = {"metadata": metadata or {}, "notes": events}
    if pedal is not None:
        document["pedal"] = [{"onset_s": round(float(a), 4), "offset_s": round(float(b), 4)}
                             for a, b in np.asarray(pedal).reshape(-1, 2)]
    return json.dumps(document, indent=1) + "\n"


def notes_bytes(notes: np.ndarray, fmt: str = "mid", tempo_bpm: float = 120.0,
                metadata: dict | None = None, pedal: np.ndarray | None = None) -> bytes:
    """``notes`` (and sustain ``pedal`` spans, if given) as a ``mid``, ``csv`` or ``json``
    file's bytes."""
    if fmt == "mid":
        text = json.dumps(metadata, sort_keys=True) if metadata else None
        return notes_to_smf(notes, tempo_bpm, text, pedal)
    if fmt == "csv":
        return notes_to_csv(notes, pedal).encode()
    if fmt == "json":
        return notes_to_json(notes, metadata, pedal).encode()
    raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")


def write_notes(notes: np.ndarray, path: Path, fmt: str = "mid", tempo_bpm: float = 120.0,
                metadata: dict | None = None, overwrite: bool = True,
                pedal: np.ndarray | None = None) -> None:
    """Write ``notes`` (and sustain ``pedal`` spans, if given) to ``path`` as ``mid``,
    ``csv`` or ``json``, atomically.

    With ``overwrite=False`` an existing ``path`` raises ``files.OutputExists``.
    """
    write_atomic(Path(path), notes_bytes(notes, fmt, tempo_bpm, metadata, pedal), overwrite)
