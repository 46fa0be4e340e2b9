"""Runs sharing a batch's outputs: the markers that say which run transcribes a file
(the CLI's use of them is tested in test_cli.py and test_cluster.py)."""

import os
import platform
import subprocess
import time

import pytest

from transcribe import claims
from transcribe.batch import Job
from waiting import wait_until


def test_a_running_jobs_marker_is_touched_while_it_runs(tmp_path, monkeypatch):
    """Runs on other machines tell a run that is alive from one that died by it."""
    monkeypatch.setattr(claims, "HEARTBEAT_S", 0.05)
    beat = claims.Heartbeat()
    marker = tmp_path / ".a.mid.amt-running"
    marker.write_text("x")
    os.utime(marker, (1000, 1000))
    beat.add(marker)
    assert wait_until(lambda: marker.stat().st_mtime >= time.time() - 60, 10, 0.01)
    beat.remove(marker)
    time.sleep(0.2)  # a beat under way ends
    os.utime(marker, (1000, 1000))
    time.sleep(0.3)
    assert marker.stat().st_mtime == 1000  # no longer touched


@pytest.mark.parametrize("clock_off_s", [300, -300])
def test_markers_and_locks_are_judged_by_the_clock_that_stamps_their_folder(
        tmp_path, monkeypatch, clock_off_s):
    """Runs on several machines share a folder on a file server, which stamps its files'
    times by its own clock.  A machine whose clock was 5 minutes ahead of it took a live
    run's marker for a dead run's (and transcribed its file too); one 5 minutes behind left
    a dead run's file to it, and kept a killed run's lock, for 5 more minutes.  Here the
    filesystem's clock is the real one and this process's is set off it."""
    from transcribe import files
    from transcribe.progress import REPORT_LOCK_STALE_S, report_lock
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + clock_off_s)
    monkeypatch.setattr(files, "_CLOCK_OFFSETS", {})
    job = Job(tmp_path / "a.wav", tmp_path / "a.mid")
    marker = claims.marker_of(job)
    marker.write_bytes(b"amt-transcribe, process 1 on another-host: a.wav")  # touched now
    assert claims.holder(job) == "process 1 on another-host"
    os.utime(marker, (real_time() - 3 * claims.STALE_S,) * 2)  # its run died 6 minutes ago
    assert claims.holder(job) is claims.DIED
    assert files.age_s(marker) == pytest.approx(3 * claims.STALE_S, abs=5)
    # A takeover's lock and a report's lock: kept while fresh, broken once a killed run's.
    lock = tmp_path / f".{job.output.name}{claims.RUNNING_SUFFIX}.takeover"
    lock.write_bytes(b"")
    assert claims.leftover_of(str(tmp_path), lock.name) is None
    os.utime(lock, (real_time() - 2 * claims.TAKEOVER_STALE_S,) * 2)
    assert claims.leftover_of(str(tmp_path), lock.name) == job.output.name
    report = tmp_path / "report.csv"
    report_lock_file = tmp_path / ".report.csv.amt-lock"
    report_lock_file.write_bytes(b"")
    began = time.monotonic()
    with report_lock(report, wait_s=0.3):  # a live run's: waited for, not broken
        assert report_lock_file.exists()
    assert time.monotonic() - began >= 0.3
    os.utime(report_lock_file, (real_time() - 2 * REPORT_LOCK_STALE_S,) * 2)
    began = time.monotonic()
    with report_lock(report, wait_s=5):
        assert time.monotonic() - began < 1  # a killed run's: broken, this run's taken
    assert not report_lock_file.exists()


def broken_and_taken_after_the_look(lock, theirs: bytes, monkeypatch):
    """Make another run break the killed run's ``lock`` and put its own up (``theirs``)
    between this run's look at the lock's time and what it does next."""
    from transcribe import files
    looked = files.folder_clock

    def folder_clock(folder):
        now = looked(folder)
        if lock.read_bytes() != theirs:  # the killed run's still
            lock.unlink()
            lock.write_bytes(theirs)
        return now

    monkeypatch.setattr(files, "folder_clock", folder_clock)


def test_a_reports_lock_is_held_in_a_folder_not_made_yet(tmp_path):
    """The report's folder is made with its first write (made by the check that it can be
    written, it stood empty where every file failed): its lock makes it, or the first
    write of runs sharing the report went unlocked."""
    from transcribe.progress import report_lock
    report = tmp_path / "new" / "report.csv"
    with report_lock(report, wait_s=0.3):
        assert (report.parent / ".report.csv.amt-lock").exists()
    assert list(report.parent.iterdir()) == []


def test_a_killed_runs_lock_is_broken_by_one_run_only(tmp_path, monkeypatch):
    """Two runs finding the lock a killed run left (a report's, a takeover's) at once: the
    first broke it and took its own, and the other, removing the lock by its name, removed
    that fresh one and took its own too: both held it, and one report could miss the
    other's rows.  Here another run breaks it and takes it between this run's look at it
    and its removal; this run waits for it and leaves it standing."""
    from transcribe.progress import REPORT_LOCK_STALE_S, report_lock
    report = tmp_path / "report.csv"
    lock = tmp_path / ".report.csv.amt-lock"
    lock.write_bytes(b"12 7d0f3c2a9b1e4f60\n")  # a killed run's
    os.utime(lock, (time.time() - 2 * REPORT_LOCK_STALE_S,) * 2)
    broken_and_taken_after_the_look(lock, b"the other run's", monkeypatch)
    began = time.monotonic()
    with report_lock(report, wait_s=0.3):
        assert lock.read_bytes() == b"the other run's"
    assert time.monotonic() - began >= 0.3  # waited for, as a live run's lock
    assert lock.read_bytes() == b"the other run's"  # and not taken down on the way out
    assert [p.name for p in tmp_path.iterdir()] == [lock.name]  # nothing set aside is left
    # A takeover's lock, found as a dead run's marker is taken back: the same.
    job = Job(tmp_path / "a.wav", tmp_path / "a.mid")
    marker = claims.marker_of(job)
    marker.write_bytes(b"amt-transcribe, process 1 on another-host: a.wav")
    os.utime(marker, (time.time() - 3 * claims.STALE_S,) * 2)
    takeover = marker.with_name(f"{marker.name}.takeover")
    takeover.write_bytes(b"")
    os.utime(takeover, (time.time() - 2 * claims.TAKEOVER_STALE_S,) * 2)
    broken_and_taken_after_the_look(takeover, b"the other run's", monkeypatch)
    claims._take_down_dead(marker)
    assert takeover.read_bytes() == b"the other run's"
    assert marker.exists()  # left to the run that holds the takeover
    # A report's lock this run held, broken while it was stopped (Ctrl-Z) and taken by
    # another run, is that run's: left standing.
    lock.unlink()
    with report_lock(report, wait_s=0.3):
        lock.unlink()
        lock.write_bytes(b"the other run's")
    assert lock.read_bytes() == b"the other run's"


def test_a_stopped_run_takes_down_the_markers_it_holds_but_not_those_of_deaths(tmp_path):
    """Ctrl-C between claiming a file and handing it to a worker (or a Ray task) left its
    marker up: the next run took it for a file a run had died on (seen in a cluster test)."""
    jobs = [Job(tmp_path / f"{name}.wav", tmp_path / f"{name}.mid") for name in "ab"]
    for job in jobs:
        assert claims.claim(job) == []
        assert claims.holder(job) is claims.DIED  # put up by this process: not another run's
    claims.let_stand(jobs[1])  # a worker died on b.wav: its marker is the record of it
    claims.release_held()
    assert not claims.marker_of(jobs[0]).exists()
    assert claims.marker_of(jobs[1]).exists()


def test_a_marker_is_put_up_whole_or_not_at_all(tmp_path):
    """Written in place, a marker was empty for a moment (on NFS until it was closed): a
    run reading it then took it for a dead run's, and both transcribed the file."""
    marker = tmp_path / ".a.mid.amt-running"
    claims.put_up(marker, b"one\n")
    with pytest.raises(FileExistsError):
        claims.put_up(marker, b"two\n")
    assert marker.read_bytes() == b"one\n"
    assert [p.name for p in tmp_path.iterdir()] == [marker.name]  # nothing staged is left


def taken_over_after_the_look(marker, theirs: bytes):
    """``claims.holder``, as it is when another run takes the file over (its marker
    ``theirs``) between this run's look at a dead run's marker and what it does next."""
    looked = claims.holder

    def holder(job):
        found = looked(job)
        if found is claims.DIED and marker.read_bytes() != theirs:
            marker.unlink()
            claims.put_up(marker, theirs)
        return found

    return holder


def test_a_file_a_run_died_on_is_taken_back_by_one_run_only(tmp_path, monkeypatch):
    """Runs resuming a killed batch at once (two terminals, two machines) each found the
    marker of the file it died on, and each replaced it with its own: all of them
    transcribed that file, and all but one failed it ("exists").  Here another run takes it
    over between this run's look at the marker and its move."""
    job = Job(tmp_path / "a.wav", tmp_path / "a.mid")
    marker = claims.marker_of(job)
    dead = subprocess.Popen(["true"])
    dead.wait()
    other = subprocess.Popen(["sleep", "60"])  # the run that took it over, alive
    theirs = f"amt-transcribe, process {other.pid} on {platform.node()}: a.wav\n".encode()
    looked = claims.holder
    try:
        marker.write_text(f"amt-transcribe, process {dead.pid} on {platform.node()}: a.wav\n")
        monkeypatch.setattr(claims, "holder", taken_over_after_the_look(marker, theirs))
        assert claims.claim(job) is None  # the file is the other run's
        assert marker.read_bytes() == theirs
        monkeypatch.setattr(claims, "holder", looked)
        other.kill()
        other.wait()
        assert claims.claim(job) == []  # its run died too: this one takes it back
        assert marker.read_bytes().startswith(b"amt-transcribe, process %d " % os.getpid())
        assert [p.name for p in tmp_path.iterdir()] == [marker.name]  # nothing set aside left
    finally:
        other.kill()
        other.wait()
        claims.release_held()


def test_a_marker_taken_over_meanwhile_is_never_down_for_a_third_run_to_take(tmp_path,
                                                                            monkeypatch):
    """Moved aside to be judged again, the marker another run had just taken over was gone
    for a moment; a third run putting its own up then held the file too, and both
    transcribed it.  Here the third run tries to put its marker up at every look this run
    takes at one."""
    job = Job(tmp_path / "a.wav", tmp_path / "a.mid")
    marker = claims.marker_of(job)
    dead = subprocess.Popen(["true"])
    dead.wait()
    second, third = subprocess.Popen(["sleep", "60"]), subprocess.Popen(["sleep", "60"])
    theirs = f"amt-transcribe, process {second.pid} on {platform.node()}: a.wav\n".encode()
    judged = claims._judge
    got_in = []

    def a_third_run_tries(path):
        try:
            claims.put_up(marker, b"amt-transcribe, process %d on %s: a.wav\n"
                          % (third.pid, platform.node().encode()))
            got_in.append(path.name)
        except FileExistsError:
            pass
        return judged(path)

    try:
        marker.write_text(f"amt-transcribe, process {dead.pid} on {platform.node()}: a.wav\n")
        monkeypatch.setattr(claims, "holder", taken_over_after_the_look(marker, theirs))
        monkeypatch.setattr(claims, "_judge", a_third_run_tries)
        assert claims.claim(job) is None  # the file is the second run's
        assert marker.read_bytes() == theirs and not got_in
        assert [p.name for p in tmp_path.iterdir()] == [marker.name]  # no lock, nothing aside
    finally:
        for run in (second, third):
            run.kill()
            run.wait()
        claims.release_held()


def test_a_takeover_waits_for_anothers_and_breaks_one_left_by_a_killed_run(tmp_path):
    job = Job(tmp_path / "a.wav", tmp_path / "a.mid")
    marker = claims.marker_of(job)
    dead = subprocess.Popen(["true"])
    dead.wait()
    marker.write_text(f"amt-transcribe, process {dead.pid} on {platform.node()}: a.wav\n")
    lock = marker.with_name(marker.name + ".takeover")
    lock.write_text("amt-transcribe, process 1 on elsewhere: taking over\n")
    try:
        # Another run's takeover under way: its marker is left to it.
        claims._take_down_dead(marker)
        assert marker.exists() and lock.exists()
        # One left by a run killed in it is broken, and the file is taken back.
        os.utime(lock, (time.time() - claims.TAKEOVER_STALE_S - 5,) * 2)
        assert claims.claim(job) == []
        assert marker.read_bytes().startswith(b"amt-transcribe, process %d " % os.getpid())
        assert [p.name for p in tmp_path.iterdir()] == [marker.name]
    finally:
        claims.release_held()


def test_ctrl_c_as_a_marker_is_put_up_leaves_no_marker(tmp_path, monkeypatch, ctrl_c):
    """Ctrl-C just after a marker was put up, before the run held it, left it standing: the
    next run took it for a file a run had died on ("a run before this one died while
    transcribing ..."), and a cluster batch's left its staging file."""
    job = Job(tmp_path / "a.wav", tmp_path / "a.mid")
    put_up = claims.put_up

    def then_ctrl_c(marker, text):
        put_up(marker, text)
        ctrl_c()

    monkeypatch.setattr(claims, "put_up", then_ctrl_c)
    try:
        with pytest.raises(KeyboardInterrupt):
            claims.claim(job)
        claims.release_held()  # as a stopped run does on its way out
        assert list(tmp_path.iterdir()) == []
    finally:
        claims.release_held()
