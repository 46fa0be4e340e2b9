"""What clipping does to the notes, whether it is warned of, and what is warned of wrongly.

    python benchmarks/clipping.py examples
    python benchmarks/clipping.py cache/development --files 10 --gains 1 3 4 8
    python benchmarks/clipping.py examples --false-alarms ../shared/data/pianos cache/development

Each file of FOLDER (audio with MIDI files of the same names) is driven into full scale by
each gain (the samples times the gain, cut at +-1, saved as 16-bit WAV, as a converter or a
gain clips), and also so clipped and then lowered by ``--lower-db`` (an editor's gain, a
normalizing app).  Each copy is transcribed as a file by the shipped weights (the card's
decoding); printed per gain, over the files: the share of samples the first read counts
clipped (``level.peak``), how many files are warned of, mean note F1 and the notes
written.

``--false-alarms DIR ...``: every audio file under the folders, brought to peaks of 0,
-1, -10, -20 and -29 dBFS and saved in 16 and in 8 bits; how many of those copies are
counted clipped at all, and how many would be warned of (``CLIPPED_WARN_SHARE``).

``--codec mp3``: the copies are saved as MP3 instead (libsndfile's LAME, constant bit rate
at its middle level: 80 kbit/s at 16 kHz mono, 160 at 44.1 kHz stereo), the
share is ``Peaks.coded_clipped_share`` and the bar ``CODED_CLIPPED_WARN_SHARE``; the
false alarms are the copies at 0 and -1 dBFS, and each file raised ``--limit-db`` through
ffmpeg's limiter to -0.1 dBFS (a loud master, not clipped) before it is coded.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from transcribe import audio as audio_io, level
from transcribe import constants as C
from transcribe import transcribe
from transcribe.training.evaluate import note_rows, pair_files, reference_notes
from transcribe.training.metrics import mean_scores
from transcribe.weights import load_model

FALSE_ALARM_PEAKS_DB = (0, -1, -10, -20, -29)
MP3_LEVEL = 0.5  # libsndfile's compression level: 80 kbit/s at 16 kHz mono, 160 at 44.1 stereo


def clipped_copy(samples: np.ndarray, gain: float, lowered_db: float) -> np.ndarray:
    """The samples clipped at full scale by ``gain``, then lowered ``lowered_db`` (0: not)."""
    return np.clip(samples * gain, -1, 1) * 10 ** (-lowered_db / 20)


def save(path_stem: Path, samples: np.ndarray, rate: int, codec: str,
         subtype: str = "PCM_16") -> Path:
    """``samples`` saved as a 16-bit (or ``subtype``) WAV, or with ``codec="mp3"`` as an
    MP3; the file's path."""
    if codec == "mp3":
        path = path_stem.with_suffix(".mp3")
        sf.write(path, np.clip(samples, -1, 1), rate, format="MP3", subtype="MPEG_LAYER_III",
                 bitrate_mode="CONSTANT", compression_level=MP3_LEVEL)
        return path
    path = path_stem.with_suffix(".wav")
    sf.write(path, samples, rate, subtype=subtype)
    return path


def share_of(path: Path, codec: str) -> float:
    """The share of ``path``'s samples counted clipped, as the warning's bar reads it."""
    peaks = level.peak(path)
    return peaks.coded_clipped_share if codec == "mp3" else peaks.clipped_share


def bar(codec: str) -> float:
    return level.CODED_CLIPPED_WARN_SHARE if codec == "mp3" else level.CLIPPED_WARN_SHARE


def scores(pairs, gains, lower_db, loaded, codec: str) -> None:
    data = [(sf.read(audio, dtype="float64"), reference_notes(midi)) for audio, midi in pairs]
    print(f"{len(pairs)} file{'s' * (len(pairs) != 1)}; each clipped by the gain, saved as "
          f"{'MP3' if codec == 'mp3' else '16-bit WAV'}, transcribed as a file")
    print("| gain | copy | samples clipped (mean) | files warned of | note F1 | notes |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for gain in gains:
            for lowered_db in (0.0,) if gain == 1 else (0.0, lower_db):
                kind = ("as it is" if gain == 1 else "at full scale" if not lowered_db
                        else f"lowered {lowered_db:g} dB")
                shares, warned, rows, notes = [], 0, [], 0
                for (samples, rate), reference in data:
                    path = save(Path(tmp) / "copy", clipped_copy(samples, gain, lowered_db),
                                rate, codec)
                    shares.append(share_of(path, codec))
                    result = transcribe(path, loaded, keep_posteriorgrams=False)
                    warned += any("clipped" in warning for warning in result.warnings)
                    written = result.with_pedal(C.DEFAULT_PEDAL_MODE)[0]
                    rows.append(note_rows(reference, written))
                    notes += len(written)
                mean = mean_scores(rows)
                print(f"| {gain:g} | {kind} | "
                      f"{100 * np.mean(shares):.2f} % | {warned} of {len(data)} | "
                      f"{100 * mean['note_f1']:.1f} | {notes} |", flush=True)


def limited(path: Path, source: Path, limit_db: float) -> None:
    """``source`` raised ``limit_db`` through ffmpeg's limiter to -0.1 dBFS, as a 32-bit
    float WAV at ``path``."""
    import subprocess
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(source), "-af",
                    f"volume={limit_db}dB,alimiter=limit={10 ** (-0.1 / 20):.4f}:level=disabled",
                    "-c:a", "pcm_f32le", str(path)], check=True)


def false_alarms(folders: list[Path], codec: str, limit_db: float) -> None:
    files = sorted(path for folder in folders for path in folder.rglob("*")
                   if path.suffix.lower() in audio_io.AUDIO_EXTENSIONS)
    counted, warned, copies, largest = {}, 0, 0, {}
    peaks_db = FALSE_ALARM_PEAKS_DB if codec != "mp3" else (0, -1)
    kinds = ("PCM_16", "PCM_U8") if codec != "mp3" else ("MP3", "MP3 limited")
    with tempfile.TemporaryDirectory() as tmp:
        for source in files:
            samples, rate = sf.read(source, dtype="float64")
            peak = np.abs(samples).max(initial=0.0)
            if peak == 0:
                continue
            versions = [(kinds[0], samples * (10 ** (peak_db / 20) / peak))
                        for peak_db in peaks_db]
            if codec == "mp3":
                limited(Path(tmp) / "limited.wav", source, limit_db)
                versions.append((kinds[1], sf.read(Path(tmp) / "limited.wav")[0]))
            else:
                versions += [(kinds[1], version) for _, version in versions]
            for number, (kind, version) in enumerate(versions):
                subtype = "PCM_U8" if kind == "PCM_U8" else "PCM_16"
                path = save(Path(tmp) / f"copy{number}", version, rate, codec, subtype)
                share = share_of(path, codec)
                copies += 1
                counted[kind] = counted.get(kind, 0) + (share > 0)
                largest[kind] = max(largest.get(kind, 0.0), share)
                warned += share >= bar(codec)
    settings = (f"peaks {', '.join(f'{p:g}' for p in peaks_db)} dBFS" +
                (f", and raised {limit_db:g} dB through a limiter; MP3" if codec == "mp3"
                 else "; 16 and 8 bits"))
    print(f"false alarms: {len(files)} files, {copies} copies ({settings}): "
          f"{warned} warned of; with any sample counted clipped "
          + ", ".join(f"{counted[k]} in {k} (at most {100 * largest[k]:.3f} % of a copy)"
                      for k in counted))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="Audio with MIDI files of the same names.")
    parser.add_argument("--files", type=int, default=0, help="The first FILES only (0: all).")
    parser.add_argument("--gains", nargs="+", type=float, default=[1, 2.5, 3, 3.5, 4, 8])
    parser.add_argument("--lower-db", type=float, default=6.0,
                        help="How far the clipped copies are lowered afterwards.")
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--false-alarms", nargs="+", type=Path, default=[],
                        metavar="DIR", help="Folders of recordings that are not clipped.")
    parser.add_argument("--codec", choices=["wav", "mp3"], default="wav",
                        help="Save the copies as 16-bit WAV or as MP3.")
    parser.add_argument("--limit-db", type=float, default=12.0,
                        help="With --codec mp3: the gain into the limiter of the loud copies.")
    args = parser.parse_args()
    pairs = pair_files(args.folder, args.folder)
    pairs = pairs[:args.files] if args.files else pairs
    if pairs:
        scores(pairs, args.gains, args.lower_db, load_model(args.weights, "cpu"), args.codec)
    if args.false_alarms:
        false_alarms(args.false_alarms, args.codec, args.limit_db)


if __name__ == "__main__":
    main()
