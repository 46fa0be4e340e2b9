"""Note recall by reference velocity, in bands of your choosing, for several weights.

    python benchmarks/recall_by_velocity.py cache/development \\
        --edges 30 36 41 45 51 60 68 75 --weights OLD.pt weights/amt-unet.pt

`amt-evaluate --by-velocity` gives the bands of the issue (< 30, 30-44, ...); finer
edges show where recall breaks.  On the development set it breaks at velocity 41, where
its piano (Splendid Grand) switches from a pianissimo layer low-passed at 1 kHz to the
same layer unfiltered: a note's timbre, not its loudness, decides whether it is found.
Found = mir_eval's note level (pitch, onset within 50 ms), each weights with its own
decoding thresholds, the fast pass.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from transcribe import transcribe
from transcribe.training.evaluate import pair_files, reference_notes
from transcribe.training.metrics import band_counts
from transcribe.weights import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="Audio with MIDI files of the same names.")
    parser.add_argument("--edges", type=int, nargs="+", default=[30, 36, 41, 45, 51, 60, 75, 90])
    parser.add_argument("--weights", type=Path, nargs="+", default=[None])
    args = parser.parse_args()
    pairs = pair_files(args.folder, args.folder)
    # MIDI velocities are 1-127; edges outside, repeated or out of order would make empty or
    # inverted bands.
    edges = [1, *sorted({edge for edge in args.edges if 1 < edge < 128}), 128]
    bands = tuple((f"{low}-{high - 1}", low, high) for low, high in zip(edges, edges[1:]))
    columns = []
    for weights in args.weights:
        loaded = load_model(weights, "cpu")
        counts = sum(band_counts(reference_notes(midi),
                                 transcribe(audio, loaded, model_pass="fast").notes,
                                 "velocity", bands) for audio, midi in pairs)
        columns.append((str(weights or "shipped"), counts))
    print(f"{'velocity':>9} {'notes':>6} " + " ".join(f"{name[-28:]:>28}" for name, _ in columns))
    for row, (band, _, _) in enumerate(bands):
        print(f"{band:>9} {columns[0][1][row, 0]:>6} "
              + " ".join(f"{100 * counts[row, 1] / max(counts[row, 0], 1):>27.1f}%"
                         for _, counts in columns))


if __name__ == "__main__":
    main()
