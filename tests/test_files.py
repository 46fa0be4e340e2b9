"""The atomic writer: nothing half-written, nothing replaced unless asked, even under a race."""

import multiprocessing
import os

import pytest

from transcribe.files import OutputExists, check_writable, write_atomic
from transcribe.errors import TranscribeError


def test_writes_and_replaces_only_when_asked(tmp_path):
    path = tmp_path / "sub" / "x.mid"
    write_atomic(path, b"one", overwrite=False)
    assert path.read_bytes() == b"one"
    with pytest.raises(OutputExists, match="exists"):
        write_atomic(path, b"two", overwrite=False)
    assert path.read_bytes() == b"one"
    write_atomic(path, b"three")
    assert path.read_bytes() == b"three"
    assert os.listdir(path.parent) == ["x.mid"]


def _race(path, data, start, results):
    start.wait()  # both processes write at once
    try:
        write_atomic(path, data, overwrite=False)
        results.put(data)
    except OutputExists:
        results.put(b"refused")


def test_two_processes_publishing_one_file_never_both_win(tmp_path):
    context = multiprocessing.get_context("spawn")
    path = tmp_path / "x.mid"
    for _ in range(5):
        path.unlink(missing_ok=True)
        start, results = context.Barrier(2), context.Queue()
        workers = [context.Process(target=_race, args=(path, data, start, results))
                   for data in (b"first", b"second")]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
        outcome = [results.get(timeout=5) for _ in workers]
        assert outcome.count(b"refused") == 1, outcome
        winner = next(data for data in outcome if data != b"refused")
        assert path.read_bytes() == winner
        assert os.listdir(tmp_path) == ["x.mid"]


def test_an_unwritable_folder_is_found_before_any_work(tmp_path):
    check_writable(tmp_path)
    with pytest.raises(TranscribeError, match="cannot write there"):
        check_writable(type(tmp_path)("/proc"))
    with pytest.raises(TranscribeError, match="^/proc/no/more: cannot write there"):
        check_writable(type(tmp_path)("/proc/no/more"))
    # A folder not made yet is tried where it would be made, and left to its first output
    # (made for the check, it stood empty where every file of its failed).
    check_writable(tmp_path / "new" / "deeper")
    assert os.listdir(tmp_path) == []


def test_a_failed_write_names_its_output_and_leaves_nothing(tmp_path):
    import subprocess
    import sys
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    with pytest.raises(TranscribeError, match=f"{blocker / 'x.mid'}: cannot write it"):
        write_atomic(blocker / "x.mid", b"MThd")
    # A full disk, as the kernel reports it: a file-size limit makes write() fail (EFBIG).
    target = tmp_path / "big.png"
    script = ("import resource, signal, sys\n"
              "from transcribe.files import write_atomic\n"
              "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
              "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
              "try:\n"
              f"    write_atomic({str(target)!r}, bytes(100_000))\n"
              "except Exception as error:\n"
              "    print(type(error).__name__, error)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.stdout.strip() == f"TranscribeError {target}: cannot write it (File too large)", \
        result.stdout + result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


def test_a_pipe_or_a_device_folder_is_never_written_over(tmp_path):
    """Every writer (reports, amt-evaluate's --csv, weights) publishes by renaming over the
    target: a pipe there was replaced, and so would /dev/stdout's link be, run as root."""
    import stat
    from transcribe.files import NotAFile, write_atomic
    fifo = tmp_path / "scores.csv"
    os.mkfifo(fifo)
    with pytest.raises(NotAFile, match="not a file but a device, pipe or socket"):
        write_atomic(fifo, b"x")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and os.listdir(tmp_path) == ["scores.csv"]
    with pytest.raises(NotAFile, match="in /dev, a folder of devices and processes"):
        write_atomic("/dev/amt-transcribe-test.csv", b"x")
    assert not os.path.exists("/dev/amt-transcribe-test.csv")


def test_ctrl_c_as_a_temporary_file_is_made_leaves_nothing(tmp_path, monkeypatch, ctrl_c):
    """Ctrl-C between a temporary file's making and its naming left it for good."""
    import tempfile
    from transcribe import files
    made = tempfile.mkstemp

    def then_ctrl_c(*args, **kwargs):
        handle, name = made(*args, **kwargs)
        ctrl_c()
        return handle, name

    monkeypatch.setattr(files.tempfile, "mkstemp", then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(tmp_path / "a.mid", b"notes")
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_as_a_jobs_outputs_are_published_leaves_all_or_none(tmp_path, monkeypatch,
                                                                   ctrl_c):
    from transcribe import files
    published = files._publish

    def then_ctrl_c(tmp, path, overwrite):
        published(tmp, path, overwrite)
        if path.suffix == ".png":
            ctrl_c()

    monkeypatch.setattr(files, "_publish", then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        with files.all_or_none():
            write_atomic(tmp_path / "a.png", b"plot", overwrite=False)
            write_atomic(tmp_path / "a.mid", b"notes", overwrite=False)
    assert list(tmp_path.iterdir()) == []


def test_a_file_judged_is_removed_only_if_it_is_still_the_one_judged(tmp_path, monkeypatch):
    """A dead run's lock or marker is taken down by the runs that find it so: one that
    another run has put in its place since the look is put back, whether it is another
    file or the same inode with other contents, on filesystems with hard links or not."""
    from transcribe import files
    path = tmp_path / "lock"
    path.write_bytes(b"12 dead")
    judged, held = files.look_at(path)
    assert files.remove_if_same(path, judged, held) and list(tmp_path.iterdir()) == []
    assert not files.remove_if_same(path, judged, held)  # gone: another run took it down

    def replaced(write):  # the file another run leaves standing after this run's look
        path.write_bytes(b"12 dead")
        look = files.look_at(path)
        write()
        assert not files.remove_if_same(path, *look)
        assert path.read_bytes() == b"34 alive"
        assert [p.name for p in tmp_path.iterdir()] == ["lock"]  # nothing left aside
        path.unlink()

    def another_file():
        path.unlink()
        path.write_bytes(b"34 alive")

    replaced(another_file)
    replaced(lambda: path.write_bytes(b"34 alive"))  # the same inode, other contents

    def no_hard_links(*_):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_hard_links)
    replaced(another_file)
    # Contents not given: the inode alone is compared.
    path.write_bytes(b"12 dead")
    judged = os.stat(path)
    path.write_bytes(b"12 dead, touched")
    assert files.remove_if_same(path, judged) and not path.exists()
