"""Whole-command speed and peak memory of amt-transcribe, and of basic-pitch in the same run.

    python benchmarks/speed.py [--minutes 1 10 60] [--venv cache/bp-venv] [--no-peer] [--repeats 3]
                               [--weights A.pt B.pt]

With several weights, their runs take turns (A B B A ...) and each row gives the median
and the range.

Piano audio of each length is rendered once (piano-midi.de pieces through fluidsynth,
cached in cache/bench/), then each command runs under /usr/bin/time -v: wall seconds,
x real time (audio seconds / wall seconds, start-up included) and peak resident MB.
Also the wall time of `amt-transcribe --help`, and `--profile`'s time per stage on the
middle length.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from peers import DEFAULT_VENV, basic_pitch

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "cache" / "bench"
DEFAULT_MANIFEST = ROOT.parent / "shared" / "data" / "midi" / "MANIFEST.tsv"


def bench_audio(minutes: float, manifest: Path) -> Path:
    """``minutes`` of rendered piano (pieces concatenated), cached as 16-bit FLAC at 44.1 kHz."""
    path = CACHE / f"piano_{minutes:g}min.flac"
    if path.exists():
        return path
    import pretty_midi

    from transcribe.training import corpus, synth
    files = [f for f in corpus.read_manifest(manifest) if f.corpus == "piano-midi.de"]
    soundfont = synth.find_soundfont("FluidR3_GM.sf2")
    parts, total = [], 0
    for item in sorted(files, key=lambda f: f.relative):
        audio = synth.render(pretty_midi.PrettyMIDI(str(item.path)), soundfont, sample_rate=44100)
        parts.append(audio)
        total += len(audio)
        if total >= minutes * 60 * 44100:
            break
    audio = np.concatenate(parts)[: int(minutes * 60 * 44100)]
    CACHE.mkdir(parents=True, exist_ok=True)
    sf.write(path, 0.8 * audio / np.abs(audio).max(), 44100, subtype="PCM_16")
    return path


def timed(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak resident MB) of a command, via GNU time."""
    started = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{command[0]} failed:\n{result.stderr[-2000:]}")
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1))
    return wall, peak_kb / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60])
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV,
                        help="basic-pitch's virtualenv (built on first use)")
    parser.add_argument("--no-peer", action="store_true", help="skip basic-pitch")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of amt-transcribe per length; the median is printed")
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--weights", type=Path, nargs="+", default=[],
                        help="time these weights (each a row of its own) instead of the shipped")
    args = parser.parse_args()
    ours_cmd = [sys.executable, "-m", "transcribe"]
    help_s = min(timed([*ours_cmd, "--help"])[0] for _ in range(3))
    print(f"amt-transcribe --help: {help_s:.3f} s (best of 3)")
    print(f"{'length':>8} {'tool':>16} {'wall s':>8} {'x real time':>12} {'peak MB':>8}")
    rows = {}
    for minutes in args.minutes:
        audio = bench_audio(minutes, args.manifest)
        seconds = sf.info(str(audio)).duration
        with tempfile.TemporaryDirectory() as tmp:
            # Several weights take turns, A B B A A B ..., so that a machine that slows
            # down or speeds up during the run favours none of them.
            candidates = args.weights or [None]
            runs: dict[Path | None, list[tuple[float, float]]] = {w: [] for w in candidates}
            for repeat in range(args.repeats):
                for weights in candidates if repeat % 2 == 0 else candidates[::-1]:
                    chosen = ["--weights", str(weights)] if weights else []
                    runs[weights].append(timed([*ours_cmd, str(audio), "-o", f"{tmp}/ours.mid",
                                                "-q", "--overwrite", *chosen]))
            by_weights = {}  # name -> (wall, peak), one row each
            for weights in candidates:
                name = weights.stem if weights else "amt-transcribe"
                ordered = sorted(runs[weights])
                wall, peak = by_weights[name] = ordered[len(ordered) // 2]
                spread = (f"   {len(ordered)} runs {ordered[0][0]:.1f}-{ordered[-1][0]:.1f} s"
                          if len(candidates) > 1 else "")
                print(f"{minutes:>6g} m {name:>16} {wall:8.1f} {seconds / wall:12.1f} {peak:8.0f}"
                      f"{spread}", flush=True)
            rows[(minutes, "amt-transcribe")] = next(iter(by_weights.values()))  # the first weights
            if not args.no_peer:
                wall_bp, peak_bp = timed([str(basic_pitch(args.venv)), tmp, str(audio)])
                rows[(minutes, "basic-pitch")] = (wall_bp, peak_bp)
                ratios = ", ".join(f"{name} {wall_bp / wall:.2f}x"
                                   for name, (wall, _) in by_weights.items())
                print(f"{minutes:>6g} m {'basic-pitch 0.4.0':>16} {wall_bp:8.1f} "
                      f"{seconds / wall_bp:12.1f} {peak_bp:8.0f}   ours/theirs speed: {ratios}",
                      flush=True)
    lengths = sorted(args.minutes)
    if len(lengths) > 1:
        short, long = lengths[0], lengths[-1]
        ours = "amt-transcribe"
        print(f"peak memory {long:g} min / {short:g} min: "
              f"{rows[(long, ours)][1] / rows[(short, ours)][1]:.2f}")
    if 10 in lengths and 60 in lengths:
        print(f"time 60 min / 10 min: {rows[(60, 'amt-transcribe')][0] / rows[(10, 'amt-transcribe')][0]:.2f}")
    middle = bench_audio(lengths[len(lengths) // 2], args.manifest)
    print(f"\nwhere the time goes ({middle.name}, amt-transcribe --profile):", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for weights in args.weights or [None]:
            chosen = ["--weights", str(weights)] if weights else []
            subprocess.run([*ours_cmd, str(middle), "-o", f"{tmp}/ours.mid", "--profile",
                            "--overwrite", *chosen], check=True)


if __name__ == "__main__":
    main()
