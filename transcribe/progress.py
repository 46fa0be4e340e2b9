"""Progress bars (files and seconds of audio) and the end-of-run summary, on stderr."""

from __future__ import annotations

from pathlib import Path


class Reporter:
    """rich progress over files and over the audio of the current file; silent when quiet."""

    def __init__(self, quiet: bool = False, total_files: int = 1):
        from rich.console import Console
        self.console = Console(stderr=True)
        self.quiet = quiet
        self.total_files = total_files
        self.progress = None
        self.files_task = self.file_task = None

    def __enter__(self):
        if not self.quiet:
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
            self.console.print(f"[yellow]note:[/] {message}", highlight=False)

    def warn(self, message: str) -> None:
        """One line, even with --quiet: something about an input the user must know
        (audio cut short, samples replaced), not progress."""
        self.console.print(f"amt-transcribe: warning: {message}", highlight=False,
                           markup=False, soft_wrap=True)

    def start_file(self, path: Path) -> None:
        if self.progress is not None:
            if self.file_task is not None:
                self.progress.remove_task(self.file_task)
            self.file_task = self.progress.add_task(path.name[:40], total=None)

    def advance_file(self, done_s: float, total_s: float) -> None:
        if self.progress is not None and self.file_task is not None:
            self.progress.update(self.file_task, completed=done_s, total=max(total_s, 1e-9))

    def finish_file(self, job) -> None:
        if self.progress is not None and self.files_task is not None:
            self.progress.advance(self.files_task)

    def summary(self, jobs) -> None:
        if self.quiet:
            return
        from rich.table import Table
        if len(jobs) == 1 and jobs[0].status == "done":
            job = jobs[0]
            self.console.print(f"{job.output}: {job.notes} notes from {job.duration_s:.1f} s "
                               f"of audio in {job.seconds:.1f} s", highlight=False)
            return
        table = Table(title="amt-transcribe", title_justify="left")
        for column, justify in (("file", "left"), ("duration", "right"), ("notes", "right"),
                                ("seconds", "right"), ("status", "left")):
            table.add_column(column, justify=justify)
        colours = {"done": "green", "skipped": "yellow", "failed": "red"}
        for job in jobs:
            table.add_row(str(job.source),
                          "" if job.duration_s is None else f"{job.duration_s:.1f} s",
                          "" if job.notes is None else str(job.notes),
                          "" if job.seconds is None else f"{job.seconds:.1f}",
                          f"[{colours.get(job.status, 'white')}]{job.status}[/]")
        self.console.print(table)

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
