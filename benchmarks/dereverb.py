"""What suppressing a room's late reverberation before transcription would buy.

    python benchmarks/dereverb.py cache/tuning-all --files 15 --variant 0.8 -10 0.1 --variant 1.2 -10 0.15
    python benchmarks/dereverb.py cache/development --variant 0.8 -10 0.1

The development set loses 21 points of note+offset F1 to its room and noise (model card,
`make-development --dry`): a church's tail keeps notes sounding after their dampers fall.
This prototype removes late reverberation from the audio before the shipped weights
hear it, by spectral subtraction (Lebart, Boucher and Denbigh 2001): the late
reverberation's power at time t is estimated as the power ``delay`` seconds earlier,
decayed as a room of the given RT60 decays, and each STFT bin (512 samples, hop 128)
keeps ``max(1 - late / power, floor)`` of its power.  It is not in the product: it reads
a whole file at once (the product streams), and it runs before every head, the pedal's
included.  Each variant is ``RT60_S FLOOR_DB DELAY_S``; the first row is the audio as it
is.  Scores are means over the files, the fast pass, the weights' own thresholds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import istft, stft

from transcribe import transcribe
from transcribe.training.evaluate import pair_files, reference_notes, reference_pedal
from transcribe.training.metrics import pedal_scores, score
from transcribe.weights import load_model

WINDOW, HOP = 512, 128  # samples: a finer time grid than the model's 32 ms frames


def suppress_late_reverb(audio: np.ndarray, rate: int, rt60_s: float, floor_db: float,
                         delay_s: float) -> np.ndarray:
    """``audio`` with the late reverberation of a room of ``rt60_s`` subtracted."""
    _, _, spectrum = stft(audio, rate, nperseg=WINDOW, noverlap=WINDOW - HOP)
    power = np.abs(spectrum) ** 2
    lag = max(1, int(round(delay_s * rate / HOP)))
    late = np.zeros_like(power)
    late[:, lag:] = np.exp(-2 * 3 * np.log(10) / rt60_s * delay_s) * power[:, :-lag]
    gain = np.maximum(1 - late / (power + 1e-12), 10 ** (floor_db / 10))
    _, out = istft(spectrum * np.sqrt(gain), rate, nperseg=WINDOW, noverlap=WINDOW - HOP)
    return out[:len(audio)].astype(np.float32)


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
    for variant in [None] + [tuple(v) for v in args.variant]:
        notes, pedal = [], []
        for audio_path, midi in pairs:
            audio, rate = sf.read(audio_path, dtype="float32")
            audio = audio.mean(axis=1) if audio.ndim > 1 else audio
            if variant is not None:
                audio = suppress_late_reverb(audio, rate, *variant)
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
