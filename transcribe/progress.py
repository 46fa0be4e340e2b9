"""Progress bars (files and seconds of audio) and the end-of-run summary, on stderr."""

from __future__ import annotations

import contextlib
from pathlib import Path

from rich.markup import escape

from .files import break_stale_lock, is_stdio, readable


TABLE_ROWS = 30  # a batch of more files than this gets its totals, not a table


def plural(count: int, noun: str) -> str:
    """``1 file``, ``3 files``."""
    return f"{count} {noun}{'s' * (count != 1)}"


def clock(seconds: float) -> str:
    """``seconds`` as ``42.0 s``, ``12:05`` or ``3:02:07``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


BY_ANOTHER_RUN = "transcribed by another run meanwhile"  # a skipped job's message


def totals_line(jobs, elapsed_s: float | None = None) -> str:
    """``12 files: 10 done (2 with warnings), 1 skipped, 1 failed; 1:02:07 of audio in
    41.3 s (90x real time)``: the counts that are not zero, and the audio transcribed.

    The warnings (a file cut short, clicks) were printed as they came: in an archive's
    run they have scrolled away, so the count says to look for them (``--report``)."""
    line = _counts_line([(job.status, job.message) for job in jobs])
    audio_s = sum(job.duration_s or 0.0 for job in jobs if job.status == "done")
    if elapsed_s and any(job.status == "done" for job in jobs):
        line += (f"; {clock(audio_s)} of audio in {clock(elapsed_s)} "
                 f"({audio_s / elapsed_s:.0f}x real time)")
    return line


def batch_line(rows) -> str:
    """``12 files: 11 done (2 with warnings), 1 failed; 1:02:07 of audio``: what the rows
    of a report say, which are the whole batch's (its earlier runs', and those of the runs
    sharing it) where ``totals_line`` is one run's."""
    statuses = [("pending" if row["status"] == "not done" else row["status"], row["message"])
                for row in rows]
    audio_s = sum(_seconds(row["duration_s"]) for row in rows if row["status"] == "done")
    return _counts_line(statuses) + (f"; {clock(audio_s)} of audio" if audio_s else "")


def _seconds(value) -> float:
    """A report's seconds as written (a number, or text from a CSV); 0 for none, or for
    what is not a number (a report edited by hand)."""
    try:
        return float(value or 0.0)
    except (TypeError, ValueError):
        return 0.0


def _counts_line(statuses: list[tuple[str, str | None]]) -> str:
    """``12 files: 10 done (2 with warnings), 1 skipped, 1 failed``, of (status, message)s."""
    counts = {status: sum(had == status for had, _ in statuses)
              for status in ("done", "skipped", "failed", "pending")}
    warned = sum(status == "done" and bool(message) for status, message in statuses)
    by_others = sum(status == "skipped" and message == BY_ANOTHER_RUN
                    for status, message in statuses)
    parts = [f"{n} {'not done' if status == 'pending' else status}"
             + (f" ({warned} with warnings)" if status == "done" and warned else "")
             + (f" ({by_others} transcribed by other runs)" if status == "skipped" and by_others
                else "")
             for status, n in counts.items() if n]
    return f"{plural(len(statuses), 'file')}: {', '.join(parts)}"


class Reporter:
    """rich progress over files and over the audio of the current file; silent when quiet."""

    def __init__(self, quiet: bool = False, total_files: int = 1, after_file=None):
        """``after_file``: called with no argument after each file is finished."""
        from rich.console import Console
        self.console = Console(stderr=True)
        self.quiet = quiet
        self.total_files = total_files
        self.progress = None
        self.files_task = self.file_task = None
        self.failed = 0
        self.after_file = after_file

    def __enter__(self):
        # Not drawn into a log file: all it left there was an empty first line.
        if not self.quiet and self.console.is_terminal:
            from rich.progress import (BarColumn, Progress, TaskProgressColumn, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                     TaskProgressColumn(), TimeElapsedColumn(),
                                     TimeRemainingColumn(), console=self.console, transient=True)
            self.progress.start()
            if self.total_files > 1:
                self.files_task = self.progress.add_task("files", total=self.total_files)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def note(self, message: str) -> None:
        if not self.quiet:
            self.console.print(f"[yellow]note:[/] {escape(readable(message))}", highlight=False,
                               soft_wrap=True)

    def warn(self, message: str) -> None:
        """One line, even with --quiet: something about an input the user must know
        (audio cut short, samples replaced), not progress."""
        self.console.print(f"amt-transcribe: warning: {readable(message)}", highlight=False,
                           markup=False, soft_wrap=True)

    def start_file(self, path: Path) -> None:
        if self.progress is not None:
            if self.file_task is not None:
                self.progress.remove_task(self.file_task)
            self.file_task = self.progress.add_task(escape(readable(path.name)[:40]), total=None)

    def advance_file(self, done_s: float, total_s: float) -> None:
        if self.progress is not None and self.file_task is not None:
            self.progress.update(self.file_task, completed=done_s, total=max(total_s, 1e-9))

    def finish_file(self, job) -> None:
        """One more file done; a failed one is counted on the bar as it happens, so an
        archive's hours-long run shows its failures before the end."""
        if job.status == "failed":
            self.failed += 1
        if self.progress is not None and self.files_task is not None:
            self.progress.update(self.files_task, advance=1, description=self.files_label())
        if self.after_file is not None:
            self.after_file()

    def files_label(self) -> str:
        return f"files ({self.failed} failed)" if self.failed else "files"

    def summary(self, jobs, elapsed_s: float | None = None) -> None:
        """One line for one file; else a table (up to ``TABLE_ROWS`` files) and a line of
        totals.  An archive's thousands of rows would scroll away what matters: its failed
        files, which are listed with their reasons after this anyway."""
        if self.quiet:
            return
        from rich.table import Table
        if len(jobs) == 1 and jobs[0].status == "done" and jobs[0].notes is not None:
            job = jobs[0]
            written = "standard output" if is_stdio(job.output) else readable(str(job.output))
            self.console.print(f"{written}: {job.notes} notes from {job.duration_s:.1f} s "
                               f"of audio in {job.seconds:.1f} s", markup=False, highlight=False,
                               soft_wrap=True)
            return
        if len(jobs) <= TABLE_ROWS:
            table = Table(title="amt-transcribe", title_justify="left")
            for column, justify in (("file", "left"), ("duration", "right"),
                                    ("notes", "right"), ("seconds", "right"),
                                    ("status", "left")):
                table.add_column(column, justify=justify)
            colours = {"done": "green", "skipped": "yellow", "failed": "red"}
            for job in jobs:
                table.add_row(escape(readable(str(job.source))),  # "Song [Live].mp3" is no markup
                              "" if job.duration_s is None else f"{job.duration_s:.1f} s",
                              "" if job.notes is None else str(job.notes),
                              "" if job.seconds is None else f"{job.seconds:.1f}",
                              f"[{colours.get(job.status, 'white')}]"
                              f"{'not done' if job.status == 'pending' else job.status}[/]")
            self.console.print(table)
        # One line even in a log file (rich wraps at 80 columns where stderr is no terminal).
        self.console.print(totals_line(jobs, elapsed_s), markup=False, highlight=False,
                           soft_wrap=True)

    def profile(self, times, audio_s: float) -> None:
        """The seconds per stage of ``times`` (a ``StageTimes``), with shares and speed."""
        from rich.table import Table
        table = Table(title="time per stage (in-process; the interpreter's own start is not "
                            "included)", title_justify="left")
        for column in ("stage", "seconds", "share", "x real time"):
            table.add_column(column, justify="left" if column == "stage" else "right")
        total = times.total_s
        for stage, seconds in list(times.seconds.items()) + [("total", total)]:
            speed = f"{audio_s / seconds:.0f}" if seconds > 0 and audio_s > 0 else ""
            table.add_row(stage, f"{seconds:.2f}", f"{100 * seconds / max(total, 1e-9):.0f} %", speed)
        self.console.print(table)


REPORT_FIELDS = ("input", "output", "status", "duration_s", "notes", "seconds", "message")


REPORT_LOCK_STALE_S = 10.0  # a report's lock older than this was left by a run killed


@contextlib.contextmanager
def report_lock(path: Path, wait_s: float = 5.0):
    """Hold ``path``'s lock (a hidden file beside it) while its rows are read and written
    anew, so that of runs sharing a batch, and its report, the one writing last has read the
    others' last rows.  Best effort: where it cannot be had within ``wait_s`` (or made at
    all), the report is written without it."""
    import os
    import time
    lock = path.with_name(f".{path.name}.amt-lock")
    mine = f"{os.getpid()} {os.urandom(8).hex()}\n".encode()  # what this run's lock holds
    held = False
    with contextlib.suppress(OSError):  # the report's folder, made for it (not before)
        path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            try:
                held = os.write(descriptor, mine) == len(mine)
            except OSError:  # a full disk: the report is written without the lock
                pass
            finally:
                os.close(descriptor)
            if not held:
                with contextlib.suppress(OSError):
                    lock.unlink()
            break
        except FileExistsError:
            if break_stale_lock(lock, REPORT_LOCK_STALE_S) or not os.path.lexists(lock):
                continue  # a killed run's, broken, or let go: tried again at once
        except OSError:
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    try:
        yield
    finally:
        # Not another run's: this one, stopped (Ctrl-Z) past REPORT_LOCK_STALE_S, had its
        # lock broken, and another run may hold its own now.
        with contextlib.suppress(OSError):
            if held and lock.read_bytes() == mine:
                lock.unlink()


def read_report(path: Path) -> dict[tuple[str, str], dict]:
    """The rows of an earlier ``write_report`` by (input, output); none from a file that is
    not one."""
    import csv
    import json
    try:
        if path.suffix.lower() == ".json":
            rows = json.loads(path.read_text())["files"]
        else:
            with open(path, newline="", errors="surrogateescape") as handle:
                rows = list(csv.DictReader(handle))
        return {(row["input"], row["output"]): row for row in rows
                if set(REPORT_FIELDS) <= set(row)}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def write_report(path: Path, jobs, elapsed_s: float | None = None,
                 earlier: dict[tuple[str, str], dict] | None = None,
                 latest: dict[tuple[str, str], dict] | None = None) -> None:
    """What became of each input, as CSV or JSON by ``path``'s suffix: status ``done``,
    ``skipped``, ``failed`` or ``not done`` (interrupted first), the seconds of audio,
    the notes, the seconds it took, and the warnings or the error.  A file skipped now
    keeps its row from ``earlier`` (``read_report``) where that says it was done, so the
    report of a resumed batch is the whole batch's.  A file skipped or not yet done here
    takes its row from ``latest`` first where that says it was done: the rows other runs
    sharing the batch, and the report, wrote for the files they did (``cli``), so that the
    report written last is the whole batch's.  Written atomically."""
    import csv
    import io
    import json
    from .files import write_atomic
    rows = []
    for job in jobs:
        if job.status in ("skipped", "pending"):
            key = (str(job.source), str(job.output))
            done = [row for row in ((latest or {}).get(key),
                                    (earlier or {}).get(key) if job.status == "skipped" else None)
                    if row is not None and row["status"] == "done"]
            if done:
                rows.append({field: done[0][field] for field in REPORT_FIELDS})
                continue
        rows.append({"input": str(job.source), "output": str(job.output),
                     "status": "not done" if job.status == "pending" else job.status,
                     "duration_s": None if job.duration_s is None else round(job.duration_s, 3),
                     "notes": job.notes,
                     "seconds": None if job.seconds is None else round(job.seconds, 3),
                     "message": job.message})
    if path.suffix.lower() == ".json":
        text = json.dumps({"summary": totals_line(jobs, elapsed_s), "batch": batch_line(rows),
                           "files": rows}, indent=1)
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, REPORT_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    # A name that is not UTF-8 is written as the bytes it is (and read back so).
    write_atomic(path, text.encode("utf-8", "surrogateescape"))
