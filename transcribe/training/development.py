"""The development set: music and sound that training never meets, made to look like real use.

Excerpts of Batik's Mozart performances (a concert pianist, continuous pedal) and of
piano-midi.de, rendered through the development piano (``pianos.DEVELOPMENT_PIANO``,
never rendered for training), convolved with a room training never hears (St
Margaret's Church, measured, and Voxengo's modelled rooms), with background noise at
15-35 dB SNR.  Each excerpt is ``NAME.flac`` beside ``NAME.mid``: the notes as the keys
were released plus the sustain pedal as CC64, so ``amt-evaluate`` scores notes against
pedal-extended offsets and the pedal against its own events.  Pieces are split by
name between the development set and a tuning slice (``part``), so thresholds are
never tuned on the files they are scored on.
"""

from __future__ import annotations

import csv
import re
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from scipy.signal import fftconvolve

from .. import constants as C
from ..midi import notes_to_smf
from . import pianos as sampled
from .corpus import MidiFile, split_by_piece
from .validation import window_arrays, write_excerpt

CORPORA = ("batik_mozart", "piano-midi.de")
TUNING_SHARE = 0.3  # of the pieces, for threshold tuning only


def development_rooms(rir_dir: Path) -> list[tuple[str, np.ndarray]]:
    """(name, response at the model rate) of the rooms kept out of training."""
    from .data import DEVELOPMENT_ROOMS
    rooms = []
    for stem in DEVELOPMENT_ROOMS:
        for path in rir_dir.rglob(f"{stem}.flac"):
            rooms.append((stem, _load_room(path, None)))
    table = rir_dir / "RIR.tsv"
    if table.exists():
        with open(table, newline="") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                if not row["file"].startswith("voxengo/") or "NOT A ROOM" in row["notes"]:
                    continue
                found = re.search(r"-60 dB reached at ([0-9.]+) s", row["notes"])
                rooms.append((Path(row["file"]).stem, _load_room(
                    rir_dir / row["file"], float(found.group(1)) if found else None)))
    return rooms


def _load_room(path: Path, length_s: float | None) -> np.ndarray:
    response, rate = sf.read(path, dtype="float32", always_2d=True)
    response = response.mean(axis=1)  # Voxengo's files are stereo, kept unaltered on disk
    start = int(np.argmax(np.abs(response) > 0.1 * np.abs(response).max()))
    response = response[start:start + int(length_s * rate) if length_s else None]
    response = soxr.resample(response, rate, C.SAMPLE_RATE)
    return (response / (np.abs(response).max() + 1e-9)).astype(np.float32)


def pieces(files: list[MidiFile], part: str) -> list[MidiFile]:
    """The development (``dev``) or tuning (``tuning``) pieces of the development corpora."""
    chosen = [f for f in files if f.corpus in CORPORA]
    dev, tuning = split_by_piece(chosen, TUNING_SHARE, salt="tuning")
    return dev if part == "dev" else tuning


def make_development_set(files: list[MidiFile], out_dir: Path, pianos_dir: Path, rir_dir: Path,
                         part: str = "dev", count: int = 30, seconds: float = 30.0,
                         seed: int = 0, progress=None, resonance: bool = False,
                         piano_name: str | None = None, dry: bool = False,
                         dark_hz: float = 0.0) -> list[Path]:
    """Render ``count`` excerpts of ``part``'s pieces (half Batik, half piano-midi.de).

    ``resonance`` adds the free strings' ringing while the sustain pedal is down
    (``pianos.damper_resonance``, as the training renders have it).  The development
    piano has no resonance samples, so without it pressing the pedal changes nothing
    audible and the pedal head cannot be scored for what it hears.  The excerpts, rooms
    and noise are those of the same seed without it: the two sets pair file by file.

    To tell what each part of the set costs, ``piano_name`` renders the same excerpts
    through another piano of ``pianos_dir`` (None: the held-out one), and ``dry`` leaves
    out the room and the noise (still drawn, so the excerpts stay the same), and
    ``dark_hz`` plays the piano duller the softer it is played, as training's darkened
    renders do (``pianos.darkened``, this cutoff at velocity 40).  Such sets are for
    diagnosis only: a training piano is no test of the unseen.
    """
    known = {p.name: p for p in sampled.read_pianos(pianos_dir)}
    piano_name = piano_name or sampled.DEVELOPMENT_PIANO
    if piano_name not in known:
        raise ValueError(f"no piano {piano_name!r} in {pianos_dir} (there: "
                         f"{', '.join(sorted(known))})")
    piano = known[piano_name]
    with tempfile.TemporaryDirectory() as tmp:
        if dark_hz:
            piano = sampled.darkened(piano, Path(tmp) / "piano", dark_hz)
        return _render_set(files, out_dir, piano, rir_dir, part=part, count=count,
                           seconds=seconds, seed=seed, progress=progress,
                           resonance=resonance, dry=dry, dark_hz=dark_hz)


def _render_set(files: list[MidiFile], out_dir: Path, piano: sampled.Piano, rir_dir: Path, *,
                part: str, count: int, seconds: float, seed: int, progress, resonance: bool,
                dry: bool, dark_hz: float) -> list[Path]:
    """``make_development_set``'s excerpts through ``piano`` (darkened already when
    ``dark_hz`` is set; here it only names the set)."""
    rooms = development_rooms(rir_dir)
    rng = np.random.default_rng(seed)
    candidates = pieces(files, part)
    by_corpus = {corpus: [candidates[i] for i in rng.permutation(len(candidates))
                          if candidates[i].corpus == corpus] for corpus in CORPORA}
    order = [item for pair in zip(*by_corpus.values()) for item in pair]
    written = []
    for item in order:
        if len(written) >= count:
            break
        if item.duration_s < seconds + 5:
            continue
        midi = sampled.prepare(item.path)
        notes, spans = sampled.labels(midi, sustain=False)
        start = float(rng.uniform(0, item.duration_s - seconds - 2))
        clip_notes, clip_spans = window_arrays(notes, spans, start, seconds)
        if len(clip_notes) < 20:
            continue
        audio = sampled.render(midi, piano)
        if resonance:  # its own generator: the main one must draw as it does without
            audio = sampled.damper_resonance(audio, spans, np.random.default_rng(
                [seed, len(written)]))
        audio = audio[int(start * C.SAMPLE_RATE):int((start + seconds) * C.SAMPLE_RATE)]
        name, response = rooms[rng.integers(len(rooms))]
        noise = rng.standard_normal(len(audio)).astype(np.float32)
        brown = rng.random() < 0.5
        snr_db = float(rng.uniform(15, 35))
        if not dry:
            wet = fftconvolve(audio, response)[:len(audio)]
            wet *= np.abs(audio).max() / (np.abs(wet).max() + 1e-9)
            audio = 0.6 * audio + 0.4 * wet  # the piano from a listener's seat: direct plus room
            if brown:
                noise = np.cumsum(noise)
                noise -= np.linspace(noise[0], noise[-1], len(noise), dtype=np.float32)
            audio = audio + noise * (np.sqrt(np.mean(audio ** 2))
                                     / (np.sqrt(np.mean(noise ** 2)) + 1e-9) * 10 ** (-snr_db / 20))
        setting = "dry (no room, no noise)" if dry else f"room {name}, SNR {snr_db:.0f} dB"
        midi_bytes = notes_to_smf(
            clip_notes, metadata=f"development set: {piano.name}"
                                 f"{f', darkened ({dark_hz:.0f} Hz at velocity 40)' if dark_hz else ''}"
                                 f"{', damper resonance' if resonance else ''}, {setting}",
            pedal=clip_spans)
        written.append(write_excerpt(out_dir, item, start, midi_bytes, audio))
        if progress:
            progress(written[-1].with_suffix(""))
    return written
