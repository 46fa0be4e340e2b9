"""Whole-command speed and peak memory of amt-transcribe, and of basic-pitch in the same run.

    python benchmarks/speed.py [--minutes 1 10 60] [--venv cache/bp-venv] [--no-peer] [--repeats 3]
                               [--weights A.pt B.pt] [--code REV] [--stereo]

With several weights, their runs take turns (A B B A ...) and each row gives the median
and the range.  ``--code REV`` also times the code of git revision REV (checked out into
a temporary worktree, with REV's own shipped weights unless ``--weights`` names some),
taking turns with the working tree's, to measure a change of code rather than of weights.

Piano audio of each length is rendered once (piano-midi.de pieces through fluidsynth,
cached in cache/bench/), then each command runs under /usr/bin/time -v: wall seconds,
x real time (audio seconds / wall seconds, start-up included) and peak resident MB.
Also the wall time of `amt-transcribe --help`, and `--profile`'s time per stage on the
middle length.
"""

from __future__ import annotations

import argparse
import os
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


def bench_audio(minutes: float, manifest: Path, stereo: bool = False) -> Path:
    """``minutes`` of rendered piano (pieces concatenated), cached as 16-bit FLAC at 44.1 kHz;
    ``stereo``: as two channels, as most recordings are (the right 1 dB quieter, 0.2 ms
    later)."""
    if stereo:
        path = CACHE / f"piano_{minutes:g}min_stereo.flac"
        if not path.exists():
            mono, rate = sf.read(bench_audio(minutes, manifest), dtype="float32")
            right = 0.89 * np.concatenate([np.zeros(9, np.float32), mono[:-9]])
            sf.write(path, np.stack([mono, right], axis=1), rate, subtype="PCM_16")
        return path
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


def timed(command: list[str], env: dict | None = None,
          cwd: str | None = None) -> tuple[float, float]:
    """(wall seconds, peak resident MB) of a command, via GNU time (``env`` and ``cwd``: its
    environment and folder)."""
    started = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True,
                            env=env, cwd=cwd)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{command[0]} failed:\n{result.stderr[-2000:]}")
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1))
    return wall, peak_kb / 1024


def worktree(revision: str, folder: Path) -> Path:
    """The code of ``revision`` checked out (detached) into ``folder``; exits with one line
    when git cannot."""
    result = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q",
                             str(folder), revision], capture_output=True, text=True)
    if result.returncode != 0:
        said = result.stderr.strip().splitlines() or [f"git exited with {result.returncode}"]
        sys.exit(f"--code {revision}: {said[-1]}")
    return folder


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
    parser.add_argument("--stereo", action="store_true",
                        help="time a two-channel file of each length (as most recordings are)")
    parser.add_argument("--code", metavar="REV",
                        help="also time git revision REV's code, taking turns with this tree's")
    args = parser.parse_args()
    if args.code:
        with tempfile.TemporaryDirectory() as tmp:
            old = worktree(args.code, Path(tmp) / "code")
            try:
                measure(args, {args.code: str(old), "this tree": str(ROOT)})
            finally:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                str(old)], capture_output=True)
    else:
        measure(args, {"": None})


def measure(args: argparse.Namespace, codes: dict[str, str | None]) -> None:
    """Print the table; ``codes`` maps a row label to the checkout whose code runs (None:
    as installed).  A checkout's command runs in it and with it on PYTHONPATH: ``python -m``
    puts the working folder first on ``sys.path``, ahead of PYTHONPATH."""
    ours_cmd = [sys.executable, "-m", "transcribe"]
    help_s = min(timed([*ours_cmd, "--help"])[0] for _ in range(3))
    print(f"amt-transcribe --help: {help_s:.3f} s (best of 3)")
    print(f"{'length':>8} {'tool':>24} {'wall s':>8} {'x real time':>12} {'peak MB':>8}")
    # One row per code and weights; several take turns, A B B A A B ..., so that a
    # machine that slows down or speeds up during the run favours none of them.
    candidates = [(code, weights) for code in codes for weights in args.weights or [None]]

    def name(candidate) -> str:
        code, weights = candidate
        return " ".join(filter(None, [code, weights.stem if weights else ""])) or "amt-transcribe"

    def command(candidate, *arguments: str) -> tuple[list[str], dict | None, str | None]:
        code, weights = candidate
        chosen = ["--weights", str(weights.resolve())] if weights else []
        env = None if codes[code] is None else {**os.environ, "PYTHONPATH": codes[code]}
        return [*ours_cmd, *arguments, *chosen], env, codes[code]

    rows = {}
    for minutes in args.minutes:
        audio = bench_audio(minutes, args.manifest, args.stereo)
        seconds = sf.info(str(audio)).duration
        with tempfile.TemporaryDirectory() as tmp:
            runs: dict[tuple, list[tuple[float, float]]] = {c: [] for c in candidates}
            for repeat in range(args.repeats):
                for candidate in candidates if repeat % 2 == 0 else candidates[::-1]:
                    runs[candidate].append(timed(*command(
                        candidate, str(audio), "-o", f"{tmp}/ours.mid", "-q", "--overwrite")))
            by_name = {}  # name -> (wall, peak), one row each
            for candidate in candidates:
                ordered = sorted(runs[candidate])
                wall, peak = by_name[name(candidate)] = ordered[len(ordered) // 2]
                spread = (f"   {len(ordered)} runs {ordered[0][0]:.1f}-{ordered[-1][0]:.1f} s"
                          if len(candidates) > 1 else "")
                print(f"{minutes:>6g} m {name(candidate):>24} {wall:8.1f} {seconds / wall:12.1f} "
                      f"{peak:8.0f}{spread}", flush=True)
            # The first weights of the last code (this tree's, with --code) for the ratios below.
            first_of_last = candidates[-len(args.weights or [None])]
            rows[(minutes, "amt-transcribe")] = by_name[name(first_of_last)]
            if not args.no_peer:
                wall_bp, peak_bp = timed([str(basic_pitch(args.venv)), tmp, str(audio)])
                rows[(minutes, "basic-pitch")] = (wall_bp, peak_bp)
                ratios = ", ".join(f"{label} {wall_bp / wall:.2f}x"
                                   for label, (wall, _) in by_name.items())
                print(f"{minutes:>6g} m {'basic-pitch 0.4.0':>24} {wall_bp:8.1f} "
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
    middle = bench_audio(lengths[len(lengths) // 2], args.manifest, args.stereo)
    print(f"\nwhere the time goes ({middle.name}, amt-transcribe --profile):", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for candidate in candidates:
            if len(candidates) > 1:
                print(name(candidate), flush=True)
            cmd, env, cwd = command(candidate, str(middle), "-o", f"{tmp}/ours.mid", "--profile",
                                    "--overwrite")
            subprocess.run(cmd, check=True, env=env, cwd=cwd)


if __name__ == "__main__":
    main()
