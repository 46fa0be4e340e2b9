"""The validation set: excerpts of piano-midi.de rendered with the held-out SoundFont.

Each excerpt keeps the notes whose onsets fall in a ``seconds``-long window of
one piece (offsets clipped to the window, the sustain pedal's state carried in),
is rendered with MuseScore_General (never used in training) plus room reverb, and
is written as ``NAME.flac`` beside its ground truth ``NAME.mid``.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pedalboard as pb
import pretty_midi
import soundfile as sf

from .. import constants as C
from ..files import write_atomic
from . import synth
from .corpus import MidiFile


def excerpt(midi: pretty_midi.PrettyMIDI, start_s: float, seconds: float) -> pretty_midi.PrettyMIDI:
    """Notes with onsets in ``[start_s, start_s + seconds)``, shifted to start at 0, on one piano."""
    out = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    end_s = start_s + seconds
    for instrument in midi.instruments:
        if instrument.is_drum:
            continue
        track = pretty_midi.Instrument(program=0, name="Piano")
        for note in instrument.notes:
            if start_s <= note.start < end_s - 0.05:
                track.notes.append(pretty_midi.Note(note.velocity, note.pitch,
                                                    note.start - start_s,
                                                    min(note.end, end_s) - start_s))
        pedal = [c for c in instrument.control_changes if c.number == synth.SUSTAIN_CC]
        before = [c for c in pedal if c.time < start_s]
        if before and before[-1].value >= 64:
            track.control_changes.append(pretty_midi.ControlChange(synth.SUSTAIN_CC, 127, 0.0))
        track.control_changes += [pretty_midi.ControlChange(c.number, c.value, c.time - start_s)
                                  for c in pedal if start_s <= c.time < end_s]
        track.control_changes.append(pretty_midi.ControlChange(synth.SUSTAIN_CC, 0, seconds))
        if track.notes:
            out.instruments.append(track)
    return out


def window_arrays(notes: np.ndarray, spans: np.ndarray, start_s: float,
                  seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """``excerpt`` of rendered labels: the notes ``(n, 4)`` with onsets in the window
    (offsets clipped) and the pedal spans ``(k, 2)`` overlapping it, shifted to start at 0."""
    end_s = start_s + seconds
    keep = (notes[:, 0] >= start_s) & (notes[:, 0] < end_s - 0.05)
    clip = notes[keep].copy()
    clip[:, 1] = np.minimum(clip[:, 1], end_s)
    clip[:, :2] -= start_s
    spans = spans[(spans[:, 1] > start_s) & (spans[:, 0] < end_s)].copy()
    spans = np.clip(spans, start_s, end_s) - start_s
    return clip, spans[spans[:, 1] > spans[:, 0]]


def make_validation_set(files: list[MidiFile], out_dir: Path, count: int = 40,
                        seconds: float = 30.0, seed: int = 0, progress=None) -> list[Path]:
    """Render ``count`` excerpts (one per piece, pieces drawn by ``seed``) into ``out_dir``."""
    soundfont = synth.validation_soundfont()
    rng = np.random.default_rng(seed)
    by_piece: dict[str, MidiFile] = {}
    for item in sorted(files, key=lambda f: f.relative):
        by_piece.setdefault(item.piece, item)
    pieces = [by_piece[k] for k in sorted(by_piece)]
    chosen = [pieces[i] for i in rng.permutation(len(pieces))]
    written = []
    for item in chosen:
        if len(written) >= count:
            break
        midi = pretty_midi.PrettyMIDI(str(item.path))
        length = midi.get_end_time()
        if length < seconds + 5:
            continue
        start = float(rng.uniform(0, length - seconds - 2))
        clip = excerpt(midi, start, seconds)
        if sum(len(i.notes) for i in clip.instruments) < 20:
            continue
        audio = synth.render(clip, soundfont)
        reverb = pb.Reverb(room_size=float(rng.uniform(0.2, 0.6)), wet_level=float(rng.uniform(0.1, 0.25)),
                           dry_level=1.0, width=0.0)
        audio = reverb(audio[None], C.SAMPLE_RATE)[0]
        buffer = io.BytesIO()
        clip.write(buffer)
        written.append(write_excerpt(out_dir, item, start, buffer.getvalue(), audio))
        if progress:
            progress(written[-1].with_suffix(""))
    return written


def write_excerpt(out_dir: Path, item: MidiFile, start_s: float, midi: bytes,
                  audio: np.ndarray) -> Path:
    """``NAME_STARTs.mid`` and ``.flac`` (peak 0.8, 16-bit) of one excerpt; returns the FLAC."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", str(Path(item.relative).with_suffix("")))
    stem = out_dir / f"{name}_{int(start_s):04d}s"  # no dot: with_suffix must not cut it
    write_atomic(stem.with_suffix(".mid"), midi)
    audio = audio * (0.8 / max(float(np.abs(audio).max()), 1e-6))
    buffer = io.BytesIO()
    sf.write(buffer, audio, C.SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    write_atomic(stem.with_suffix(".flac"), buffer.getvalue())
    return stem.with_suffix(".flac")
