"""Files per hour of a batch with --jobs 1 and --jobs N on this machine, in the same run.

    python benchmarks/jobs.py [--files 8] [--minutes 1] [--jobs 2]

The batch is ``--files`` copies of ``--minutes`` of rendered piano (cache/bench/, as
speed.py), transcribed as one folder by the whole command (start-up included), the
median of the repeats; then the ratio.  Nothing else should run on the machine.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from speed import DEFAULT_MANIFEST, bench_audio



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    args = parser.parse_args()
    audio = bench_audio(args.minutes, args.manifest)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        for index in range(args.files):
            shutil.copyfile(audio, folder / f"{index:03d}{audio.suffix}")
        seconds = {}
        for jobs in (1, args.jobs):
            runs = []
            for repeat in range(args.repeats):
                out = Path(tmp) / f"out{jobs}_{repeat}"
                started = time.perf_counter()
                subprocess.run([sys.executable, "-m", "transcribe", str(folder), "-o", str(out),
                                "-q", "--jobs", str(jobs)], check=True)
                runs.append(time.perf_counter() - started)
            seconds[jobs] = statistics.median(runs)
    hours_of_audio = args.files * args.minutes / 60
    print(f"{args.files} files x {args.minutes:g} min, median of {args.repeats}")
    print(f"{'jobs':>4s} {'wall s':>8s} {'files/hour':>11s} {'audio h/hour':>13s}")
    for jobs, wall in seconds.items():
        print(f"{jobs:4d} {wall:8.1f} {args.files * 3600 / wall:11.0f} {hours_of_audio * 3600 / wall:13.1f}")
    print(f"--jobs {args.jobs} over --jobs 1: {seconds[1] / seconds[args.jobs]:.2f}x the files per hour")


if __name__ == "__main__":
    main()
