"""amt-transcribe against Spotify's basic-pitch on the same files, in the same run.

    python benchmarks/compare_basic_pitch.py [FOLDER] [--venv cache/bp-venv]

FOLDER defaults to cache/validation, built first (as `amt-train make-validation` does)
when it does not exist.  basic-pitch 0.4.0 runs from its own virtualenv (ONNX backend,
no TensorFlow), built on first use by `peers.basic_pitch`.

Both transcribers are scored by the same code (transcribe.training.evaluate: mir_eval
frame, note, note-with-offset and note-with-velocity F1, averaged over files, and
note recall and precision per octave of the keyboard, by velocity and polyphony, and
where the errors lie), and both are timed as whole
commands (start-up included) over the whole folder.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from peers import DEFAULT_VENV, basic_pitch
from transcribe.progress import plural
from transcribe.training.cli import error_table
from transcribe.training.evaluate import evaluate_predictions, pair_files, write_csv
from transcribe.training.metrics import (METRICS, POLYPHONY_BANDS, REGISTERS, VELOCITY_BANDS,
                                         mean_scores, register_recall_precision)

ROOT = Path(__file__).resolve().parent.parent


def run_timed(command: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{command[0]} failed:\n{result.stderr[-2000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, nargs="?", default=ROOT / "cache" / "validation",
                        help="audio files with reference MIDI of the same name "
                             "(default: the validation set, built if missing)")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--manifest", type=Path,
                        default=ROOT.parent / "shared" / "data" / "midi" / "MANIFEST.tsv",
                        help="corpora manifest, to build the default validation set")
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--csv", type=Path, default=None, help="per-file scores of both")
    args = parser.parse_args()
    if not args.folder.exists():
        from transcribe.training.corpus import read_manifest
        from transcribe.training.validation import make_validation_set
        files = [f for f in read_manifest(args.manifest) if f.corpus == "piano-midi.de"]
        make_validation_set(files, args.folder, 30, 30.0, 0)
    bp = basic_pitch(args.venv)
    pairs = pair_files(args.folder, args.folder)
    audio = [a for a, _ in pairs]
    audio_s = sum(__import__("soundfile").info(str(a)).duration for a in audio)
    console = Console()
    console.print(f"{plural(len(pairs), 'file')}, {audio_s / 60:.1f} min of audio in {args.folder}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        ours = Path(tmp) / "ours"
        # a folder even for one file (without the "/", one input's -o names its MIDI file)
        command = [sys.executable, "-m", "transcribe", *map(str, audio), "-o", f"{ours}/", "-q"]
        if args.weights:
            command += ["--weights", str(args.weights)]
        ours_s = run_timed(command)
        missing = {"amt-transcribe": [], "basic-pitch 0.4.0": []}
        results["amt-transcribe"] = (evaluate_predictions(pairs, ours, args.folder,
                                                          missing["amt-transcribe"]), ours_s)

        theirs = Path(tmp) / "basic_pitch"
        theirs.mkdir()
        bp_s = run_timed([str(bp), str(theirs), *map(str, audio)])  # NAME_basic_pitch.mid
        results["basic-pitch 0.4.0"] = (evaluate_predictions(pairs, theirs, args.folder,
                                                             missing["basic-pitch 0.4.0"]), bp_s)
    for name, lost in missing.items():  # scored as no notes: the means count them so
        if lost:
            console.print(f"{name} wrote nothing for {len(lost)} of the {len(pairs)} files "
                          f"(scored as no notes; the first: {lost[0].name})")

    table = Table(title=f"{plural(len(pairs), 'file')}, {audio_s / 60:.1f} min; mean F1 (%) and speed")
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
    registers = Table(title="note level by register, summed over files: recall / precision (%)")
    registers.add_column("register")
    registers.add_column("reference notes", justify="right")
    for name in results:
        registers.add_column(name, justify="right")
    counts = {name: sum(row["registers"] for row in rows) for name, (rows, _) in results.items()}
    rates = {name: register_recall_precision(counts[name]) for name in results}
    for index, (register, _, _) in enumerate(REGISTERS):
        cells = [f"{100 * recall[index]:.1f} / {100 * precision[index]:.1f}"
                 for recall, precision in rates.values()]
        registers.add_row(register, str(counts["amt-transcribe"][index][0]), *cells)
    console.print(registers)
    for by, key, bands in (("velocity", "velocities", VELOCITY_BANDS),
                           ("notes sounding", "polyphony", POLYPHONY_BANDS)):
        table = Table(title=f"note recall (%) by {by} at the onset, summed over files")
        table.add_column(by)
        table.add_column("reference notes", justify="right")
        for name in results:
            table.add_column(name, justify="right")
        sums = {name: sum(row[key] for row in rows) for name, (rows, _) in results.items()}
        for index, (band, _, _) in enumerate(bands):
            n_ref = sums["amt-transcribe"][index][0]
            table.add_row(band, str(n_ref), *(f"{100 * s[index][1] / max(s[index][0], 1):.1f}"
                                              for s in sums.values()))
        console.print(table)
    console.print(error_table([sum(row["errors"] for row in rows) for rows, _ in results.values()],
                              "where the errors lie, summed over files",
                              tuple(results)))
    if args.csv:
        rows = [{"transcriber": name, **row} for name, (rs, _) in results.items() for row in rs]
        write_csv(rows, args.csv)


if __name__ == "__main__":
    main()
