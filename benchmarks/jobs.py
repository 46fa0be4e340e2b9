"""Files per hour of a batch with --jobs 1 and --jobs N on this machine, and on a local Ray
cluster of the same cores, in the same run.

    python benchmarks/jobs.py [--files 8] [--minutes 1] [--jobs 2] [--ray]

The batch is ``--files`` copies of ``--minutes`` of rendered piano (cache/bench/, as
speed.py), transcribed as one folder by the whole command (start-up included), the
median of the repeats; then the ratios.  With ``--ray`` a head with ``--jobs`` CPUs is
started on this machine first (its start is timed apart: a cluster starts once, not per
batch) and the batch runs with ``--ray``, one single-threaded task per file.  Nothing
else should run on the machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from speed import DEFAULT_MANIFEST, bench_audio


@contextmanager
def local_cluster(cpus: int):
    """A Ray head on this machine with ``cpus`` CPUs: (address, seconds it took to start)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.perf_counter()
    head = subprocess.Popen(["ray", "start", "--head", "--block", f"--port={port}",
                             f"--num-cpus={cpus}", "--node-ip-address=127.0.0.1",
                             "--include-dashboard=false", "--disable-usage-stats",
                             f"--temp-dir={tempfile.mkdtemp(prefix='ray-', dir='/tmp')}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, RAY_AUTH_MODE="disabled"))
    for line in head.stdout:
        if "Ray runtime started" in line:
            break
    else:
        raise SystemExit("ray start failed")
    try:
        yield f"127.0.0.1:{port}", time.perf_counter() - started
    finally:
        head.send_signal(signal.SIGTERM)
        head.wait(timeout=60)


def timed_batch(folder: Path, out: Path, *extra: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "transcribe", str(folder), "-o", str(out), "-q",
                    *extra], check=True, env=dict(os.environ, RAY_AUTH_MODE="disabled"))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ray", action="store_true",
                        help="also a local Ray cluster of --jobs CPUs (needs the cluster extra)")
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    args = parser.parse_args()
    audio = bench_audio(args.minutes, args.manifest)
    cases = {"--jobs 1": ["--jobs", "1"], f"--jobs {args.jobs}": ["--jobs", str(args.jobs)]}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        for index in range(args.files):
            shutil.copyfile(audio, folder / f"{index:03d}{audio.suffix}")
        seconds = {}
        with local_cluster(args.jobs) if args.ray else _nothing() as (address, start_s):
            if address:
                cases[f"--ray ({args.jobs} CPUs)"] = [f"--ray={address}"]
            for repeat in range(args.repeats):  # interleaved, so drift touches every case
                for index, (label, extra) in enumerate(cases.items()):
                    out = Path(tmp) / f"out{index}_{repeat}"
                    seconds.setdefault(label, []).append(timed_batch(folder, out, *extra))
    hours_of_audio = args.files * args.minutes / 60
    print(f"{args.files} files x {args.minutes:g} min, median of {args.repeats}")
    print(f"{'case':>16s} {'wall s':>8s} {'files/hour':>11s} {'audio h/hour':>13s}")
    wall = {label: statistics.median(runs) for label, runs in seconds.items()}
    for label, median in wall.items():
        print(f"{label:>16s} {median:8.1f} {args.files * 3600 / median:11.0f} "
              f"{hours_of_audio * 3600 / median:13.1f}")
    local = f"--jobs {args.jobs}"
    print(f"{local} over --jobs 1: {wall['--jobs 1'] / wall[local]:.2f}x the files per hour")
    if args.ray:
        ray_label = f"--ray ({args.jobs} CPUs)"
        print(f"--ray over {local}: {wall[local] / wall[ray_label]:.2f}x the files per hour, "
              f"{(wall[ray_label] - wall[local]) / args.files:+.2f} s per file; "
              f"the cluster took {start_s:.1f} s to start (once)")


@contextmanager
def _nothing():
    yield None, 0.0


if __name__ == "__main__":
    main()
