"""``amt-transcribe``: a thin click/rich shell over ``batch`` (which input to which output;
the jobs run) and ``transcriber.transcribe_to_file`` (one job).

Exit codes: 0 every input transcribed; 1 some input failed (or nothing written);
2 bad usage; 130 interrupted (Ctrl-C), 143 stopped by SIGTERM, 129 by SIGHUP.
Progress and the summary go to stderr.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import click

from . import batch, claims, constants as C
from .version import __version__
from .errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, TranscribeError, UsageError
from .files import STOP_SIGNALS, is_stdio, readable

REPORT_GAP_S = 1.0  # --report is rewritten as files finish, at most once a second
# -h as --help, and lines up to 100 columns wide: the same for every command of the package.
HELP_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class FiniteFloat(click.ParamType):
    """A float in ``[low, high]`` that is neither NaN nor infinite (click's FloatRange takes NaN)."""

    name = "float"

    def __init__(self, low: float = -math.inf, high: float = math.inf, low_open: bool = False):
        self.low, self.high, self.low_open = low, high, low_open

    def convert(self, value, param, ctx):
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        below = number <= self.low if self.low_open else number < self.low
        if below or number > self.high:
            bracket = "(" if self.low_open else "["
            self.fail(f"{value} is not in the range {bracket}{self.low:g}, {self.high:g}]", param, ctx)
        return number

    def get_metavar(self, param, ctx=None):
        return "FLOAT"


PROBABILITY = FiniteFloat(0, 1)


class NamedPath(click.Path):
    """``click.Path`` that refuses an empty name, which it takes for ``.``: ``amt-transcribe
    "$SONG" -o out/`` with the variable unset transcribed every recording under the current
    folder, and ``-o ""`` wrote there.  ``written``: a path to write, refused where it
    begins with a quoted ``~`` (``files.check_no_tilde``)."""

    def __init__(self, *args, written: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.written = written

    def convert(self, value, param, ctx):
        if isinstance(value, (str, bytes)) and not value:
            self.fail("an empty name (an unset shell variable?); name a file or folder, "
                      "or . for the current folder", param, ctx)
        if self.written and isinstance(value, str):
            from .files import check_no_tilde
            try:
                check_no_tilde(value, None, folder=not self.file_okay)
            except UsageError as error:
                self.fail(str(error), param, ctx)
        return super().convert(value, param, ctx)


class RayAddress(click.ParamType):
    """``--ray [ADDRESS]``: ``auto``, ``local``, ``HOST:PORT`` or ``ray://HOST:PORT``.

    The value is optional, so ``--ray recordings/`` would take the folder for an
    address: refused with the way to write it instead.
    """

    name = "address"
    PATTERN = r"(auto|local|ray://\S+|[\w.\-]+:\d+|\[[0-9a-fA-F:.]+\]:\d+)"

    def convert(self, value, param, ctx):
        import re
        if value == "" or re.fullmatch(self.PATTERN, value):
            return value
        self.fail(f"{value!r} is not a cluster address (HOST:PORT, ray://HOST:PORT, auto or "
                  "local); put --ray after the inputs, or write --ray=ADDRESS", param, ctx)


_DECODING_HELP = {
    "onset_threshold": "Onset probability at which a note may start.",
    "frame_threshold": "Frame probability above which a note keeps sounding.",
    "offset_threshold": "Offset probability at which a note ends; 1 turns the offset head off.",
    "min_note_ms": "Drop notes shorter than this (ms).",
    "frame_onset_threshold": "Also start a note where the frame probability rises from quiet "
                             "above this (an onset the onset head missed); 1 turns it off.",
    "restrike_onset_threshold": "Onset peak a key needs to start a new note while its note "
                                "still sounds, unless the key's level rises there (a "
                                "re-strike adds energy; a fainter onset without that rise is "
                                "the held note's decay); 0 turns it off.",
    "soft_onset_threshold": "Also start a note where the onset probability peaks above this "
                            "but not above the onset threshold, if the key's level rises "
                            "there by 3 dB (a soft note the onset head nearly missed); 1 "
                            "turns it off.",
    "partial_onset_threshold": "Onset peak a key needs to start a note where a lower key "
                               "sounds whose partial it is (an octave, a twelfth, two "
                               "octaves...); 0 turns it off.",
    "note_filter_threshold": "Score of the note filter (weights with one: a small network "
                             "that weighs each note's onset, its key's level and the keys an "
                             "octave and a twelfth below) a note needs to be written; 0 "
                             "turns the filter off.",
    "end_choice_threshold": "How sure the end chooser (weights with one: a small network "
                            "that weighs the key-down and pedal heads around each note's "
                            "end) must be to end a note where the key or the pedal came up "
                            "rather than where the sound was last heard; 1 ends every note "
                            "as heard.",
    "pedal_threshold": "Sustain-pedal probability above which the pedal is down "
                       "(weights with a pedal head).",
    "key_threshold": "Key-down probability below which a key is up: where --pedal cc64 "
                     "ends notes (weights with a key-down head).",
    "pedal_split_threshold": "Pedal-press probability at which a sustain-pedal span is split "
                             "(a quick re-pedal); 1 turns it off.",
    "velocity_level_weight": "Velocity steps added per dB by which a note's onset is louder "
                             "than the recording's median note (measured at its partials, "
                             "odd ones for the lower note of an octave, the recording's "
                             "register balance removed); "
                             "0 leaves the velocity to the network alone.",
    "velocity_model_weight": "How much of each velocity the velocity model (weights with one: "
                             "a small network that weighs the velocity head, the onset's "
                             "level at each partial against the recording's, the key and "
                             "the notes struck with it) decides, the level blend the rest; "
                             "0 turns the model off.",
}


def decoding_options(command):
    """The fields of ``decode.DecodingOptions`` as click options (amt-transcribe, amt-evaluate).

    Each defaults to unset, which means: the value tuned for the weights.
    """
    from .decode import NON_NEGATIVE_OPTIONS
    for name in reversed(list(_DECODING_HELP)):
        kind = FiniteFloat(0) if name in NON_NEGATIVE_OPTIONS else PROBABILITY
        command = click.option(f"--{name.replace('_', '-')}", name, type=kind, default=None,
                               help=_DECODING_HELP[name] + "  [default: tuned for the weights]"
                               )(command)
    return command


def pop_decoding_options(params: dict):
    """Remove the ``decoding_options`` from click's ``params`` and return them as one object."""
    from .decode import DecodingOptions
    return DecodingOptions(**{name: params.pop(name) for name in _DECODING_HELP})


def _spool_stdin() -> Path:
    """Standard input saved whole to a temporary file (removed at exit): a recording is
    read twice (its level first), and decoders seek."""
    import atexit
    import shutil
    import tempfile
    folder = tempfile.mkdtemp(prefix="amt-transcribe-")
    atexit.register(shutil.rmtree, folder, True)
    path = Path(folder) / "standard input"
    try:
        with open(path, "wb") as spool:
            shutil.copyfileobj(sys.stdin.buffer, spool, 1 << 20)
    except OSError as error:
        raise TranscribeError(f"standard input: cannot save it in {folder} ("
                              f"{error.strerror or error}); set TMPDIR to a folder with room"
                              ) from None
    if not path.stat().st_size:  # "the file is empty" named a file the user never gave
        raise TranscribeError("standard input: nothing came through the pipe (0 bytes); did "
                              "the command before | fail?")
    return path


def _fail(message: str, code: int = EXIT_FAILED) -> None:
    click.echo(f"amt-transcribe: error: {readable(message)}", err=True)
    sys.exit(code)


@click.command(context_settings=HELP_SETTINGS)
@click.argument("inputs", nargs=-1, required=True, type=NamedPath(path_type=Path))
@click.option("-o", "--output", type=NamedPath(),
              help="Output file (one input) or folder (several inputs, a folder, or a path "
                   "ending in /); - writes one input's notes to standard output. Default: "
                   "beside each input, with the format's suffix.")
@click.option("-f", "--format", "fmt", type=click.Choice(["mid", "csv", "json"]), default=None,
              help="MIDI file, or note events (onset s, offset s, pitch, velocity) as CSV or "
                   "JSON.  [default: from the -o suffix (.mid, .midi, .csv, .json), else mid]")
@click.option("--weights", type=NamedPath(path_type=Path),
              help="Another checkpoint (NAME.pt with NAME.json beside it). Default: the shipped weights.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto",
              show_default=True, help="auto picks a CUDA GPU, then Apple MPS, then the CPU.")
@click.option("-j", "--jobs", "jobs_wanted", type=click.IntRange(1), default=1, show_default=True,
              help="Transcribe this many files at once, in worker processes (one model each); "
                   "the cores are shared out among them.")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="CPU threads for the network.  [default: the cores this process may use "
                   "(affinity, cgroup quota) that other processes are not busy with; "
                   "1 per Ray task]")
@click.option("--ray", "ray_address", type=RayAddress(), is_flag=False, flag_value="",
              default=None, metavar="[ADDRESS]",
              help="Run the batch on a Ray cluster, one task per file (pip install "
                   "'amt-transcribe[cluster]').  ADDRESS: HOST:PORT of its head; without it "
                   "RAY_ADDRESS, else the cluster started on this machine, else a new local "
                   "one.  Every node must see the inputs and outputs at the same paths.  "
                   "--jobs caps the tasks running at once.")
@decoding_options
@click.option("--pedal", type=click.Choice(list(C.PEDAL_MODES)), default=C.DEFAULT_PEDAL_MODE,
              show_default=True,
              help="Weights with a pedal head: none = notes as long as they are heard, no "
                   "pedal events; extend = notes lengthened to the predicted pedal's release "
                   "(for score editors); cc64 = notes ending at the key's release plus CC64 "
                   "pedal events (CSV/JSON: sustain rows).")
@click.option("--model-pass", type=click.Choice(["fast", "full"]), default=None,
              help="Weights that reconstruct the spectrogram: full = transcribe again from "
                   "the reconstruction (the seed's model), fast = the first pass only.  "
                   "[default: the weights' card]")
@click.option("--dereverb", is_flag=True,
              help="Suppress the room's late reverberation before transcribing: notes end "
                   "closer to their key releases in a reverberant room (a church, a hall); "
                   "the sustain pedal is found less well.")
@click.option("--normalize/--no-normalize", default=True, show_default=True,
              help="Scale each recording so its peak is at the level the weights were tuned "
                   "at (-1.9 dBFS; a quiet one raised at most 60 dB): the notes do not depend "
                   "on the recording level, and a quiet recording is heard whole; the crests "
                   "of a clipped one are redrawn.  --no-normalize: the samples as they are.")
@click.option("--tempo", "tempo_bpm", type=FiniteFloat(1, 1000), default=120.0,
              show_default=True, help="Tempo written in the MIDI header (note times stay in seconds).")
@click.option("--plot", is_flag=True, help="Also write PNGs beside the output: input spectrogram, "
                                           "posteriorgram, reconstructed spectrogram, piano roll.")
@click.option("--html", is_flag=True,
              help="Also write a review page (STEM.html, self-contained): the piano roll under "
                   "a playhead that follows the recording; hear the recording, the "
                   "transcription, or both.")
@click.option("--save-posteriorgram", is_flag=True,
              help="Also write the posteriorgrams as .npz, to re-decode without the network.")
@click.option("--overwrite", is_flag=True, help="Replace outputs that already exist.")
@click.option("--skip-existing", is_flag=True,
              help="Skip inputs whose output exists (resumes an interrupted batch), and "
                   "leave those another run is transcribing to it (runs started at once on "
                   "the same outputs, on this machine or others, share the files).")
@click.option("--report", type=NamedPath(path_type=Path), default=None,
              help="Also write what became of each input (its output, done / skipped / "
                   "failed / not done, seconds of audio, notes, warnings or error) to this "
                   ".csv or .json file, kept up as files finish and written at the end or "
                   "on Ctrl-C: the record of a long batch, even of one killed outright.  "
                   "An existing one is replaced with --overwrite, or with --skip-existing, "
                   "where the files it says were done keep their rows (runs sharing a "
                   "batch may share its report).")
@click.option("-q", "--quiet", is_flag=True, help="No progress or summary; errors only.")
@click.option("--profile", is_flag=True,
              help="Print the seconds spent per stage (start-up, audio decoding, spectrogram, "
                   "network, note decoding, output) at the end.")
@click.version_option(__version__, "--version", prog_name="amt-transcribe")
def main(inputs, output, fmt, weights, device, jobs_wanted, threads, ray_address, pedal,
         model_pass, dereverb, normalize,
         tempo_bpm, plot, html, save_posteriorgram, overwrite, skip_existing, report, quiet,
         profile, **decoding):
    """Transcribe piano recordings to MIDI.

    INPUTS are audio files (WAV, FLAC, OGG, MP3, AIFF; with ffmpeg installed also phone
    recordings and videos: m4a, aac, mp4, mov, webm...; and WavPack, Monkey's Audio, TTA;
    any sample rate and channel count) or folders, searched recursively (passing over
    hidden files and folders, such as a Mac's "._" files, and saying what else it passed
    over); or posteriorgrams saved with --save-posteriorgram (.npz), decoded
    anew with the options given, without the network; or - for one recording on standard
    input (any of these audio formats; with -o).

    \b
    Examples:
      amt-transcribe song.wav                 writes song.mid beside it
      amt-transcribe song.flac -o out/song.mid --plot
      amt-transcribe recordings/ -o midi/     mirrors the folder, one MIDI per file
      amt-transcribe recordings/ -o midi/ --skip-existing    resume a batch (or
                                   run it on several machines at once: they share it)
      ffmpeg -i take.mkv -f wav - | amt-transcribe - -o take.mid
      amt-transcribe song.wav -o - -f csv | sort -n    notes to standard output

    Exit status: 0 when every input was transcribed, 1 when any failed
    (the others are still written), 2 on bad usage, 130 when interrupted (143 when
    stopped by SIGTERM).
    """
    from .timing import StageTimes
    from .transcriber import side_outputs

    times = StageTimes()
    started, run_began = time.perf_counter(), time.time()
    options = pop_decoding_options(decoding)
    if overwrite and skip_existing:
        _fail("--overwrite and --skip-existing contradict each other", EXIT_USAGE)
    fmt_given = fmt is not None
    if fmt is None:
        fmt = batch.NOTE_SUFFIXES.get(Path(output).suffix.lower(), "mid") if output else "mid"
    side = [p.name[len("x"):] for p in side_outputs(Path("x.mid"), plot, save_posteriorgram, html)]
    try:
        if any(is_stdio(p) for p in inputs) or is_stdio(output):
            batch.check_stdio(tuple(inputs), output, fmt, side, ray_address is not None)
        passed_over = Counter()
        jobs = batch.plan_jobs(tuple(inputs), output, fmt, passed_over)
        batch.check_outputs(jobs, fmt, fmt_given, side)
        if report is not None:
            batch.check_report(report, jobs, side, replace=overwrite or skip_existing)
    except TranscribeError as error:
        _fail(str(error), EXIT_USAGE if isinstance(error, UsageError) else EXIT_FAILED)

    unwritten = []  # a report that could not be written fails the run
    earlier = None  # a resumed batch's report: the files done before keep their rows
    if report is not None and skip_existing and report.exists():
        from .progress import read_report
        earlier = read_report(report)

    report_due = [0.0]  # when the report is next rewritten as files finish

    def write_report(as_it_goes: bool = False) -> None:
        """The report as things stand (before any exit from here on)."""
        if report is None:
            return
        from .progress import read_report, report_lock, write_report as write
        began = time.perf_counter()
        try:
            if skip_existing or overwrite:  # other runs sharing the batch may write it too
                with report_lock(report):
                    write(report, jobs, began - started, earlier,
                          batch.rows_of_others(read_report(report), jobs, run_began))
            else:
                write(report, jobs, began - started, earlier)
        except TranscribeError as error:
            if as_it_goes:  # tried again as the next file finishes, and at the end
                return
            click.echo(f"amt-transcribe: error: {readable(str(error))}", err=True)
            unwritten.append(report)
        report_due[0] = time.perf_counter() + max(REPORT_GAP_S,
                                                  100 * (time.perf_counter() - began))

    def report_as_it_goes() -> None:
        """The report rewritten as files finish (at most 1 % of the time goes to it), so a
        batch killed outright (out of memory, power lost) leaves the record of what it did."""
        if time.perf_counter() >= report_due[0]:
            write_report(as_it_goes=True)

    pending = batch.mark_existing(jobs, side, overwrite, skip_existing)
    # Whose marker stands beside each output: a run that is alive (its files stay as they
    # are), or one that died on the file.
    holders = [claims.holder(job) for job in pending]
    removed = batch.remove_leftovers([job for job, holder in zip(pending, holders)
                                       if not isinstance(holder, str)], side)
    # Files a run before this one died on: each is run last, alone, in a process of its own,
    # so that it cannot stop this run too (a Ray cluster retries dead workers itself).
    suspects = [job for job, holder in zip(pending, holders)
                if ray_address is None and holder is claims.DIED]
    fresh = [job for job in pending if job not in suspects]
    from .transcriber import is_posteriorgram_file
    audio_jobs = [job for job in pending if not is_posteriorgram_file(job.source)]
    if len(jobs) == 1:
        job = jobs[0]
        if job.status == "failed":
            write_report()
            _fail(job.message)
        try:
            # Standard input is read once its output is known to be free (not skipped).
            if is_stdio(job.source) and job.status == "pending":
                job.spool = _spool_stdin()
            if audio_jobs:  # fail fast on an unreadable file, before loading the model
                from .audio import probe
                probe(job.spool or job.source)
        except TranscribeError as error:
            job.status, job.message = "failed", batch.named(job, str(error))
            write_report()
            _fail(job.message)

    from .progress import Reporter, plural
    reporter = Reporter(quiet=quiet, total_files=len(pending), after_file=report_as_it_goes)
    if removed:
        reporter.note(f"removed {plural(removed, 'temporary file')} that a run "
                      "killed outright (SIGKILL, out of memory) left for these outputs")
    if suspects:
        names = ", ".join(batch.shown(job) for job in suspects[:3]) + (
            ", ..." if len(suspects) > 3 else "")
        how = ("it is transcribed last, alone in a process of its own, so that it cannot"
               if len(suspects) == 1 else
               "they are transcribed last, each alone in a process of its own, so that none can")
        reporter.warn(f"a run before this one died while transcribing {names} (killed: out of "
                      f"memory? a crash?); {how} stop this run")
    if passed_over:  # an archive's formats that are not read would otherwise go unseen
        reporter.note(f"passed over {plural(sum(passed_over.values()), 'file')} not audio by name "
                      f"({batch.kinds(passed_over, 6)})")
    try:
        if pending:
            from .inference import pick_device, set_threads
            from .weights import load_model, read_weights
            loaded = checked = None
            workers = min(jobs_wanted, len(pending))
            try:
                # On a cluster each worker picks and checks its own device.
                chosen = pick_device("cpu" if ray_address is not None else device)
                if ray_address is not None:  # joined before any progress is drawn
                    from .cluster import connect
                    started_ray = connect(ray_address or None)
                elif workers > 1:
                    # Workers x threads never exceed the cores this process may use.
                    from .inference import usable_cores
                    workers = min(workers, usable_cores()) if threads is None else workers
                    threads_each = threads or max(1, usable_cores() // workers)
                else:
                    set_threads(threads)
                if (workers <= 1 and ray_address is None
                        and any(not is_posteriorgram_file(job.source) for job in fresh)):
                    loaded = load_model(weights, device=chosen)  # .npz inputs need no network
                elif audio_jobs:  # read and checked once here: a bad file is one error, not N
                    checked = read_weights(weights)  # Ray's object store takes it as read
                    load_model(checked, device="cpu")
            except TranscribeError as error:
                write_report()
                _fail(str(error))
            import torch
            if chosen.type == "cpu" and torch.cuda.is_available():
                reporter.note("a CUDA GPU is present but unused (--device cpu)")
            if chosen.type == "cuda":
                times.synchronize = torch.cuda.synchronize
            times.add("start-up (imports, weights)", time.perf_counter() - started)
            _interrupt_as_exception()
            settings = batch.JobSettings(options, fmt, tempo_bpm, plot, save_posteriorgram,
                                         overwrite, pedal, model_pass, html, dereverb,
                                         normalize, skip_existing)
            with reporter:
                if ray_address is not None:
                    from .cluster import run_on_ray
                    try:
                        run_on_ray(pending, started_ray, checked, device, threads or 1,
                                   jobs_wanted if jobs_wanted > 1 else None, settings, reporter)
                    except TranscribeError as error:
                        reporter.stop()
                        write_report()
                        _fail(str(error))
                elif workers > 1:
                    batch.run_parallel(fresh, workers, threads_each, weights, str(chosen),
                                       bool(audio_jobs), settings, reporter, suspects)
                else:
                    batch.run_serial(fresh, loaded, settings, reporter, times)
                    if suspects:
                        from .inference import usable_cores
                        batch.run_parallel([], 1, threads or usable_cores(), weights,
                                           str(chosen), bool(audio_jobs), settings, reporter,
                                           suspects)
    except KeyboardInterrupt:
        claims.release_held()
        reporter.stop()
        write_report()
        interrupted()
    write_report()
    failed = [job for job in jobs if job.status == "failed"]
    if len(jobs) == 1 and failed:
        _fail(failed[0].message)
    reporter.summary(jobs, time.perf_counter() - started)
    if profile:
        reporter.profile(times, sum(job.duration_s or 0.0 for job in jobs))
    for job in failed:
        click.echo(f"amt-transcribe: failed: {readable(job.message)}", err=True)
    left = sum(job.status == "pending" for job in jobs)
    stopped_by = next((job.stopped_by for job in failed if job.stopped_by), 0)
    if left and stopped_by:
        from .files import BATCH_STOPPERS
        from .progress import plural
        why, fix = BATCH_STOPPERS[stopped_by]
        click.echo(f"amt-transcribe: stopped: {why}; {plural(left, 'file')} not started: "
                   f"{fix}, then go on with --skip-existing", err=True)
    if failed or unwritten:
        sys.exit(EXIT_FAILED)


# The signal that stopped the batch, when it was not Ctrl-C (SIGINT).
_STOPPED_BY: dict = {}


def _interrupt_as_exception() -> None:
    """From here on Ctrl-C raises KeyboardInterrupt, so temporary files are removed on the way
    out, and so do SIGTERM (``kill``, a batch scheduler's time limit, ``docker stop``) and
    SIGHUP (the terminal closed), unless they are ignored (``nohup``): they killed the
    process where it stood, before the report was written."""
    import threading
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for number in STOP_SIGNALS:
        if signal.getsignal(number) == signal.SIG_DFL:
            signal.signal(number, _stop)


def _stop(signum, frame) -> None:
    _STOPPED_BY["signal"] = signum
    for number in STOP_SIGNALS:  # one orderly exit: a second SIGTERM must not cut it short
        signal.signal(number, signal.SIG_IGN)
    raise KeyboardInterrupt


def interrupted() -> None:
    """Say that the batch was stopped, and exit 130 for Ctrl-C, else 128 + the signal's
    number (143 for SIGTERM), as a shell reports a process killed by it."""
    # Shutting down takes a moment (torch's threads, open files); a second Ctrl-C
    # meanwhile must not turn the orderly exit into a kill by signal.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    number = _STOPPED_BY.get("signal")
    how = "interrupted" if number is None else f"stopped by {signal.Signals(number).name}"
    try:
        click.echo(f"amt-transcribe: {how}; finished outputs are complete, "
                   "no partial file was left (resume with --skip-existing)", err=True)
    except OSError:  # SIGHUP: the terminal is gone
        pass
    sys.exit(EXIT_INTERRUPTED if number is None else 128 + number)


def run() -> None:
    """The console script: ``main`` with Ctrl-C mapped to exit 130 at any moment.

    click turns a KeyboardInterrupt outside our own handler (during start-up, say)
    into ``Aborted!`` and exit 1; here it is the same message and code as a batch
    interrupted mid-way.
    """
    try:
        main.main(prog_name="amt-transcribe", standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        interrupted()
    except click.exceptions.Exit as stop:
        sys.exit(stop.exit_code)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)


if __name__ == "__main__":
    run()
