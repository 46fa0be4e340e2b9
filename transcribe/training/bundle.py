"""Training on a lent GPU machine that has torch and 16 cores but none of our other
packages, no network, and room for 64 MiB of carried files.

``amt-train gpu-bundle bundle/`` (here) gathers what the run needs into one folder:
a subset of the training MIDI (``midi.tar.gz``: packed, MIDI takes half the carried
megabytes, so twice the music travels), four sampled pianos and two General-MIDI
SoundFonts' pianos sampled into SFZ (the machine has no fluidsynth), their samples as Ogg
Vorbis (``compact_piano``), the measured training rooms, and our Python dependencies
unpacked from their wheels into ``site.zip`` (pretty_midi without the SoundFont it ships,
which nothing here uses).  Wheels for the device's Python are fetched beforehand into a
folder (``pip download``, see README.md).  On the device, ``python -m
transcribe.training.remote bundle/ OUT`` decodes the samples (``unpack_pianos``), renders
the MIDI through the pianos on every core, trains on the GPU from the shipped weights for
a fixed number of minutes, and exports the averaged weights (15 MB) into OUT.  Nothing is
downloaded there.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from pathlib import Path

import mido
import numpy as np
import soundfile as sf
import soxr

from .. import constants as C
from .corpus import read_manifest, split_by_piece, training_files
from .pianos import Piano, read_pianos
from .pianos import render as render_piano
from .soundfont_piano import append_rows, convert, soundfont_piano_name
from .synth import find_soundfont

# What travels (MB): the pianos (34, compacted below), packed MIDI, 7 of packages
# and 0.1 of rooms, plus the repository (17, the weights most of it), within the 64 MiB a
# call carries; the MIDI gets what the rest leaves (build_bundle's max_bytes).
BUNDLE_PIANOS = ("upright-kw", "headroom-close", "piano-fb", "salamander")
# The pianos travel as Ogg Vorbis at the training sample rate, which sfizz reads: a third to
# a half of their FLAC at 22.05 kHz, which leaves room for Salamander's soft layers (the
# development set's soft notes are what the weights miss most).  Piano
# samples start at the hammer, so the codec's pre-echo has nothing before it to smear.
VORBIS_LEVEL = 0.5  # soundfile's compression_level: 0 the best quality, 1 the smallest
# Salamander's 16 velocity layers would not fit: these travel (more of them soft), each
# also playing the velocities of the dropped layers below it.
BUNDLE_LAYERS = {"salamander": (1, 2, 4, 6, 8, 10, 12, 14, 16)}
# A compacted piano must sound as sampled: every key's level within this (dB) at the
# velocities compare_pianos plays, which lie in kept layers (Salamander: 1, 8 and 14); a
# lost sample leaves its key the last note's tail, tens of dB down.  Measured: 0.10-0.29 dB.
COMPACT_LEVEL_DB = 1.5
# The machine has no fluidsynth: these training SoundFonts travel as sampled pianos
# (soundfont_piano.py), named so that the render plan gives them the SoundFonts' share.
BUNDLE_SOUNDFONTS = (("FluidR3_GM.sf2", 0), ("TimGM6mb.sf2", 0))
MIDI_BUDGET_MB = 40.0  # unpacked; the archive gets what the rest leaves, fewer pieces if need be
# What a device call carries: the repository's files and the bundle together.  The margin
# leaves room for a card or a log edited after the bundle is built.
CARRY_LIMIT_BYTES = 64 * 2**20
CARRY_MARGIN_BYTES = 2**20
MIDI_ARCHIVE = "midi.tar.gz"
# The GPU renders faster than a CPU trains: keep every corpus, the pedalled ones whole.
WHOLE_CORPORA = ("giantmidi", "vienna4x22")
LEFT_OUT_OF_SITE = ("pretty_midi/TimGM6mb.sf2",)
# sfizz_render links the GCC atomics library, which a bare CUDA image may lack.
RUNTIME_LIBRARIES = ("/lib/x86_64-linux-gnu/libatomic.so.1",)


def choose_midi(manifest: Path, budget_mb: float = MIDI_BUDGET_MB, seed: int = 0) -> list:
    """Training files (never validation ones, never the development split) within ``budget_mb``."""
    files, _ = split_by_piece(training_files(read_manifest(manifest)), 0.02)
    rng = np.random.default_rng(seed)
    whole = [f for f in files if f.corpus in WHOLE_CORPORA]
    rest = [files[i] for i in rng.permutation(len(files)) if files[i].corpus not in WHOLE_CORPORA]
    chosen, used = [], 0
    for item in whole + rest:
        size = item.path.stat().st_size
        if used + size > budget_mb * 1e6:
            continue
        chosen.append(item)
        used += size
    return chosen


def pack_midi(chosen: list, manifest: Path, archive: Path) -> None:
    """``chosen`` (``MidiFile``s of ``manifest``) and their manifest rows, as ``midi/...``
    in one gzip-compressed tar (solid compression: MIDI files repeat one another;
    gzip, not xz: zlib is in every Python, lzma not always)."""
    with open(manifest, newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        fields, rows = reader.fieldnames, {row["path"]: row for row in reader}
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=fields, delimiter="\t", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows[item.relative] for item in chosen)
    with tarfile.open(archive, "w:gz") as tar:
        data = table.getvalue().encode()
        info = tarfile.TarInfo("midi/MANIFEST.tsv")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for item in chosen:
            tar.add(item.path, arcname=f"midi/{item.relative}")


def pack_midi_within(manifest: Path, archive: Path, budget_mb: float, seed: int,
                     max_bytes: int | None = None) -> list:
    """Choose (``choose_midi``) and pack (``pack_midi``) the MIDI; where the archive
    would pass ``max_bytes``, choose again within a smaller budget.  Returns the chosen."""
    while True:
        chosen = choose_midi(manifest, budget_mb, seed)
        if not chosen:
            raise ValueError(f"no room for the MIDI: {max(max_bytes or 0, 0) / 1e6:.1f} MB left "
                             "of what a device call carries")
        pack_midi(chosen, manifest, archive)
        size = archive.stat().st_size
        if max_bytes is None or size <= max_bytes:
            return chosen
        budget_mb *= 0.97 * max(max_bytes, 0) / size


def travelling_bytes(repo: Path) -> int | None:
    """What a device call carries of the repository ``repo``: its tracked files and the
    untracked ones git does not ignore; None outside a git checkout."""
    try:
        listed = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached",
                                 "--others", "--exclude-standard"],
                                capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    paths = {repo / name for name in listed.decode().split("\0") if name}
    return sum(path.stat().st_size for path in paths if path.is_file())


def unpack_midi(bundle: Path, work: Path) -> Path:
    """The folder holding the bundle's ``MANIFEST.tsv`` and MIDI: ``midi.tar.gz`` unpacked
    into ``work``, or a bundle's ``midi/`` as older bundles carried it."""
    archive = bundle / MIDI_ARCHIVE
    if not archive.exists():
        return bundle / "midi"
    work.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(work, filter="data")  # no paths outside work, no links out
    return work / "midi"


_LAYER_HEADER = re.compile(r"<group>\s+lovel=(\d+)\s+hivel=(\d+)")
# Opcodes that count a sample's frames: resampling the file would move them.
_SAMPLE_POSITIONS = re.compile(r"(?<![\w$])(?:loop_?start|loop_?end|offset|end)\s*=")


def thin_layers(text: str, keep: tuple[int, ...]) -> tuple[str, list[str]]:
    """``text``, an SFZ whose velocity layers are groups headed ``<group> lovel=A hivel=B``
    in rising order, with only the layers numbered ``keep`` (1 the softest); each kept layer
    also plays the velocities of the dropped ones below it, so every velocity still sounds.
    Returns the new text and the samples only the dropped layers played.

    Raises ``ValueError`` where that cannot be done safely: the loudest layer dropped (its
    velocities would fall silent), a layer number that is not there, or a dropped layer
    holding anything but regions (a header, an include, a macro)."""
    chunks = re.split(r"(?m)^(?=<group>)", text)
    layers = [i for i, chunk in enumerate(chunks) if _LAYER_HEADER.match(chunk)]
    if not layers or max(keep) > len(layers) or min(keep) < 1:
        raise ValueError(f"the SFZ has {len(layers)} velocity layers; cannot keep {keep}")
    if len(layers) not in keep:
        raise ValueError("the loudest velocity layer must be kept")
    dropped, low = [], 1
    for number, index in enumerate(layers, start=1):
        chunk = chunks[index]
        header = _LAYER_HEADER.match(chunk)
        if number in keep:
            chunks[index] = f"<group> lovel={low} hivel={header.group(2)}" + chunk[header.end():]
            low = int(header.group(2)) + 1
            continue
        body = chunk[header.end():]
        if re.search(r"<(?!region>)|#include|#define|\$", body):
            raise ValueError(f"velocity layer {number} holds more than regions; not thinned")
        dropped += re.findall(r"sample=(\S+)", body)
        chunks[index] = ""
    kept = set(re.findall(r"sample=(\S+)", "".join(chunks)))
    return "".join(chunks), sorted(set(dropped) - kept)


def sfz_texts(sfz: Path) -> list[Path]:
    """``sfz`` and the files it includes (``#include "..."``, from the SFZ's folder), in turn."""
    found, queue = [], [sfz]
    while queue:
        path = queue.pop(0)
        if path in found or not path.is_file():
            continue
        found.append(path)
        queue += [sfz.parent / name for name in re.findall(r'#include\s+"([^"]+)"',
                                                           path.read_text(errors="replace"))]
    return found


def _without_comments(text: str) -> str:
    return re.sub(r"//[^\n]*", "", text)


def _rename_extension(texts: list[Path], old: str, new: str) -> None:
    """In the SFZ ``texts``, samples' extension ``old`` becomes ``new``: in their names and
    in an extension macro (Headroom's ``#define $EXT flac``)."""
    for path in texts:
        path.write_text(re.sub(rf"\b{old}\b", new, path.read_text()))


def compact_piano(source: Path, sfz_name: str, dest: Path, sample_rate: int = C.SAMPLE_RATE,
                  level: float = VORBIS_LEVEL, keep_layers: tuple[int, ...] | None = None) -> str:
    """Copy the sampled piano folder ``source`` (its SFZ ``sfz_name`` inside) to ``dest``,
    smaller: ``keep_layers`` thins its velocity layers (``thin_layers``), and its FLAC
    samples become Ogg Vorbis at ``sample_rate`` (what training renders at, so nothing the
    network hears is lost).  A piano whose SFZ counts sample frames (loop points, offsets)
    keeps its samples as they are.  Returns how it travels, in words."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest)
    sfz = dest / sfz_name
    how = []
    if keep_layers:
        text, dropped = thin_layers(sfz.read_text(), keep_layers)
        sfz.write_text(text)
        names = set(dropped)
        for path in list(dest.rglob("*")):
            if path.name in names:
                path.unlink()
        how.append(f"{len(keep_layers)} velocity layers")
    texts = sfz_texts(sfz)
    if any(_SAMPLE_POSITIONS.search(_without_comments(t.read_text(errors="replace")))
           for t in texts):
        return ", ".join(how + ["FLAC as sampled: its SFZ counts sample frames"])
    for path in sorted(dest.rglob("*.flac")):
        audio, rate = sf.read(path, dtype="float32")
        if rate != sample_rate:
            audio = soxr.resample(audio, rate, sample_rate, quality="HQ")
        sf.write(path.with_suffix(".ogg"), audio, sample_rate, format="OGG", subtype="VORBIS",
                 compression_level=level)
        path.unlink()
    _rename_extension(texts, "flac", "ogg")
    return ", ".join(how + [f"Ogg Vorbis at {sample_rate} Hz"])


def _ogg_to_wav(path: Path) -> None:
    audio, rate = sf.read(path, dtype="float32")
    sf.write(path.with_suffix(".wav"), audio, rate, subtype="PCM_16")
    path.unlink()


def unpack_pianos(pianos_dir: Path, work: Path, jobs: int = 1) -> Path:
    """The folder of the bundle's pianos to render from: ``pianos_dir`` copied into
    ``work`` with its Ogg Vorbis samples decoded to WAV (sfizz loads every sample whole
    for each render, and decodes Ogg two to three times slower than it reads FLAC), or
    ``pianos_dir`` itself where this machine's libsndfile cannot decode Ogg."""
    from concurrent.futures import ProcessPoolExecutor

    if not any(pianos_dir.rglob("*.ogg")):
        return pianos_dir
    unpacked = work / "pianos"
    shutil.rmtree(unpacked, ignore_errors=True)
    shutil.copytree(pianos_dir, unpacked)
    try:
        with ProcessPoolExecutor(max(1, jobs)) as pool:
            list(pool.map(_ogg_to_wav, sorted(unpacked.rglob("*.ogg")), chunksize=16))
    except (RuntimeError, OSError) as error:  # soundfile.LibsndfileError is a RuntimeError
        print(f"the pianos stay Ogg Vorbis ({error})", flush=True)
        shutil.rmtree(unpacked, ignore_errors=True)
        return pianos_dir
    for piano in read_pianos(unpacked):
        _rename_extension(sfz_texts(piano.sfz), "ogg", "wav")
    return unpacked


def compare_pianos(original: Piano, copy: Piano,
                   velocities: tuple[int, ...] = (20, 60, 110)) -> float:
    """The largest difference (dB) between the two pianos' level of any key of the 88 at
    ``velocities`` (each key struck alone, its first 0.3 s); a sample lost on the way
    leaves its key only the tail of the note before, tens of dB quieter."""
    step = 240  # ticks at 480 a beat and 120 bpm: 0.25 s
    track = mido.MidiTrack()
    for velocity in velocities:
        for key in range(C.MIN_MIDI, C.MAX_MIDI + 1):
            track.append(mido.Message("note_on", note=key, velocity=velocity, time=step))
            track.append(mido.Message("note_off", note=key, velocity=0, time=step))
    # sfizz_render --use-eot ends at the last event before End-of-Track: pad with one.
    track.append(mido.MetaMessage("text", text="pad", time=4 * step))
    track.append(mido.MetaMessage("end_of_track", time=0))
    midi = mido.MidiFile(ticks_per_beat=480)
    midi.tracks.append(track)

    def levels(piano: Piano) -> np.ndarray:
        audio = render_piano(midi, piano)
        starts = (0.25 + 0.5 * np.arange(len(velocities) * C.N_KEYS)) * C.SAMPLE_RATE
        return np.array([20 * np.log10(np.sqrt(np.mean(
            audio[int(s):int(s + 0.3 * C.SAMPLE_RATE)] ** 2)) + 1e-9) for s in starts])
    return float(np.abs(levels(original) - levels(copy)).max())


def build_bundle(out: Path, manifest: Path, pianos_dir: Path, rooms_dir: Path,
                 wheels_dir: Path, budget_mb: float = MIDI_BUDGET_MB, midi_seed: int = 0,
                 max_bytes: int | None = None) -> dict:
    """Write the bundle into ``out``; returns what it holds (files, hours, megabytes).

    ``midi_seed`` draws which files of the corpora not carried whole go: another seed,
    other pieces, so that each GPU session can hear music the last one did not.  With
    ``max_bytes`` the MIDI, packed last, gets what the rest leaves of it."""
    from .data import training_rooms
    soundfonts = [(find_soundfont(name), program) for name, program in BUNDLE_SOUNDFONTS]
    out.mkdir(parents=True, exist_ok=True)
    (out / MIDI_ARCHIVE).unlink(missing_ok=True)
    piano_root = out / "pianos"
    shutil.rmtree(piano_root, ignore_errors=True)  # no piano of an earlier build stays
    piano_root.mkdir()
    with open(pianos_dir / "PIANOS.tsv", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        piano_fields = reader.fieldnames
        piano_rows = [row for row in reader if row["name"] in BUNDLE_PIANOS]
    with open(piano_root / "PIANOS.tsv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=piano_fields, delimiter="\t",
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(piano_rows)
    how = {}
    with tempfile.TemporaryDirectory() as tmp:
        sources = [(row["name"], pianos_dir, row["sfz"]) for row in piano_rows]
        converted = []
        for soundfont, program in soundfonts:
            piano = soundfont_piano_name(soundfont, program)
            converted.append(convert(soundfont, program, Path(tmp) / piano, piano))
            sources.append((piano, Path(tmp), converted[-1]["sfz"]))
        for name, root, sfz in sources:
            folder, sfz_name = Path(sfz).parts[0], Path(sfz).name
            how[name] = compact_piano(root / folder, sfz_name, piano_root / folder,
                                      keep_layers=BUNDLE_LAYERS.get(name))
            difference = compare_pianos(Piano(name, root / sfz, 0.0),
                                        Piano(name, piano_root / sfz, 0.0))
            if difference > COMPACT_LEVEL_DB:
                raise ValueError(f"{name}: compacted, a key's level moved {difference:.1f} dB")
            how[name] += f", every key within {difference:.2f} dB"
    append_rows(piano_root / "PIANOS.tsv", converted)
    room_root = out / "rir"
    room_root.mkdir(exist_ok=True)
    for path in training_rooms(rooms_dir):
        if path.suffix.lower() == ".flac":  # the measured ones; modelled rooms are drawn there
            shutil.copyfile(path, room_root / path.name)
    site = out / "site.zip"
    with zipfile.ZipFile(site, "w", zipfile.ZIP_DEFLATED) as bundle_zip:
        for wheel in sorted(wheels_dir.glob("*.whl")):
            with zipfile.ZipFile(wheel) as source:
                for info in source.infolist():
                    if info.filename.endswith(LEFT_OUT_OF_SITE):
                        continue
                    bundle_zip.writestr(info, source.read(info))
    lib = out / "lib"
    lib.mkdir(exist_ok=True)
    for library in map(Path, RUNTIME_LIBRARIES):
        if library.exists():
            shutil.copyfile(library.resolve(), lib / library.name)
    rest = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    chosen = pack_midi_within(manifest, out / MIDI_ARCHIVE, budget_mb, midi_seed,
                              None if max_bytes is None else max_bytes - rest)
    megabytes = (rest + (out / MIDI_ARCHIVE).stat().st_size) / 1e6
    return {"midi_files": len(chosen), "midi_hours": sum(f.duration_s for f in chosen) / 3600,
            "pianos": how, "megabytes": megabytes}
