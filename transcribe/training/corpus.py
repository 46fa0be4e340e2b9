"""The MIDI corpora, their train/validation roles, and the rendered-audio cache.

Roles come from ../shared/data/midi/MANIFEST.tsv: pop909, pianolatron_exp,
vienna4x22 and music21_corpus train (MIT, CC BY 4.0, public domain);
piano-midi.de (research use only) only validates.  Rendered audio lives in a
cache folder (FLAC, 16 kHz mono) beside a ``.npy`` of its note labels.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pretty_midi
import soundfile as sf

from .. import constants as C
from ..files import write_atomic
from . import synth

TRAIN_CORPORA = ("pop909", "pianolatron_exp", "vienna4x22", "music21_corpus")
VALIDATION_CORPORA = ("piano-midi.de",)


@dataclass(frozen=True)
class MidiFile:
    path: Path  # absolute
    relative: str  # as in the manifest
    corpus: str
    piece: str  # files of one piece share this; splits never cut a piece
    licence: str
    duration_s: float


def piece_of(relative: str) -> str:
    """Piece identity: vienna4x22's 22 performances of an excerpt are one piece."""
    corpus, name = relative.split("/", 1)
    stem = Path(name).stem
    if corpus == "vienna4x22":
        stem = re.sub(r"_p\d+$", "", stem)
    return f"{corpus}/{stem}"


def read_manifest(manifest: Path) -> list[MidiFile]:
    root = manifest.parent
    files = []
    with open(manifest, newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            relative = row["path"]
            files.append(MidiFile(root / relative, relative, relative.split("/", 1)[0],
                                  piece_of(relative), row["licence"], float(row["duration_s"])))
    return files


def split_by_piece(files: list[MidiFile], fraction: float, salt: str = "dev") -> tuple[list, list]:
    """Deterministic split by hashing the piece name: (rest, held-out ``fraction``)."""
    def bucket(piece: str) -> float:
        digest = hashlib.sha1(f"{salt}:{piece}".encode()).hexdigest()
        return int(digest[:8], 16) / 0xFFFFFFFF
    held = [f for f in files if bucket(f.piece) < fraction]
    rest = [f for f in files if bucket(f.piece) >= fraction]
    return rest, held


def cache_key(relative: str, soundfont: Path, program: int, transpose: int = 0) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(Path(relative).with_suffix("")))
    # Dots stay (existing caches use them); the key always gets a suffix appended.
    shifted = f"_t{transpose:+d}" if transpose else ""
    return f"{stem}__{soundfont.stem}_p{program}{shifted}"


def render_to_cache(item: MidiFile, cache_dir: Path, soundfont: Path, program: int,
                    rng: np.random.Generator, transpose: int = 0) -> Path:
    """Render one MIDI file into the cache (skipped when already there); returns the FLAC path.

    ``transpose`` shifts the piece by that many semitones (see ``synth.as_piano``).
    """
    key = cache_key(item.relative, soundfont, program, transpose)
    audio_path = cache_dir / f"{key}.flac"
    if audio_path.exists() and audio_path.with_suffix(".npy").exists():
        return audio_path
    midi = pretty_midi.PrettyMIDI(str(item.path))
    gamma = float(np.exp(rng.uniform(np.log(0.6), np.log(1.6))))
    piano = synth.as_piano(midi, program, velocity_gamma=gamma, transpose=transpose)
    audio = synth.render(piano, soundfont, fluid_reverb=bool(rng.random() < 0.3))
    notes = synth.piano_notes(piano)
    peak = float(np.abs(audio).max(initial=0.0))
    if peak > 0:
        audio = audio * (0.9 / peak)  # gain is randomised later, per segment
    # The labels first, the audio last: a cached file counts as rendered once its audio exists.
    labels = io.BytesIO()
    np.save(labels, notes.astype(np.float32))
    write_atomic(audio_path.with_suffix(".npy"), labels.getvalue())
    flac = io.BytesIO()
    sf.write(flac, audio, C.SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    write_atomic(audio_path, flac.getvalue())
    return audio_path


def render_corpus(files: list[MidiFile], cache_dir: Path, hours: float, seed: int = 0,
                  progress=None, max_transpose: int = 0) -> list[Path]:
    """Render a random subset of ``files`` totalling about ``hours`` into ``cache_dir``.

    Each file gets one (SoundFont, program) drawn from the training set, and with
    ``max_transpose`` a shift of -max_transpose..+max_transpose semitones, which takes
    melodies and basses into the keyboard's ends, where the corpora have few notes.
    The order is fixed by ``seed`` so a larger ``hours`` extends a smaller run's cache.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    pairs = synth.available_train_soundfonts()
    if not pairs:
        raise synth.SynthesisError("no training SoundFont is installed")
    order = np.random.default_rng(seed).permutation(len(files))
    rendered, total_s = [], 0.0
    for index in order:
        if total_s >= hours * 3600:
            break
        item = files[index]
        rng = np.random.default_rng([seed, int(index)])
        soundfont, program = pairs[rng.integers(len(pairs))]
        # Its own generator: the draws of untransposed renders stay as they were.
        transpose = int(np.random.default_rng([seed, int(index), 1]).integers(
            -max_transpose, max_transpose + 1)) if max_transpose else 0
        try:
            rendered.append(render_to_cache(item, cache_dir, soundfont, program, rng, transpose))
        except Exception as error:  # a broken MIDI file must not stop a long render
            print(f"skipped {item.relative}: {error}")
            continue
        total_s += item.duration_s
        if progress is not None:
            progress(total_s)
    return rendered
