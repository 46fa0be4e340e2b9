"""Sharing the machine: one run alone, two runs at once, one run beside a busy core.

    python benchmarks/concurrency.py [--minutes 2] [--repeats 3]

Each figure is the wall time of one `amt-transcribe` command (start-up included) on
the same rendered piano audio (cache/bench/, as speed.py), the median of the repeats,
and its ratio to the run alone on an idle machine.  The reliability issue's bar: each
ratio within 2.5x.  The "before" rows re-run the two shared cases with the settings of
the earlier code (OpenMP threads spinning, as many threads as the machine has cores):
OMP_WAIT_POLICY=ACTIVE and --threads set to every core.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from speed import DEFAULT_MANIFEST, bench_audio



def command(audio: Path, out: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "transcribe", str(audio), "-o", str(out), "--overwrite", "-q",
            *extra]


def timed(commands: list[list[str]], env: dict) -> list[float]:
    """Start the commands together; the wall seconds of each."""
    started = time.perf_counter()
    processes = [subprocess.Popen(c, env=env) for c in commands]
    seconds = []
    for process in processes:
        process.wait()
        if process.returncode:
            raise SystemExit(f"a run failed with exit code {process.returncode}")
        seconds.append(time.perf_counter() - started)
    return seconds


def busy_core():
    """A process keeping one core busy (a plain Python loop)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    args = parser.parse_args()
    audio = bench_audio(args.minutes, args.manifest)
    cores = os.cpu_count()
    with tempfile.TemporaryDirectory() as tmp:
        outs = [Path(tmp) / "a.mid", Path(tmp) / "b.mid"]
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        before_env = {**env, "OMP_WAIT_POLICY": "ACTIVE"}
        before = ["--threads", str(cores)]
        cases = {
            "alone, idle machine": lambda: timed([command(audio, outs[0], [])], env),
            "two runs at once (each)": lambda: timed([command(audio, o, []) for o in outs], env),
            "beside a busy core": lambda: with_busy(lambda: timed([command(audio, outs[0], [])], env)),
            "before: two runs at once (each)": lambda: timed(
                [command(audio, o, before) for o in outs], before_env),
            "before: beside a busy core": lambda: with_busy(
                lambda: timed([command(audio, outs[0], before)], before_env)),
        }
        results = {}
        for name, run in cases.items():
            runs = [max(run()) for _ in range(args.repeats)]
            results[name] = statistics.median(runs)
    alone = results["alone, idle machine"]
    print(f"{args.minutes:g} min of piano audio, {cores} cores, median of {args.repeats}")
    print(f"{'case':34s} {'wall s':>8s} {'x alone':>8s}")
    for name, seconds in results.items():
        print(f"{name:34s} {seconds:8.2f} {seconds / alone:8.2f}")


def with_busy(run):
    spinner = busy_core()
    try:
        time.sleep(0.5)
        return run()
    finally:
        spinner.kill()
        spinner.wait()


if __name__ == "__main__":
    main()
