"""Where notes end (session 40): the same posteriorgrams decoded with the card's end
chooser and with every end as heard.

    python benchmarks/note_ends.py cache/tuning-all cache/development cache/validation

Each folder's audio (with MIDI files of the same names) is transcribed once by the
shipped weights (or ``--weights``), the card's pass; the posteriorgrams are decoded with
the card's decoding, and again with ``end_choice_threshold`` 1 (every note ends where
the frame head lets go, as before the chooser).  Printed per folder, means over the
files: note F1 (the chooser moves no onset), note+offset F1 and frame F1 of the notes
written by default (``--pedal none``) against the notes as played lengthened through
the pedal, and note+offset F1 of ``--pedal extend``'s notes against the same.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from transcribe import transcribe
from transcribe.decode import DecodingOptions
from transcribe.training.evaluate import pair_files, reference_notes
from transcribe.training.metrics import score
from transcribe.weights import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+",
                        help="Audio with MIDI files of the same names.")
    parser.add_argument("--weights", type=Path, default=None)
    args = parser.parse_args()
    loaded = load_model(args.weights, "cpu")
    card = DecodingOptions().resolve(loaded.card)
    if card.end_chooser is None or card.end_choice_threshold >= 1:
        parser.error("these weights' card has no end chooser")
    ways = {"ends as heard": card.merged(end_choice_threshold=1.0), "ends chosen": card}
    print("decoding      | note F1 | note+offset F1 | frame F1 | --pedal extend: note+offset F1")
    for folder in args.folders:
        rows = {name: [] for name in ways}
        for audio, midi in pair_files(folder, folder):
            reference = reference_notes(midi)
            result = transcribe(audio, loaded)
            for name, options in ways.items():
                decoded = dataclasses.replace(result, options=options).redecode()
                found = score(reference, decoded.with_pedal("none")[0])
                extended = score(reference, decoded.with_pedal("extend")[0])
                rows[name].append([found["note_f1"], found["note_offset_f1"], found["frame_f1"],
                                   extended["note_offset_f1"]])
        print(f"{folder} ({len(rows['ends chosen'])} files)")
        for name, scores in rows.items():
            f1, offset_f1, frame_f1, extend_f1 = 100 * np.mean(scores, axis=0)
            print(f"{name:<13} | {f1:7.2f} | {offset_f1:14.2f} | {frame_f1:8.2f} | {extend_f1:8.2f}")


if __name__ == "__main__":
    main()
