"""Render MIDI through the sampled pianos of ``shared/data/pianos`` (SFZ, with sfizz).

The synthesizer and the labels agree on the sustain pedal: every SFZ there sets
``sustain_lo=64`` and the labels take the pedal as down at CC64 >= 64, read from
every track of the file (Batik-style files keep the pedal on a track without
notes, which pretty_midi drops).  sfizz maps velocity through each piano's own
layers; ``velocity_curve`` bends the performance's velocities first, so soft
playing (velocity 10-45) is common in training.  ``sfizz_render`` always runs with
``--use-eot`` (one piano renders forever without it), under a timeout, on a copy of
the MIDI padded at the end so release tails are not cut.
"""

from __future__ import annotations

import csv
import io
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np
import pretty_midi
import soundfile as sf
import soxr

from .. import constants as C
from ..decode import OFFSET_S, ONSET_S
from ..decode import extend_through_pedal
from ..midi import SUSTAIN_CC, trim_overlaps
from .synth import SynthesisError

SOFT_PEDAL_CC = 67
PAD_S = 3.0  # of silence after the last event, for release tails
RENDER_TIMEOUT_S = 600
# sfizz plays a region whose sample it cannot read as silence, without an error.  A render
# of notes whose peak stays below this (dBFS) is silence to sfizz_render's 16 bits (their
# last bit is -90 dBFS): a piano that did not load, or notes too soft to be music once
# training scales them up (Headroom's C4 at velocity 10 peaks at -71 dBFS, the others' at
# -58 to -45).  Such a render fails and its file is skipped.
SILENT_RENDER_DBFS = -85.0
OPEN_CUTOFF_HZ = 7900.0  # an open filter: at most 3 dB off the top of a 16 kHz render
DARK_TOP_HZ = 7000.0  # darkened(): the cutoff at velocity 127 (below 8 kHz: sfizz renders at 16 kHz)
# The piano kept out of training: the development set is rendered through it alone.
DEVELOPMENT_PIANO = "splendid"


@dataclass(frozen=True)
class Piano:
    name: str
    sfz: Path
    peak_dbfs_c4_v70: float  # level differs by about 10 dB between pianos

    @property
    def strips_soft_pedal(self) -> bool:
        """CC67 switches Headroom's damped mode: played without it (data/README.md)."""
        return self.name.startswith("headroom")


def read_pianos(folder: Path) -> list[Piano]:
    """The pianos listed in ``folder/PIANOS.tsv`` whose SFZ is present."""
    table = folder / "PIANOS.tsv"
    if not table.exists():
        raise SynthesisError(f"{table}: no such piano table")
    pianos = []
    with open(table, newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            sfz = folder / row["sfz"]
            if sfz.exists():
                pianos.append(Piano(row["name"], sfz, float(row["peak_dbfs_c4_v70"])))
    return pianos


def training_pianos(folder: Path) -> list[Piano]:
    return [p for p in read_pianos(folder) if p.name != DEVELOPMENT_PIANO]


def sfizz_binary() -> Path:
    """``sfizz_render`` as installed by the ``pysfizz`` wheel."""
    try:
        import pysfizz
    except ImportError:
        raise SynthesisError("sfizz is not installed (pip install pysfizz)") from None
    path = Path(pysfizz.__file__).resolve().parent.parent / "bin" / "sfizz_render"
    if not path.exists():
        raise SynthesisError(f"pysfizz is installed but {path} is missing")
    return path


def pedal_spans(midi: mido.MidiFile, value: int = 64) -> np.ndarray:
    """Sustain-pedal-down spans ``(k, 2)`` in seconds, from CC64 on any track and channel."""
    spans, down_since = [], None
    seconds = 0.0
    for message in midi:  # merged tracks, delta times in seconds
        seconds += message.time
        if message.type == "control_change" and message.control == SUSTAIN_CC:
            if message.value >= value and down_since is None:
                down_since = seconds
            elif message.value < value and down_since is not None:
                spans.append((down_since, seconds))
                down_since = None
    if down_since is not None:
        spans.append((down_since, seconds))
    return np.array(spans, np.float64).reshape(-1, 2)


def darkened(piano: Piano, folder: Path, cutoff_hz_at_40: float,
             cutoff_hz_at_127: float = DARK_TOP_HZ) -> Piano:
    """``piano`` with a low-pass whose cutoff rises with velocity: ``cutoff_hz_at_40`` at
    velocity 40, ``cutoff_hz_at_127`` at 127, log-linear between (SFZ ``fil_veltrack``).

    A real piano's soft notes are darker (the felt of a slow hammer), and sample sets
    with few velocity layers fake it with such a filter; most training pianos here have
    one or two layers, so without it soft notes are only quieter, never duller.  The
    variant SFZ is written into ``folder`` beside links to the piano's own files, so its
    samples and includes resolve as before."""
    text = piano.sfz.read_text()
    if "<global>" not in text:
        raise SynthesisError(f"{piano.sfz}: no <global> header to add the filter to")
    octaves = np.log2(cutoff_hz_at_127 / cutoff_hz_at_40) / (1 - 40 / 127)
    base_hz = cutoff_hz_at_40 / 2 ** (octaves * 40 / 127)  # the cutoff at velocity 0
    folder.mkdir(parents=True, exist_ok=True)
    for entry in piano.sfz.parent.iterdir():
        if entry != piano.sfz:
            (folder / entry.name).symlink_to(entry.resolve())
    # The second filter slot, so a piano's own filter (upright-kw's soft regions) stays;
    # sfizz silences a region whose first filter is undefined when a second exists, so
    # the first defaults to open (a region's own cutoff overrides it).
    header = (f"<global>\nfil_type=lpf_2p\ncutoff={OPEN_CUTOFF_HZ:.0f}\n"
              f"fil2_type=lpf_2p\ncutoff2={base_hz:.1f}\nfil2_veltrack={1200 * octaves:.0f}\n")
    sfz = folder / piano.sfz.name
    sfz.write_text(text.replace("<global>\n", header, 1))
    return Piano(piano.name, sfz, piano.peak_dbfs_c4_v70)


def velocity_curve(rng: np.random.Generator) -> float:
    """An exponent for (v/127)**gamma: 40 % of files played softer (gamma 1.3-2.4)."""
    if rng.random() < 0.4:
        return float(rng.uniform(1.3, 2.4))
    return float(np.exp(rng.uniform(np.log(0.7), np.log(1.3))))


def prepare(path: Path, transpose: int = 0, velocity_gamma: float = 1.0,
            strip_soft_pedal: bool = False) -> mido.MidiFile:
    """A copy of the MIDI file as it will be rendered: shifted, velocities curved, end padded.

    Notes leaving the 88 keys are dropped (nothing sounds that the labels lack);
    drum channels are dropped.
    """
    source = mido.MidiFile(str(path))
    out = mido.MidiFile(type=source.type if source.type != 2 else 1,
                        ticks_per_beat=source.ticks_per_beat)
    dropped = set()
    for track in source.tracks:
        new = mido.MidiTrack()
        carry = 0  # delta time of messages left out, added to the next one kept
        for message in track:
            keep = True
            if message.type in ("note_on", "note_off"):
                pitch = message.note + transpose
                if message.channel == 9 or not C.MIN_MIDI <= pitch <= C.MAX_MIDI:
                    keep = False
                    dropped.add(message.note)
                else:
                    velocity = message.velocity
                    if message.type == "note_on" and velocity > 0:
                        velocity = int(np.clip(round(127 * (velocity / 127) ** velocity_gamma),
                                               1, 127))
                    message = message.copy(note=pitch, velocity=velocity)
            elif message.type == "control_change" and (
                    message.channel == 9 or (strip_soft_pedal and message.control == SOFT_PEDAL_CC)):
                keep = False
            elif message.type == "end_of_track":
                keep = False
            if keep:
                new.append(message.copy(time=message.time + carry))
                carry = 0
            else:
                carry += message.time
        new.append(mido.MetaMessage("end_of_track", time=carry))
        out.tracks.append(new)
    # sfizz_render --use-eot stops at the last event before End-of-Track and ignores
    # that message's own delta: an event PAD_S after the end makes the render longer.
    tempo = 500000
    for message in out.tracks[0]:
        if message.type == "set_tempo":
            tempo = message.tempo
    longest = max(out.tracks, key=lambda t: sum(m.time for m in t))
    eot = longest.pop()
    longest.append(mido.MetaMessage("text", text="pad", time=eot.time + int(
        mido.second2tick(PAD_S, out.ticks_per_beat, tempo))))
    longest.append(mido.MetaMessage("end_of_track", time=0))
    return out


def labels(midi: mido.MidiFile, sustain: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(notes ``(n, 4)`` sounding as the synth plays them, pedal spans ``(k, 2)``).

    A note whose key is released while the pedal is down sounds until the pedal
    comes up (unless ``sustain`` is false: notes end at key release); a key struck
    again ends its previous note (``midi.trim_overlaps``).
    """
    buffer = io.BytesIO()
    midi.save(file=buffer)
    buffer.seek(0)
    pm = pretty_midi.PrettyMIDI(buffer)
    spans = pedal_spans(midi)
    rows = [(n.start, n.end, n.pitch, n.velocity) for inst in pm.instruments
            if not inst.is_drum for n in inst.notes]
    notes = np.array(rows, np.float64).reshape(-1, 4)
    if sustain:
        notes = extend_through_pedal(notes, spans)
    end_s = midi.length
    notes[:, OFFSET_S] = np.minimum(notes[:, OFFSET_S], end_s)
    spans[:, 1] = np.minimum(spans[:, 1], end_s)
    notes = notes[notes[:, OFFSET_S] > notes[:, ONSET_S]]
    return trim_overlaps(notes), spans


def render(midi: mido.MidiFile, piano: Piano, sample_rate: int = C.SAMPLE_RATE,
           timeout_s: float = RENDER_TIMEOUT_S) -> np.ndarray:
    """Mono float32 audio of ``midi`` through ``piano`` (sfizz, 256 voices)."""
    binary = sfizz_binary()
    with tempfile.TemporaryDirectory() as tmp:
        midi_path, wav_path = Path(tmp) / "in.mid", Path(tmp) / "out.wav"
        midi.save(str(midi_path))
        command = [str(binary), "--use-eot", "-s", str(sample_rate), "-p", "256",
                   "--sfz", str(piano.sfz), "--midi", str(midi_path), "--wav", str(wav_path)]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise SynthesisError(f"sfizz_render took over {timeout_s:.0f} s") from None
        if result.returncode != 0 or not wav_path.exists():
            raise SynthesisError(f"sfizz_render failed: {(result.stderr or result.stdout)[:300]}")
        audio, rate = sf.read(wav_path, dtype="float32", always_2d=True)
    if rate != sample_rate:
        raise SynthesisError(f"sfizz_render wrote {rate} Hz, not {sample_rate}")
    struck = any(m.type == "note_on" and m.velocity > 0 for track in midi.tracks for m in track)
    if struck and np.abs(audio).max(initial=0.0) < 10 ** (SILENT_RENDER_DBFS / 20):
        raise SynthesisError(f"sfizz_render played {piano.name}'s notes as silence (below "
                             f"{SILENT_RENDER_DBFS:.0f} dBFS): its samples did not load, or "
                             "the notes are too soft")
    return audio[:, 0]  # the channels are identical (no CC10 pan in piano files)


def string_resonance_response(rng: np.random.Generator, sample_rate: int = C.SAMPLE_RATE,
                              length_s: float = 2.5, bands: int = 8) -> np.ndarray:
    """An impulse response of the 88 undamped strings: every partial of every key below
    0.45 x the sample rate, amplitude 1/n, random phase, ringing 8 s (A0) down to 0.8 s
    (C8) to -60 dB (one decay per band of ``bands`` neighbouring octaves' keys); unit
    energy.  Convolved with the sound, it keeps what matches some string's partial.

    Built in the frequency domain (each partial one spectral line), so it costs
    milliseconds rather than the seconds of summing thousands of sinusoids."""
    n = int(length_s * sample_rate)
    t = np.arange(n) / sample_rate
    response = np.zeros(n)
    pitches = np.arange(C.MIN_MIDI, C.MAX_MIDI + 1)
    for group, t60 in zip(np.array_split(pitches, bands), np.geomspace(8.0, 0.8, bands)):
        lines = np.zeros(n // 2 + 1, complex)
        for pitch in group:
            f0 = 440.0 * 2 ** ((pitch - 69) / 12)
            partials = np.arange(1, int(0.45 * sample_rate / f0) + 1)
            bins = np.round(f0 * partials * n / sample_rate).astype(int)
            np.add.at(lines, bins, np.exp(1j * rng.uniform(0, 2 * np.pi, len(bins))) / partials)
        response += np.fft.irfft(lines, n) * np.exp(-6.9 * t / t60)
    fade = int(0.2 * sample_rate)
    response[-fade:] *= np.linspace(1, 0, fade)
    return (response / np.sqrt(np.sum(response ** 2))).astype(np.float32)


def damper_resonance(audio: np.ndarray, spans: np.ndarray, rng: np.random.Generator,
                     sample_rate: int = C.SAMPLE_RATE, level_db: tuple = (-24.0, -12.0),
                     damper_s: float = 0.04) -> np.ndarray:
    """``audio`` with the sympathetic ringing of a real piano's free strings while the
    sustain pedal ``spans`` ``(k, 2)`` (s) is down: the sound, gated by the pedal, through
    ``string_resonance_response``, gated again (the dampers fall back in ``damper_s``)
    and added at a random level of ``level_db`` against the sound under the pedal.

    The sampled pianos here have no resonance samples (PIANOS.tsv), so without this the
    pedal is heard only in how long notes last; on a real piano it also colours the
    sound.  Outside the pedal the audio is returned unchanged.
    """
    from scipy.signal import oaconvolve
    spans = np.asarray(spans, np.float64).reshape(-1, 2)
    down = np.zeros(len(audio), np.float32)
    for start_s, end_s in spans:
        down[int(start_s * sample_rate):int(end_s * sample_rate)] = 1
    if not down.any():
        return audio
    smooth = max(1, int(damper_s * sample_rate))
    gate = np.convolve(down, np.ones(smooth, np.float32) / smooth)[:len(audio)]
    ringing = oaconvolve(audio * gate, string_resonance_response(rng, sample_rate))
    ringing = ringing[:len(audio)] * gate
    under = gate > 0.5
    dry_rms = np.sqrt(np.mean(audio[under] ** 2)) if under.any() else 0.0
    wet_rms = np.sqrt(np.mean(ringing[under] ** 2)) if under.any() else 0.0
    if dry_rms == 0 or wet_rms == 0:
        return audio
    gain = dry_rms / wet_rms * 10 ** (rng.uniform(*level_db) / 20)
    return (audio + gain * ringing).astype(np.float32)


def detune(audio: np.ndarray, notes: np.ndarray, spans: np.ndarray, cents: float,
           sample_rate: int = C.SAMPLE_RATE, keys: np.ndarray | None = None) -> tuple:
    """Raise the pitch by ``cents`` (a piano not at A440): the audio played faster by that
    ratio, note, pedal (and ``keys``: key-held notes) times scaled to match; pitches stay
    (labels unchanged).  Returns (audio, notes, spans), and keys when given."""
    ratio = 2 ** (cents / 1200)
    scaled = []
    for labels in (notes, keys):
        if labels is not None:
            labels = labels.copy()
            labels[:, [ONSET_S, OFFSET_S]] /= ratio
            scaled.append(labels)
    if abs(cents) >= 1e-6:
        audio = soxr.resample(audio, sample_rate * ratio, sample_rate, quality="HQ")
    return (audio.astype(np.float32), *scaled[:1], spans / ratio, *scaled[1:])
