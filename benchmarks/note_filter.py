"""What the note filter keeps and drops (session 39): the same posteriorgrams decoded with
the card's filter and without it.

    python benchmarks/note_filter.py cache/tuning-all cache/development cache/validation

Each folder's audio (with MIDI files of the same names) is transcribed once by the
shipped weights (or ``--weights``), the card's pass; the posteriorgrams are decoded with
the card's decoding, and again without the filter (``note_filter_threshold`` 0), with
the shortest note the card had before it (``--min-note-ms``, 60 ms: the filter tells the
short notes played from those that were not, so it keeps notes from 30 ms) and, given
``--onset-threshold`` and ``--soft-onset-threshold``, the onset bars of the rules alone
(since session 41 the filter sorts the notes of lower bars: the card's before them, 0.2
and 0.1, are the rules' own).  Printed per
folder: mean note F1, note+offset F1, precision and recall over the files, and the recall
of the soft notes (velocity below 45) and of the dense ones (10 or more sounding), summed
over the files, the bands the issue on real pianos sets targets for.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from transcribe import transcribe
from transcribe.decode import DecodingOptions
from transcribe.training.evaluate import pair_files, reference_notes
from transcribe.training.metrics import band_counts, score
from transcribe.transcriber import decode
from transcribe.weights import load_model

SOFT = (("velocity < 45", 0, 45),)
DENSE = (("10 or more sounding", 10, 10 ** 6),)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+",
                        help="Audio with MIDI files of the same names.")
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--min-note-ms", type=float, default=60.0,
                        help="The shortest note without the filter.")
    parser.add_argument("--onset-threshold", type=float, default=None,
                        help="The onset bar without the filter (default: the card's).")
    parser.add_argument("--soft-onset-threshold", type=float, default=None,
                        help="The soft-onset bar without the filter (default: the card's).")
    args = parser.parse_args()
    loaded = load_model(args.weights, "cpu")
    card = DecodingOptions().resolve(loaded.card)
    if card.note_filter is None or card.note_filter_threshold <= 0:
        parser.error("these weights' card has no note filter")
    ways = {"without the filter": card.merged(
        note_filter_threshold=0.0, min_note_ms=args.min_note_ms,
        onset_threshold=args.onset_threshold, soft_onset_threshold=args.soft_onset_threshold),
            "with it": card}
    print("decoding           | note F1 | note+offset F1 | precision | recall | recall: "
          "velocity < 45 | 10+ sounding | notes written")
    for folder in args.folders:
        rows = {name: ([], np.zeros(2), np.zeros(2), 0) for name in ways}
        for audio, midi in pair_files(folder, folder):
            reference = reference_notes(midi)
            kept = transcribe(audio, loaded).kept_posteriorgrams()
            for name, options in ways.items():
                notes = decode(kept, options)[0]
                scores, soft, dense, written = rows[name]
                found = score(reference, notes)
                scores.append([found[f"note_{level}"] for level in
                               ("f1", "offset_f1", "precision", "recall")])
                soft += band_counts(reference, notes, "velocity", SOFT)[0]
                dense += band_counts(reference, notes, "polyphony", DENSE)[0]
                rows[name] = (scores, soft, dense, written + len(notes))
        print(f"{folder} ({len(rows['with it'][0])} files)")
        for name, (scores, soft, dense, written) in rows.items():
            f1, offset_f1, precision, recall = 100 * np.mean(scores, axis=0)
            print(f"{name:<18} | {f1:7.2f} | {offset_f1:14.2f} | {precision:9.1f} | "
                  f"{recall:6.1f} | {100 * soft[1] / max(soft[0], 1):22.1f} | "
                  f"{100 * dense[1] / max(dense[0], 1):12.1f} | {written}")


if __name__ == "__main__":
    main()
