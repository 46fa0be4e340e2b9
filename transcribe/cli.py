"""``amt-transcribe``: a thin click/rich shell over ``transcriber.transcribe``.

Exit codes: 0 every input transcribed; 1 some input failed (or nothing written);
2 bad usage; 130 interrupted.  Progress and the summary go to stderr.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click

from . import __version__

EXIT_FAILED, EXIT_INTERRUPTED = 1, 130


@dataclass
class Job:
    source: Path
    output: Path
    status: str = "pending"
    duration_s: float | None = None
    notes: int | None = None
    seconds: float | None = None
    message: str = ""


def _audio_suffixes() -> tuple[str, ...]:
    from .audio import AUDIO_EXTENSIONS, UNSUPPORTED_EXTENSIONS
    return AUDIO_EXTENSIONS + UNSUPPORTED_EXTENSIONS


def plan_jobs(inputs: tuple[Path, ...], output: Path | None, fmt: str) -> list[Job]:
    """Map each input file (folders searched recursively) to its output path.

    A folder's structure is mirrored under ``output``; a single file's ``output``
    is the file to write unless it is an existing folder or ends with a separator.
    """
    from .errors import TranscribeError
    suffix = "." + fmt
    jobs = []
    many = len(inputs) > 1 or any(p.is_dir() for p in inputs)
    out_is_dir = output is not None and (many or output.is_dir() or str(output).endswith(("/", "\\")))
    for source in inputs:
        if not source.exists():
            raise TranscribeError(f"{source}: no such file or folder")
        if source.is_dir():
            found = sorted(p for p in source.rglob("*") if p.is_file()
                           and p.suffix.lower() in _audio_suffixes() and not p.name.startswith("."))
            if not found:
                raise TranscribeError(f"{source}: no audio files found (looked for "
                                      "WAV, FLAC, OGG, MP3 in all sub-folders)")
            base = output if output is not None else source
            jobs += [Job(p, (base / p.relative_to(source)).with_suffix(suffix)) for p in found]
        elif out_is_dir:
            jobs.append(Job(source, (output / source.name).with_suffix(suffix)))
        elif output is not None:
            jobs.append(Job(source, output))
        else:
            jobs.append(Job(source, source.with_suffix(suffix)))
    return jobs


def _fail(message: str, code: int = EXIT_FAILED) -> None:
    click.echo(f"amt-transcribe: error: {message}", err=True)
    sys.exit(code)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Output file (one input) or folder (several inputs or a folder). "
                   "Default: beside each input, with the format's suffix.")
@click.option("-f", "--format", "fmt", type=click.Choice(["mid", "csv", "json"]), default=None,
              help="MIDI file, or note events (onset s, offset s, pitch, velocity) as CSV or "
                   "JSON.  [default: from the -o suffix, else mid]")
@click.option("--weights", type=click.Path(path_type=Path),
              help="Another checkpoint (NAME.pt with NAME.json beside it). Default: the shipped weights.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto",
              show_default=True, help="auto picks a CUDA GPU, then Apple MPS, then the CPU.")
@click.option("--onset-threshold", type=click.FloatRange(0, 1), default=None,
              help="Onset probability at which a note may start.  [default: tuned for the weights]")
@click.option("--frame-threshold", type=click.FloatRange(0, 1), default=None,
              help="Frame probability above which a note keeps sounding.  [default: tuned for the weights]")
@click.option("--offset-threshold", type=click.FloatRange(0, 1), default=None,
              help="Offset probability at which a note ends.  [default: tuned for the weights]")
@click.option("--min-note-ms", type=click.FloatRange(0), default=None,
              help="Drop notes shorter than this.  [default: tuned for the weights]")
@click.option("--frame-onset-threshold", type=click.FloatRange(0, 1), default=None,
              help="Also start a note where the frame probability rises from quiet above "
                   "this (an onset the onset head missed); 1 turns it off.  "
                   "[default: tuned for the weights]")
@click.option("--tempo", "tempo_bpm", type=click.FloatRange(1, 1000, min_open=False), default=120.0,
              show_default=True, help="Tempo written in the MIDI header (note times stay in seconds).")
@click.option("--plot", is_flag=True, help="Also write PNGs beside the output: input spectrogram, "
                                           "posteriorgram, reconstructed spectrogram, piano roll.")
@click.option("--save-posteriorgram", is_flag=True,
              help="Also write the posteriorgrams as .npz, to re-decode without the network.")
@click.option("--overwrite", is_flag=True, help="Replace outputs that already exist.")
@click.option("--skip-existing", is_flag=True,
              help="Skip inputs whose output exists (resumes an interrupted batch).")
@click.option("-q", "--quiet", is_flag=True, help="No progress or summary; errors only.")
@click.option("--profile", is_flag=True,
              help="Print the seconds spent per stage (start-up, audio decoding, spectrogram, "
                   "network, note decoding, output) at the end.")
@click.version_option(__version__, "--version", prog_name="amt-transcribe")
def main(inputs, output, fmt, weights, device, onset_threshold, frame_threshold,
         offset_threshold, min_note_ms, frame_onset_threshold, tempo_bpm, plot,
         save_posteriorgram, overwrite, skip_existing, quiet, profile):
    """Transcribe piano recordings to MIDI.

    INPUTS are audio files (WAV, FLAC, OGG, MP3; any sample rate and channel count)
    or folders, searched recursively.

    \b
    Examples:
      amt-transcribe song.wav                 writes song.mid beside it
      amt-transcribe song.flac -o out/song.mid --plot
      amt-transcribe recordings/ -o midi/     mirrors the folder, one MIDI per file
      amt-transcribe recordings/ -o midi/ --skip-existing    resume a batch

    Exit status: 0 when every input was transcribed, 1 when any failed
    (the others are still written), 2 on bad usage, 130 when interrupted.
    """
    from .errors import TranscribeError
    from .timing import StageTimes

    times = StageTimes()
    started = time.perf_counter()
    thresholds = {"onset_threshold": onset_threshold, "frame_threshold": frame_threshold,
                  "offset_threshold": offset_threshold, "min_note_ms": min_note_ms,
                  "frame_onset_threshold": frame_onset_threshold}
    if overwrite and skip_existing:
        _fail("--overwrite and --skip-existing contradict each other", 2)
    if fmt is None:
        from .midi import format_for
        fmt = format_for(output)
    try:
        jobs = plan_jobs(tuple(inputs), output, fmt)
    except TranscribeError as error:
        _fail(str(error))
    pending = []
    for job in jobs:
        if job.output.exists() and not overwrite:
            if skip_existing:
                job.status = "skipped"
                job.message = "output exists"
            else:
                job.status = "failed"
                job.message = f"{job.output} exists; use --overwrite to replace it or --skip-existing"
            continue
        pending.append(job)
    if len(jobs) == 1:
        if jobs[0].status == "failed":
            _fail(jobs[0].message)
        if pending:  # fail fast on an unreadable file, before loading the model
            from .audio import probe
            try:
                probe(jobs[0].source)
            except TranscribeError as error:
                _fail(str(error))

    from .progress import Reporter
    reporter = Reporter(quiet=quiet, total_files=len(pending))
    try:
        if pending:
            from .inference import pick_device
            from .weights import load_model
            try:
                chosen = pick_device(device)
                loaded = load_model(weights, device=chosen)
            except TranscribeError as error:
                _fail(str(error))
            import torch
            if chosen.type == "cpu" and torch.cuda.is_available():
                reporter.note("a CUDA GPU is present but unused (--device cpu)")
            if chosen.type == "cuda":
                times.synchronize = torch.cuda.synchronize
            times.add("start-up (imports, weights)", time.perf_counter() - started)
            with reporter:
                for job in pending:
                    _run_job(job, loaded, fmt, thresholds, tempo_bpm, plot,
                             save_posteriorgram, reporter, times)
    except KeyboardInterrupt:
        reporter.stop()
        click.echo("amt-transcribe: interrupted; finished outputs are complete, "
                   "no partial file was left (resume with --skip-existing)", err=True)
        sys.exit(EXIT_INTERRUPTED)
    failed = [job for job in jobs if job.status == "failed"]
    if len(jobs) == 1 and failed:
        _fail(failed[0].message)
    reporter.summary(jobs)
    if profile:
        reporter.profile(times, sum(job.duration_s or 0.0 for job in jobs))
    if failed:
        for job in failed:
            click.echo(f"amt-transcribe: failed: {job.source}: {job.message}", err=True)
        sys.exit(EXIT_FAILED)


def _run_job(job: Job, loaded, fmt, thresholds: dict, tempo_bpm, plot, save_posteriorgram,
             reporter, times) -> None:
    from .errors import TranscribeError
    from .transcriber import DecodingOptions, transcribe

    options = DecodingOptions(**thresholds)
    started = time.perf_counter()
    reporter.start_file(job.source)
    try:
        result = transcribe(job.source, loaded, options=options, keep_spectrograms=plot,
                            progress=reporter.advance_file, times=times,
                            keep_posteriorgrams=plot or save_posteriorgram)
        with times.measure("output files"):
            result.save(job.output, fmt, tempo_bpm)
            if save_posteriorgram:
                result.save_posteriorgrams(job.output.with_suffix(".npz"))
        if plot:
            from .plot import plot_all
            with times.measure("plots"):
                plot_all(result, job.output.with_suffix(""), loaded.config.spectrogram)
    except TranscribeError as error:
        job.status, job.message = "failed", str(error)
    except OSError as error:
        job.status, job.message = "failed", f"{type(error).__name__}: {error}"
    except Exception as error:  # a bug: keep the batch going, but say so plainly
        job.status = "failed"
        job.message = f"unexpected {type(error).__name__}: {error} (please report this bug)"
    else:
        job.status = "done"
        job.duration_s, job.notes = result.duration_s, len(result.notes)
        job.message = "; ".join(result.warnings)
        for warning in result.warnings:
            reporter.note(f"{job.source}: {warning}")
    job.seconds = time.perf_counter() - started
    reporter.finish_file(job)


if __name__ == "__main__":
    main()
