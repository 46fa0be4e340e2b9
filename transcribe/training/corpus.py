"""The MIDI corpora, their train/validation roles, and the rendered-audio cache.

Roles come from ../shared/data/midi/MANIFEST.tsv: a row trains unless its ``set``
says validation or its corpus is validation-only (piano-midi.de, whose ``set``
still reads train-midi, and batik_mozart: research use, never trained on).  So
new corpora (giantmidi) train as soon as the manifest lists them.  Rendered audio
lives in a cache folder (FLAC, 16 kHz mono) beside a ``.npy`` of its note labels
(sounding: held by the pedal) and, for renders that know the pedal, a ``.pedal.npy`` of
its sustain spans and a ``.keys.npy`` of the notes as the keys were held.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pretty_midi
import soundfile as sf

from .. import constants as C
from ..files import write_atomic
from . import synth
from .soundfont_piano import is_soundfont_piano

VALIDATION_ONLY = ("piano-midi.de", "batik_mozart")


@dataclass(frozen=True)
class MidiFile:
    path: Path  # absolute
    relative: str  # as in the manifest
    corpus: str
    piece: str  # files of one piece share this; splits never cut a piece
    licence: str
    duration_s: float
    role: str = "train"  # or "validation"


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
            corpus = relative.split("/", 1)[0]
            validation = corpus in VALIDATION_ONLY or row.get("set", "").startswith("validation")
            files.append(MidiFile(root / relative, relative, corpus, piece_of(relative),
                                  row["licence"], float(row["duration_s"]),
                                  "validation" if validation else "train"))
    return files


def training_files(files: list[MidiFile]) -> list[MidiFile]:
    return [f for f in files if f.role == "train"]


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
    save_rendered(audio_path, audio, notes)
    return audio_path


@dataclass(frozen=True)
class RenderJob:
    """One file to render, every random choice already drawn (so renders are reproducible)."""

    item: MidiFile
    instrument: str  # a piano's name, or "sf2:<path>:<program>"
    transpose: int
    velocity_gamma: float
    detune_cents: float
    draw_key: tuple[int, int]  # (seed, file index): the SoundFont render's own draws
    dark_cutoff_hz: float = 0.0  # pianos.darkened's cutoff at velocity 40; 0: as sampled


def _soundfont_instrument(soundfont: Path, program: int) -> str:
    return f"sf2:{soundfont}:{program}"


def piano_cache_key(relative: str, piano: str, transpose: int, detune_cents: float,
                    dark_cutoff_hz: float = 0.0) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(Path(relative).with_suffix("")))
    shifted = f"_t{transpose:+d}" if transpose else ""
    dark = f"_lp{dark_cutoff_hz:.0f}" if dark_cutoff_hz else ""
    return f"{stem}__{piano}{shifted}_d{detune_cents:+.0f}{dark}"


def render_job(job: RenderJob, cache_dir: Path, pianos: dict, audio_format: str = "flac") -> Path:
    """Render ``job`` into the cache (skipped when already there); returns the audio's path.

    ``audio_format`` ``wav`` trades disk for speed: 16-bit WAV loads at memory speed,
    FLAC decodes at a few hundred times real time (minutes for a 40-hour cache).
    """
    if job.instrument.startswith("sf2:"):
        _, soundfont, program = job.instrument.rsplit(":", 2)
        rng = np.random.default_rng(list(job.draw_key))
        return render_to_cache(job.item, cache_dir, Path(soundfont), int(program), rng,
                               job.transpose)
    from . import pianos as sampled
    piano = pianos[job.instrument]
    key = piano_cache_key(job.item.relative, piano.name, job.transpose, job.detune_cents,
                          job.dark_cutoff_hz)
    audio_path = cache_dir / f"{key}.{audio_format}"
    if audio_path.exists() and audio_path.with_suffix(".npy").exists():
        return audio_path
    midi = sampled.prepare(job.item.path, job.transpose, job.velocity_gamma,
                           strip_soft_pedal=piano.strips_soft_pedal)
    notes, spans = sampled.labels(midi)
    keys, _ = sampled.labels(midi, sustain=False)
    with tempfile.TemporaryDirectory() as tmp:
        if job.dark_cutoff_hz:
            piano = sampled.darkened(piano, Path(tmp) / "piano", job.dark_cutoff_hz)
        audio = sampled.render(midi, piano)
    audio = sampled.damper_resonance(audio, spans, np.random.default_rng(list(job.draw_key)))
    audio, notes, spans, keys = sampled.detune(audio, notes, spans, job.detune_cents,
                                               keys=keys)
    # Some files hold silence long after their last note (an excerpt's End-of-Track).
    end_s = max(notes[:, 1].max(initial=0.0), spans[:, 1].max(initial=0.0)) + sampled.PAD_S
    audio = audio[:int(end_s * C.SAMPLE_RATE)]
    peak = float(np.abs(audio).max(initial=0.0))
    if peak > 0:
        audio = audio * (0.9 / peak)  # gain is randomised later, per segment
    save_rendered(audio_path, audio, notes, spans, keys)
    return audio_path


def cached_audio(cache_dir: Path) -> list[Path]:
    """The rendered files of a cache, FLAC or WAV (``render_job``'s ``audio_format``)."""
    return sorted(p for p in cache_dir.iterdir() if p.suffix in (".flac", ".wav"))


def save_rendered(audio_path: Path, audio: np.ndarray, notes: np.ndarray,
                  spans: np.ndarray | None = None, keys: np.ndarray | None = None) -> None:
    """Labels first, the audio last: a cached file counts as rendered once its audio exists."""
    for suffix, array in ((".pedal.npy", spans), (".keys.npy", keys), (".npy", notes)):
        if array is None:
            continue
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(array, np.float32))
        write_atomic(audio_path.with_suffix(suffix), buffer.getvalue())
    encoded = io.BytesIO()
    sf.write(encoded, audio, C.SAMPLE_RATE, format=audio_path.suffix[1:].upper(),
             subtype="PCM_16")
    write_atomic(audio_path, encoded.getvalue())


def plan_renders(files: list[MidiFile], hours: float, seed: int = 0, max_transpose: int = 0,
                 piano_names: list[str] = (), piano_share: float = 0.75,
                 max_detune_cents: float = 0.0, dark_share: float = 0.0) -> list[RenderJob]:
    """Choose files totalling about ``hours`` and draw each one's instrument and variations.

    A share ``piano_share`` of the files goes through the sampled pianos (when any are
    given), the rest through the General-MIDI SoundFonts (through fluidsynth, or where it
    is missing through the SoundFonts sampled into ``sf-`` pianos).  A share
    ``dark_share`` of the piano renders sound duller the softer they are played
    (``pianos.darkened``).  The order is fixed by ``seed``, so a larger ``hours`` extends
    a smaller run's cache; each option draws from its own generator, so the draws of
    caches made before it existed stay as they were.
    """
    # SoundFonts sampled into pianos (soundfont_piano.py, for a machine without
    # fluidsynth) stand for the SoundFonts: they take their share, fluidsynth none.
    copies = [name for name in piano_names if is_soundfont_piano(name)]
    sampled = [name for name in piano_names if not is_soundfont_piano(name)]
    soundfonts = [] if copies else (
        synth.available_train_soundfonts() if piano_share < 1 or not piano_names else [])
    if not soundfonts and not piano_names:
        raise synth.SynthesisError("no training SoundFont or sampled piano is available")
    order = np.random.default_rng(seed).permutation(len(files))
    jobs, total_s = [], 0.0
    for index in order:
        if total_s >= hours * 3600:
            break
        item = files[index]
        rng = np.random.default_rng([seed, int(index)])
        soundfont, program = soundfonts[rng.integers(len(soundfonts))] if soundfonts else (None, 0)
        # render_to_cache draws its velocity curve and reverb from a generator of this key.
        # Their own generators: the draws of earlier, SoundFont-only caches stay as they were.
        transpose = int(np.random.default_rng([seed, int(index), 1]).integers(
            -max_transpose, max_transpose + 1)) if max_transpose else 0
        draws = np.random.default_rng([seed, int(index), 2])
        use_piano = bool(piano_names) and (not soundfonts or draws.random() < piano_share)
        if use_piano:
            from .pianos import velocity_curve
            names = piano_names
            if sampled and copies:
                names = sampled if draws.random() < piano_share else copies
            instrument = names[draws.integers(len(names))]
            gamma = velocity_curve(draws)
            cents = float(draws.uniform(-max_detune_cents, max_detune_cents))
            if max_detune_cents:
                cents = float(np.copysign(max(abs(cents), 10.0), cents))  # +-10..max cents
            dark_hz = dark_cutoff(np.random.default_rng([seed, int(index), 3]), dark_share)
        else:
            instrument, gamma, cents = _soundfont_instrument(soundfont, program), 1.0, 0.0
            dark_hz = 0.0
        jobs.append(RenderJob(item, instrument, transpose, gamma, cents, (seed, int(index)),
                              dark_hz))
        total_s += item.duration_s
    return jobs


def dark_cutoff(rng: np.random.Generator, share: float) -> float:
    """With probability ``share``, a cutoff at velocity 40 for ``pianos.darkened``: 800 Hz
    (very dull) to 4 kHz (a little), log-uniform; else 0 (the piano as sampled)."""
    if share <= 0 or rng.random() >= share:
        return 0.0
    return float(np.round(np.exp(rng.uniform(np.log(800.0), np.log(4000.0))), -1))


def training_pianos_of(pianos_dir: Path | None) -> dict:
    """The sampled pianos of ``pianos_dir`` that training may use, by name ({} for None)."""
    if pianos_dir is None:
        return {}
    from .pianos import training_pianos
    return {p.name: p for p in training_pianos(pianos_dir)}


def render_corpus(files: list[MidiFile], cache_dir: Path, hours: float, seed: int = 0,
                  progress=None, max_transpose: int = 0, pianos_dir: Path | None = None,
                  piano_share: float = 0.75, max_detune_cents: float = 0.0,
                  dark_share: float = 0.0,
                  jobs: int = 1, audio_format: str = "flac") -> list[Path]:
    """Render a random subset of ``files`` totalling about ``hours`` into ``cache_dir``.

    Each file gets an instrument (a sampled piano of ``pianos_dir`` other than the
    development piano, or a General-MIDI SoundFont and program), and with
    ``max_transpose`` a shift of -max_transpose..+max_transpose semitones, which takes
    melodies and basses into the keyboard's ends, where the corpora have few notes.
    Renders run in ``jobs`` processes; a file that fails is reported and skipped.
    """
    pianos = training_pianos_of(pianos_dir)
    planned = plan_renders(files, hours, seed, max_transpose, sorted(pianos), piano_share,
                           max_detune_cents, dark_share)
    return render_planned(planned, cache_dir, pianos, jobs, audio_format, progress)


def render_planned(planned: list[RenderJob], cache_dir: Path, pianos: dict, jobs: int = 1,
                   audio_format: str = "flac", progress=None,
                   on_rendered: Callable[[Path], None] | None = None) -> list[Path]:
    """Render ``planned`` in ``jobs`` processes; returns the paths in the plan's order.

    ``progress(seconds of MIDI rendered)`` and ``on_rendered(path)`` are called as each
    file is done, in the plan's order; a file that fails is reported and skipped.
    """
    from concurrent.futures import ProcessPoolExecutor

    cache_dir.mkdir(parents=True, exist_ok=True)
    rendered, total_s = [], 0.0
    with ProcessPoolExecutor(max(1, jobs)) as pool:
        futures = [(job, pool.submit(render_job, job, cache_dir, pianos, audio_format))
                   for job in planned]
        for job, future in futures:
            try:
                rendered.append(future.result())
            except Exception as error:  # a broken MIDI file must not stop a long render
                print(f"skipped {job.item.relative} ({job.instrument}): {error}", flush=True)
                continue
            total_s += job.item.duration_s
            if progress is not None:
                progress(total_s)
            if on_rendered is not None:
                on_rendered(rendered[-1])
    return rendered


def split_plan(planned: list[RenderJob], hours: float) -> tuple[list[RenderJob], list[RenderJob]]:
    """The plan's first jobs, up to about ``hours`` of MIDI (at least one job), and the rest."""
    ends = np.cumsum([job.item.duration_s for job in planned]) / 3600
    # The job whose end reaches ``hours`` is the last of the first part (the first job
    # when ``hours`` is 0).
    first = int(np.searchsorted(ends, hours, side="left")) + 1 if len(planned) else 0
    return planned[:first], planned[first:]


# The last line of a background render's list of finished files.
RENDER_DONE = "# done"


def _render_in_background(planned: list[RenderJob], cache_dir: Path, pianos: dict, jobs: int,
                          audio_format: str, listing: Path, niceness: int) -> None:
    """The body of ``BackgroundRender``'s process: a group of its own, lower priority."""
    if hasattr(os, "setpgrp"):  # POSIX; elsewhere stop() ends this process alone
        os.setpgrp()
        os.nice(niceness)
    with open(listing, "a") as handle:
        def on_rendered(path: Path) -> None:
            handle.write(f"{path}\n")
            handle.flush()
        render_planned(planned, cache_dir, pianos, jobs, audio_format, on_rendered=on_rendered)
        handle.write(RENDER_DONE + "\n")


class BackgroundRender:
    """Renders a plan in another process while training runs on what is already rendered.

    A lent GPU machine otherwise idles for the minutes its cores take to render the
    whole bundle.  The render runs at lower priority (``niceness``), in a process group
    of its own, so the training loop and its data workers come first and ``stop`` ends
    every render process.  Each finished file is one line of ``listing``; ``poll``
    returns those not returned before and whether the render is over.
    """

    def __init__(self, planned: list[RenderJob], cache_dir: Path, pianos: dict, jobs: int,
                 listing: Path, audio_format: str = "flac", niceness: int = 10):
        import multiprocessing
        listing.write_text("")
        self.listing, self._taken, self.finished = listing, 0, False
        # Spawned, not forked: the caller may hold threads (torch) and a GPU context.
        self.process = multiprocessing.get_context("spawn").Process(
            target=_render_in_background,
            args=(planned, cache_dir, pianos, jobs, audio_format, listing, niceness))
        self.process.start()

    def poll(self) -> tuple[list[Path], bool]:
        """The files finished since the last call, and whether the render is over (it
        ended, or its process died: what it finished still counts)."""
        if self.finished:
            return [], True
        alive = self.process.is_alive()
        text = self.listing.read_text()
        lines = text[:text.rfind("\n") + 1].splitlines()  # whole lines only
        new = [Path(line) for line in lines[self._taken:] if not line.startswith("#")]
        self._taken = len(lines)
        self.finished = RENDER_DONE in lines or not alive
        return new, self.finished

    def stop(self) -> None:
        """End the render and its worker processes (a run that ends before it)."""
        if self.process.is_alive():
            try:
                if hasattr(os, "killpg"):
                    os.killpg(self.process.pid, signal.SIGTERM)
                else:
                    self.process.terminate()
            except ProcessLookupError:
                pass
            self.process.join(10)
        self.finished = True
