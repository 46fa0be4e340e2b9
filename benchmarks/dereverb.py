"""What suppressing a room's late reverberation before transcription buys (``--dereverb``).

    python benchmarks/dereverb.py cache/development                      # the default settings
    python benchmarks/dereverb.py cache/tuning-all --files 15 --variant 0.8 -10 0.1 --variant 1.2 -10 0.15

The development set loses 21 points of note+offset F1 to its room and noise (model card,
`make-development --dry`): a church's tail keeps notes sounding after their dampers fall.
`amt-transcribe --dereverb` subtracts late reverberation from the audio before the
network hears it (``transcribe/dereverb.py``, after Lebart, Boucher and Denbigh 2001).
This prints the shipped weights' scores on the audio as recorded and through the
suppressor with each variant ``RT60_S FLOOR_DB DELAY_S`` (default: the product's
settings), means over the files, the fast pass, the weights' own thresholds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf

from transcribe import transcribe
from transcribe.dereverb import DELAY_S, FLOOR_DB, RT60_S, dereverberate
from transcribe.training.evaluate import pair_files, reference_notes, reference_pedal
from transcribe.training.metrics import pedal_scores, score
from transcribe.weights import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="Audio with MIDI files of the same names.")
    parser.add_argument("--files", type=int, default=0, help="The first FILES only (0: all).")
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--variant", nargs=3, type=float, action="append", default=[],
                        metavar=("RT60_S", "FLOOR_DB", "DELAY_S"))
    args = parser.parse_args()
    pairs = pair_files(args.folder, args.folder)
    pairs = pairs[:args.files] if args.files else pairs
    loaded = load_model(args.weights, "cpu")
    print(f"{args.folder}: {len(pairs)} files; mean F1 (%), fast pass")
    print(f"{'variant':>26}  frame   note  n+off  n+vel  pedal frame/presses/releases")
    variants = [tuple(v) for v in args.variant] or [(RT60_S, FLOOR_DB, DELAY_S)]
    for variant in [None] + variants:
        notes, pedal = [], []
        for audio_path, midi in pairs:
            audio, rate = sf.read(audio_path, dtype="float32")
            audio = audio.mean(axis=1) if audio.ndim > 1 else audio
            if variant is not None:
                rt60_s, floor_db, delay_s = variant  # the product's suppressor, one block
                audio = np.concatenate(list(dereverberate(
                    [audio], rate, rt60_s=rt60_s, floor_db=floor_db, delay_s=delay_s)))
            result = transcribe(audio, loaded, rate, model_pass="fast")
            notes.append(score(reference_notes(midi), result.notes))
            spans = reference_pedal(midi)
            if len(spans) and result.pedal is not None:
                pedal.append(pedal_scores(spans, result.pedal, result.duration_s))

        def mean(rows, key):
            return 100 * np.mean([row[key] for row in rows]) if rows else float("nan")
        name = "as recorded" if variant is None else \
            f"RT60 {variant[0]:g} s, {variant[1]:g} dB, {variant[2]:g} s"
        print(f"{name:>26}  {mean(notes, 'frame_f1'):5.1f}  {mean(notes, 'note_f1'):5.1f}  "
              f"{mean(notes, 'note_offset_f1'):5.1f}  {mean(notes, 'note_velocity_f1'):5.1f}  "
              f"{mean(pedal, 'pedal_frame_f1'):.1f} / {mean(pedal, 'pedal_onset_f1'):.1f} / "
              f"{mean(pedal, 'pedal_offset_f1'):.1f}", flush=True)


if __name__ == "__main__":
    main()
