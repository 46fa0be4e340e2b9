"""Note+velocity F1 and velocity correlation by velocity level weight, on a folder.

    python benchmarks/velocity_levels.py cache/tuning-all --files 15
    python benchmarks/velocity_levels.py examples

Each excerpt is transcribed once (fast pass, the weights' card) and re-decoded at each
``--velocity-level-weight`` (0: the velocity head alone) with the velocity model off, and,
for weights with one (since session 42), as the card decodes with its velocity model.
Printed per row: the mean note+velocity F1 over the files (mir_eval, as ``amt-evaluate``
scores it) and the mean per-file correlation of the velocities of the notes matched by
onset and pitch with the reference's (what a listener hears of the dynamics, before
mir_eval's tolerance).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from transcribe import transcribe
from transcribe.training.evaluate import pair_files, reference_notes
from transcribe.training.metrics import matched_velocities, score
from transcribe.weights import load_model


def matched_correlation(reference: np.ndarray, notes: np.ndarray) -> float:
    """Correlation of reference and transcribed velocities over notes matched by onset and pitch."""
    written, played = matched_velocities(reference, notes)
    if len(written) < 3:
        return float("nan")
    return float(np.corrcoef(written, played)[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="Audio with MIDI files of the same names.")
    parser.add_argument("--files", type=int, default=None, help="Only the first FILES pairs.")
    parser.add_argument("--levels", type=float, nargs="+", default=[0, 1, 2, 3, 4],
                        help="Velocity level weights to decode with.")
    parser.add_argument("--weights", type=Path, default=None)
    args = parser.parse_args()
    pairs = pair_files(args.folder, args.folder)[:args.files]
    if not pairs:
        parser.error(f"no audio with a MIDI file of the same name in {args.folder}")
    model = load_model(args.weights, "cpu")
    rows = [f"{weight:g}" for weight in args.levels]
    if model.card.get("note_velocities") is not None:
        rows.append("model")  # the card's decoding, its velocity model deciding
    f1 = {row: [] for row in rows}
    correlation = {row: [] for row in rows}
    for audio, midi in pairs:
        reference = reference_notes(midi)
        result = transcribe(audio, model, model_pass="fast")
        decoded = [result.redecode(velocity_level_weight=weight, velocity_model_weight=0).notes
                   for weight in args.levels] + [result.notes] * (len(rows) - len(args.levels))
        for row, notes in zip(rows, decoded):
            f1[row].append(score(reference, notes)["note_velocity_f1"])
            correlation[row].append(matched_correlation(reference, notes))
    print(f"{len(pairs)} files in {args.folder}; card weight "
          f"{result.options.velocity_level_weight:g}, velocity model weight "
          f"{result.options.velocity_model_weight:g}; rows by level weight, the velocity model "
          "off" + ("; model: as the card decodes, with its velocity model" if len(rows) >
                   len(args.levels) else ""))
    print(f"{'weight':>7} {'note+velocity F1':>17} {'velocity r':>11}")
    for row in rows:
        print(f"{row:>7} {100 * np.mean(f1[row]):>17.2f} {np.nanmean(correlation[row]):>11.3f}")


if __name__ == "__main__":
    main()
