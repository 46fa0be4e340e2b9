"""A batch of transcriptions: which input goes to which output, what is refused before any
audio is read (``plan_jobs``, ``check_outputs``), and the jobs run here (``run_serial``),
in worker processes (``run_parallel``) or on a Ray cluster (``cluster``).

Each job is claimed before it runs (``claims``), so that runs sharing a folder share its
files; no bad input stops a batch: its job fails with a message and the others go on.
Progress and warnings go through the caller's reporter (``progress.Reporter``).
"""

from __future__ import annotations

import os
import shlex
import signal
import stat
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from . import claims
from .errors import EXIT_INTERRUPTED, TranscribeError, UsageError
from .files import age_s, check_no_tilde, is_stdio

NOTE_SUFFIXES = {".mid": "mid", ".midi": "mid", ".csv": "csv", ".json": "json"}


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
    # The error (a key of files.BATCH_STOPPERS) with which its output could not be written
    # as no later output could (the disk full, read-only, gone); 0 if none.  The batch
    # then starts no more files, which would all be transcribed and fail alike.
    stopped_by: int = 0


def shown(job: Job) -> str:
    """The input as messages name it."""
    return "standard input" if is_stdio(job.source) else str(job.source)


def check_stdio(inputs: tuple[Path, ...], output, fmt: str, side: list[str], ray: bool) -> None:
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
    if output is not None:
        check_no_tilde(raw, "-o", out_is_dir)
    if (many and output is not None and not is_stdio(output) and not _is_dir(output)
            and not raw.endswith(("/", os.sep))
            and output.suffix.lower() in tuple(NOTE_SUFFIXES) + _audio_suffixes()):
        # -o all.mid for *.wav made a folder all.mid/ of one MIDI file per recording
        raise UsageError(f"{raw}: a file's name for the output of several recordings, which "
                         f"get one file each in a folder; name the folder (-o "
                         f"{shlex.quote(str(output.with_suffix('')) + os.sep)})")
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
                what = f"; it holds {kinds(held, 4)}" if held else ""
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


def kinds(counts: Counter, most: int) -> str:
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
    existing, or with --overwrite replacing the first.  A Mac's disk also takes an accent
    written apart (``E`` and a combining accent, as a Mac writes names) for the one
    character (``É``)."""
    import unicodedata

    def coinciding() -> list[list[Job]]:
        groups = defaultdict(list)
        for job in jobs:
            groups[unicodedata.normalize("NFC", _key(job.output)).casefold()].append(job)
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
    from .files import NotAFile, check_not_special, check_writable, existing_folder
    inputs = {_key(job.source) for job in jobs}
    audio = _audio_suffixes()
    redirected = _stdout_file()
    for job in jobs:
        refused = _output_given_as_input(job.source, one_other=len(jobs) == 2)
        if refused:
            raise UsageError(refused)
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
        for path in written_by(job, side):
            if _key(path) in inputs:
                if _key(path) == _key(job.source):  # notes.csv -f csv
                    raise UsageError(f"{path} would be written over by its own notes; name "
                                     "the output with -o")
                raise UsageError(f"{path} is also an input; choose another output name")
            try:
                check_not_special(path)
            except NotAFile as error:
                raise UsageError(f"{error}; name a file (-o - writes the notes to standard "
                                 "output)") from None
            if redirected is not None and _same_file(path, redirected):
                raise UsageError(_redirected_to(path) + ", or give -o - for the notes on "
                                 "standard output")
        # "-o midi" for one file: a folder was meant more often than a MIDI file so named
        if not fmt_given and not suffix and not is_stdio(job.output):
            raise UsageError(f"{job.output}: a name without a suffix; name the file "
                             f"{job.output.name}.{fmt}, end a folder's name with / "
                             f"({job.output.name}/), or give --format to use this name")
    checked = set()
    for job in jobs:
        if is_stdio(job.output):
            continue
        folder = existing_folder(job.output.parent)  # the rest made with the output
        if _key(folder) not in checked:
            checked.add(_key(folder))
            if not folder.is_dir():
                raise TranscribeError(f"{job.output}: {folder} is a file, not a folder")
            check_writable(folder)


def _output_given_as_input(source: Path, one_other: bool) -> str | None:
    """The error for an input named as notes are (``.mid``, ``.csv``...) that is missing or
    a MIDI file: ``amt-transcribe song.wav song.mid`` with -o forgotten transcribed the
    recording to ``song.wav.mid`` and failed the other, or said "song.mid is also an input;
    choose another output name".  ``one_other``: with one other input, say how to name
    the output.  None for a file that may be a recording misnamed."""
    from .audio import is_midi, midi_given
    if source.suffix.lower() not in NOTE_SUFFIXES or is_stdio(source):
        return None
    hint = f"; to name the output, give -o {shlex.quote(str(source))}" if one_other else ""
    if is_midi(source):
        return midi_given(source) + hint
    if not os.path.lexists(source):
        return f"{source}: no such file{hint}"
    return None


def _stdout_file() -> os.stat_result | None:
    """The file standard output is redirected to (``> song.mid``), if it is a file: the
    shell made it empty before the run began, and it was "song.mid exists" (or, with
    --skip-existing, skipped as done)."""
    try:
        found = os.fstat(sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # none, or not a real file (a test's)
        return None
    return found if stat.S_ISREG(found.st_mode) else None


def _redirected_to(path: Path) -> str:
    """The error for an output (or report) that standard output is sent to."""
    return (f"{path}: standard output is sent to it (> {path.name}), and amt-transcribe "
            "writes it itself; leave out the >")


def _same_file(path: Path, found: os.stat_result) -> bool:
    try:
        return os.path.samestat(os.stat(path), found)
    except OSError:
        return False


def check_report(report: Path, jobs: list[Job], side: list[str], replace: bool) -> None:
    """Refuse, before any audio is read, a ``--report`` that is not .csv or .json, that
    names an input or an output, that standard output is sent to, or that exists unless
    ``replace``."""
    from .files import NotAFile, check_not_special, check_writable
    check_no_tilde(str(report), "--report")
    if report.suffix.lower() not in (".csv", ".json"):
        raise UsageError(f"{report}: name the report .csv or .json")
    for job in jobs:
        if _key(report) in {_key(p) for p in [job.source] + written_by(job, side)}:
            raise UsageError(f"{report}: the report would be written over "
                             f"{'an input' if _key(report) == _key(job.source) else 'an output'}"
                             "; choose another name")
    if report.is_dir():
        raise UsageError(f"{report}: is a folder; name the report's file")
    try:
        check_not_special(report)
    except NotAFile as error:
        raise UsageError(f"{error}; name the report's file") from None
    redirected = _stdout_file()
    if redirected is not None and _same_file(report, redirected):  # made empty by the shell
        raise UsageError(_redirected_to(report))
    if report.exists() and not replace:
        raise TranscribeError(f"{report} exists; use --overwrite to replace it")
    check_writable(report.parent)


def rows_of_others(latest: dict, jobs: list[Job], run_began: float) -> dict:
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


def written_by(job: Job, side: list[str]) -> list[Path]:
    """The files ``job`` writes: its output, and the side outputs (``side``) beside it;
    none when its notes go to standard output."""
    if is_stdio(job.output):
        return []
    stem = job.output.with_suffix("")
    return [job.output] + [stem.with_name(stem.name + s) for s in side]


def remove_leftovers(jobs: list[Job], side: list[str]) -> int:
    """Remove the temporary files that a run killed outright (SIGKILL, the out-of-memory
    killer, power lost) left for the outputs of ``jobs``, about to be written anew: each
    kill of a job that plots an hour of audio left 200 MB of them, hidden, for good.
    Returns how many were removed.  (Leave out the jobs another run is transcribing now:
    those files are its own.)"""
    from .files import break_stale_lock, clock_probe_left, temporary_of, temporary_stem
    from .plot import unpaged
    wanted = defaultdict(set)  # folder -> the temporary stems of its outputs
    for job in jobs:
        for path in written_by(job, side):
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


def mark_existing(jobs: list[Job], side: list[str], overwrite: bool, skip_existing: bool) -> list[Job]:
    """The jobs to run; the others marked skipped (their output exists, --skip-existing) or
    failed (an output exists, or a name is longer than the filesystem takes)."""
    pending = []
    for job in jobs:
        written = written_by(job, side)
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
    from .files import BATCH_STOPPERS, OutputExists, OutputsUnwritable
    from .progress import BY_ANOTHER_RUN
    from .transcriber import transcribe_to_file, transcribe_to_stream

    started = time.perf_counter()
    warnings = []
    name = shown(job)
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
                                        source_name=name if job.spool else None, **common)
    except TranscribeError as error:
        if (settings.skip_existing and isinstance(error, OutputExists)
                and _written_meanwhile(job, settings)):
            # by a run that took it too (resumed after being stopped for minutes, Ctrl-Z)
            job.status, job.message = "skipped", BY_ANOTHER_RUN
        else:
            job.status = "failed"
            # Messages of ours name the file already; say which input they belong to
            # otherwise.
            text = named(job, str(error))
            says_which = name in text or (not is_stdio(job.output) and str(job.output) in text)
            job.message = text if says_which else f"{name}: {text}"
        job.stopped_by = error.errno if isinstance(error, OutputsUnwritable) else 0
    except BrokenPipeError:  # `| head`: what was read of the notes is all there is
        _stdout_to_devnull()
        job.status, job.message = "failed", (f"{name}: standard output was closed before "
                                             "the notes were written whole")
    except OSError as error:
        job.status, job.message = "failed", f"{name}: {error.strerror or error}"
        job.stopped_by = error.errno if error.errno in BATCH_STOPPERS else 0
    except Exception as error:  # a bug: keep the batch going, but say so plainly
        job.status = "failed"
        job.message = (f"{name}: unexpected {type(error).__name__}: {error} "
                       "(please report this bug)")
    else:
        job.status = "done"
        job.duration_s, job.notes = result.duration_s, len(result.notes)
        job.message = named(job, "; ".join(result.warnings))
        warnings = [f"{name}: {named(job, warning)}" for warning in result.warnings]
    job.seconds = time.perf_counter() - started
    return warnings


def named(job: Job, text: str) -> str:
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


def start_no_more_if_stuck(job: Job, *waiting) -> None:
    """After ``job``, whose output could not be written as none after it could be (disk
    full, read-only, gone: ``Job.stopped_by``), empty the lists of jobs ``waiting`` to
    start: they would all be transcribed and fail alike.  The jobs running finish; those
    not started stay "pending" (not done)."""
    if job.stopped_by:
        for jobs in waiting:
            jobs.clear()


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


def take(job: Job, settings: JobSettings, reporter, held: list) -> list[Path] | None:
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


def wait_for_others(held: list, settings: JobSettings, reporter) -> list[Job]:
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
                          f"finish {', '.join(shown(job) for job, _ in held[:3])}"
                          f"{', ...' if len(held) > 3 else ''}")
            noted = True
        time.sleep(WAIT_S)
    return []


def run_serial(pending: list[Job], loaded, settings: JobSettings, reporter, times) -> None:
    from collections import deque
    queue, held = deque(pending), []
    while queue or held:
        if not queue:
            queue.extend(wait_for_others(held, settings, reporter))
            continue
        job = queue.popleft()
        made = take(job, settings, reporter, held)
        if made is None:
            continue
        reporter.start_file(Path(shown(job)))
        try:
            for warning in run_job(job, loaded, settings, reporter.advance_file, times):
                reporter.warn(warning)
        finally:  # not after a kill: the marker outlives the run
            claims.clear(job, made)
        reporter.finish_file(job)
        start_no_more_if_stuck(job, queue, held)


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


def run_parallel(pending: list[Job], workers: int, threads: int, weights, device: str,
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
        made = take(job, settings, reporter, held)
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
                job.message = (f"{shown(job)}: written whole before the process transcribing "
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
            job.message = (f"{shown(job)}: the process transcribing it died, with no other "
                           "file beside it (killed: out of memory? a crash?)")
            reporter.finish_file(job)
            return True
        except Exception as error:  # e.g. the job could not be handed to the worker
            job.status, job.message = "failed", f"{shown(job)}: worker failed ({error})"
        else:
            record_outcome(job, done, warnings, reporter)
            start_no_more_if_stuck(job, queue, suspects, held)
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
                queue.extend(wait_for_others(held, settings, reporter))
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
