"""The training run on a lent GPU machine: render the bundle, train, export (see bundle.py).

    python -m transcribe.training.remote BUNDLE OUT --config configs/gpu-wide.json \\
        --init weights/amt-unet.pt --train-minutes 6

With ``--first-hours H`` training starts once about H hours are rendered, and the rest
renders meanwhile at lower priority (``corpus.BackgroundRender``); the run takes it in as
it comes (``train(more_audio=...)``), so the GPU does not idle through the whole render.

Uses only torch, numpy and scipy of the machine and the packages in the bundle's
``site.zip`` (unpacked onto PYTHONPATH by the calling command).  Writes into OUT:
``amt-unet.pt`` and its card (the averaged weights, ready for ``amt-evaluate``),
``log.csv`` (the training log), both rewritten at every checkpoint (``checkpoint_minutes``)
so a call cut off by its time limit still returns weights, and ``render.txt`` (what was
rendered, how fast).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

# Half the piano renders duller the softer they are played (pianos.darkened): before it,
# development-set notes of velocity 36-40, which its piano plays through a 1 kHz
# low-pass, were found 29 % of the time, those of 41-44 (unfiltered) 72 %; after the
# session-10 run with it, 37 % and 79 %.  Its own share of that gain is unmeasured (no
# --dark-share 0 run beside it, weights/README.md): --dark-share 0 turns it off.
DARK_SHARE = 0.5


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--init", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=Path("/tmp/amt-remote"))
    parser.add_argument("--passes", type=int, default=2,
                        help="Render the MIDI this many times (other pianos, shifts, detuning).")
    parser.add_argument("--hours", type=float, default=1e9,
                        help="Render at most about this much per pass (a rehearsal's limit).")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="Seeds of the render passes start here (a second run draws anew).")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="Instead of the config's (lower, to go on from trained weights).")
    parser.add_argument("--dark-share", type=float, default=DARK_SHARE,
                        help="Share of piano renders duller the softer they are played.")
    parser.add_argument("--train-minutes", type=float, default=6.0)
    parser.add_argument("--first-hours", type=float, default=None,
                        help="Start training once about this much is rendered; the rest "
                             "renders meanwhile at low priority (default: render all first).")
    parser.add_argument("--stop-file", type=Path, default=None,
                        help="Stop training (checkpoint, export) once this file exists.")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)

    import torch

    from ..model import ModelConfig
    from .bundle import unpack_midi, unpack_pianos
    from .corpus import (BackgroundRender, plan_renders, read_manifest, render_planned,
                         split_plan, training_pianos_of)
    from .data import load_rooms, training_rooms
    from .train import TrainConfig, export_checkpoint, train

    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.work / "cache"
    midi = unpack_midi(args.bundle, args.work)
    files = [f for f in read_manifest(midi / "MANIFEST.tsv") if f.role == "train"]
    pianos = training_pianos_of(unpack_pianos(args.bundle / "pianos", args.work, args.jobs))
    planned = []
    for seed in range(args.first_seed, args.first_seed + args.passes):
        planned += plan_renders(files, args.hours, seed, max_transpose=3,
                                piano_names=sorted(pianos), piano_share=0.75,
                                max_detune_cents=30, dark_share=args.dark_share)
    first, rest = split_plan(planned, args.first_hours) if args.first_hours else (planned, [])
    paths = render_planned(first, cache, pianos, args.jobs, "wav")
    rendered = list(paths)

    def rendered_hours() -> float:
        return sum(p.stat().st_size for p in rendered) / 2 / 16000 / 3600

    report = (f"{len(paths)} renders, {rendered_hours():.1f} h of audio, in "
              f"{time.monotonic() - started:.0f} s on {args.jobs} processes"
              + (f"; {len(rest)} more rendering while training runs" if rest else "") + "\n")
    (args.out / "render.txt").write_text(report)
    print(report, flush=True)
    background = BackgroundRender(rest, cache, pianos, args.jobs, args.work / "rendered.txt",
                                  "wav") if rest else None

    def more_audio() -> tuple[list[Path], bool]:
        new, over = background.poll()
        rendered.extend(new)
        if over:
            with open(args.out / "render.txt", "a") as handle:
                handle.write(f"the background render over at {time.monotonic() - started:.0f} "
                             f"s: {len(rendered)} renders, {rendered_hours():.1f} h\n")
        return new, over

    sections = json.loads(args.config.read_text())
    model_config = ModelConfig.from_dict(sections["model"])
    overrides = {"max_minutes": args.train_minutes, "seed": args.first_seed + 5}
    if args.learning_rate is not None:
        overrides["learning_rate"] = args.learning_rate
    train_config = TrainConfig(**{**sections.get("train", {}), **overrides})
    torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision("high")  # TF32 matrix products on the GPU
    run_dir = args.work / "run"
    rooms = load_rooms(training_rooms(args.bundle / "rir"))

    def export(checkpoint: Path) -> None:
        """The weights and log so far into OUT: a call that times out still returns them."""
        export_checkpoint(checkpoint, args.out / "amt-unet.pt",
                          {"training_rendered_hours": round(rendered_hours(), 1)})
        shutil.copyfile(run_dir / "log.csv", args.out / "log.csv")

    try:
        train(model_config, train_config, paths, run_dir, args.device, init_weights=args.init,
              rooms=rooms, log=lambda line: print(line, flush=True), on_checkpoint=export,
              stop_file=args.stop_file, more_audio=more_audio if background else None)
    finally:
        if background is not None:
            background.stop()
    print(f"done in {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
