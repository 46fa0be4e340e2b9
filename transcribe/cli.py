"""``amt-transcribe``: a thin click/rich shell over ``transcriber.transcribe_to_file``.

Exit codes: 0 every input transcribed; 1 some input failed (or nothing written);
2 bad usage; 130 interrupted (Ctrl-C), 143 stopped by SIGTERM, 129 by SIGHUP.
Progress and the summary go to stderr.
"""

from __future__ import annotations

import math
import os
import shlex
import signal
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import click

from . import claims, constants as C
from .version import __version__
from .errors import TranscribeError, UsageError
from .files import STOP_SIGNALS, age_s, is_stdio, readable

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
REPORT_GAP_S = 1.0  # --report is rewritten as files finish, at most once a second
NOTE_SUFFIXES = {".mid": "mid", ".midi": "mid", ".csv": "csv", ".json": "json"}
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


@dataclass
class Job:
    source: Path
    output: Path
    status: str = "pending"
    duration_s: float | None = None
    notes: int | None = None
    seconds: float | None = None
    message: str = ""
    spool: Path | None = None  # where standard input (source "-") was saved to be read


def _shown(job: Job) -> str:
    """The input as messages name it."""
    return "standard input" if is_stdio(job.source) else str(job.source)


def _check_stdio(inputs: tuple[Path, ...], output, fmt: str, side: list[str], ray: bool) -> None:
    """Refuse, before anything is read, what standard input (``-``) and standard output
    (``-o -``) cannot do."""
    if ray:
        raise UsageError("-: standard input and output stay on this machine; give --ray files")
    if any(is_stdio(p) for p in inputs):
        if len(inputs) > 1:
            raise UsageError("-: standard input is transcribed alone; give it as the only input")
        if output is None:
            raise UsageError("-: name the notes of standard input with -o (a file, or - for "
                             "standard output)")
        if not is_stdio(output) and (_is_dir(Path(output))
                                      or str(output).endswith(("/", os.sep))):
            raise UsageError(f"{output}: a folder; for standard input -o names the file to write")
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError("-: standard input is a terminal; pipe the audio in, e.g. "
                             "ffmpeg -i song.m4a -f wav - | amt-transcribe - -o song.mid")
    if is_stdio(output):
        if len(inputs) > 1 or _is_dir(inputs[0]):
            raise UsageError("-o -: standard output takes the notes of one input file")
        if side:
            raise UsageError("-o -: standard output takes the notes alone; --plot, --html and "
                             "--save-posteriorgram need a name: -o NAME")
        if fmt == "mid" and sys.stdout.isatty():
            raise UsageError("-o -: MIDI is binary and standard output is a terminal; "
                             "redirect it (> song.mid) or pipe it, or give -f csv or -f json")


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


def _written_suffixes() -> tuple[str, ...]:
    """The suffixes of what a run may leave beside the audio: notes and side outputs."""
    from .transcriber import side_outputs
    side = side_outputs(Path("x.mid"), plot=True, save_posteriorgram=True, html=True)
    return tuple(NOTE_SUFFIXES) + tuple({path.suffix for path in side})


def _audio_suffixes() -> tuple[str, ...]:
    from .audio import AUDIO_EXTENSIONS, UNSUPPORTED_EXTENSIONS
    return AUDIO_EXTENSIONS + UNSUPPORTED_EXTENSIONS


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def plan_jobs(inputs: tuple[Path, ...], output: str | Path | None, fmt: str,
              passed_over: Counter | None = None) -> list[Job]:
    """Map each input file (folders searched recursively, hidden ones passed over) to its
    output path; ``passed_over`` counts, by suffix, the files of the folders that are
    not audio by their names (but for the kinds amt-transcribe writes).

    A folder's structure is mirrored under ``output``; a single file's ``output``
    is the file to write unless it is an existing folder or ends with a separator.
    An input named twice for one output is transcribed once.
    Inputs whose outputs would coincide (``song.ogg`` and ``song.wav``; ``Song.wav`` and
    ``song.flac`` too, as names differing by case alone are one file on many disks) keep
    their audio suffix in the output name (``song.ogg.mid``, ``song.wav.mid``); if they
    still coincide, ``TranscribeError`` names them before any work is done.
    """
    suffix = "." + fmt
    raw = None if output is None else str(output)
    output = None if raw is None else Path(raw)
    inputs = tuple({_key(p): p for p in inputs}.values())  # each once, in the order given
    jobs = []
    many = len(inputs) > 1 or any(_is_dir(p) for p in inputs)
    out_is_dir = output is not None and (many or _is_dir(output) or raw.endswith(("/", os.sep)))
    for source in inputs:
        if _is_dir(source):
            files = _files_under(source)
            found = sorted(p for p in files if p.suffix.lower() in _audio_suffixes())
            if passed_over is not None:
                known = _audio_suffixes() + _written_suffixes()
                passed_over.update(p.suffix.lower() or "no suffix" for p in files
                                   if p.suffix.lower() not in known)
            if not found:
                held = Counter(p.suffix.lower() or "no suffix" for p in files)
                what = f"; it holds {_kinds(held, 4)}" if held else ""
                raise TranscribeError(f"{source}: no audio files found (looked for WAV, FLAC, "
                                      f"OGG, MP3, m4a, mp4... in all sub-folders{what})")
            base = output if output is not None else source
            jobs += [Job(p, (base / p.relative_to(source)).with_suffix(suffix)) for p in found]
        elif out_is_dir:
            jobs.append(Job(source, (output / source.name).with_suffix(suffix)))
        elif output is not None:
            jobs.append(Job(source, output))
        else:
            jobs.append(Job(source, source.with_suffix(suffix)))
    # One file named twice (overlapping globs, a folder and a file in it) is one job.
    unique = {(_key(job.source), _key(job.output)): job for job in jobs}
    return _separate_collisions(list(unique.values()), suffix)


def _files_under(folder: Path) -> list[Path]:
    """The files in ``folder`` and all its sub-folders, linked ones too.

    Hidden files and folders are not recordings (a Mac's "._song.wav" resource forks, a
    NAS's ".AppleDouble/", ".Trashes/").  A linked folder (a NAS's "2019 -> /mnt/disk2/2019")
    is searched once, whatever links lead to it, and never one that holds ``folder``
    itself (a link back up): ``Path.rglob`` passed over every linked folder without a word.
    Links to files are listed as they are (a broken one fails its job and says so).
    """
    top = os.path.realpath(folder)
    seen, files = set(), []
    for root, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen or (real != top and top.startswith(real.rstrip(os.sep) + os.sep)):
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(name for name in dirs if not name.startswith("."))
        files += [Path(root) / name for name in names if not name.startswith(".")]
    return files


def _kinds(counts: Counter, most: int) -> str:
    """``.jpg 20, .pdf 2, ...``: the commonest suffixes of ``counts``, ties by name."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{suffix} {n}" for suffix, n in ranked[:most]) + (
        ", ..." if len(ranked) > most else "")


def _key(path: Path) -> str:
    return os.path.normcase(os.path.abspath(path))


def _separate_collisions(jobs: list[Job], suffix: str) -> list[Job]:
    """Outputs are compared as a case-insensitive filesystem compares names (macOS's and
    Windows' disks, and exFAT sticks and SMB shares mounted on Linux): there ``Song.wav``
    and ``song.flac`` would both be written to one ``song.mid``, the second refused as
    existing, or with --overwrite replacing the first."""
    def coinciding() -> list[list[Job]]:
        groups = defaultdict(list)
        for job in jobs:
            groups[_key(job.output).casefold()].append(job)
        return [group for group in groups.values() if len(group) > 1]

    planned = {id(job): job.output for job in jobs}
    for group in coinciding():
        for job in group:
            job.output = job.output.with_name(job.source.name + suffix)
    clashes = coinciding()
    if clashes:
        group = clashes[0]
        names = ", ".join(str(job.source) for job in group[:4])
        more = f" and {len(clashes) - 1} more such group(s)" if len(clashes) > 1 else ""
        raise UsageError(f"{names} would all be written to {planned[id(group[0])]}{more}; "
                         "transcribe them into different output folders")
    return jobs


def check_outputs(jobs: list[Job], fmt: str, fmt_given: bool, side: list[str]) -> None:
    """Refuse, before any audio is read, outputs that would destroy an input or cannot be written.

    ``side`` are the suffixes of the side outputs (``.npz``, ``.pianoroll.png``...).
    """
    from .files import NotAFile, check_not_special, check_writable
    inputs = {_key(job.source) for job in jobs}
    audio = _audio_suffixes()
    for job in jobs:
        suffix = job.output.suffix.lower()
        if suffix in audio:
            raise UsageError(f"{job.output}: an audio file name for the {fmt} output "
                             f"(it would replace audio with notes); name it .{fmt}")
        if fmt_given and NOTE_SUFFIXES.get(suffix, fmt) != fmt:
            raise UsageError(f"{job.output}: the suffix says {NOTE_SUFFIXES[suffix]} but "
                             f"--format {fmt} was asked for; make them agree")
        # notes.txt or score.xml would get MIDI bytes; "op.28" is a name, not a format.
        if not fmt_given and suffix[1:].isalpha() and suffix not in NOTE_SUFFIXES:
            raise UsageError(f"{job.output}: amt-transcribe writes no {suffix} files; name it "
                             f".mid, .csv or .json, or give --format to use this name")
        for path in _written_by(job, side):
            if _key(path) in inputs:
                from .audio import is_midi, midi_given
                if _key(path) == _key(job.source) and is_midi(job.source):  # song.mid alone
                    raise UsageError(midi_given(job.source))
                raise UsageError(f"{path} is also an input; choose another output name")
            try:
                check_not_special(path)
            except NotAFile as error:
                raise UsageError(f"{error}; name a file (-o - writes the notes to standard "
                                 "output)") from None
        # "-o midi" for one file: a folder was meant more often than a MIDI file so named
        if not fmt_given and not suffix and not is_stdio(job.output):
            raise UsageError(f"{job.output}: a name without a suffix; name the file "
                             f"{job.output.name}.{fmt}, end a folder's name with / "
                             f"({job.output.name}/), or give --format to use this name")
    checked = set()
    for job in jobs:
        if is_stdio(job.output):
            continue
        folder = job.output.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent  # created later, where the output is written
        if _key(folder) not in checked:
            checked.add(_key(folder))
            if not folder.is_dir():
                raise TranscribeError(f"{job.output}: {folder} is a file, not a folder")
            check_writable(folder)


def check_report(report: Path, jobs: list[Job], side: list[str], replace: bool) -> None:
    """Refuse, before any audio is read, a ``--report`` that is not .csv or .json, that
    names an input or an output, or that exists unless ``replace``; make its folder."""
    from .files import NotAFile, check_not_special, check_writable
    if report.suffix.lower() not in (".csv", ".json"):
        raise UsageError(f"{report}: name the report .csv or .json")
    for job in jobs:
        if _key(report) in {_key(p) for p in [job.source] + _written_by(job, side)}:
            raise UsageError(f"{report}: the report would be written over "
                             f"{'an input' if _key(report) == _key(job.source) else 'an output'}"
                             "; choose another name")
    if report.is_dir():
        raise UsageError(f"{report}: is a folder; name the report's file")
    try:
        check_not_special(report)
    except NotAFile as error:
        raise UsageError(f"{error}; name the report's file") from None
    if report.exists() and not replace:
        raise TranscribeError(f"{report} exists; use --overwrite to replace it")
    check_writable(report.parent)


def _rows_of_others(latest: dict, jobs: list[Job], run_began: float) -> dict:
    """The rows of ``latest`` (the shared report as it stands) that other runs sharing the
    batch wrote for files they did: those of the files skipped here, and of those not yet
    done here whose output was written since this run began (by another run: an earlier
    batch's row of a file to be transcribed again is not one)."""
    rows = {}
    for job in jobs:
        key = (str(job.source), str(job.output))
        row = latest.get(key)
        if row is None or job.status not in ("skipped", "pending"):
            continue
        if job.status == "pending":
            try:
                # By the output folder's clock: a file server's may be minutes off ours.
                if age_s(job.output) > time.time() - run_began:
                    continue
            except (OSError, AttributeError):  # not written; standard output
                continue
        rows[key] = row
    return rows


def _fail(message: str, code: int = EXIT_FAILED) -> None:
    click.echo(f"amt-transcribe: error: {readable(message)}", err=True)
    sys.exit(code)


def _written_by(job: Job, side: list[str]) -> list[Path]:
    """The files ``job`` writes: its output, and the side outputs (``side``) beside it;
    none when its notes go to standard output."""
    if is_stdio(job.output):
        return []
    stem = job.output.with_suffix("")
    return [job.output] + [stem.with_name(stem.name + s) for s in side]


def _remove_leftovers(jobs: list[Job], side: list[str]) -> int:
    """Remove the temporary files that a run killed outright (SIGKILL, the out-of-memory
    killer, power lost) left for the outputs of ``jobs``, about to be written anew: each
    kill of a job that plots an hour of audio left 200 MB of them, hidden, for good.
    Returns how many were removed.  (Leave out the jobs another run is transcribing now:
    those files are its own.)"""
    from .files import break_stale_lock, clock_probe_left, temporary_of, temporary_stem
    from .plot import unpaged
    wanted = defaultdict(set)  # folder -> the temporary stems of its outputs
    for job in jobs:
        for path in _written_by(job, side):
            wanted[path.parent].add(temporary_stem(path.name))
    removed = 0
    for folder, stems in wanted.items():
        try:
            names = os.listdir(folder)
        except OSError:  # not made yet
            continue
        for name in names:
            # The output of a temporary file, or of what a marker's making left (once it
            # is surely no run's); a clock probe is the folder's.
            stem = temporary_of(name) or claims.leftover_of(folder, name)
            page = unpaged(stem) if stem else None  # a long recording's plot pages
            if (stem in stems or (page is not None and temporary_stem(page) in stems)
                    or clock_probe_left(folder, name)):
                path = os.path.join(folder, name)
                try:
                    if name.endswith(".takeover"):  # a lock's one name: a run may make it anew
                        if not break_stale_lock(path, claims.TAKEOVER_STALE_S):
                            continue
                    else:
                        os.unlink(path)
                    removed += 1
                except OSError:
                    pass
    return removed


def _name_max(folder: Path) -> int:
    """The longest file name (bytes) that ``folder``'s filesystem takes; 255 where unknown."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (AttributeError, OSError, ValueError):  # Windows has no pathconf
        return 255


def _mark_existing(jobs: list[Job], side: list[str], overwrite: bool, skip_existing: bool) -> list[Job]:
    """The jobs to run; the others marked skipped (their output exists, --skip-existing) or
    failed (an output exists, or a name is longer than the filesystem takes)."""
    pending = []
    for job in jobs:
        written = _written_by(job, side)
        if not written:  # standard output: nothing to find
            pending.append(job)
            continue
        longest = max(written, key=lambda path: len(os.fsencode(path.name)))
        size, limit = len(os.fsencode(longest.name)), _name_max(longest.parent)
        if size > limit:
            job.status = "failed"
            job.message = (f"{longest}: the name is {size} bytes, more than the {limit} this "
                           "filesystem takes; transcribe it alone with a shorter -o name")
            continue
        existing = [p for p in written if p.exists()]
        if existing and not overwrite:
            if skip_existing and job.output.exists():
                job.status, job.message = "skipped", "output exists"
            else:
                job.status = "failed"
                job.message = (f"{existing[0]} exists; use --overwrite to replace it"
                               + (" or --skip-existing" if existing[0] == job.output else ""))
            continue
        pending.append(job)
    return pending


@click.command(context_settings=HELP_SETTINGS)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(),
              help="Output file (one input) or folder (several inputs, a folder, or a path "
                   "ending in /); - writes one input's notes to standard output. Default: "
                   "beside each input, with the format's suffix.")
@click.option("-f", "--format", "fmt", type=click.Choice(["mid", "csv", "json"]), default=None,
              help="MIDI file, or note events (onset s, offset s, pitch, velocity) as CSV or "
                   "JSON.  [default: from the -o suffix (.mid, .midi, .csv, .json), else mid]")
@click.option("--weights", type=click.Path(path_type=Path),
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
                   "on the recording level, and a quiet recording is heard whole.  "
                   "--no-normalize: the samples as they are.")
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
@click.option("--report", type=click.Path(path_type=Path), default=None,
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
        fmt = NOTE_SUFFIXES.get(Path(output).suffix.lower(), "mid") if output else "mid"
    side = [p.name[len("x"):] for p in side_outputs(Path("x.mid"), plot, save_posteriorgram, html)]
    try:
        if any(is_stdio(p) for p in inputs) or is_stdio(output):
            _check_stdio(tuple(inputs), output, fmt, side, ray_address is not None)
        passed_over = Counter()
        jobs = plan_jobs(tuple(inputs), output, fmt, passed_over)
        check_outputs(jobs, fmt, fmt_given, side)
        if report is not None:
            check_report(report, jobs, side, replace=overwrite or skip_existing)
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
                          _rows_of_others(read_report(report), jobs, run_began))
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

    pending = _mark_existing(jobs, side, overwrite, skip_existing)
    # Whose marker stands beside each output: a run that is alive (its files stay as they
    # are), or one that died on the file.
    holders = [claims.holder(job) for job in pending]
    removed = _remove_leftovers([job for job, holder in zip(pending, holders)
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
            job.status, job.message = "failed", _named(job, str(error))
            write_report()
            _fail(job.message)

    from .progress import Reporter, plural
    reporter = Reporter(quiet=quiet, total_files=len(pending), after_file=report_as_it_goes)
    if removed:
        reporter.note(f"removed {plural(removed, 'temporary file')} that a run "
                      "killed outright (SIGKILL, out of memory) left for these outputs")
    if suspects:
        names = ", ".join(_shown(job) for job in suspects[:3]) + (
            ", ..." if len(suspects) > 3 else "")
        how = ("it is transcribed last, alone in a process of its own, so that it cannot"
               if len(suspects) == 1 else
               "they are transcribed last, each alone in a process of its own, so that none can")
        reporter.warn(f"a run before this one died while transcribing {names} (killed: out of "
                      f"memory? a crash?); {how} stop this run")
    if passed_over:  # an archive's formats that are not read would otherwise go unseen
        reporter.note(f"passed over {plural(sum(passed_over.values()), 'file')} not audio by name "
                      f"({_kinds(passed_over, 6)})")
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
            settings = JobSettings(options, fmt, tempo_bpm, plot, save_posteriorgram, overwrite,
                                   pedal, model_pass, html, dereverb, normalize,
                                   skip_existing)
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
                    _run_parallel(fresh, workers, threads_each, weights, str(chosen),
                                  bool(audio_jobs), settings, reporter, suspects)
                else:
                    _run_serial(fresh, loaded, settings, reporter, times)
                    if suspects:
                        from .inference import usable_cores
                        _run_parallel([], 1, threads or usable_cores(), weights, str(chosen),
                                      bool(audio_jobs), settings, reporter, suspects)
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


@dataclass(frozen=True)
class JobSettings:
    """What every job of a batch is asked to write, and how."""

    options: object  # decode.DecodingOptions
    fmt: str
    tempo_bpm: float
    plot: bool
    save_posteriorgram: bool
    overwrite: bool
    pedal: str
    model_pass: str | None
    html: bool = False
    dereverb: bool = False
    normalize: bool = True
    skip_existing: bool = False  # and so leave the files other runs hold to them


def run_job(job: Job, loaded, settings: JobSettings, progress=None, times=None) -> list[str]:
    """Transcribe one job into its files, recording the outcome on ``job``; returns warnings.

    Never raises for a bad input: the batch goes on and the job says why it failed.
    """
    from .files import OutputExists
    from .progress import BY_ANOTHER_RUN
    from .transcriber import transcribe_to_file, transcribe_to_stream

    started = time.perf_counter()
    warnings = []
    shown = _shown(job)
    common = dict(options=settings.options, fmt=settings.fmt, tempo_bpm=settings.tempo_bpm,
                  progress=progress, times=times, pedal=settings.pedal,
                  model_pass=settings.model_pass, dereverb=settings.dereverb,
                  normalize=settings.normalize)
    try:
        if is_stdio(job.output):
            result = transcribe_to_stream(job.spool or job.source, sys.stdout.buffer, loaded,
                                          **common)
        else:
            result = transcribe_to_file(job.spool or job.source, job.output, loaded,
                                        plot=settings.plot,
                                        save_posteriorgram=settings.save_posteriorgram,
                                        overwrite=settings.overwrite, html=settings.html,
                                        source_name=shown if job.spool else None, **common)
    except TranscribeError as error:
        if (settings.skip_existing and isinstance(error, OutputExists)
                and _written_meanwhile(job, settings)):
            # by a run that took it too (resumed after being stopped for minutes, Ctrl-Z)
            job.status, job.message = "skipped", BY_ANOTHER_RUN
        else:
            job.status = "failed"
            # Messages of ours name the file already; say which input they belong to
            # otherwise.
            text = _named(job, str(error))
            named = shown in text or (not is_stdio(job.output) and str(job.output) in text)
            job.message = text if named else f"{shown}: {text}"
    except BrokenPipeError:  # `| head`: what was read of the notes is all there is
        _stdout_to_devnull()
        job.status, job.message = "failed", (f"{shown}: standard output was closed before "
                                             "the notes were written whole")
    except OSError as error:
        job.status, job.message = "failed", f"{shown}: {error.strerror or error}"
    except Exception as error:  # a bug: keep the batch going, but say so plainly
        job.status = "failed"
        job.message = (f"{shown}: unexpected {type(error).__name__}: {error} "
                       "(please report this bug)")
    else:
        job.status = "done"
        job.duration_s, job.notes = result.duration_s, len(result.notes)
        job.message = _named(job, "; ".join(result.warnings))
        warnings = [f"{shown}: {_named(job, warning)}" for warning in result.warnings]
    job.seconds = time.perf_counter() - started
    return warnings


def _named(job: Job, text: str) -> str:
    """``text`` with standard input's temporary file called what it is (``-`` where a
    command is to read it, as in the hint to transcribe one channel)."""
    if not job.spool:
        return text
    return text.replace(shlex.quote(str(job.spool)), "-").replace(str(job.spool),
                                                                  "standard input")


def _stdout_to_devnull() -> None:
    """After the reader of standard output left: the interpreter's last flush at exit
    would fail again (a second BrokenPipeError, printed)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def record_outcome(job: Job, done: Job, warnings: list[str], reporter) -> None:
    """Copy onto ``job`` the outcome a worker process recorded on its copy ``done``;
    report the warnings."""
    job.__dict__.update(done.__dict__)
    for warning in warnings:
        reporter.warn(warning)


WAIT_S = 1.0  # how often a run waiting for another's files looks whether they are done


class _Unknown:
    """What ``_written_meanwhile`` is told where the output's state was not looked at."""


def _state(path: Path) -> tuple[int, int] | None:
    """``path``'s modification time and size, None if it does not exist."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _written_meanwhile(job: Job, settings: JobSettings, before=_Unknown) -> bool:
    """Whether ``job``'s output was written whole since the batch began, by another run (or
    a worker of this one that died just after publishing it).  An output not to be replaced
    did not exist when the batch began: the job would have been skipped or refused.  One to
    be replaced was written meanwhile if it changed since ``before`` (its ``_state`` when
    another run was found transcribing it).  The output is published last, after the side
    files, all at once."""
    if is_stdio(job.output):
        return False
    now = _state(job.output)
    if now is None:
        return False
    if not settings.overwrite:
        return True
    return before is not _Unknown and now != before


def _take(job: Job, settings: JobSettings, reporter, held: list) -> list[Path] | None:
    """Claim ``job`` for this run: the folders made for its marker (``claims.claim``), or
    None where it is not this run's to transcribe.  Another run that is alive holds it: with
    --skip-existing or --overwrite the file is left to that run (put in ``held``, with its
    output's state, to wait for), else it fails now.  Another run wrote it meanwhile: it is
    skipped with --skip-existing, else fails as an output there at the start does."""
    from .progress import BY_ANOTHER_RUN
    # what a run writing it changes (looked at only where --overwrite would hide it)
    before = _state(job.output) if settings.overwrite and not is_stdio(job.output) else None
    made = claims.claim(job)
    if made is None:
        if settings.skip_existing or settings.overwrite:
            held.append((job, before))
            return None
        holder = claims.holder(job)
        job.status = "failed"
        job.message = (f"{job.output}: another run is writing it"
                       + (f" ({holder})" if isinstance(holder, str) else "")
                       + "; use --skip-existing to leave such files to it")
    elif _written_meanwhile(job, settings):
        claims.clear(job, made)
        if settings.skip_existing:
            job.status, job.message = "skipped", BY_ANOTHER_RUN
        else:
            job.status = "failed"
            job.message = f"{job.output} exists; use --overwrite to replace it or --skip-existing"
    else:
        return made
    reporter.finish_file(job)
    return None


def _wait_for_others(held: list, settings: JobSettings, reporter) -> list[Job]:
    """Wait until the other runs holding ``held``'s jobs give one up (written, failed or
    died); returns the jobs given up that are still to transcribe here, the ones written
    meanwhile skipped."""
    from .progress import BY_ANOTHER_RUN
    noted = False
    while held:
        given_up = [(job, before) for job, before in held
                    if not isinstance(claims.holder(job), str)]
        if given_up:
            for pair in given_up:
                held.remove(pair)
            left = []
            for job, before in given_up:
                if _written_meanwhile(job, settings, before):
                    job.status, job.message = "skipped", BY_ANOTHER_RUN
                    reporter.finish_file(job)
                else:
                    left.append(job)
            return left
        if not noted:
            holders = sorted({holder for job, _ in held
                              if isinstance(holder := claims.holder(job), str)})
            reporter.note(f"waiting for other runs on these outputs ({', '.join(holders)}) to "
                          f"finish {', '.join(_shown(job) for job, _ in held[:3])}"
                          f"{', ...' if len(held) > 3 else ''}")
            noted = True
        time.sleep(WAIT_S)
    return []


def _run_serial(pending: list[Job], loaded, settings: JobSettings, reporter, times) -> None:
    from collections import deque
    queue, held = deque(pending), []
    while queue or held:
        if not queue:
            queue.extend(_wait_for_others(held, settings, reporter))
            continue
        job = queue.popleft()
        made = _take(job, settings, reporter, held)
        if made is None:
            continue
        reporter.start_file(Path(_shown(job)))
        try:
            for warning in run_job(job, loaded, settings, reporter.advance_file, times):
                reporter.warn(warning)
        finally:  # not after a kill: the marker outlives the run
            claims.clear(job, made)
        reporter.finish_file(job)


# One worker process of --jobs: its model, loaded once, and whether a job is running.
_WORKER: dict = {}


def _worker_start(weights, device: str, threads: int, needs_model: bool) -> None:
    # The parent handles Ctrl-C: it stops the workers with SIGTERM, which a running job
    # turns into KeyboardInterrupt (its temporary file is removed); an idle worker exits.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "SIGHUP"):  # the terminal closed: the parent stops the workers
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _worker_stop)
    from .inference import set_threads
    from .weights import load_model
    set_threads(threads)
    _WORKER["loaded"] = load_model(weights, device) if needs_model else None
    _WORKER["busy"] = False


def _worker_stop(signum, frame) -> None:
    if _WORKER.get("busy"):
        _WORKER["stopped"] = True
        raise KeyboardInterrupt
    os._exit(EXIT_INTERRUPTED)


def _worker_run(job: Job, settings: JobSettings) -> tuple[Job, list[str]]:
    _WORKER["busy"] = True
    try:
        return job, run_job(job, _WORKER["loaded"], settings)
    finally:
        _WORKER["busy"] = False
        # Stopped during the job (its temporary files are gone by now): exit.  Sending its
        # result and waiting for the next job hung the batch for good when another worker
        # had died: the broken pool stops the others with SIGTERM and waits for them to end,
        # and a dead worker may hold the lock of the queue they wait on.
        if _WORKER.get("stopped"):
            os._exit(EXIT_INTERRUPTED)


def _run_parallel(pending: list[Job], workers: int, threads: int, weights, device: str,
                  needs_model: bool, settings: JobSettings, reporter,
                  suspects: list[Job] = ()) -> None:
    """The jobs in ``workers`` processes, each with ``threads`` threads and its own model.

    A worker that dies (the out-of-memory killer, a crash in native code) breaks the whole
    pool: every job in it failed with it, those waiting too, so one file too big for the
    memory failed the rest of an archive.  So no more jobs are handed to the pool than it
    has workers, and after a death the jobs that were running are tried again at the end,
    each alone: a second death names the file that causes it.  ``suspects`` (a run before
    died on them) are run that way from the start.
    """
    import multiprocessing
    from collections import deque
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_worker_start,
                                   initargs=(weights, device, threads, needs_model))

    queue, suspects, held = deque(pending), deque(suspects), []
    running: dict = {}  # future -> (job, whether it runs alone, the folders made for it)
    pool = new_pool()

    def submit(job: Job, alone: bool) -> None:
        made = _take(job, settings, reporter, held)
        if made is not None:
            running[pool.submit(_worker_run, job, settings)] = (job, alone, made)

    def settle(future) -> bool:
        """Record a finished future's outcome; True if its worker died (the pool is broken)."""
        job, alone, made = running.pop(future)
        try:
            done, warnings = future.result()
        except BrokenProcessPool:
            # Killed between publishing the output and saying so: its retry failed with
            # "exists".
            if _written_meanwhile(job, settings):
                job.status = "done"
                job.message = (f"{_shown(job)}: written whole before the process transcribing "
                               "it died; not transcribed again")
                reporter.warn(job.message)  # a done job's message is a warning, printed as such
                claims.clear(job, made)
                reporter.finish_file(job)
                return True
            claims.let_stand(job)
            if not alone:
                suspects.append(job)  # its marker stands until it is settled
                return True
            # The marker stands: the next run too transcribes it alone, at the end.
            job.status = "failed"
            job.message = (f"{_shown(job)}: the process transcribing it died, with no other "
                           "file beside it (killed: out of memory? a crash?)")
            reporter.finish_file(job)
            return True
        except Exception as error:  # e.g. the job could not be handed to the worker
            job.status, job.message = "failed", f"{_shown(job)}: worker failed ({error})"
        else:
            record_outcome(job, done, warnings, reporter)
        claims.clear(job, made)
        reporter.finish_file(job)
        return False

    try:
        while queue or suspects or running or held:
            # Alone, at the end: nothing runs beside a job that a worker died on.
            if queue:
                while queue and len(running) < workers:
                    submit(queue.popleft(), alone=False)
            elif suspects and not running:
                submit(suspects.popleft(), alone=True)
            elif held and not running:  # what other runs hold, once this one has done the rest
                queue.extend(_wait_for_others(held, settings, reporter))
            if not running:
                continue
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            if any([settle(future) for future in finished]):
                # The pool is broken: its other jobs end at once; then a new pool.
                for future in wait(running)[0]:
                    settle(future)
                pool.shutdown(wait=True)
                pool = new_pool()
    except KeyboardInterrupt:
        for process in list(getattr(pool, "_processes", {}).values()):
            process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        for job, _, made in running.values():
            claims.clear(job, made)
        raise
    pool.shutdown(wait=True)


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
