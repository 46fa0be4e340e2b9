"""A General-MIDI SoundFont's piano as a sampled piano (FLAC samples and an SFZ), for sfizz.

The lent GPU machine has no fluidsynth, so its renders were sampled pianos only, and
weights trained there forgot the General-MIDI timbres: the TimGM6mb end-to-end piece fell
from note F1 91.8 to 78.6 in session 8.  Here fluidsynth plays every ``KEY_STEP``-th key
at the top velocity of each layer of ``LAYERS``, each note held ``hold_s(key)`` seconds
with the key down; every note becomes a sample, and the SFZ maps the keys around it and
the velocities of its layer onto it.  A softer velocity within a layer plays the sample
quieter by the level fluidsynth gives that velocity (measured on C4, ``velocity_gains``),
so the loudness follows the SoundFont's own curve; the timbre changes from layer to
layer.  The SFZ holds notes at CC64 >= 64 as the labels do (``pianos.py``), and keeps
its samples whole in memory so renders are deterministic (the trick of the pianos in
shared/data/pianos).  What is lost: notes held longer than their sample end with it,
and the SoundFont's release is one fixed ``RELEASE_S``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import mido
import numpy as np
import pretty_midi
import soundfile as sf

from .. import constants as C
from .pianos import Piano
from .pianos import render as render_sfz
from .synth import render

KEY_STEP = 3  # a sample every minor third; sfizz shifts it by a semitone either way
LAYERS = (40, 80, 127)  # each layer's top velocity, at which its samples are played
GAP_S = 1.0  # silence between the notes of the sampling render
RELEASE_S = 0.4
FLOOR_DB = -60.0  # a sample ends where its level stays this far below its peak
GAIN = 0.5  # fluidsynth's master gain, as synth.render uses for training audio
PREFIX = "sf-"  # a sampled piano named so is a SoundFont (corpus.plan_renders)


def soundfont_piano_name(soundfont: Path, program: int) -> str:
    """``sf-timgm6mb-p0``: the name (and folder) of a SoundFont program as a sampled piano."""
    return f"{PREFIX}{soundfont.stem.lower().replace('_', '-')}-p{program}"


def is_soundfont_piano(name: str) -> bool:
    return name.startswith(PREFIX)


def sampled_keys(step: int = KEY_STEP) -> list[int]:
    """Keys sampled: A0 upwards every ``step`` semitones, C8 always included."""
    keys = list(range(C.MIN_MIDI, C.MAX_MIDI + 1, step))
    return keys if keys[-1] == C.MAX_MIDI else keys + [C.MAX_MIDI]


def hold_s(key: int) -> float:
    """How long a key is held for its sample: 8 s at A0 down to 2 s at C8 (treble dies fast)."""
    return float(np.interp(key, [C.MIN_MIDI, C.MAX_MIDI], [8.0, 2.0]))


def key_ranges(keys: list[int]) -> list[tuple[int, int]]:
    """(lokey, hikey) of each sampled key: the keys nearer to it than to its neighbours."""
    bounds = [C.MIN_MIDI] + [(a + b) // 2 + 1 for a, b in zip(keys, keys[1:])] + [C.MAX_MIDI + 1]
    return [(low, high - 1) for low, high in zip(bounds, bounds[1:])]


def play_each(soundfont: Path, program: int, notes: list[tuple[int, int, float]],
              sample_rate: int = C.SAMPLE_RATE) -> list[np.ndarray]:
    """fluidsynth's audio of each (key, velocity, hold s) alone, in one render: list of arrays."""
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    track = pretty_midi.Instrument(program=program)
    starts, t = [], 0.5
    for key, velocity, held in notes:
        track.notes.append(pretty_midi.Note(velocity, key, t, t + held))
        starts.append(t)
        t += held + GAP_S
    midi.instruments.append(track)
    audio = render(midi, soundfont, sample_rate, gain=GAIN)
    return [audio[int(start * sample_rate):int((start + held) * sample_rate)]
            for start, (_, _, held) in zip(starts, notes)]


def velocity_gains(soundfont: Path, program: int, key: int = 60) -> np.ndarray:
    """Peak amplitude of ``key`` at velocities 1..127 (index = velocity; [0] = 0)."""
    velocities = list(range(1, 128, 6)) + [127]
    peaks = [float(np.abs(note).max()) for note in
             play_each(soundfont, program, [(key, v, 0.6) for v in velocities])]
    return np.concatenate([[0.0], np.interp(np.arange(1, 128), velocities, peaks)])


def trimmed(note: np.ndarray, sample_rate: int = C.SAMPLE_RATE) -> np.ndarray:
    """The note up to where its 50 ms level stays ``FLOOR_DB`` below its peak, faded out."""
    block = int(0.05 * sample_rate)
    blocks = len(note) // block
    if blocks == 0:
        return note
    level = np.abs(note[:blocks * block]).reshape(blocks, block).max(axis=1)
    loud = np.flatnonzero(level > level.max() * 10 ** (FLOOR_DB / 20))
    end = min(len(note), (loud[-1] + 2) * block) if len(loud) else block
    out = note[:end].copy()
    fade = min(block, end)
    out[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=out.dtype)
    return out


def convert(soundfont: Path, program: int, out_dir: Path, name: str,
            keys: list[int] | None = None, layers: tuple[int, ...] = LAYERS) -> dict:
    """Write ``out_dir/NAME.sfz`` and ``out_dir/samples/*.flac`` from ``soundfont``'s
    ``program``; returns the PIANOS.tsv row (name, sfz relative to the pianos folder,
    peak_dbfs_c4_v70 among them)."""
    keys = sampled_keys() if keys is None else keys
    samples = out_dir / "samples"
    samples.mkdir(parents=True, exist_ok=True)
    plan = [(key, top, hold_s(key)) for top in layers for key in keys]
    notes = play_each(soundfont, program, plan)
    gains = velocity_gains(soundfont, program)
    ranges = dict(zip(keys, key_ranges(keys)))
    lines = [f"// {name}: program {program} of {soundfont.name}, sampled through fluidsynth",
             f"// by soundfont_piano.convert (amt-train gpu-bundle): keys {keys[0]}-{keys[-1]}"
             f" every {KEY_STEP}, layers up to velocities {', '.join(map(str, layers))}.",
             "<global>", "sustain_lo=64", "offset_oncc300=100000000",
             f"ampeg_release={RELEASE_S}"]
    for (key, top, _), audio in zip(plan, notes):
        file_name = f"k{key:03d}_v{top:03d}.flac"
        sf.write(samples / file_name, trimmed(audio), C.SAMPLE_RATE, subtype="PCM_16")
        low_velocity = ([1] + [v + 1 for v in layers])[layers.index(top)]
        lokey, hikey = ranges[key]
        lines += ["<region>", f"sample=samples/{file_name}", f"pitch_keycenter={key}",
                  f"lokey={lokey} hikey={hikey} lovel={low_velocity} hivel={top}"]
        # The loudness of a softer velocity: fluidsynth's own curve against the layer's top.
        for velocity in sorted({low_velocity, *range(low_velocity, top, 8), top}):
            lines.append(f"amp_velcurve_{velocity}={gains[velocity] / gains[top]:.4f}")
    sfz = out_dir / f"{name}.sfz"
    sfz.write_text("\n".join(lines) + "\n")
    return {"name": name, "sfz": f"{out_dir.name}/{sfz.name}",
            "instrument": f"{soundfont.name} program {program}, sampled by fluidsynth",
            "peak_dbfs_c4_v70": f"{peak_dbfs(Piano(name, sfz, 0.0), 60, 70):.1f}"}


def peak_dbfs(piano: Piano, key: int, velocity: int) -> float:
    """Peak level (dBFS) of one note of ``piano`` as sfizz renders it (PIANOS.tsv's columns)."""
    midi = mido.MidiFile()
    track = mido.MidiTrack()
    track.extend([mido.Message("note_on", note=key, velocity=velocity, time=0),
                  mido.Message("note_off", note=key, velocity=0, time=960),
                  mido.MetaMessage("end_of_track", time=0)])
    midi.tracks.append(track)
    peak = float(np.abs(render_sfz(midi, piano)).max(initial=0.0))
    return 20 * np.log10(max(peak, 1e-9))


def append_rows(table: Path, rows: list[dict]) -> None:
    """Add ``rows`` to a PIANOS.tsv (its columns kept; what a row lacks is left empty)."""
    with open(table, newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        fields, existing = reader.fieldnames, list(reader)
    names = {row["name"] for row in rows}
    with open(table, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, delimiter="\t", lineterminator="\n",
                                restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows([row for row in existing if row["name"] not in names] + rows)
