"""What the recording level does to the notes, as recorded and scaled to the tuned level.

    python benchmarks/input_level.py cache/development
    python benchmarks/input_level.py cache/development --peaks -60 -40 -20 --pcm16

Each file is brought to each peak level (dBFS) and transcribed by the shipped weights
(fast pass, the card's decoding) twice: with ``normalize=False`` (the samples as they
are, what amt-transcribe did before session 25) and with the default ``normalize=True``
(the peak scaled to ``constants.INPUT_PEAK`` first).  Prints mean note F1 and recall
over the files per level, and the recall of the notes below velocity 45 and of those
with 10 or more notes sounding (pooled over the notes, issue 11's bands).  ``--pcm16`` also rounds each level to 16-bit PCM, as a quiet
recording saved at 16 bits is: its low bits are gone before any gain.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf

from transcribe import constants as C
from transcribe import transcribe
from transcribe.training.evaluate import note_rows, pair_files, reference_notes
from transcribe.training.metrics import mean_scores
from transcribe.weights import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="Audio with MIDI files of the same names.")
    parser.add_argument("--files", type=int, default=0, help="The first FILES only (0: all).")
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--peaks", nargs="+", type=float,
                        default=[-60, -50, -40, -34, -25, -12, 6, 20])
    parser.add_argument("--pcm16", action="store_true",
                        help="Also each level below 0 dBFS rounded to 16-bit PCM.")
    args = parser.parse_args()
    pairs = pair_files(args.folder, args.folder)
    pairs = pairs[:args.files] if args.files else pairs
    loaded = load_model(args.weights, "cpu")
    data = [(sf.read(audio, dtype="float32"), reference_notes(midi)) for audio, midi in pairs]
    print(f"{len(pairs)} files of {args.folder}; mean note F1 (recall), %; recall below "
          "velocity 45 / with 10+ notes sounding, %")
    print("| peak | samples | as recorded | scaled to the tuned level |")
    print("|---|---|---|---|")
    for peak_db in args.peaks:
        for pcm in (False, True) if args.pcm16 and peak_db < 0 else (False,):
            cells = []
            for normalize in (False, True):
                rows = []
                for (audio, rate), reference in data:
                    level = audio * np.float32(10 ** (peak_db / 20) / np.abs(audio).max())
                    if pcm:
                        level = np.round(level * 32767).astype(np.int16)
                    result = transcribe(level, loaded, sample_rate=rate, model_pass="fast",
                                        normalize=normalize, keep_posteriorgrams=False)
                    rows.append(note_rows(reference, result.with_pedal(C.DEFAULT_PEDAL_MODE)[0]))
                mean = mean_scores(rows)
                soft = sum(row["velocities"] for row in rows)[:2].sum(axis=0)  # < 30, 30-44
                dense = sum(row["polyphony"] for row in rows)[2:].sum(axis=0)  # 10-14, >= 15
                cells.append(f"{100 * mean['note_f1']:.2f} ({100 * mean['note_recall']:.1f}); "
                             f"{100 * soft[1] / max(soft[0], 1):.1f} / "
                             f"{100 * dense[1] / max(dense[0], 1):.1f}")
            print(f"| {peak_db:g} dBFS | {'16-bit' if pcm else 'float'} | {cells[0]} | "
                  f"{cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
