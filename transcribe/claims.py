"""Runs that share a batch's outputs: each job's marker, which only one run can put up.

A job is claimed by putting its marker up (a hidden file beside its output), and a run
finding it up leaves the file to the run that holds it.  A running job's marker is touched
every ``HEARTBEAT_S``, so that runs on other machines sharing the folder see that it is
alive; one left untouched for ``STALE_S`` is of a run that died (judged by the clock that
stamps the folder's files, on NFS the file server's: ``files.folder_clock``),
and so is one of this machine whose process is gone.  A marker that outlives its
run says the run died on that file.
"""

from __future__ import annotations

import os
import platform
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .files import (break_stale_lock, folder_clock, interruptions_deferred, is_stdio, look_at,
                    older_than, remove_if_same)

if TYPE_CHECKING:
    from .batch import Job

RUNNING_SUFFIX = ".amt-running"


def marker_of(job: Job) -> Path | None:
    """The hidden file beside ``job``'s output that stands while the job runs (none for
    standard output).  One that outlived its run says the run died on this file (the
    out-of-memory killer, a crash in a decoder): a serial batch died again on it at every
    ``--skip-existing`` resume."""
    from .files import temporary_stem
    if is_stdio(job.output):
        return None
    return job.output.with_name(f".{temporary_stem(job.output.name)}{RUNNING_SUFFIX}")


HEARTBEAT_S = 15.0
STALE_S = 120.0
_HOST = platform.node() or "?"


def _mine() -> bytes:
    """How this process's markers begin (``_judge`` reads them back)."""
    return b"amt-transcribe, process %d on %s:" % (os.getpid(), _HOST.encode())


class _Died:
    """What ``holder`` returns for a marker whose run is gone."""


DIED = _Died()


def claim(job: Job) -> list[Path] | None:
    """Put up ``job``'s marker; None if another run that is alive holds it (the file is
    its).  Returns the folders made for the marker, deepest first (the output's own,
    mirrored from the input's, may not exist yet).  Best effort: a marker that cannot be
    written only costs the next run its warning, and other runs the sharing."""
    marker = marker_of(job)
    if marker is None:
        return []
    made = []
    folder = marker.parent
    while not folder.exists() and folder != folder.parent:
        made.append(folder)
        folder = folder.parent
    text = b"%s %s\n" % (_mine(), os.fsencode(job.source))
    # Ctrl-C waits until the marker is up and held (taken down on the way out), and its
    # staging file, or a dead one's, gone: seen left by a cluster batch's Ctrl-C.
    with interruptions_deferred():
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            for _ in range(100):  # it may come down, or be taken, between a try and the look
                try:
                    put_up(marker, text)
                    break
                except FileExistsError:
                    whose = holder(job)
                    if isinstance(whose, str):
                        return None
                    if whose is DIED:  # to transcribe again: cleared, then put up as any
                        _take_down_dead(marker)
        except OSError:
            pass
        _HEARTBEAT.add(marker)
    return made


TAKEOVER_STALE_S = 10.0  # a takeover's lock older than this was left by a run killed in it


def _take_down_dead(marker: Path) -> None:
    """Take down ``marker``, found to be a dead run's, so that it can be put up anew by
    exactly one of the runs that found it so (replaced in place, it was taken by each run
    resuming the batch at that moment, and all of them transcribed the file).

    It is done under a lock beside it (``.NAME.takeover``, held for milliseconds), within
    which the marker is looked at again: the run that held the lock before may have taken
    it over.  Moved aside without the lock, a marker another run had just taken over was
    gone for a moment, and a third run could put its own up then: two runs held the file.
    A run finding the lock held waits for the caller's next try; one left by a run killed
    in a takeover is broken after ``TAKEOVER_STALE_S``."""
    lock = marker.with_name(f"{marker.name}.takeover")
    try:
        # Its own contents (files.break_stale_lock tells two locks apart by them).
        put_up(lock, _mine() + b" taking over %s\n" % os.urandom(8).hex().encode())
    except FileExistsError:  # another run is taking it over
        break_stale_lock(lock, TAKEOVER_STALE_S)
        time.sleep(0.01)
        return
    except OSError:  # a lock cannot be made here: taken down as without one
        lock = None
    try:
        try:
            found, held = look_at(marker)
        except FileNotFoundError:
            return
        if _judge(marker) is not DIED:  # taken over, or taken down, since it was found dead
            return
        try:
            # Put back if not the one judged dead: its run, stopped (Ctrl-Z) past STALE_S,
            # took it down on resuming, and another run put its own up.
            remove_if_same(marker, found, held)
        except PermissionError:  # Windows: another run is reading it; the caller tries again
            time.sleep(0.01)
    finally:
        if lock is not None:
            _take_down(lock)


# What making or taking over the marker of the output whose temporary stem is ``stem`` left,
# if a run was killed outright in its microseconds: a staging file (``put_up``), a dead
# marker or a killed run's takeover lock set aside (``files.remove_if_same``), or a
# takeover's lock (``_take_down_dead``).
_LEFTOVER = re.compile(r"\.(?P<stem>.+)" + re.escape(RUNNING_SUFFIX)
                       + r"(?:(?:\.takeover)?(?:\.[a-z0-9_]{8}\.claim|\.\d+\.\d+\.dead)"
                       + r"|\.takeover)")


def leftover_of(folder: str, name: str) -> str | None:
    """The temporary stem (``files.temporary_stem``) of the output whose marker's making or
    takeover left the file ``name`` in ``folder``, if it is such a file and older than
    ``TAKEOVER_STALE_S``, so that its run is surely gone (a younger one may be another
    run's, being put up).  The marker itself is not one: it is the record of a run that
    died on the file."""
    match = _LEFTOVER.fullmatch(name)
    if match is None or not older_than(os.path.join(folder, name), TAKEOVER_STALE_S):
        return None
    return match["stem"]


def put_up(marker: Path, text: bytes) -> None:
    """Make ``marker`` hold ``text``, whole from the first moment another run can read it
    (a run reading it half written, empty on NFS until it is closed, would take it for a
    dead run's); FileExistsError if it exists."""
    import tempfile
    handle, staged = tempfile.mkstemp(prefix=f"{marker.name}.", suffix=".claim",
                                      dir=marker.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(text)
        try:
            os.link(staged, marker)  # fails if the name exists, as O_EXCL does
        except FileExistsError:
            if os.stat(staged).st_nlink == 2:  # NFS: made, but its reply was lost
                return
            raise
        except OSError:  # a filesystem without hard links (FAT, some SMB shares)
            with open(marker, "xb") as file:
                file.write(text)
    finally:
        try:
            os.unlink(staged)
        except OSError:
            pass


def holder(job: Job) -> str | _Died | None:
    """Who holds ``job``'s marker: "process P on HOST" if a run other than this one that is
    alive; ``DIED`` if its run is gone (killed, or crashed, on this file); None if there is
    no marker.  A run is alive if its marker was touched lately (``HEARTBEAT_S``), and, on
    this machine, its process runs: a run resumed at once after a crash takes the files it
    died on back at once, and one whose number another process got later is not waited for."""
    marker = marker_of(job)
    return None if marker is None else _judge(marker)


def _judge(marker: Path) -> str | _Died | None:
    """``holder`` of the marker at ``marker``."""
    try:
        text, touched = marker.read_bytes(), marker.stat().st_mtime
    except FileNotFoundError:
        return None
    except OSError:
        return DIED
    put_up = re.match(rb"amt-transcribe, process (\d+) on (\S+):", text)
    if not put_up:
        return DIED
    pid, host = int(put_up[1]), put_up[2].decode(errors="replace")
    alive = folder_clock(marker.parent) - touched < STALE_S
    if host == _HOST and os.name != "nt":  # Windows' processes cannot be asked
        alive = alive and _alive(pid)
    return f"process {pid} on {host}" if alive else DIED


class Heartbeat:
    """Touches the markers of the jobs this process runs, every ``HEARTBEAT_S``."""

    def __init__(self):
        import threading
        self.markers: set[Path] = set()
        self.lock = threading.Lock()
        self.thread = None

    def add(self, marker: Path) -> None:
        import threading
        with self.lock:
            self.markers.add(marker)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self.beat, name="amt-heartbeat",
                                               daemon=True)
                self.thread.start()

    def remove(self, marker: Path) -> None:
        with self.lock:
            self.markers.discard(marker)

    def held(self) -> list[Path]:
        with self.lock:
            return list(self.markers)

    def beat(self) -> None:
        while True:
            time.sleep(HEARTBEAT_S)
            with self.lock:
                markers = list(self.markers)
            for marker in markers:
                try:
                    os.utime(marker)
                except OSError:
                    pass


_HEARTBEAT = Heartbeat()


def release_held() -> None:
    """Take down the markers of the jobs this run holds (stopped: Ctrl-C, SIGTERM), those
    caught between being claimed and being handed to a worker or task too.  The markers of
    files a worker died on are not held: they stand, for the next run."""
    for marker in _HEARTBEAT.held():
        _HEARTBEAT.remove(marker)
        _take_down(marker)


def _take_down(marker: Path) -> None:
    """Remove ``marker`` if it is this run's: one stopped for longer than ``STALE_S``
    (Ctrl-Z) may find that another run has taken its file, and the marker is that run's."""
    try:
        if marker.read_bytes().startswith(_mine()):
            marker.unlink()
    except OSError:
        pass


def let_stand(job: Job) -> None:
    """Leave ``job``'s marker up as the record that a process died transcribing it."""
    marker = marker_of(job)
    if marker is not None:
        _HEARTBEAT.remove(marker)


def _alive(pid: int) -> bool:
    """Whether another process numbered ``pid`` runs (in a container this run may have the
    number of the run that died: this run's markers are not up yet)."""
    if os.name == "nt" or pid == os.getpid():  # os.kill(pid, 0) ends the process on Windows
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        return True
    return True


# The folders this run made for its markers that still stood when the job they were made
# for ended: another job's marker was in them too (--jobs, Ray), or its output.
_MADE: set[Path] = set()


def clear(job: Job, made: list[Path]) -> None:
    """Take down ``job``'s marker, and the folders this run made for its markers that its
    output's path goes through, if they are left empty: made for this job, or for another
    whose marker stood beside this one's when that job ended (with --jobs every job of a
    new folder could fail, and the folder stood empty)."""
    marker = marker_of(job)
    if marker is None:
        return
    with interruptions_deferred():  # no longer held, and not yet down: it would stand
        _HEARTBEAT.remove(marker)
        _take_down(marker)
    _MADE.update(made)
    for folder in marker.parents:  # deepest first
        if folder not in _MADE:
            break
        try:
            folder.rmdir()
        except FileNotFoundError:
            pass
        except OSError:  # it holds outputs, or another job's marker
            break
        _MADE.discard(folder)
