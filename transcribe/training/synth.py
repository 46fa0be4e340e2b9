"""Render piano MIDI to audio with fluidsynth and derive note labels from the MIDI.

Labels follow the audio as it sounds: a note held by the sustain pedal (CC64 >= 64)
lasts until the pedal is released, and a key struck again ends its previous note.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pretty_midi
import soundfile as sf
import soxr

from .. import constants as C
from ..midi import SUSTAIN_CC, trim_overlaps
from ..decode import OFFSET_S, ONSET_S, PITCH

SOUNDFONT_DIRS = ("/usr/share/sounds/sf2", "/usr/share/sounds/sf3", "/usr/share/soundfonts",
                  "/usr/share/samples")
# (SoundFont file, General MIDI piano programs rendered with it).
TRAIN_SOUNDFONTS = (
    ("FluidR3_GM.sf2", (0, 1, 2)),
    ("TimGM6mb.sf2", (0,)),
    ("sf_GMbank.sf2", (0,)),
    ("FluidR3Mono_GM.sf3", (0,)),
)
# Kept out of training entirely: it is the validation timbre.
VALIDATION_SOUNDFONTS = ("MuseScore_General_Full.sf3", "MuseScore_General.sf3")
RENDER_RATE = 32000  # fluidsynth renders above the model rate; soxr brings it down



class SynthesisError(RuntimeError):
    """fluidsynth or a SoundFont is missing, or a render failed."""


def find_soundfont(name: str) -> Path:
    """Path of a SoundFont installed by Debian's packages (or in $AMT_SOUNDFONT_DIR)."""
    dirs = [os.environ["AMT_SOUNDFONT_DIR"]] if "AMT_SOUNDFONT_DIR" in os.environ else []
    for folder in [*dirs, *SOUNDFONT_DIRS]:
        path = Path(folder) / name
        if path.exists():
            return path
    raise SynthesisError(f"SoundFont {name} not found; install the Debian SoundFont packages "
                         "(see .ci/run) or set AMT_SOUNDFONT_DIR")


def available_train_soundfonts() -> list[tuple[Path, int]]:
    """Every installed (SoundFont, program) pair used for training."""
    pairs = []
    for name, programs in TRAIN_SOUNDFONTS:
        try:
            path = find_soundfont(name)
        except SynthesisError:
            continue
        pairs.extend((path, program) for program in programs)
    return pairs


def validation_soundfont() -> Path:
    for name in VALIDATION_SOUNDFONTS:
        try:
            return find_soundfont(name)
        except SynthesisError:
            pass
    raise SynthesisError("the validation SoundFont (MuseScore_General) is not installed")


def sustain_intervals(instrument: pretty_midi.Instrument) -> list[tuple[float, float]]:
    """Spans (start s, end s) during which the sustain pedal is down."""
    spans, down_since = [], None
    changes = sorted((c for c in instrument.control_changes if c.number == SUSTAIN_CC),
                     key=lambda c: c.time)
    for change in changes:
        if change.value >= 64 and down_since is None:
            down_since = change.time
        elif change.value < 64 and down_since is not None:
            spans.append((down_since, change.time))
            down_since = None
    if down_since is not None:
        spans.append((down_since, np.inf))
    return spans


def piano_notes(midi: pretty_midi.PrettyMIDI, sustain: bool = True) -> np.ndarray:
    """Sounding notes of all non-drum tracks: array ``(n, 4)`` of onset s, offset s, pitch, velocity.

    Offsets are extended while the track's sustain pedal is down; a re-struck key
    ends the previous note of that key.  Pitches outside the 88 keys are dropped.
    """
    rows = []
    for instrument in midi.instruments:
        if instrument.is_drum:
            continue
        spans = sustain_intervals(instrument) if sustain else []
        for note in instrument.notes:
            end = note.end
            for start_s, end_s in spans:
                if start_s <= end < end_s:
                    end = max(end, end_s)
                    break
            rows.append((note.start, end, note.pitch, note.velocity))
    notes = np.array(rows, dtype=np.float64).reshape(-1, 4)
    notes = notes[(notes[:, PITCH] >= C.MIN_MIDI) & (notes[:, PITCH] <= C.MAX_MIDI)]
    # A pedal still down when the file ends holds its notes to the end of the file.
    notes[:, OFFSET_S] = np.minimum(notes[:, OFFSET_S], max(midi.get_end_time(),
                                              notes[:, ONSET_S].max(initial=0) + 0.05))
    # The same rule as the MIDI files we write: a key's note ends at its next onset.
    return trim_overlaps(notes)


def as_piano(midi: pretty_midi.PrettyMIDI, program: int, rng: np.random.Generator | None = None,
             velocity_gamma: float = 1.0, transpose: int = 0) -> pretty_midi.PrettyMIDI:
    """Copy of ``midi`` with every melodic track on ``program`` and velocities curved.

    ``velocity_gamma`` bends the velocity curve (v/127)**gamma, an augmentation that
    makes one SoundFont sound played by different hands.  ``transpose`` shifts every
    note by that many semitones.  Notes outside the piano's 88 keys are left out, so
    nothing sounds that the labels (``piano_notes``) do not hold.
    """
    out = pretty_midi.PrettyMIDI(resolution=midi.resolution, initial_tempo=120.0)
    # pretty_midi stores times in seconds; writing with one fixed tempo keeps them.
    for instrument in midi.instruments:
        if instrument.is_drum:
            continue
        track = pretty_midi.Instrument(program=program, name=instrument.name)
        for note in instrument.notes:
            pitch = note.pitch + transpose
            if not C.MIN_MIDI <= pitch <= C.MAX_MIDI:
                continue
            velocity = int(np.clip(round(127 * (note.velocity / 127) ** velocity_gamma), 1, 127))
            track.notes.append(pretty_midi.Note(velocity, pitch, note.start, note.end))
        track.control_changes = [c for c in instrument.control_changes if c.number == SUSTAIN_CC]
        out.instruments.append(track)
    return out


def render(midi: pretty_midi.PrettyMIDI, soundfont: Path, sample_rate: int = C.SAMPLE_RATE,
           gain: float = 0.5, fluid_reverb: bool = False) -> np.ndarray:
    """Render ``midi`` through fluidsynth; returns mono float32 audio at ``sample_rate``."""
    fluidsynth = shutil.which("fluidsynth")
    if fluidsynth is None:
        raise SynthesisError("fluidsynth is not installed (apt-get install fluidsynth)")
    with tempfile.TemporaryDirectory() as tmp:
        midi_path, wav_path = Path(tmp) / "in.mid", Path(tmp) / "out.wav"
        midi.write(str(midi_path))
        command = [fluidsynth, "-ni", "-q", "-g", f"{gain:.3f}", "-r", str(RENDER_RATE),
                   "-o", f"synth.reverb.active={int(fluid_reverb)}",
                   "-o", "synth.chorus.active=0", "-F", str(wav_path), str(soundfont),
                   str(midi_path)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0 or not wav_path.exists():
            raise SynthesisError(f"fluidsynth failed: {result.stderr.strip()[:300]}")
        audio, rate = sf.read(wav_path, dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    return soxr.resample(audio, rate, sample_rate, quality="HQ").astype(np.float32)
