"""Training on a lent GPU machine that has torch and 16 cores but none of our other
packages, no network, and room for 64 MiB of carried files.

``amt-train gpu-bundle bundle/`` (here) gathers what the run needs into one folder:
a subset of the training MIDI (``midi.tar.gz``: packed, MIDI takes half the carried
megabytes, so twice the music travels), a few sampled pianos, two General-MIDI
SoundFonts' pianos sampled into SFZ (the machine has no fluidsynth), the measured training
rooms, and our Python dependencies unpacked from their wheels into ``site.zip``
(pretty_midi without the SoundFont it ships, which nothing here uses).  Wheels for
the device's Python are fetched beforehand into a folder (``pip download``, see
README.md).  On the device, ``python -m transcribe.training.remote bundle/ OUT``
renders the MIDI through the pianos on every core, trains on the GPU from the
shipped weights for a fixed number of minutes, and exports the averaged weights
(about 13 MB) into OUT.  Nothing is downloaded there.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import numpy as np

from .corpus import read_manifest, split_by_piece, training_files
from .soundfont_piano import append_rows, convert, soundfont_piano_name
from .synth import find_soundfont

# What travels (MB): up to 8 of packed MIDI, 28 of pianos, 6 of SoundFont pianos, 9 of
# packages, plus the repository (17, the weights most of it), within the 64 MiB a call
# carries; the MIDI gets what the rest leaves (build_bundle's max_bytes).
BUNDLE_PIANOS = ("upright-kw", "headroom-close", "piano-fb")
# The machine has no fluidsynth: these training SoundFonts travel as sampled pianos
# (soundfont_piano.py), named so that the render plan gives them the SoundFonts' share.
BUNDLE_SOUNDFONTS = (("FluidR3_GM.sf2", 0), ("TimGM6mb.sf2", 0))
MIDI_BUDGET_MB = 16.0  # unpacked: about 52 h of the 140 h of training MIDI
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
    piano_root.mkdir(exist_ok=True)
    with open(pianos_dir / "PIANOS.tsv", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        piano_fields = reader.fieldnames
        piano_rows = [row for row in reader if row["name"] in BUNDLE_PIANOS]
    with open(piano_root / "PIANOS.tsv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=piano_fields, delimiter="\t",
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(piano_rows)
    for row in piano_rows:
        folder = Path(row["sfz"]).parts[0]
        if not (piano_root / folder).exists():
            shutil.copytree(pianos_dir / folder, piano_root / folder)
    converted = []
    for soundfont, program in soundfonts:
        piano = soundfont_piano_name(soundfont, program)
        converted.append(convert(soundfont, program, piano_root / piano, piano))
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
            "pianos": [row["name"] for row in piano_rows + converted], "megabytes": megabytes}
