"""How exactly notes are timed: on the frame grid, and between frames (session 38).

    python benchmarks/note_timing.py cache/tuning-all cache/development cache/validation

Each folder's audio (with MIDI files of the same names) is transcribed once by the
shipped weights (or ``--weights``), the fast pass, the card's decoding; the same
posteriorgrams are decoded twice: with each onset on the first frame of its note and each
end on the first frame after it (as before session 38), and between frames, each onset
where the onset posteriorgram peaks and each end where the frame posteriorgram falls
through its threshold (``decode._onset_shifts``, ``_end_shifts``: the default); both with
every end as heard, without session 40's end chooser (``note_ends.py``).  Printed
per folder, the mean over its files: note F1 with onsets matched within 50 ms
(mir_eval's measure, ``amt-evaluate``'s), 25 ms and 10 ms; note+offset F1 (mir_eval's:
onsets within 50 ms, ends within 50 ms or a fifth of the note); and over the notes found
within 50 ms, the onset error to the reference's (written minus played: median, the
spread between its quartiles, the mean of its size).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import mir_eval
import numpy as np

from transcribe import transcribe
from transcribe.decode import PITCH, TIMES, decode_notes
from transcribe.training.evaluate import pair_files, reference_notes
from transcribe.training.metrics import hertz, matched_onset_errors
from transcribe.weights import load_model

TOLERANCES_S = (0.05, 0.025, 0.01)


def measure(reference: np.ndarray, notes: np.ndarray) -> tuple[list[float], np.ndarray]:
    """(note F1 at each of TOLERANCES_S and note+offset F1, the onset errors (s) of the
    notes found within 50 ms)."""
    levels = [(tolerance, None) for tolerance in TOLERANCES_S] + [(0.05, 0.2)]
    f1 = [mir_eval.transcription.precision_recall_f1_overlap(
        reference[:, TIMES], hertz(reference[:, PITCH]), notes[:, TIMES], hertz(notes[:, PITCH]),
        onset_tolerance=tolerance, offset_ratio=ratio)[2] if len(notes) and len(reference)
        else 0.0 for tolerance, ratio in levels]
    return f1, matched_onset_errors(reference, notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+",
                        help="Audio with MIDI files of the same names.")
    parser.add_argument("--weights", type=Path, default=None)
    args = parser.parse_args()
    loaded = load_model(args.weights, "cpu")
    print("times           | note F1: 50 ms | 25 ms | 10 ms | note+offset F1 | onset error "
          "(ms): median | quartiles apart | mean size | notes found")
    for folder in args.folders:
        rows: dict[str, tuple[list, list]] = {"frame grid": ([], []),
                                               "between frames": ([], [])}
        for audio, midi in pair_files(folder, folder):
            result = transcribe(audio, loaded, model_pass="fast", keep_posteriorgrams=True)
            kept = result.kept_posteriorgrams()
            # Both with every end as heard: what moves is the timing alone, not the
            # end chooser's choice (benchmarks/note_ends.py measures that).
            grid, between = (decode_notes(kept.frame, kept.onset, kept.offset, kept.velocity,
                                          result.options, kept.frame_rate_hz, level=kept.level,
                                          key=kept.key, between_frames=placed)[0]
                             for placed in (False, True))
            reference = reference_notes(midi)
            for name, notes in (("frame grid", grid), ("between frames", between)):
                f1, errors = measure(reference, notes)
                rows[name][0].append(f1)
                rows[name][1].append(errors)
        print(f"{folder} ({len(rows['frame grid'][0])} files)")
        for name, (f1s, errors) in rows.items():
            f1 = 100 * np.mean(f1s, axis=0)
            error = 1000 * np.concatenate(errors)
            low, high = np.percentile(error, [25, 75])
            print(f"{name:15s} | {f1[0]:14.2f} | {f1[1]:5.2f} | {f1[2]:5.2f} | {f1[3]:14.2f} | "
                  f"{np.median(error):+24.1f} | {high - low:15.1f} | "
                  f"{np.mean(np.abs(error)):9.1f} | {len(error):11d}")


if __name__ == "__main__":
    main()
