"""amt-transcribe against Spotify's basic-pitch on the same files, in the same run.

    python benchmarks/compare_basic_pitch.py cache/validation [--venv /work/bp-venv]

basic-pitch 0.4.0 runs from its own virtualenv (ONNX backend, no TensorFlow):

    python -m venv /work/bp-venv
    /work/bp-venv/bin/pip install --no-deps basic-pitch==0.4.0
    /work/bp-venv/bin/pip install onnxruntime librosa "resampy<0.4.3" mir_eval scikit-learn \
        pretty_midi "numpy<2.3" scipy typing_extensions soundfile psutil

Both transcribers are scored by the same code (transcribe.training.evaluate: mir_eval
frame, note, note-with-offset and note-with-velocity F1, averaged over files), and
both are timed as whole commands (start-up included) over the whole folder.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from transcribe.training.evaluate import (METRICS, evaluate_predictions, mean_scores,
                                          pair_files, write_csv)


def run_timed(command: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{command[0]} failed:\n{result.stderr[-2000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="audio files with reference MIDI of the same name")
    parser.add_argument("--venv", type=Path, default=Path("/work/bp-venv"))
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--csv", type=Path, default=None, help="per-file scores of both")
    args = parser.parse_args()
    pairs = pair_files(args.folder, args.folder)
    audio = [a for a, _ in pairs]
    audio_s = sum(__import__("soundfile").info(str(a)).duration for a in audio)
    console = Console()
    console.print(f"{len(pairs)} files, {audio_s / 60:.1f} min of audio in {args.folder}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        ours = Path(tmp) / "ours"
        command = [sys.executable, "-m", "transcribe", *map(str, audio), "-o", str(ours), "-q"]
        if args.weights:
            command += ["--weights", str(args.weights)]
        ours_s = run_timed(command)
        results["amt-transcribe"] = (evaluate_predictions(pairs, ours, args.folder), ours_s)

        theirs = Path(tmp) / "basic_pitch"
        theirs.mkdir()
        bp = args.venv / "bin" / "basic-pitch"
        bp_s = run_timed([str(bp), str(theirs), *map(str, audio)])
        for path in theirs.glob("*_basic_pitch.mid"):
            shutil.move(path, theirs / path.name.replace("_basic_pitch.mid", ".mid"))
        results["basic-pitch 0.4.0"] = (evaluate_predictions(pairs, theirs, args.folder), bp_s)

    table = Table(title=f"{len(pairs)} files, {audio_s / 60:.1f} min; mean F1 (%) and speed")
    table.add_column("transcriber")
    for level in METRICS:
        table.add_column(level.replace("_", "+"), justify="right")
    table.add_column("x real time", justify="right")
    means = {}
    for name, (rows, seconds) in results.items():
        means[name] = mean_scores(rows)
        table.add_row(name, *(f"{100 * means[name][f'{level}_f1']:.1f}" for level in METRICS),
                      f"{audio_s / seconds:.1f}")
    console.print(table)
    a, b = means["amt-transcribe"], means["basic-pitch 0.4.0"]
    console.print("amt-transcribe minus basic-pitch (F1 points): " + ", ".join(
        f"{level} {100 * (a[f'{level}_f1'] - b[f'{level}_f1']):+.1f}" for level in METRICS))
    console.print(f"speed ratio (ours / theirs): {results['basic-pitch 0.4.0'][1] / results['amt-transcribe'][1]:.2f}")
    if args.csv:
        rows = [{"transcriber": name, **row} for name, (rs, _) in results.items() for row in rs]
        write_csv(rows, args.csv)


if __name__ == "__main__":
    main()
