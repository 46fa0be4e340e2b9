"""Atomic file publishing, shared by every writer (MIDI, notes, plots, weights, checkpoints).

A file is written to a temporary name beside its target and then published in
one step, so an interrupted run leaves either the old file or none, never half
of one.  Without ``overwrite`` the publish is a hard link, which the kernel
refuses when the target exists: two processes racing for one output cannot both
win, and an existing file is never replaced, however late it appeared.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import os
import re
import signal
import stat
import tempfile
from pathlib import Path

from .errors import TranscribeError, UsageError


class OutputExists(TranscribeError):
    """The target exists and replacing it was not asked for."""


class OutputsUnwritable(TranscribeError):
    """A write failed as every write after it to that filesystem would: it is full, or
    read-only, or gone.  ``errno`` is the error, a key of ``BATCH_STOPPERS``."""

    def __init__(self, message: str, errno: int):
        super().__init__(message)
        self.errno = errno

    def __reduce__(self):  # pickled whole (a worker process's), not from ``args`` alone
        return type(self), (str(self), self.errno)


# The errors of a write that every later write to that filesystem would meet too, so a
# batch stops starting files for them (each would be transcribed, then fail alike): what
# the batch says of each, and what to do before going on with --skip-existing.
_NO_ROOM = ("no room left for the outputs (the disk is full, or the quota spent)",
            "make room")
BATCH_STOPPERS = {
    errno.ENOSPC: _NO_ROOM,
    getattr(errno, "EDQUOT", errno.ENOSPC): _NO_ROOM,  # a quota; not on Windows
    errno.EROFS: ("the outputs' filesystem is read-only (mounted so, or remounted so after "
                  "errors on its disk)", "make it writable"),
    errno.EIO: ("the outputs' disk gave an input/output error (failing, unplugged, or a file "
                "server gone)", "check the disk"),
    errno.ENOTCONN: ("the outputs' filesystem is no longer connected (a network or FUSE "
                     "mount dropped: sshfs, rclone)", "mount it again"),
}


# The files written inside ``all_or_none`` and not yet published (None outside it):
# (temporary file, target, overwrite).
_STAGED: contextvars.ContextVar[list[tuple[str, Path, bool]] | None] = contextvars.ContextVar(
    "staged", default=None)


@contextlib.contextmanager
def all_or_none():
    """Files written inside the block are published together when it ends, in the order
    written: a job leaves all of its outputs or none of them.

    If the block raises (an error, Ctrl-C), nothing is published; if one publish fails
    (the name exists, the disk is full), those already published are removed.  A kill
    that cannot be caught (SIGKILL, power lost) leaves at most hidden temporary files
    (``temporary_of`` tells them; the CLI removes them when it writes those outputs again).
    A job writes its side outputs (plots, review page, posteriorgrams) before its notes;
    published one by one, those of a job that failed or was killed stood in the way of
    its retry (``--skip-existing``: "exists; use --overwrite").
    """
    staged: list[tuple[str, Path, bool]] = []
    token = _STAGED.set(staged)
    published: list[Path] = []
    try:
        try:
            yield
        finally:
            _STAGED.reset(token)
        with interruptions_deferred():  # Ctrl-C halfway left some of a job's outputs
            for tmp, path, overwrite in staged:
                try:
                    _publish(tmp, path, overwrite)
                except OSError as error:
                    raise _cannot_write(path, error) from None
                published.append(path)
    except BaseException:
        for path in published:
            with contextlib.suppress(OSError):
                path.unlink()
        for tmp, _, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def interruptions_deferred():
    """Ctrl-C, SIGTERM and SIGHUP that come inside the block take effect as it ends: for
    the few steps that must not be cut in two (a file made but not yet in the hands of what
    removes it on the way out; a job's outputs half published).  Seen: Ctrl-C of a cluster
    batch, as its driver put up the next file's marker, left the marker's staging file.
    Python hands signals to the main thread only; elsewhere nothing is deferred."""
    import threading
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list = []
    before: dict = {}
    try:
        for number in _DEFERRED_SIGNALS:
            handler = signal.getsignal(number)
            if callable(handler):
                before[number] = handler
                signal.signal(number, lambda signum, frame: caught.append((signum, frame)))
        yield
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)
        if caught:
            signum, frame = caught[0]
            before[signum](signum, frame)


# The signals that stop a batch in good order besides Ctrl-C (``cli``): ``kill``, a batch
# scheduler's time limit, ``docker stop``; the terminal closed.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP")
                     if hasattr(signal, name))  # Windows has no SIGHUP
_DEFERRED_SIGNALS = (signal.SIGINT, *STOP_SIGNALS)


class NotAFile(TranscribeError):
    """The target is a device (``/dev/null``), a pipe or a socket, or a link to one."""


_SYSTEM_FOLDERS = ("/dev", "/proc", "/sys")  # of devices and processes, not files


def check_not_special(path: Path) -> None:
    """Raise ``NotAFile`` if ``path`` is a device, a pipe or a socket, or a link to one, or
    lies in ``/dev``, ``/proc`` or ``/sys``: a file published there takes its place (a
    pipe named as the output was replaced by a MIDI file; ``-o /dev/null --overwrite`` run
    as root would replace the system's /dev/null, and ``-o /dev/stdout`` its link)."""
    try:
        mode = os.stat(path).st_mode  # through links: /dev/stdout is one
    except (OSError, ValueError):  # none yet, or a dangling link
        mode = None
    if mode is not None and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise NotAFile(f"{path}: not a file but a device, pipe or socket, which writing "
                       "would replace")
    if os.name != "nt":
        folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
        if any(folder == top or folder.startswith(top + "/") for top in _SYSTEM_FOLDERS):
            raise NotAFile(f"{path}: in {folder}, a folder of devices and processes, where "
                           "a file written would replace what is there")


def _publish(tmp: str, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise OutputExists(f"{path} exists; use --overwrite to replace it") from None
    except OSError as error:
        # Filesystems without hard links (some FUSE and SMB mounts): rename into a
        # name checked just before; the window is the length of one system call.
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if path.exists():
            raise OutputExists(f"{path} exists; use --overwrite to replace it") from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def write_atomic(path: str | Path, data: bytes, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it.

    With ``overwrite=False`` an existing ``path`` (even one created by another
    process while this one was writing) raises ``OutputExists`` and is left as
    it was.  The temporary file is removed on any failure or interruption; a
    failed write (disk full...) raises ``TranscribeError`` naming ``path``.  Inside
    ``all_or_none`` the file is published when the block ends.
    """
    path = Path(path)
    check_not_special(path)  # before a temporary file is made beside it (in /dev...)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _cannot_write(path, error) from None
    tmp = None
    try:
        # The temporary name adds 14 characters to the target's: cut, so that a target
        # name the filesystem allows (up to 255 bytes) never fails for its temporary's.
        # Ctrl-C waits until it is named here, where it is removed on the way out.
        with interruptions_deferred():
            handle, tmp = tempfile.mkstemp(prefix=f".{temporary_stem(path.name)}.",
                                           suffix=".tmp", dir=path.parent)
            file = os.fdopen(handle, "wb")
        with file:
            file.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual mode
        staged = _STAGED.get()
        if staged is not None:  # published when the ``all_or_none`` block ends
            staged.append((tmp, path, overwrite))
            return
        _publish(tmp, path, overwrite)
    except OSError as error:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise _cannot_write(path, error) from None
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


TEMPORARY_NAME_BYTES = 200  # of the target's name, in its temporary's


def temporary_stem(name: str) -> str:
    """What the temporary files of an output named ``name`` start with, after their dot."""
    return _cut(name, TEMPORARY_NAME_BYTES)


_TEMPORARY = re.compile(r"\.(?P<stem>.+)\.[a-z0-9_]{8}\.tmp")  # mkstemp's 8 characters


def temporary_of(name: str) -> str | None:
    """The ``temporary_stem`` of the output that the file named ``name`` was to become, if
    it is a temporary file of ``write_atomic`` (left by a run killed outright)."""
    match = _TEMPORARY.fullmatch(name)
    return match["stem"] if match else None


STDIO = "-"  # on a command line: standard input as an input, standard output as -o


def named_path(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a ``Path``; ``TranscribeError`` if it is empty, which ``Path`` takes for
    the current folder (an unset variable as the audio read the folder, as the output wrote
    there)."""
    if not os.fspath(path):
        raise TranscribeError(f"an empty path was given as the {what}; name a file")
    return Path(path)


def check_no_tilde(name: str, option: str | None, folder: bool = False) -> None:
    """Refuse a path as typed (``name``, given as ``option`` if one is named) that begins
    with a folder ``~`` no shell expanded (``-o "~/midi/"``): a folder named ``~`` was made
    in the current one, which ``rm -rf ~`` then removes the home folder in place of.  One
    that exists is used as it is.  ``folder``: ``name`` is a folder to make."""
    parts = Path(name).parts
    first = parts[0] if parts else ""
    folder = folder or len(parts) > 1
    if first.startswith("~") and folder and not os.path.lexists(first):
        given = f"{option} {name}" if option else name
        raise UsageError(f"{given}: nothing made ~ the home folder (a shell does "
                         f"outside quotes), and a folder named {first} would be made here; "
                         "write it outside quotes, or with $HOME")


def is_stdio(path) -> bool:
    """Whether ``path`` is ``-``, a command line's name for standard input or output."""
    return path is not None and str(path) == STDIO


_UNREADABLE = re.compile(r"[\ud800-\udfff]")  # bytes of a name that are not UTF-8, escaped
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def readable(text: str) -> str:
    """``text`` (a file name, or a message naming one) as it can be shown and encoded: the
    bytes of a name that are not UTF-8 (an old archive's Latin-1 names, which Python keeps
    as lone surrogates) as U+FFFD, and control characters (a newline in a name) as "?", as
    ``ls`` shows them.  Encoding such a name as UTF-8 failed the job that drew it in a
    figure's title or on a review page."""
    return _CONTROL.sub("?", _UNREADABLE.sub("\ufffd", text))


def _cut(name: str, max_bytes: int) -> str:
    """``name`` cut to at most ``max_bytes`` bytes as the filesystem spells it."""
    return os.fsdecode(os.fsencode(name)[:max_bytes])


def _cannot_write(path: Path, error: OSError) -> TranscribeError:
    """A failed write (disk full, permissions, a vanished folder) named by its output."""
    message = f"{path}: cannot write it ({error.strerror or error})"
    if error.errno in BATCH_STOPPERS:
        return OutputsUnwritable(message, error.errno)
    return TranscribeError(message)


def existing_folder(folder: Path) -> Path:
    """``folder``, or the nearest folder above it that exists: where a file written in
    ``folder`` is made today (the folders between are made with it)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def check_writable(folder: Path) -> None:
    """Raise ``TranscribeError`` unless a file can be created in ``folder``: tried there,
    or where it is not made yet, in the nearest folder above it that is (``folder`` is made
    with its first output; made here, it stood empty where every file of its failed).

    Used before any audio is read, so an unwritable output fails in a second,
    not after an hour of transcription.
    """
    try:
        handle, tmp = tempfile.mkstemp(prefix=".amt-write-check.", suffix=".tmp",
                                       dir=existing_folder(folder))
    except OSError as error:
        raise TranscribeError(f"{folder}: cannot write there ({error.strerror or error})") \
            from None
    os.close(handle)
    os.unlink(tmp)


# A folder's clock: runs on several machines sharing a folder judge each other's markers
# and locks by their age, and a file's time is stamped by the file server (NFS), whose
# clock may be minutes off this machine's.
CLOCK_MEASURED_S = 300.0  # a filesystem's clock offset is measured again after this


_CLOCK_OFFSETS: dict[int, tuple[float, float]] = {}  # st_dev: (offset s, measured at)


def folder_clock(folder: str | os.PathLike) -> float:
    """The time now by the clock that stamps the files in ``folder``: this machine's, plus
    the offset of the file server's where the folder is shared.  The offset is measured by
    making a hidden file there and reading its time, once a ``CLOCK_MEASURED_S`` for each
    filesystem; this machine's clock where no file can be made."""
    import time
    now = time.time()
    try:
        device = os.stat(folder).st_dev
    except OSError:
        return now
    known = _CLOCK_OFFSETS.get(device)
    if known is not None and abs(now - known[1]) < CLOCK_MEASURED_S:
        return now + known[0]
    try:
        with interruptions_deferred():
            descriptor, name = tempfile.mkstemp(prefix=".amt-clock.", dir=folder)
            try:
                stamped = os.fstat(descriptor).st_mtime
            finally:
                os.close(descriptor)
                os.unlink(name)
    except OSError:
        return now + (known[0] if known is not None else 0.0)
    offset = stamped - now
    _CLOCK_OFFSETS[device] = (offset, now)
    return now + offset


_CLOCK_PROBE = re.compile(r"\.amt-clock\.[a-z0-9_]{8}")  # mkstemp's 8 characters
CLOCK_PROBE_STALE_S = 10.0  # a probe lives for microseconds: one this old a killed run left


def clock_probe_left(folder: str | os.PathLike, name: str) -> bool:
    """Whether ``name`` in ``folder`` is the probe of a ``folder_clock`` that a run killed
    outright (SIGKILL) left in its microseconds."""
    return (_CLOCK_PROBE.fullmatch(name) is not None
            and older_than(os.path.join(folder, name), CLOCK_PROBE_STALE_S))


def age_s(path: str | os.PathLike) -> float:
    """Seconds since the file at ``path`` was last changed, by its folder's clock
    (``folder_clock``); raises ``OSError`` as ``os.stat`` does."""
    changed = os.stat(path).st_mtime
    return folder_clock(os.path.dirname(os.path.abspath(path))) - changed


def older_than(path: str | os.PathLike, seconds: float) -> bool:
    """Whether the file at ``path`` was last changed more than ``seconds`` ago, by its
    folder's clock (not if it is gone)."""
    try:
        return age_s(path) > seconds
    except OSError:
        return False


def break_stale_lock(path: str | os.PathLike, seconds: float) -> bool:
    """Remove the lock at ``path`` if it was last changed more than ``seconds`` ago (by its
    folder's clock): a run killed while holding it left it.  Returns whether it was removed.
    Of runs that find it so at the same moment, none removes the lock that another of them
    has made in its place since (``remove_if_same``)."""
    path = os.fspath(path)
    try:
        judged, held_by = look_at(path)
        if folder_clock(os.path.dirname(os.path.abspath(path))) - judged.st_mtime <= seconds:
            return False
        return remove_if_same(path, judged, held_by)
    except OSError:
        return False


_LOOK = 4096  # how much of a file ``remove_if_same`` compares


def look_at(path: str | os.PathLike) -> tuple[os.stat_result, bytes]:
    """The file at ``path``'s inode and times, and its first bytes, at one look: what
    ``remove_if_same`` is to compare it with."""
    with open(path, "rb") as file:
        return os.fstat(file.fileno()), file.read(_LOOK)


def remove_if_same(path: str | os.PathLike, judged: os.stat_result,
                   contents: bytes | None = None) -> bool:
    """Remove the file at ``path`` if it is still the one ``judged`` was taken of, and holds
    ``contents`` (its first ``_LOOK`` bytes) when they are given.  Returns whether it was
    removed; False if it is gone.

    Of runs that judge a file (a dead run's lock or marker) at the same moment, none removes
    the file that another of them has put in its place since: unlinked by name, a file made
    between one run's look and its unlink was removed, and two runs held what it guards.  So
    it is moved aside, and put back if it is not the file judged: another inode, or (a new
    file may take the number of the inode removed) other contents.  Times are not compared:
    a file server's may change between two looks (SMB refreshes them).  Errors of the move
    but a missing file are raised (PermissionError on Windows while another run reads it)."""
    import time
    path = os.fspath(path)
    aside = f"{path}.{os.getpid()}.{time.monotonic_ns()}.dead"
    with interruptions_deferred():
        try:
            os.rename(path, aside)
        except FileNotFoundError:  # another run took it down
            return False
        try:
            try:
                with open(aside, "rb") as moved:
                    same = (os.path.samestat(os.fstat(moved.fileno()), judged)
                            and (contents is None or moved.read(_LOOK) == contents))
            except OSError:
                same = False
            if not same:  # another run's, made since: put back
                try:
                    os.link(aside, path)
                except FileExistsError:  # a third run's stands there now
                    pass
                except OSError:  # a filesystem without hard links
                    if not os.path.exists(path):
                        with contextlib.suppress(OSError):
                            os.rename(aside, path)
            return same
        finally:
            with contextlib.suppress(OSError):
                os.unlink(aside)
