"""Where the sustain-pedal presses and releases go wrong, for several weights.

    python benchmarks/pedal_timing.py cache/development-resonance --weights OLD.pt weights/amt-unet.pt

`amt-evaluate` scores pedal presses and releases matched within 50 ms (Kong et al.
2021).  This says why they score low: how many spans the reference and the decoded
pedal have, how short the reference's pedal lifts are (a quick re-pedal the decoding
runs through merges two spans and loses a press), and the timing error of each
reference press and release to the nearest decoded one within 500 ms.  Each weights
with its own thresholds, the fast pass, the decoding `--pedal` uses.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from transcribe import transcribe
from transcribe.training.evaluate import pair_files, reference_pedal
from transcribe.weights import load_model

NEAR_S = 0.5  # a decoded event farther than this from a reference one is no match at all
WINDOW_S = 0.05  # the measure's tolerance


def timing_errors(reference: np.ndarray, estimate: np.ndarray, column: int) -> np.ndarray:
    """Signed error (s) of each reference press (column 0) or release (1) to the nearest
    decoded one, where one lies within ``NEAR_S``."""
    if not len(reference) or not len(estimate):
        return np.zeros(0)
    errors = estimate[:, column][None, :] - reference[:, column][:, None]
    nearest = errors[np.arange(len(reference)), np.abs(errors).argmin(axis=1)]
    return nearest[np.abs(nearest) < NEAR_S]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="Audio with MIDI files of the same names.")
    parser.add_argument("--weights", type=Path, nargs="+", default=[None])
    args = parser.parse_args()
    pairs = pair_files(args.folder, args.folder)
    references = [reference_pedal(midi) for _, midi in pairs]
    gaps = np.concatenate([spans[1:, 0] - spans[:-1, 1] for spans in references if len(spans) > 1]
                          or [np.zeros(0)])
    lengths = np.concatenate([spans[:, 1] - spans[:, 0] for spans in references])
    print(f"{args.folder}: {len(pairs)} files, {len(lengths)} reference pedal spans; "
          f"lifts between spans: median {1000 * np.median(gaps):.0f} ms, "
          f"{100 * np.mean(gaps < 0.1):.0f} % under 100 ms, {100 * np.mean(gaps < 0.2):.0f} % "
          f"under 200 ms; spans under 300 ms: {100 * np.mean(lengths < 0.3):.0f} %")
    for weights in args.weights:
        loaded = load_model(weights, "cpu")
        decoded = [np.asarray(transcribe(audio, loaded, model_pass="fast").pedal).reshape(-1, 2)
                   for audio, _ in pairs]
        print(f"{weights or 'shipped'}: {sum(map(len, decoded))} decoded spans")
        for column, event in ((0, "presses"), (1, "releases")):
            errors = 1000 * np.concatenate([timing_errors(reference, estimate, column)
                                            for reference, estimate in zip(references, decoded)])
            if not len(errors):
                print(f"  {event}: none decoded within {1000 * NEAR_S:.0f} ms")
                continue
            low, median, high = np.percentile(errors, [25, 50, 75])
            print(f"  {event}: {len(errors)} of {len(lengths)} have a decoded one within "
                  f"{1000 * NEAR_S:.0f} ms; error median {median:+.0f} ms, quartiles "
                  f"{low:+.0f} and {high:+.0f} ms; within {1000 * WINDOW_S:.0f} ms: "
                  f"{100 * np.mean(np.abs(errors) < 1000 * WINDOW_S):.0f} %")


if __name__ == "__main__":
    main()
