"""Candidate weights against a baseline, file by file: is the difference more than chance?

    python benchmarks/compare_weights.py cache/tuning-all --files 15 \\
        --weights shipped runs/candidate.pt runs/average.pt

Each weights transcribe the same files with their own card's decoding (the fast pass
unless ``--pass full``), scored as ``amt-evaluate`` scores them.  For every candidate it
prints the mean F1s and, against the first weights, the mean difference per file with a
paired bootstrap interval (95 %, resampling the files; with 15 files a rough one): an
interval that straddles zero says the candidate is not shown to be better or worse on
these files.  Soft-note and dense-chord recall are pooled over the files' notes, as
``amt-evaluate --by-velocity --by-polyphony`` pools them.  Shipping decisions are made on
the tuning excerpts, never on the development set.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from transcribe.errors import TranscribeError
from transcribe.training.evaluate import evaluate_model, pair_files
from transcribe.training.metrics import POLYPHONY_BANDS, VELOCITY_BANDS
from transcribe.weights import load_model

SCORES = (("note", "note_f1"), ("n+off", "note_offset_f1"), ("n+vel", "note_velocity_f1"),
          ("frame", "frame_f1"), ("pedal", "pedal_frame_f1"), ("presses", "pedal_onset_f1"))
SOFT = [i for i, (_, _, high) in enumerate(VELOCITY_BANDS) if high <= 45]
DENSE = [i for i, (_, low, _) in enumerate(POLYPHONY_BANDS) if low >= 10]


def bootstrap_interval(differences: np.ndarray, resamples: int = 10_000,
                       seed: int = 0) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of the mean of ``differences`` resampled."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(differences), size=(resamples, len(differences)))
    return tuple(np.percentile(differences[picks].mean(axis=1), [2.5, 97.5]))


def pooled_recall(rows: list[dict], key: str, bands: list[int]) -> str:
    """Found / reference notes in ``bands``, pooled over the files, as a percentage."""
    counts = sum(row[key] for row in rows)
    found, total = counts[bands, 1].sum(), counts[bands, 0].sum()
    return f"{100 * found / total:.1f} % of {total}" if total else "no such notes"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="Audio with MIDI files of the same names.")
    parser.add_argument("--weights", nargs="+", default=["shipped"],
                        help="Weights files; 'shipped' for weights/amt-unet.pt. The first "
                             "is the baseline.")
    parser.add_argument("--files", type=int, default=0, help="The first N files (0: all).")
    parser.add_argument("--pass", dest="model_pass", choices=("fast", "full"), default="fast")
    args = parser.parse_args()
    pairs = pair_files(args.folder, args.folder)
    pairs = pairs[:args.files] if args.files else pairs
    if not pairs:
        parser.error(f"{args.folder}: no audio with a MIDI file of the same name")
    print(f"{len(pairs)} files of {args.folder}, the {args.model_pass} pass; F1 in %, "
          f"difference to {args.weights[0]} per file with its 95 % bootstrap interval")
    if len(pairs) < 10 and len(args.weights) > 1:
        print(f"(the intervals of {len(pairs)} files say little: resampling so few files "
              f"repeats the same few differences)")
    try:  # every weights file checked before the first is run on the files
        models = [(name, load_model(None if name == "shipped" else Path(name), "cpu"))
                  for name in args.weights]
    except TranscribeError as error:
        parser.error(str(error))
    baseline = None
    for name, loaded in models:
        rows = evaluate_model(loaded, pairs, model_pass=args.model_pass)
        cells = []
        for label, key in SCORES:
            have = [i for i, row in enumerate(rows)
                    if key in row and (baseline is None or key in baseline[i])]
            if not have:
                continue
            values = np.array([100 * rows[i][key] for i in have])
            cell = f"{label} {values.mean():.2f}"
            if baseline is not None:
                base = np.array([100 * baseline[i][key] for i in have])
                low, high = bootstrap_interval(values - base)
                cell += f" ({(values - base).mean():+.2f} [{low:+.2f}, {high:+.2f}])"
            cells.append(cell)
        cells.append(f"recall, velocity < 45: {pooled_recall(rows, 'velocities', SOFT)}")
        cells.append(f"recall, 10+ sounding: {pooled_recall(rows, 'polyphony', DENSE)}")
        print(f"{name}:\n  " + "\n  ".join(cells), flush=True)
        if baseline is None:
            baseline = rows


if __name__ == "__main__":
    main()
