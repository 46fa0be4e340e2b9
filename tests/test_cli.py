"""The command line, through click's runner and through real subprocesses."""

import contextlib
import csv
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import torch
import soundfile as sf
from click.testing import CliRunner

from transcribe import claims, constants as C
from transcribe.cli import main
from waiting import wait_until


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


def write_wav(path, seconds=1.0, rate=C.SAMPLE_RATE, channels=1, subtype="PCM_16"):
    rng = np.random.default_rng(0)
    data = (rng.standard_normal((int(seconds * rate), channels)) * 0.05).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, rate, subtype=subtype)
    return path


def test_single_file_writes_mid_beside_input_and_refuses_to_overwrite(tmp_path, tiny_weights):
    wav = write_wav(tmp_path / "song.wav")
    result = invoke(wav, "--weights", tiny_weights, "-q")
    assert result.exit_code == 0, result.output
    midi = pretty_midi.PrettyMIDI(str(tmp_path / "song.mid"))
    assert midi.instruments[0].program == 0
    before = (tmp_path / "song.mid").read_bytes()
    again = invoke(wav, "--weights", tiny_weights, "-q")
    assert again.exit_code == 1
    assert "exists" in again.output and "--overwrite" in again.output
    assert (tmp_path / "song.mid").read_bytes() == before
    assert invoke(wav, "--weights", tiny_weights, "-q", "--overwrite").exit_code == 0


def test_an_empty_name_is_refused_not_taken_for_the_current_folder(tmp_path, tiny_weights,
                                                                   monkeypatch):
    """click takes "" for the current folder: `amt-transcribe "$SONG" -o out/` with the
    variable unset transcribed every recording under it, and `-o ""` wrote there."""
    from transcribe.training.cli import evaluate_main
    write_wav(tmp_path / "music" / "a.wav")
    monkeypatch.chdir(tmp_path / "music")
    for args in (["", "-o", tmp_path / "out"], ["a.wav", "-o", ""],
                 ["a.wav", "--report", "", "-o", tmp_path / "out.mid"],
                 ["a.wav", "--weights", "", "-o", tmp_path / "out.mid"]):
        result = invoke(*args, *([] if "--weights" in args else ["--weights", tiny_weights]))
        assert result.exit_code == 2, result.output
        assert "an empty name (an unset shell variable?)" in result.output
    result = CliRunner().invoke(evaluate_main, ["", str(tmp_path)])
    assert result.exit_code == 2 and "an empty name" in result.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.wav", "music"]
    assert invoke(".", "-o", tmp_path / "out", "--weights", tiny_weights, "-q").exit_code == 0


def test_several_recordings_given_a_files_name_as_output_are_refused(tmp_path, tiny_weights):
    """`amt-transcribe *.wav -o all.mid` made a folder all.mid/ of one MIDI file per
    recording.  A folder so named by the user (it exists, or the name ends in /) is one."""
    for name in ("a.wav", "b.wav", "folder/c.wav"):
        write_wav(tmp_path / name)
    for inputs, output in (([tmp_path / "a.wav", tmp_path / "b.wav"], "all.mid"),
                           ([tmp_path / "folder"], "notes.csv"), ([tmp_path / "folder"], "x.WAV")):
        result = invoke(*inputs, "-o", tmp_path / output, "--weights", tiny_weights)
        assert result.exit_code == 2
        folder = tmp_path / Path(output).stem
        assert result.output == (f"amt-transcribe: error: {tmp_path / output}: a file's name for "
                                 "the output of several recordings, which get one file each in "
                                 f"a folder; name the folder (-o {folder}{os.sep})\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "b.wav", "folder"]
    (tmp_path / "made.mid").mkdir()
    for output in ("made.mid", f"new.mid{os.sep}"):
        assert invoke(tmp_path / "a.wav", tmp_path / "b.wav", "-o", f"{tmp_path}{os.sep}{output}",
                      "--weights", tiny_weights, "-q").exit_code == 0
        assert (tmp_path / output / "a.mid").is_file() and (tmp_path / output / "b.mid").is_file()


@pytest.mark.parametrize("error, strerror, stopped", [
    ("ENOSPC", "No space left on device", "no room left for the outputs (the disk is full, or "
     "the quota spent); 2 files not started: make room"),
    ("EROFS", "Read-only file system", "the outputs' filesystem is read-only (mounted so, or "
     "remounted so after errors on its disk); 2 files not started: make it writable"),
    ("EIO", "Input/output error", "the outputs' disk gave an input/output error (failing, "
     "unplugged, or a file server gone); 2 files not started: check the disk"),
    ("ENOTCONN", "Transport endpoint is not connected", "the outputs' filesystem is no longer "
     "connected (a network or FUSE mount dropped: sshfs, rclone); 2 files not started: mount "
     "it again")])
def test_a_batch_whose_disk_is_full_or_gone_starts_no_more_files(tmp_path, tiny_weights,
                                                                   monkeypatch, error, strerror,
                                                                   stopped):
    """Each file of an archive was transcribed and then failed to be written, one after
    another, for hours: the disk was full, or turned read-only after errors, or a network
    mount had dropped.  The batch now starts no more files, and says how to go on once the
    outputs can be written; the files not started are "not done"."""
    import errno
    import tempfile
    for name in "abcd":
        write_wav(tmp_path / "in" / f"{name}.wav")
    out = tmp_path / "out"
    made = tempfile.mkstemp

    def stuck_after_a(*args, prefix="", dir=None, **kwargs):  # once a.mid is written
        if dir is not None and Path(dir) == out and prefix.startswith((".b.", ".c.", ".d.")):
            raise OSError(getattr(errno, error), strerror)
        return made(*args, prefix=prefix, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", stuck_after_a)
    result = invoke(tmp_path / "in", "-o", out, "--report", tmp_path / "report.csv",
                    "--weights", tiny_weights)
    assert result.exit_code == 1
    assert result.output.splitlines()[-2:] == [
        f"amt-transcribe: failed: {out / 'b.mid'}: cannot write it ({strerror})",
        f"amt-transcribe: stopped: {stopped}, then go on with --skip-existing"]
    assert "4 files: 1 done, 1 failed, 2 not done" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["a.mid"]
    rows = list(csv.DictReader(open(tmp_path / "report.csv")))
    assert [row["status"] for row in rows] == ["done", "failed", "not done", "not done"]
    monkeypatch.setattr(tempfile, "mkstemp", made)  # the outputs writable again: it goes on
    assert invoke(tmp_path / "in", "-o", out, "--skip-existing", "--weights", tiny_weights,
                  "-q").exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.mid", "b.mid", "c.mid", "d.mid"]


def test_a_file_that_cannot_be_written_for_its_own_reason_stops_no_batch(tmp_path,
                                                                        tiny_weights,
                                                                        monkeypatch):
    """An output that cannot be written for a reason of its own (a sub-folder without
    write permission) fails alone; the batch goes on."""
    import errno
    import tempfile
    for name in "abc":
        write_wav(tmp_path / "in" / f"{name}.wav")
    out = tmp_path / "out"
    made = tempfile.mkstemp

    def refused_for_b(*args, prefix="", dir=None, **kwargs):
        if dir is not None and Path(dir) == out and prefix.startswith(".b."):
            raise OSError(errno.EACCES, "Permission denied")
        return made(*args, prefix=prefix, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", refused_for_b)
    result = invoke(tmp_path / "in", "-o", out, "--weights", tiny_weights)
    assert result.exit_code == 1
    assert "3 files: 2 done, 1 failed" in result.output
    assert result.output.splitlines()[-1] == (
        f"amt-transcribe: failed: {out / 'b.mid'}: cannot write it (Permission denied)")
    assert sorted(p.name for p in out.iterdir()) == ["a.mid", "c.mid"]


def test_a_quoted_tilde_never_makes_a_folder_named_tilde(tmp_path, tiny_weights, monkeypatch):
    """`-o "~/midi/"`: no shell expanded the ~, and a folder named ~ was made in the
    current one, which a later `rm -rf ~` would take for the home folder."""
    wav = write_wav(tmp_path / "in" / "a.wav")
    write_wav(tmp_path / "in" / "b.wav")
    monkeypatch.chdir(tmp_path)
    for args in ([wav, "-o", "~/midi/"], [wav, "-o", "~/a.mid"], [tmp_path / "in", "-o", "~"],
                 [wav, "-o", "a.mid", "--report", "~/report.csv"]):
        result = invoke(*args, "--weights", tiny_weights)
        assert result.exit_code == 2
        assert "nothing made ~ the home folder (a shell does outside quotes), and a folder " \
               "named ~ would be made here; write it outside quotes, or with $HOME" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
    # A name that only begins with ~ is a file's; a folder ~ made on purpose is used.
    assert invoke(wav, "-o", "~a.mid", "--weights", tiny_weights, "-q").exit_code == 0
    (tmp_path / "~").mkdir()
    assert invoke(wav, "-o", "~/a.mid", "--weights", tiny_weights, "-q").exit_code == 0
    assert sorted(p.name for p in tmp_path.rglob("*.mid")) == ["a.mid", "~a.mid"]


def test_output_folders_are_created_and_formats_written(tmp_path, tiny_weights):
    wav = write_wav(tmp_path / "a.wav")
    for fmt in ("csv", "json"):
        out = tmp_path / "new" / "deeper" / f"a.{fmt}"
        result = invoke(wav, "-o", out, "--format", fmt, "--weights", tiny_weights, "-q")
        assert result.exit_code == 0, result.output
        assert out.read_text().strip()


def test_format_follows_the_output_suffix(tmp_path, tiny_weights):
    wav = write_wav(tmp_path / "a.wav")
    assert invoke(wav, "-o", tmp_path / "notes.csv", "--weights", tiny_weights, "-q").exit_code == 0
    assert (tmp_path / "notes.csv").read_text().startswith("onset_s,offset_s,pitch,velocity")
    # A suffix we do not write is refused, unless --format says what to write under it.
    refused = invoke(wav, "-o", tmp_path / "notes.txt", "--weights", tiny_weights, "-q")
    assert refused.exit_code == 2 and "writes no .txt files" in refused.output
    assert not (tmp_path / "notes.txt").exists()
    assert invoke(wav, "-o", tmp_path / "notes.txt", "-f", "csv", "--weights", tiny_weights,
                  "-q").exit_code == 0
    assert (tmp_path / "notes.txt").read_text().startswith("onset_s,offset_s,pitch,velocity")
    # A dot inside a name is not a format: the MIDI is written under the name given.
    assert invoke(wav, "-o", tmp_path / "Prelude op.28", "--weights", tiny_weights,
                  "-q").exit_code == 0
    assert (tmp_path / "Prelude op.28").read_bytes().startswith(b"MThd")


def test_unwritable_output_is_a_one_line_error(tmp_path, tiny_weights):
    if os.geteuid() == 0:
        blocker = tmp_path / "file"
        blocker.write_text("x")  # a file where a folder should be: unwritable even for root
        out = blocker / "a.mid"
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        out = locked / "a.mid"
    result = invoke(write_wav(tmp_path / "a.wav"), "-o", out, "--weights", tiny_weights, "-q")
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "error" in result.output


def test_batch_mirrors_folders_reports_bad_files_and_resumes(tmp_path, tiny_weights):
    src = tmp_path / "recordings"
    write_wav(src / "a.wav")
    write_wav(src / "sub" / "b.flac", rate=44100, channels=2)
    (src / "sub" / "broken.wav").write_text("not audio")
    (src / "empty.mp3").write_bytes(b"")
    (src / "cover.jpg").write_bytes(b"\xff\xd8")  # not audio: ignored
    out = tmp_path / "midi"
    result = invoke(src, "-o", out, "--weights", tiny_weights)
    assert result.exit_code == 1
    assert (out / "a.mid").exists() and (out / "sub" / "b.mid").exists()
    assert not (out / "sub" / "broken.mid").exists()
    assert "broken.wav" in result.output and "empty.mp3" in result.output
    assert "Traceback" not in result.output
    resumed = invoke(src, "-o", out, "--weights", tiny_weights, "--skip-existing")
    assert "skipped" in resumed.output
    assert resumed.exit_code == 1  # the bad files still fail


def test_a_folder_search_passes_over_hidden_files_and_folders(tmp_path, tiny_weights):
    """A folder copied from a Mac holds "._song.wav" resource forks, and a NAS's
    ".AppleDouble/song.wav" or a ".Trashes/" folder: not recordings, and each would have
    failed the batch."""
    src = tmp_path / "recordings"
    write_wav(src / "song.wav")
    (src / "._song.wav").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")
    (src / ".AppleDouble").mkdir()
    (src / ".AppleDouble" / "song.wav").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00")
    write_wav(src / ".Trashes" / "501" / "deleted.wav")
    out = tmp_path / "midi"
    result = invoke(src, "-o", out, "--weights", tiny_weights)
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["song.mid"]
    # Named on the command line, a hidden folder is searched (only what is below it counts).
    hidden = invoke(src / ".Trashes", "-o", tmp_path / "trash", "--weights", tiny_weights)
    assert hidden.exit_code == 0 and (tmp_path / "trash" / "501" / "deleted.mid").exists()


@pytest.mark.parametrize("make", ["silence", "tiny", "eight_channel_96k", "nan"])
def test_awkward_but_valid_audio_gives_a_valid_midi(tmp_path, tiny_weights, make):
    path = tmp_path / "x.wav"
    if make == "silence":
        sf.write(path, np.zeros(C.SAMPLE_RATE * 2, np.float32), C.SAMPLE_RATE)
    elif make == "tiny":
        write_wav(path, seconds=0.1)
    elif make == "eight_channel_96k":
        write_wav(path, seconds=1.0, rate=96000, channels=8)
    else:
        data = np.zeros(C.SAMPLE_RATE, np.float32)
        data[10], data[20] = np.nan, np.inf
        sf.write(path, data, C.SAMPLE_RATE, subtype="FLOAT")
    result = invoke(path, "--weights", tiny_weights)
    assert result.exit_code == 0, result.output
    pretty_midi.PrettyMIDI(str(tmp_path / "x.mid"))
    if make == "nan":
        assert "NaN/Inf" in result.output


@pytest.mark.parametrize("setup,message", [
    ("missing", "no such file"),
    ("empty_dir", "no audio files"),
    ("zero_bytes", "empty"),
    ("text", "not a readable audio file"),
])
def test_bad_input_is_one_line_and_non_zero(tmp_path, tiny_weights, setup, message):
    path = tmp_path / "in.wav"
    if setup == "empty_dir":
        path = tmp_path / "folder"
        path.mkdir()
        (path / "notes.txt").write_text("hello")
    elif setup == "zero_bytes":
        path.write_bytes(b"")
    elif setup == "text":
        path.write_text("hello\n" * 100)
    result = invoke(path, "--weights", tiny_weights)
    assert result.exit_code == 1
    assert message in result.output
    assert result.output.strip().count("\n") == 0, result.output


def test_a_midi_file_given_to_transcribe_is_named_as_one(tmp_path, tiny_weights):
    """`amt-transcribe song.mid` said "song.mid is also an input; choose another output
    name", and with -o "not a readable audio file (format not recognised)": neither says
    that a MIDI file is what the tool writes, not what it reads."""
    example = Path(__file__).resolve().parent.parent / "examples" / "example.mid"
    for name, output in (("song.mid", None), ("score.midi", "out.mid"), ("take.wav", "t.mid")):
        given = tmp_path / name  # take.wav: a MIDI file under an audio file's name
        shutil.copy(example, given)
        result = invoke(given, *(["-o", tmp_path / output] if output else []),
                        "--weights", tiny_weights)
        # Refused before any work by its name; take.wav as its reading fails.
        assert result.exit_code == (1 if name == "take.wav" else 2)
        assert result.output == (f"amt-transcribe: error: {given}: a MIDI file, not a "
                                 "recording: amt-transcribe turns recordings (WAV, FLAC, OGG, "
                                 "MP3, AIFF...) into MIDI\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["score.midi", "song.mid", "take.wav"]


def test_an_output_named_as_an_input_says_to_give_it_with_o(tmp_path, tiny_weights,
                                                           monkeypatch):
    """`amt-transcribe song.wav song.mid`, -o forgotten: the recording was transcribed to
    song.wav.mid and song.mid failed as missing (or, alone, "song.mid is also an input;
    choose another output name").  Now nothing is done and the way to name it is said."""
    example = Path(__file__).resolve().parent.parent / "examples" / "example.mid"
    wav = write_wav(tmp_path / "song.wav")
    shutil.copy(example, tmp_path / "old.mid")  # a MIDI file an earlier run wrote
    monkeypatch.chdir(tmp_path)
    for given, says in (
            (["song.wav", "song.mid"], "song.mid: no such file; to name the output, give -o "
                                       "song.mid"),
            (["song.wav", "notes.csv"], "notes.csv: no such file; to name the output, give -o "
                                        "notes.csv"),
            (["song.wav", "old.mid"], "old.mid: a MIDI file, not a recording: amt-transcribe "
                                      "turns recordings (WAV, FLAC, OGG, MP3, AIFF...) into MIDI; "
                                      "to name the output, give -o old.mid"),
            (["song.wav", "song.wav", "b.mid"], "b.mid: no such file; to name the output, give "
                                                "-o b.mid"),
            (["song.wav", "a.wav", "b.mid"], "b.mid: no such file")):
        result = invoke(*given, "--weights", tiny_weights)
        assert result.exit_code == 2
        assert result.output == f"amt-transcribe: error: {says}\n", given
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.mid", "song.wav"]
    # A recording misnamed .mid is still read, given another output; as its own, refused.
    shutil.copy(wav, tmp_path / "take.mid")
    assert invoke(tmp_path / "take.mid", "-o", tmp_path / "take-notes.mid",
                  "--weights", tiny_weights).exit_code == 0
    result = invoke(tmp_path / "take.mid", "--weights", tiny_weights)
    assert result.exit_code == 2 and "would be written over by its own notes" in result.output


def transcribe_piped(*args, stdin=b"", **kwargs):
    return subprocess.run([sys.executable, "-m", "transcribe", *map(str, args)], input=stdin,
                          capture_output=True, timeout=300, **kwargs)


def test_standard_output_sent_to_the_output_file_is_named_as_the_mistake(tmp_path, tiny_weights):
    """`amt-transcribe song.wav > song.mid`: the shell made song.mid empty before the run
    began, which then said "song.mid exists; use --overwrite" (and with --skip-existing
    left it empty, as done).  Now it says what happened, before any work."""
    wav = write_wav(tmp_path / "song.wav")
    for options in ([], ["--skip-existing"]):
        with open(tmp_path / "song.mid", "wb") as redirected:
            run = subprocess.run([sys.executable, "-m", "transcribe", str(wav), *options,
                                  "--weights", str(tiny_weights)], stdout=redirected,
                                 stderr=subprocess.PIPE, timeout=300)
        assert run.returncode == 2
        assert run.stderr.decode() == (
            f"amt-transcribe: error: {tmp_path / 'song.mid'}: standard output is sent to it "
            "(> song.mid), and amt-transcribe writes it itself; leave out the >, or give -o - "
            "for the notes on standard output\n")
    with open(tmp_path / "r.csv", "wb") as redirected:  # the report's: the same, said so
        run = subprocess.run([sys.executable, "-m", "transcribe", str(wav), "-o",
                              str(tmp_path / "a.mid"), "--report", str(tmp_path / "r.csv"),
                              "--skip-existing", "--weights", str(tiny_weights)],
                             stdout=redirected, stderr=subprocess.PIPE, timeout=300)
    assert run.returncode == 2
    assert run.stderr.decode() == (
        f"amt-transcribe: error: {tmp_path / 'r.csv'}: standard output is sent to it "
        "(> r.csv), and amt-transcribe writes it itself; leave out the >\n")
    assert not (tmp_path / "a.mid").exists()
    with open(tmp_path / "log.txt", "wb") as redirected:  # elsewhere: as without it
        assert subprocess.run([sys.executable, "-m", "transcribe", str(wav), "--overwrite",
                               "--weights", str(tiny_weights)], stdout=redirected,
                              timeout=300).returncode == 0
    assert pretty_midi.PrettyMIDI(str(tmp_path / "song.mid")).instruments


def test_standard_input_and_output_give_what_files_give(tmp_path, tiny_weights):
    """ffmpeg ... -f wav - | amt-transcribe - -o song.mid, and -o - for the notes: "-" was
    refused ("save it to a file first")."""
    wav = write_wav(tmp_path / "a.wav", seconds=3)
    assert invoke(wav, "-o", tmp_path / "file.mid", "--weights", tiny_weights).exit_code == 0
    assert invoke(wav, "-o", tmp_path / "file.json", "--weights", tiny_weights).exit_code == 0
    spools = tmp_path / "tmp"
    spools.mkdir()
    env = dict(os.environ, TMPDIR=str(spools))
    run = transcribe_piped("-", "-o", tmp_path / "piped.mid", "--weights", tiny_weights,
                           "--report", tmp_path / "r.csv", stdin=wav.read_bytes(), env=env)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "piped.mid").read_bytes() == (tmp_path / "file.mid").read_bytes()
    assert next(csv.DictReader(open(tmp_path / "r.csv")))["input"] == "-"
    # Saved posteriorgrams say where they came from: not a temporary file, deleted since.
    run = transcribe_piped("-", "-o", tmp_path / "kept.mid", "--save-posteriorgram",
                           "--weights", tiny_weights, stdin=wav.read_bytes(), env=env)
    assert run.returncode == 0, run.stderr
    assert json.loads(str(np.load(tmp_path / "kept.npz")["about"]))["source"] == "standard input"
    run = transcribe_piped(wav, "-o", "-", "-f", "json", "--weights", tiny_weights)
    assert run.returncode == 0, run.stderr.decode()
    assert run.stdout == (tmp_path / "file.json").read_bytes()
    assert run.stderr.decode().startswith("standard output: ")
    run = transcribe_piped("-", "-o", "-", "--weights", tiny_weights, stdin=wav.read_bytes(),
                           env=env)
    assert run.returncode == 0 and run.stdout == (tmp_path / "file.mid").read_bytes()
    assert list(spools.iterdir()) == []  # standard input's temporary copy is gone
    run = transcribe_piped("-", "-o", tmp_path / "x.mid", "--weights", tiny_weights,
                           stdin=b"not audio" * 100, env=env)
    assert run.returncode == 1 and run.stderr.decode() == (
        "amt-transcribe: error: standard input: not a readable audio file (format not "
        "recognised); supported: WAV, FLAC, OGG, MP3, AIFF\n")
    assert list(spools.iterdir()) == [] and not (tmp_path / "x.mid").exists()
    run = transcribe_piped("-", "-o", tmp_path / "x.mid", "--weights", tiny_weights,
                           stdin=b"", env=env)  # the command before | failed
    assert run.returncode == 1 and run.stderr.decode() == (
        "amt-transcribe: error: standard input: nothing came through the pipe (0 bytes); did "
        "the command before | fail?\n")
    assert list(spools.iterdir()) == [] and not (tmp_path / "x.mid").exists()
    # An output there already, --skip-existing: standard input is not waited for.
    process = subprocess.Popen([sys.executable, "-m", "transcribe", "-", "-o",
                                tmp_path / "piped.mid", "--skip-existing", "--weights",
                                tiny_weights], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
        process.communicate()


@pytest.mark.parametrize("args,message", [
    (["-"], "-: name the notes of standard input with -o (a file, or - for standard output)"),
    (["-", "a.wav", "-o", "out"], "-: standard input is transcribed alone; give it as the "
                                  "only input"),
    (["-", "-o", "out/"], "out/: a folder; for standard input -o names the file to write"),
    (["a.wav", "-o", "-", "--plot"], "-o -: standard output takes the notes alone; --plot, "
                                     "--html and --save-posteriorgram need a name: -o NAME"),
    (["a.wav", "b.wav", "-o", "-"], "-o -: standard output takes the notes of one input file"),
    (["-", "-o", "x.mid", "--ray"], "-: standard input and output stay on this machine; give "
                                    "--ray files"),
])
def test_what_standard_input_and_output_cannot_do_is_refused_in_one_line(
        tmp_path, tiny_weights, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    write_wav(tmp_path / "a.wav")
    write_wav(tmp_path / "b.wav")
    run = transcribe_piped(*args, "--weights", tiny_weights, stdin=b"RIFF")
    assert run.returncode == 2
    assert run.stderr.decode() == f"amt-transcribe: error: {message}\n"


def test_a_terminal_is_not_read_for_audio_nor_sent_midi(tmp_path, tiny_weights):
    import pty
    wav = write_wav(tmp_path / "a.wav")
    main_end, terminal = pty.openpty()
    command = [sys.executable, "-m", "transcribe", "-", "-o", str(tmp_path / "a.mid"),
               "--weights", str(tiny_weights)]
    run = subprocess.run(command, stdin=terminal, capture_output=True, timeout=300)
    assert run.returncode == 2 and run.stderr.decode().startswith(
        "amt-transcribe: error: -: standard input is a terminal; pipe the audio in, e.g. ")
    command = [sys.executable, "-m", "transcribe", str(wav), "-o", "-", "--weights",
               str(tiny_weights)]
    run = subprocess.run(command, stdout=terminal, stderr=subprocess.PIPE, timeout=300)
    assert run.returncode == 2 and run.stderr.decode().startswith(
        "amt-transcribe: error: -o -: MIDI is binary and standard output is a terminal")
    run = subprocess.run(command + ["-f", "csv"], stdout=terminal, stderr=subprocess.PIPE,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    os.close(terminal)
    os.close(main_end)


def test_a_reader_that_leaves_standard_output_early_is_one_line(tmp_path, tiny_weights):
    """`amt-transcribe song.wav -o - -f csv | head -1`: the reader closes the pipe."""
    wav = write_wav(tmp_path / "a.wav", seconds=30)
    process = subprocess.Popen([sys.executable, "-m", "transcribe", wav, "-o", "-", "-f", "csv",
                                "--weights", tiny_weights],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.close()
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1
    assert stderr == (f"amt-transcribe: error: {wav}: standard output was closed before the "
                      "notes were written whole\n")


def test_missing_default_weights_say_so(tmp_path, monkeypatch):
    import transcribe.weights as weights
    monkeypatch.setattr(weights, "default_weights_path", lambda: tmp_path / "none.pt")
    result = invoke(write_wav(tmp_path / "a.wav"))
    assert result.exit_code == 1
    assert "no trained weights are installed" in result.output


def test_plot_writes_the_four_figures(tmp_path, tiny_weights):
    wav = write_wav(tmp_path / "a.wav", seconds=3)
    result = invoke(wav, "--plot", "--save-posteriorgram", "--weights", tiny_weights, "-q")
    assert result.exit_code == 0, result.output
    import matplotlib.image
    sizes = set()
    for name in ("spectrogram", "posteriorgram", "reconstruction", "pianoroll"):
        png = tmp_path / f"a.{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        sizes.add(matplotlib.image.imread(png).shape)
    assert len(sizes) == 1  # one size and the same margins: the time axes line up
    saved = np.load(tmp_path / "a.npz")
    assert saved["frame"].shape == (3 * C.SAMPLE_RATE // C.HOP_LENGTH + 1, C.N_KEYS)


def test_a_dollar_sign_in_a_file_name_is_plotted_as_it_is(tmp_path, tiny_weights):
    """Matplotlib read "$...$" in a title as mathtext: "a$\\q$.wav" failed its job."""
    wav = write_wav(tmp_path / "a$\\q$.wav", seconds=1)
    result = invoke(wav, "--plot", "--weights", tiny_weights, "-q")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "a$\\q$.pianoroll.png").read_bytes()[:4] == b"\x89PNG"


def run_module(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "transcribe", *map(str, args)],
                          capture_output=True, text=True, **kwargs)


def test_subprocess_help_version_and_error_without_traceback(tmp_path):
    assert "Transcribe piano recordings" in run_module("--help").stdout
    assert run_module("--version").stdout.startswith("amt-transcribe, version")
    missing = run_module(tmp_path / "nope.wav")
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"amt-transcribe: error: {tmp_path / 'nope.wav'}: no such file"


def start_interruptible(*args) -> subprocess.Popen:
    """``python -m transcribe ARGS`` with Ctrl-C delivered as a terminal would deliver it.

    A shell starts background jobs with SIGINT ignored, and a child inherits that:
    restore the default so the test means the same under `nohup pytest &`.
    """
    return subprocess.Popen([sys.executable, "-m", "transcribe", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def interrupt_after_first_output(src, out, weights, *extra, signum=signal.SIGINT) -> str:
    """Ctrl-C (or send ``signum`` to) a batch of the 6 files of ``src`` once its first output
    exists; check that it exits 130 (128 + ``signum``) without a traceback, leaving only
    whole MIDI files.  Returns stderr."""
    process = start_interruptible(src, "-o", out, "--weights", weights, "-q", *extra)
    wait_until(lambda: out.exists() and any(out.glob("*.mid")), 180)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr
    written = sorted(out.iterdir())
    assert written and len(written) < 6
    for path in written:
        assert path.suffix == ".mid"
        pretty_midi.PrettyMIDI(str(path))
    return stderr


def test_ctrl_c_in_a_batch_leaves_no_partial_file(tmp_path, tiny_weights):
    src = tmp_path / "in"
    for i in range(6):
        write_wav(src / f"{i}.wav", seconds=40)
    report = tmp_path / "report.json"
    stderr = interrupt_after_first_output(src, tmp_path / "out", tiny_weights, "--report", report)
    assert "interrupted" in stderr
    # The report says which files were done and which were not.
    rows = json.loads(report.read_text())["files"]
    done = sorted(Path(row["output"]).name for row in rows if row["status"] == "done")
    assert done == sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(rows) == 6 and {row["status"] for row in rows} == {"done", "not done"}


def test_sigterm_stops_a_batch_as_ctrl_c_does(tmp_path, tiny_weights):
    """SIGTERM (``kill``, a batch scheduler's time limit, ``docker stop``) killed the process
    where it stood: exit -15, no word, and no report of the batch.  Now it stops the batch as
    Ctrl-C does, and exits 143 as a shell reports a process killed by SIGTERM."""
    src = tmp_path / "in"
    for i in range(6):
        write_wav(src / f"{i}.wav", seconds=40)
    report = tmp_path / "report.csv"
    stderr = interrupt_after_first_output(src, tmp_path / "out", tiny_weights, "--report",
                                          report, signum=signal.SIGTERM)
    assert "amt-transcribe: stopped by SIGTERM; finished outputs are complete" in stderr
    rows = list(csv.DictReader(report.open()))
    assert len(rows) == 6 and {row["status"] for row in rows} == {"done", "not done"}


def test_the_report_is_kept_up_as_files_finish(tmp_path, tiny_weights):
    """The report was written only at the end: a batch killed outright (the out-of-memory
    killer, power lost) left no record of what it had done."""
    src = tmp_path / "in"
    for i in range(6):
        write_wav(src / f"{i}.wav", seconds=40)
    out, report = tmp_path / "out", tmp_path / "report.csv"
    process = subprocess.Popen([sys.executable, "-m", "transcribe", src, "-o", out,
                                "--weights", tiny_weights, "-q", "--report", report],
                               stderr=subprocess.PIPE, text=True)
    wait_until(report.exists, 180, 0.02)
    process.kill()
    process.communicate(timeout=60)
    rows = list(csv.DictReader(report.open()))
    done = [row for row in rows if row["status"] == "done"]
    assert len(rows) == 6 and done and len(done) < 6, rows
    for row in done:
        pretty_midi.PrettyMIDI(row["output"])
    assert {row["status"] for row in rows} == {"done", "not done"}


def test_sighup_is_left_alone_under_nohup(tmp_path, tiny_weights):
    """SIGHUP (the terminal closed) stops a batch as SIGTERM does, unless it was ignored when
    the batch started (``nohup``): then the batch goes on to the end."""
    src = tmp_path / "in"
    for i in range(3):
        write_wav(src / f"{i}.wav", seconds=10)
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "transcribe", src, "-o", out, "--weights", tiny_weights, "-q"],
        stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    wait_until(lambda: out.exists() and any(out.glob("*.mid")), 120)
    process.send_signal(signal.SIGHUP)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == ["0.mid", "1.mid", "2.mid"]


def test_temporary_files_left_by_a_killed_run_are_removed_when_the_job_runs_again(
        tmp_path, tiny_weights):
    """A run killed outright (SIGKILL, the out-of-memory killer) cannot remove its temporary
    files: they stayed, hidden, for good (200 MB of them for an hour's plots)."""
    import tempfile
    wav = write_wav(tmp_path / "song.wav")
    out = tmp_path / "out"
    out.mkdir()
    def left(name):  # as write_atomic names them
        handle, path = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=out)
        os.write(handle, b"half of it")
        os.close(handle)
        return Path(path).name
    ours = [left("song.mid"), left("song.npz"), left("song.pianoroll-03.png")]
    others = [left("other.mid"), left("song two.mid"), ".song.mid.notes.tmp"]
    (out / others[-1]).write_text("not ours: no 8 random characters")
    # What a run killed as it put a marker up, or took a dead run's over, left: a staging
    # file, the dead marker set aside, a takeover's lock, a killed run's takeover lock set
    # aside as it was broken; one that new is another run's.
    marking = [".song.mid.amt-running.k3x_9qaz.claim", ".song.mid.amt-running.takeover",
               ".song.mid.amt-running.takeover.a8b7c6d5.claim",
               ".song.mid.amt-running.4242.123456789.dead",
               ".song.mid.amt-running.takeover.4242.123456789.dead"]
    for name in marking:
        (out / name).write_text("amt-transcribe, process 4242 on elsewhere: song.wav\n")
        os.utime(out / name, (time.time() - 60,) * 2)
    ours += marking
    # A probe of the folder's clock (files.folder_clock), left by a run killed in it.
    (out / ".amt-clock.q1w2e3r4").write_text("")
    os.utime(out / ".amt-clock.q1w2e3r4", (time.time() - 60,) * 2)
    ours.append(".amt-clock.q1w2e3r4")
    (out / ".other.mid.amt-running.takeover").write_text("not ours: another output's")
    (out / ".song.mid.amt-running.z9y8x7w6.claim").write_text("a run's, being put up now")
    (out / ".amt-clock.t5y6u7i8").write_text("")  # another run's, measuring the clock now
    others += [".other.mid.amt-running.takeover", ".song.mid.amt-running.z9y8x7w6.claim",
               ".amt-clock.t5y6u7i8"]
    result = invoke(wav, "-o", out / "song.mid", "--plot", "--save-posteriorgram",
                    "--weights", tiny_weights)
    assert result.exit_code == 0, result.output
    assert (f"note: removed {len(ours)} temporary files that a run killed outright"
            in result.output)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == sorted(others)
    assert not any((out / name).exists() for name in ours)


def test_a_job_that_fails_at_its_notes_leaves_none_of_its_side_files(tmp_path, tiny_model):
    """The notes are written last.  When that fails (here: another process wrote the output
    meanwhile; a full disk does the same), the plots, page and posteriorgrams written before
    it are removed: left behind, they made the retry fail ("exists; use --overwrite")."""
    from transcribe.files import OutputExists
    from transcribe.transcriber import transcribe_to_file
    wav = write_wav(tmp_path / "song.wav", seconds=3)
    out = tmp_path / "song.mid"
    out.write_bytes(b"written by another process")
    with pytest.raises(OutputExists):
        transcribe_to_file(wav, out, tiny_model, plot=True, save_posteriorgram=True, html=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.mid", "song.wav"]
    assert out.read_bytes() == b"written by another process"
    # The same job where nothing is in the way writes every file.
    out.unlink()
    transcribe_to_file(wav, out, tiny_model, plot=True, save_posteriorgram=True, html=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "song.html", "song.mid", "song.npz", "song.pianoroll.png", "song.posteriorgram.png",
        "song.reconstruction.png", "song.spectrogram.png", "song.wav"]


def test_a_report_records_each_input_and_replaces_one_only_when_asked(tmp_path, tiny_weights):
    src = tmp_path / "in"
    write_wav(src / "good.wav", seconds=2)
    (src / "bad.wav").write_bytes(b"RIFF not really")
    out, report = tmp_path / "out", tmp_path / "logs" / "report.csv"
    result = invoke(src, "-o", out, "--weights", tiny_weights, "--report", report)
    assert result.exit_code == 1
    rows = list(csv.DictReader(report.open()))
    assert [(r["input"], r["output"], r["status"]) for r in rows] == [
        (str(src / "bad.wav"), str(out / "bad.mid"), "failed"),
        (str(src / "good.wav"), str(out / "good.mid"), "done")]
    assert "not a readable audio file" in rows[0]["message"]
    assert float(rows[1]["duration_s"]) == pytest.approx(2.0, abs=0.01)
    assert int(rows[1]["notes"]) == len(pretty_midi.PrettyMIDI(str(out / "good.mid"))
                                        .instruments[0].notes)
    assert "2 files: 1 done, 1 failed; 2.0 s of audio in" in result.output
    # An existing report is kept unless asked, before any work; a resumed batch replaces it.
    before = report.read_bytes()
    again = invoke(src, "-o", tmp_path / "out2", "--weights", tiny_weights, "--report", report)
    assert again.exit_code == 1 and "report.csv exists; use --overwrite" in again.output
    assert report.read_bytes() == before and not (tmp_path / "out2").exists()
    resumed = invoke(src, "-o", out, "--weights", tiny_weights, "--report", report,
                     "--skip-existing")
    assert "2 files: 1 skipped, 1 failed" in resumed.output
    # The resumed batch's report is the whole batch's: the file done before keeps its row
    # (the bad file was tried again, and failed again).
    again_rows = list(csv.DictReader(report.open()))
    assert again_rows[1] == rows[1] and again_rows[0]["status"] == "failed"
    write_wav(src / "new.wav")
    invoke(src, "-o", out, "--weights", tiny_weights, "--report", report, "--skip-existing")
    assert [(r["input"], r["status"]) for r in csv.DictReader(report.open())] == [
        (str(src / "bad.wav"), "failed"), (str(src / "good.wav"), "done"),
        (str(src / "new.wav"), "done")]
    # A report that is not .csv or .json, or that would be written over an output.
    for name, message in (("report.txt", "name the report .csv or .json"),
                          (str(out / "good.csv"), "would be written over an output")):
        refused = invoke(src, "-o", out, "-f", "csv", "--weights", tiny_weights, "--report",
                         name, "--overwrite")
        assert refused.exit_code == 2 and message in refused.output


def test_linked_folders_are_searched_once_and_links_back_up_never(tmp_path, tiny_weights):
    """A linked folder (a NAS's "2019 -> /mnt/disk2/2019") was passed over without a word,
    and a broken link to a recording too."""
    src, elsewhere = tmp_path / "in", tmp_path / "disk2"
    write_wav(src / "a.wav")
    write_wav(elsewhere / "2019" / "b.wav")
    (src / "2019").symlink_to(elsewhere / "2019")
    (src / "again").symlink_to(elsewhere / "2019")  # the same folder twice: searched once
    (src / "up").symlink_to(tmp_path)  # holds the folder searched: never followed
    (src / "root").symlink_to("/")
    (src / "gone.wav").symlink_to(tmp_path / "gone.wav")
    result = invoke(src, "-o", tmp_path / "out", "--weights", tiny_weights, "-q")
    assert result.exit_code == 1
    assert (f"amt-transcribe: failed: {src / 'gone.wav'}: a symbolic link to a file that does "
            "not exist") in result.output
    written = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.mid"))
    assert written == ["2019/b.mid", "a.mid"]


def test_a_folder_says_what_it_passed_over(tmp_path, tiny_weights):
    """An archive's files in a format we do not read (DSD, say) were passed over without a
    word; a folder holding only those was "no audio files found"."""
    src = tmp_path / "in"
    write_wav(src / "a.wav")
    for name in ("cover.jpg", "b.dsf", "c.dsf", "README", "a.mid"):  # a.mid: an earlier run's
        (src / "sub" / name).parent.mkdir(exist_ok=True)
        (src / "sub" / name).write_bytes(b"x")
    result = invoke(src, "-o", tmp_path / "out", "--weights", tiny_weights)
    assert result.exit_code == 0, result.output
    assert "note: passed over 4 files not audio by name (.dsf 2, .jpg 1, no suffix 1)" \
        in result.output
    assert "passed over" not in invoke(src, "-o", tmp_path / "out2", "--weights",
                                       tiny_weights, "-q").output
    (src / "a.wav").unlink()
    refused = invoke(src, "-o", tmp_path / "out3", "--weights", tiny_weights)
    assert refused.exit_code == 1
    assert "in all sub-folders; it holds .dsf 2, .jpg 1, .mid 1, no suffix 1)" in refused.output


def test_an_archive_sized_batch_gets_its_totals_and_failures_not_a_table(tmp_path,
                                                                        tiny_weights):
    src = tmp_path / "in"
    for i in range(32):
        write_wav(src / f"{i:02d}.wav", seconds=0.5)
    (src / "bad.wav").write_bytes(b"RIFF not really")
    cut = src / "05.wav"  # half of it lost: a warning, which has scrolled away in an archive
    cut.write_bytes(cut.read_bytes()[:44 + C.SAMPLE_RATE // 2])
    result = invoke(src, "-o", tmp_path / "out", "--weights", tiny_weights)
    assert result.exit_code == 1
    assert "07.wav" not in result.output and "┃ file" not in result.output
    assert f"amt-transcribe: failed: {src / 'bad.wav'}: not a readable" in result.output
    assert ("33 files: 32 done (1 with warnings), 1 failed; 15.8 s of audio in"
            in result.output)


def test_inputs_whose_outputs_coincide_keep_their_suffix(tmp_path, tiny_weights):
    src = tmp_path / "in"
    write_wav(src / "song.wav")
    sf.write(src / "song.flac", sf.read(src / "song.wav")[0], C.SAMPLE_RATE)
    write_wav(src / "other.wav")
    result = invoke(src, "-o", tmp_path / "out", "--weights", tiny_weights, "-q")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "other.mid", "song.flac.mid", "song.wav.mid"]


def test_outputs_differing_by_case_alone_are_kept_apart(tmp_path, tiny_weights):
    """On a case-insensitive disk (macOS, Windows, an exFAT stick or SMB share on Linux)
    Song.mid and song.mid are one file: the second was refused as existing, or with
    --overwrite replaced the first.  On a Mac's, so are names whose accents are written
    apart or as one character."""
    src = tmp_path / "in"
    write_wav(src / "Song.wav")
    sf.write(src / "song.flac", sf.read(src / "Song.wav")[0], C.SAMPLE_RATE)
    result = invoke(src, "-o", tmp_path / "out", "--weights", tiny_weights, "-q", "--plot")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").glob("*.mid")) == [
        "Song.wav.mid", "song.flac.mid"]
    a, b = write_wav(tmp_path / "a" / "X.wav"), write_wav(tmp_path / "b" / "x.wav")
    result = invoke(a, b, "-o", tmp_path / "out2", "--weights", tiny_weights, "-q")
    assert result.exit_code == 2
    assert f"{a}, {b} would all be written to {tmp_path / 'out2' / 'X.mid'}" in result.output
    # An accent written apart (as a Mac writes names) and as one character: one name there.
    write_wav(src / "E\u0301tude.wav")
    sf.write(src / "\u00c9tude.flac", sf.read(src / "Song.wav")[0], C.SAMPLE_RATE)
    result = invoke(src, "-o", tmp_path / "out3", "--weights", tiny_weights, "-q")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out3").glob("*.mid")) == [
        "E\u0301tude.wav.mid", "Song.wav.mid", "song.flac.mid", "\u00c9tude.flac.mid"]


@pytest.mark.skipif(sys.platform != "linux", reason="names that are not UTF-8: Linux filesystems")
def test_names_that_are_not_utf8_or_hold_a_newline_are_transcribed_and_shown(tmp_path,
                                                                             tiny_weights):
    """An old archive's Latin-1 names ("caf\xe9.wav") failed their job ("unexpected
    UnicodeEncodeError ... please report this bug"): soundfile could not open them, and
    the figures' titles and the review page could not be encoded; with --report the batch
    died with a traceback.  A newline in a name split the summary's row and error lines."""
    src, out, report = tmp_path / "in", tmp_path / "out", tmp_path / "report.csv"
    latin1, newline = os.fsdecode(b"caf\xe9.wav"), "a\nb.wav"
    write_wav(src / "one.wav", seconds=2).rename(src / latin1)  # soundfile cannot name it
    write_wav(src / newline, seconds=2)
    (src / os.fsdecode(b"bad\xe9.wav")).write_bytes(b"RIFF not really")
    command = [sys.executable, "-m", "transcribe", src, "-o", out, "--weights", tiny_weights,
               "--plot", "--html", "--report", report]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, COLUMNS="200"))
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr and "UnicodeEncodeError" not in run.stderr
    assert "in/caf\ufffd.wav" in run.stderr and "in/a?b.wav" in run.stderr
    failed = [line for line in run.stderr.splitlines() if line.startswith("amt-transcribe: fail")]
    assert failed == [f"amt-transcribe: failed: {src}/bad\ufffd.wav: not a readable audio file "
                      "(format not recognised); supported: WAV, FLAC, OGG, MP3, AIFF"]
    for name in ("caf\xe9", "a\nb"):
        stem = os.fsdecode(name.encode("latin-1"))
        written = sorted(p.name for p in out.glob(glob_escape(stem) + ".*"))
        assert written == [stem + suffix for suffix in (
            ".html", ".mid", ".pianoroll.png", ".posteriorgram.png", ".reconstruction.png",
            ".spectrogram.png")]
    # The report keeps the names as they are, and a resume keeps its rows.
    rows = {row["input"]: row["status"] for row in csv.DictReader(
        open(report, newline="", errors="surrogateescape"))}
    assert rows == {str(src / latin1): "done", str(src / newline): "done",
                    str(src / os.fsdecode(b"bad\xe9.wav")): "failed"}
    again = subprocess.run(command + ["--skip-existing"], capture_output=True, text=True,
                           timeout=300)
    rows = {row["input"]: (row["status"], row["notes"]) for row in csv.DictReader(
        open(report, newline="", errors="surrogateescape"))}
    assert rows[str(src / latin1)][0] == "done" and rows[str(src / latin1)][1] != "", again.stderr


def glob_escape(name: str) -> str:
    import glob
    return glob.escape(name)


def test_inputs_that_would_still_coincide_are_refused_before_any_work(tmp_path, tiny_weights):
    a, b = write_wav(tmp_path / "a" / "x.wav"), write_wav(tmp_path / "b" / "x.wav")
    result = invoke(a, b, "-o", tmp_path / "out", "--weights", tiny_weights, "-q")
    assert result.exit_code == 2
    assert f"{a}, {b} would all be written to {tmp_path / 'out' / 'x.mid'}" in result.output
    assert not (tmp_path / "out").exists()


def test_a_file_named_twice_is_transcribed_once(tmp_path, tiny_weights, monkeypatch):
    """Overlapping globs, or a folder and a file in it: these were refused as inputs whose
    outputs coincide ("song.wav, song.wav would all be written to ...")."""
    monkeypatch.chdir(tmp_path)
    write_wav(Path("in") / "song.wav")
    write_wav(Path("in") / "sub" / "b.wav")
    one = invoke("in/song.wav", "./in/song.wav", "-o", "song.mid", "--weights", tiny_weights)
    assert one.exit_code == 0, one.output
    assert Path("song.mid").is_file()  # one input: -o names the file, not a folder
    batch = invoke("in/sub", "in/sub/b.wav", "in/song.wav", "-o", "out", "--weights",
                   tiny_weights)
    assert batch.exit_code == 0, batch.output
    assert "2 files: 2 done" in batch.output
    assert sorted(p.name for p in Path("out").iterdir()) == ["b.mid", "song.mid"]


def test_outputs_are_checked_before_any_audio_is_read(tmp_path, tiny_weights):
    wav = write_wav(tmp_path / "song.wav")
    before = wav.read_bytes()
    cases = [(["-o", wav, "--overwrite"], 2, "audio file name"),
             (["-o", tmp_path / "x.mid", "-f", "json"], 2, "the suffix says mid"),
             (["-o", "/proc/amt/x.mid"], 2, "in /proc/amt, a folder of devices and processes"),
             (["-o", tmp_path / "midi"], 2, "a name without a suffix; name the file midi.mid, "
                                            "end a folder's name with / (midi/)"),
             (["-o", tmp_path / "song.wav" / "x.mid"], 1, "is a file, not a folder")]
    for args, code, message in cases:
        result = invoke(wav, *args, "--weights", tiny_weights, "-q")
        assert result.exit_code == code, (args, result.output)
        assert message in result.output and ".tmp" not in result.output
    assert wav.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.wav"]


def test_an_output_ending_in_a_separator_is_a_folder(tmp_path, tiny_weights):
    wav = write_wav(tmp_path / "song.wav")
    result = invoke(wav, "-o", f"{tmp_path / 'newdir'}/", "--weights", tiny_weights, "-q")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "newdir" / "song.mid").is_file()


@pytest.mark.parametrize("option, value", [("--onset-threshold", "nan"),
                                           ("--frame-threshold", "inf"),
                                           ("--min-note-ms", "inf"), ("--min-note-ms", "-1"),
                                           ("--tempo", "nan"), ("--threads", "0")])
def test_non_finite_option_values_are_usage_errors(tmp_path, tiny_weights, option, value):
    wav = write_wav(tmp_path / "song.wav")
    result = invoke(wav, option, value, "--weights", tiny_weights, "-q")
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "song.mid").exists()


def test_a_batch_failure_names_the_input_once(tmp_path, tiny_weights):
    src = tmp_path / "in"
    write_wav(src / "good.wav")
    (src / "bad.wav").write_bytes(b"RIFF not really")
    result = invoke(src, "-o", tmp_path / "out", "--weights", tiny_weights, "-q")
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith("amt-transcribe: failed")]
    assert len(lines) == 1 and lines[0].count("bad.wav") == 1, lines
    assert (tmp_path / "out" / "good.mid").is_file()


def test_two_processes_writing_one_output_never_both_win(tmp_path, tiny_weights):
    wav = write_wav(tmp_path / "song.wav", seconds=30)
    out = tmp_path / "song.mid"
    command = [sys.executable, "-m", "transcribe", str(wav), "-o", str(out),
               "--weights", str(tiny_weights), "-q", "--threads", "1"]
    runs = [subprocess.Popen(command, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [run.communicate(timeout=120)[1] for run in runs]
    codes = sorted(run.returncode for run in runs)
    assert codes == [0, 1], errors
    # found written when it began, or being written (and then not transcribed)
    assert any(f"{out} exists" in error or f"{out}: another run is writing it" in error
               for error in errors)
    pretty_midi.PrettyMIDI(str(out))
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_ctrl_c_during_start_up_exits_130_without_traceback(tmp_path, tiny_weights):
    # Python's own start-up (about 0.15 s here, before any code of ours runs) is out of
    # reach; from the first line of ours on, every moment must give 130.
    wav = write_wav(tmp_path / "song.wav")
    for delay in (0.3, 0.5, 0.8, 1.2):
        process = start_interruptible(wav, "--weights", tiny_weights, "-q")
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        if process.returncode == 0:  # finished before the signal came
            continue
        assert process.returncode == 130, (delay, stderr)
        assert "Traceback" not in stderr and "Aborted" not in stderr, stderr


def test_bad_weights_and_devices_fail_in_one_line(tmp_path, tiny_weights):
    wav = write_wav(tmp_path / "song.wav")
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"")
    card = dict(json.loads(tiny_weights.with_suffix(".json").read_text()))
    card["sha256"] = hashlib.sha256(b"").hexdigest()
    weights.with_suffix(".json").write_text(json.dumps(card))
    result = run_module(wav, "--weights", weights)
    assert result.returncode == 1
    assert result.stderr.startswith("amt-transcribe: error:") and "not a weights file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = run_module(wav, "--weights", tiny_weights, "--device", "mps")
    assert result.returncode == 1 and "no Apple MPS GPU" in result.stderr, result.stderr


def test_a_truncated_file_is_transcribed_with_a_warning_even_when_quiet(tmp_path, tiny_weights):
    whole = write_wav(tmp_path / "whole.wav", seconds=10)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(whole.read_bytes()[: 44 + 2 * C.SAMPLE_RATE * 4])  # 4 s of the 10 promised
    result = invoke(cut, "--weights", tiny_weights, "-q")
    assert result.exit_code == 0, result.output
    assert ("amt-transcribe: warning: " + f"{cut}: truncated or damaged: read 4.0 s of the "
            "10.0 s the header promises") in result.output
    assert (tmp_path / "cut.mid").exists()


def test_channels_that_cancel_in_the_mono_mix_are_warned_of(tmp_path, tiny_weights):
    """A stereo file with one channel polarity-inverted mixes to silence: it wrote an empty
    MIDI without a word.  Now a warning says why and how to transcribe one channel."""
    rng = np.random.default_rng(0)
    left = (rng.standard_normal(2 * C.SAMPLE_RATE) * 0.1).astype(np.float32)
    path = tmp_path / "inverted.wav"
    sf.write(path, np.stack([left, -left], axis=1), C.SAMPLE_RATE, subtype="FLOAT")
    result = invoke(path, "--weights", tiny_weights, "-q")
    assert result.exit_code == 0, result.output
    # The command as it runs where amt-transcribe ran: the path as given (the name alone
    # was no file there, in a batch of a folder's sub-folders or from another folder).
    assert (f"amt-transcribe: warning: {path}: its channels cancel when mixed to mono (the mix "
            f"falls to silence; is one polarity-inverted?): transcribe one channel, e.g. ffmpeg "
            f"-i {path} -af 'pan=mono|c0=c0' {tmp_path / 'inverted-left.wav'}") in result.output
    run = transcribe_piped("-", "-o", tmp_path / "piped.mid", "--weights", tiny_weights,
                           stdin=path.read_bytes())
    assert run.returncode == 0, run.stderr
    assert ("amt-transcribe: warning: standard input: its channels cancel when mixed to mono "
            "(the mix falls to silence; is one polarity-inverted?): transcribe one channel, "
            "e.g. ffmpeg -i - -af 'pan=mono|c0=c0' 'standard input-left.wav'") in run.stderr.decode()
    sf.write(path, np.stack([left, 0.5 * left], axis=1), C.SAMPLE_RATE, subtype="FLOAT")
    assert "cancel" not in invoke(path, "--weights", tiny_weights, "-q", "--overwrite").output


def test_silent_and_far_too_quiet_recordings_are_warned_of(tmp_path, tiny_weights):
    """A recording of digital zeros (a dead input, a muted track) gave "0 notes" and no
    word of why; one quieter than 60 dB of gain can raise, no word that it stayed quiet."""
    path = tmp_path / "x.wav"
    sf.write(path, np.zeros((2 * C.SAMPLE_RATE, 2), np.float32), C.SAMPLE_RATE)
    result = invoke(path, "--weights", tiny_weights, "-q")
    assert result.exit_code == 0, result.output
    assert (f"amt-transcribe: warning: {path}: the recording is silent: every sample is zero"
            in result.output)
    rng = np.random.default_rng(0)
    noise = rng.uniform(-1, 1, 2 * C.SAMPLE_RATE).astype(np.float32)
    sf.write(path, noise * 10 ** (-80 / 20), C.SAMPLE_RATE, subtype="FLOAT")
    result = invoke(path, "--weights", tiny_weights, "-q", "--overwrite")
    assert (f"amt-transcribe: warning: {path}: the recording is very quiet (its peak is -80 "
            "dBFS): raised by 60 dB, the most, it is still 18 dB below the level the weights "
            "were tuned at, and soft notes may be missed") in result.output
    sf.write(path, noise * 10 ** (-60 / 20), C.SAMPLE_RATE, subtype="FLOAT")  # raised whole
    assert "warning" not in invoke(path, "--weights", tiny_weights, "-q", "--overwrite").output


def test_a_clipped_recording_is_warned_of(tmp_path, tiny_weights):
    """Clipped, the example gained 11 and 33 notes that were not played (at 6 % and 31 % of
    its samples clipped), and no word said why."""
    rng = np.random.default_rng(0)
    music = (0.8 * np.sin(np.linspace(0, 2000, 2 * C.SAMPLE_RATE))
             + rng.normal(0, 0.01, 2 * C.SAMPLE_RATE))
    path = tmp_path / "x.wav"
    sf.write(path, np.clip(1.5 * music, -1, 1), C.SAMPLE_RATE)
    result = invoke(path, "--weights", tiny_weights, "-q")
    assert result.exit_code == 0, result.output
    assert (f"amt-transcribe: warning: {path}: 37 % of its samples are clipped (held at full "
            "scale): its flat crests were redrawn, but the distortion may still add notes that "
            "were not played") in result.output
    assert result.output.count("warning") == 1  # its level is whole: nothing too quiet
    # Clipped, then lowered 6 dB (an editor's gain, a normalizing app): held at its own peak.
    sf.write(path, 0.5 * np.clip(1.5 * music, -1, 1), C.SAMPLE_RATE)
    result = invoke(path, "--weights", tiny_weights, "-q", "--overwrite")
    assert (f"amt-transcribe: warning: {path}: 37 % of its samples are clipped (held flat at "
            "-6.0 dBFS, its peak: clipped, then lowered): its flat crests were redrawn, but the "
            "distortion may still add notes that were not played") in result.output
    sf.write(path, 1.5 * music, C.SAMPLE_RATE, subtype="FLOAT")  # loud, not clipped
    assert "warning" not in invoke(path, "--weights", tiny_weights, "-q", "--overwrite").output


def test_a_recording_clipped_before_it_was_encoded_is_warned_of(tmp_path, tiny_weights):
    """An MP3 of a clipped recording holds no flat runs (the codec's ripple), so it was not
    warned of: the example clipped by a gain of 8 and saved as MP3 gave 146 notes against
    105 for its MP3 not clipped, unsaid (``benchmarks/clipping.py examples --codec mp3``).
    A loud MP3 that was not clipped (peak -0.1 dBFS) is not warned of."""
    examples = Path(__file__).resolve().parent.parent / "examples"
    music, rate = sf.read(examples / "example.flac", dtype="float64")
    music /= np.abs(music).max()
    for name, samples, warned in (("loud", music * 10 ** (-0.1 / 20), False),
                                  ("clipped", np.clip(8 * music, -1, 1), True)):
        path = tmp_path / f"{name}.mp3"
        sf.write(path, samples, rate, format="MP3", subtype="MPEG_LAYER_III")
        result = invoke(path, "--weights", tiny_weights, "-q")
        assert result.exit_code == 0, result.output
        lines = [line for line in result.output.splitlines() if "warning" in line]
        if not warned:
            assert lines == []
            continue
        line, = lines
        assert re.fullmatch(
            rf"amt-transcribe: warning: {re.escape(str(path))}: \d\d % of its samples stand "
            r"within 1 dB of full scale or past it, as a recording's do that was clipped before "
            r"it was encoded \(MP3, AAC...\): the distortion may add notes that were not played",
            line), line
        assert 25 <= int(line.split(": ")[3].split()[0]) <= 50  # 31 % of the WAV is clipped


def test_every_figure_carries_the_recordings_warnings(tmp_path, tiny_weights):
    """A figure sent on to someone who never saw the terminal says that the recording was
    clipped, as the review page does: in the warning's brown, on every figure."""
    import matplotlib.colors
    import matplotlib.image
    from transcribe.constants import WARNING_COLOUR
    brown = np.array(matplotlib.colors.to_rgb(WARNING_COLOUR))
    music = 0.8 * np.sin(np.linspace(0, 2000, 2 * C.SAMPLE_RATE))
    sf.write(tmp_path / "clipped.wav", np.clip(1.5 * music, -1, 1), C.SAMPLE_RATE)
    sf.write(tmp_path / "clean.wav", 0.5 * music, C.SAMPLE_RATE)
    for name in ("clipped", "clean"):
        result = invoke(tmp_path / f"{name}.wav", "--plot", "--weights", tiny_weights, "-q")
        assert result.exit_code == 0, result.output
    kinds = ("spectrogram", "posteriorgram", "reconstruction", "pianoroll")
    for kind in kinds:
        brown_pixels = {}
        for name in ("clipped", "clean"):
            image = matplotlib.image.imread(tmp_path / f"{name}.{kind}.png")[..., :3]
            brown_pixels[name] = int((np.abs(image - brown).max(axis=-1) < 0.05).sum())
        assert brown_pixels["clipped"] > 200 and brown_pixels["clean"] == 0, (kind, brown_pixels)


def test_a_file_with_no_audio_writes_nothing_and_fails_alone_in_a_batch(tmp_path, tiny_weights):
    src = tmp_path / "in"
    src.mkdir()
    write_wav(src / "good.wav", seconds=2)
    (src / "header-only.wav").write_bytes(write_wav(tmp_path / "whole.wav", seconds=3)
                                          .read_bytes()[:44])
    single = invoke(src / "header-only.wav", "-o", tmp_path / "one.mid", "--weights",
                    tiny_weights, "-q")
    assert single.exit_code == 1 and not (tmp_path / "one.mid").exists()
    assert "header promises 3.0 s of audio but the file holds none" in single.output
    batch = invoke(src, "-o", tmp_path / "out", "--weights", tiny_weights, "-q")
    assert batch.exit_code == 1, batch.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.mid"]
    assert "header-only.wav" in batch.output


def test_saved_posteriorgrams_re_decode_as_a_direct_transcription_would(tmp_path, piano_wav,
                                                                        tiny_weights):
    from transcribe import load_model, load_posteriorgrams, transcribe
    out = tmp_path / "first.mid"
    # The network on one thread in both: its sums differ in the last digits by thread count.
    assert invoke(piano_wav, "-o", out, "--save-posteriorgram", "--weights", tiny_weights,
                  "-q", "--threads", "1").exit_code == 0
    saved = tmp_path / "first.npz"
    # The CLI: another threshold, no weights needed, the same notes as transcribing with it.
    again = invoke(saved, "-o", tmp_path / "again.csv", "--onset-threshold", "0.3",
                   "--frame-threshold", "0.3", "-q")
    assert again.exit_code == 0, again.output
    from transcribe.decode import DecodingOptions
    options = DecodingOptions(onset_threshold=0.3, frame_threshold=0.3)
    import torch
    torch.set_num_threads(1)
    direct = transcribe(piano_wav, load_model(tiny_weights), options=options)
    direct.save(tmp_path / "direct.csv")
    assert (tmp_path / "again.csv").read_text() == (tmp_path / "direct.csv").read_text()
    # The API: unset options take the weights' own thresholds, stored in the file.
    loaded = load_posteriorgrams(saved)
    np.testing.assert_array_equal(loaded.notes, transcribe(piano_wav, load_model(tiny_weights)).notes)
    assert loaded.provenance["weights_sha256"] == json.loads(
        tiny_weights.with_suffix(".json").read_text())["sha256"]
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    result = invoke(bad, "-o", tmp_path / "bad.mid", "-q")
    assert result.exit_code == 1 and "not a saved posteriorgram file" in result.output


def test_the_fast_pass_still_plots_the_reconstruction_and_pedal_goes_to_csv(tmp_path):
    from transcribe.model import ModelConfig, UNetTranscriber
    from transcribe.weights import save_weights
    torch.manual_seed(1)
    weights = tmp_path / "pedal.pt"
    save_weights(UNetTranscriber(ModelConfig(unet_channels=(4, 8, 8, 8), lstm_hidden=16,
                                             reconstruction=True, pedal=True)),
                 weights, {"note": "random, mechanics only", "default_pass": "fast"})
    wav = write_wav(tmp_path / "a.wav", seconds=3)
    result = invoke(wav, "-o", tmp_path / "a.csv", "--plot", "--pedal", "cc64",
                    "--pedal-threshold", "0", "--weights", weights, "-q")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "a.reconstruction.png").read_bytes()[:4] == b"\x89PNG"
    rows = (tmp_path / "a.csv").read_text().splitlines()
    # Threshold 0: the pedal is down throughout, one sustain row from start to end.
    assert rows[0].endswith(",event") and sum(row.endswith(",sustain") for row in rows) == 1
    assert invoke(wav, "-o", tmp_path / "b.csv", "--pedal", "none", "--weights", weights,
                  "-q").exit_code == 0
    assert (tmp_path / "b.csv").read_text().splitlines()[0] == "onset_s,offset_s,pitch,velocity"


def test_cc64_ends_notes_where_the_key_down_head_says_the_key_came_up(tmp_path):
    from transcribe.model import ModelConfig, UNetTranscriber
    from transcribe.weights import save_weights
    torch.manual_seed(2)
    weights = tmp_path / "keys.pt"
    save_weights(UNetTranscriber(ModelConfig(unet_channels=(4, 8, 8, 8), lstm_hidden=16,
                                             reconstruction=False, pedal=True,
                                             key_release=True)),
                 weights, {"note": "random, mechanics only"})
    wav = write_wav(tmp_path / "a.wav", seconds=4)
    notes = {}
    for name, extra in (("sounding", ["--pedal", "none"]),
                        ("held", ["--pedal", "cc64", "--key-threshold", "0"]),
                        ("released", ["--pedal", "cc64", "--key-threshold", "1"])):
        out = tmp_path / f"{name}.json"
        result = invoke(wav, "-o", out, "--weights", weights, "--onset-threshold", "0.5",
                        "--frame-threshold", "0.5", "-q", *extra)
        assert result.exit_code == 0, result.output
        notes[name] = json.loads(out.read_text())["notes"]
    assert len(notes["sounding"]) > 5  # random weights, but notes to compare
    frame_s = 1 / C.FRAME_RATE_HZ
    for sounding, held, released in zip(notes["sounding"], notes["held"], notes["released"]):
        assert sounding["onset_s"] == held["onset_s"] == released["onset_s"]
        assert held["offset_s"] == sounding["offset_s"]  # a key held throughout
        # Key never down: released the frame after its onset's (half a frame after an onset
        # that lies later, between frames), though the string sounds on.
        assert 0.5 * frame_s - 1e-3 <= released["offset_s"] - released["onset_s"] <= \
            1.5 * frame_s + 1e-3
        assert released["offset_s"] <= sounding["offset_s"]
    # Saved posteriorgrams keep the key-down head: re-decoded, cc64 ends the same notes at
    # the same key releases.
    assert invoke(wav, "-o", tmp_path / "saved.mid", "--weights", weights, "-q",
                  "--save-posteriorgram").exit_code == 0
    again = tmp_path / "again.json"
    result = invoke(tmp_path / "saved.npz", "-o", again, "--onset-threshold", "0.5",
                    "--frame-threshold", "0.5", "-q", "--pedal", "cc64", "--key-threshold", "1")
    assert result.exit_code == 0, result.output
    assert json.loads(again.read_text())["notes"] == notes["released"]


def test_jobs_in_worker_processes_write_what_one_process_writes(tmp_path, tiny_weights):
    src = tmp_path / "in"
    for i in range(3):
        write_wav(src / f"{i}.wav", seconds=2 + i)
    (src / "bad.wav").write_bytes(b"RIFF not really")
    results = {}
    for jobs in (1, 2):
        out = tmp_path / f"out{jobs}"
        run = subprocess.run([sys.executable, "-m", "transcribe", str(src), "-o", str(out),
                              "--weights", str(tiny_weights), "-q", "-f", "csv",
                              "--jobs", str(jobs), "--threads", "1"],  # the same sums
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 1, run.stderr  # the bad file fails, the others are written
        assert run.stderr.count("bad.wav") == 1 and "Traceback" not in run.stderr
        results[jobs] = {p.name: p.read_text() for p in out.iterdir()}
    assert sorted(results[2]) == ["0.csv", "1.csv", "2.csv"]
    assert results[2] == results[1]


def test_the_input_gain_is_recorded_and_no_normalize_reaches_worker_processes(tmp_path,
                                                                             tiny_weights):
    src = tmp_path / "in"
    for name in ("a", "b"):  # the same noise, its peak about -6 dBFS, scaled to -46 dBFS
        path = write_wav(src / f"{name}.wav", subtype="FLOAT")
        data, rate = sf.read(path, dtype="float32")
        sf.write(path, data * 0.01, rate, subtype="FLOAT")
    peak = float(np.abs(sf.read(src / "a.wav", dtype="float32")[0]).max())
    out = tmp_path / "level.json"
    assert invoke(src / "a.wav", "-o", out, "--weights", tiny_weights, "-q").exit_code == 0
    gain_db = json.loads(out.read_text())["metadata"]["input_gain_db"]
    assert gain_db == pytest.approx(20 * np.log10(C.INPUT_PEAK / peak), abs=0.05) and gain_db > 35
    run = subprocess.run([sys.executable, "-m", "transcribe", str(src), "-o", str(tmp_path / "out"),
                          "--weights", str(tiny_weights), "-q", "-f", "json", "--jobs", "2",
                          "--no-normalize", "--save-posteriorgram"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    for name in ("a", "b"):
        metadata = json.loads((tmp_path / "out" / f"{name}.json").read_text())["metadata"]
        assert metadata["normalize"] is False and "input_gain_db" not in metadata
        from transcribe import load_posteriorgrams
        assert load_posteriorgrams(tmp_path / "out" / f"{name}.npz").metadata["normalize"] is False


def test_a_folder_made_for_files_that_all_failed_is_not_left_empty(tmp_path, tiny_weights):
    """With --jobs, each job of a new output folder could fail, and the folder stood empty:
    the first job to end left it to the marker of the job beside it, which had not made it.
    Serially it was removed."""
    src = tmp_path / "in"
    for name in ("a/1.wav", "a/2.wav"):  # handed to the two workers at once
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(b"not audio")
    write_wav(src / "b.wav")
    out = tmp_path / "out"
    for jobs in ("1", "2"):
        run = subprocess.run([sys.executable, "-m", "transcribe", str(src), "-o", str(out),
                              "--weights", str(tiny_weights), "-q", "--jobs", jobs,
                              "--overwrite"], capture_output=True, text=True, timeout=300)
        assert run.returncode == 1, run.stderr
        assert run.stderr.count("not a readable audio file") == 2, run.stderr
        assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["b.mid"]


def test_ctrl_c_in_a_parallel_batch_leaves_no_partial_file(tmp_path, tiny_weights):
    src = tmp_path / "in"
    for i in range(6):
        write_wav(src / f"{i}.wav", seconds=40)
    interrupt_after_first_output(src, tmp_path / "out", tiny_weights, "--jobs", "2")


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux ``/proc``)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(status.parent.name))
    return found


def workers_of(pid: int) -> list[int]:
    """The worker processes of ``--jobs`` under the run ``pid`` (multiprocessing's spawn)."""
    return [child for child in children(pid)
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()]


def kill_all(process: subprocess.Popen) -> None:
    """``process`` and its children, killed: nothing left running when a test hangs."""
    for pid in children(process.pid) + [process.pid]:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def test_a_worker_killed_mid_batch_costs_no_file(tmp_path, tiny_weights):
    """A worker that dies (the out-of-memory killer) broke the process pool, and every job
    in it failed with it, those still waiting too."""
    src = tmp_path / "in"
    for i in range(6):
        write_wav(src / f"{i}.wav", seconds=40)
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "transcribe", src, "-o", out, "--weights",
                                tiny_weights, "-q", "--jobs", "2", "--threads", "1"],
                               stderr=subprocess.PIPE, text=True)
    wait_until(lambda: out.exists() and any(out.glob("*.mid")), 180, 0.02)
    workers = workers_of(process.pid)
    try:
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)
        _, stderr = process.communicate(timeout=300)
    finally:  # nothing left running if it hangs
        kill_all(process)
    assert process.returncode == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == [f"{i}.mid" for i in range(6)]


def test_an_output_its_dead_worker_had_written_whole_is_kept(tmp_path, tiny_weights):
    """A worker killed after publishing a job's output but before saying so: the job was
    tried again and failed with "exists; use --overwrite", and the batch exited 1 (seen in
    CI, where the kill test above hit that moment).  Here the output is put there while
    its job runs, and both workers are killed."""
    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(2):
        write_wav(src / f"{i}.wav", seconds=120)
    report = tmp_path / "report.csv"
    process = subprocess.Popen([sys.executable, "-m", "transcribe", src, "-o", out, "--weights",
                                tiny_weights, "-q", "--jobs", "2", "--threads", "1",
                                "--report", report], stderr=subprocess.PIPE, text=True)
    markers = [out / ".0.mid.amt-running", out / ".1.mid.amt-running"]

    def both_working():
        workers = workers_of(process.pid)
        return workers if len(workers) >= 2 and all(m.exists() for m in markers) else []

    workers = wait_until(both_working, 180, 0.02)
    written = pretty_midi.PrettyMIDI()
    written.write(str(out / "0.mid"))  # as the worker publishes it: whole, then killed
    before = (out / "0.mid").read_bytes()
    try:
        assert len(workers) == 2 and not (out / "1.mid").exists()
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        _, stderr = process.communicate(timeout=300)
    finally:  # nothing left running if it hangs
        kill_all(process)
    assert process.returncode == 0, stderr
    assert (f"amt-transcribe: warning: {src / '0.wav'}: written whole before the process "
            "transcribing it died; not transcribed again") in stderr
    assert (out / "0.mid").read_bytes() == before  # kept, not transcribed again
    assert sorted(p.name for p in out.iterdir()) == ["0.mid", "1.mid"]
    rows = {row["input"]: row for row in csv.DictReader(open(report))}
    assert rows[str(src / "0.wav")]["status"] == "done"
    assert "written whole before the process transcribing it died" in \
        rows[str(src / "0.wav")]["message"]


def test_a_file_a_serial_batch_died_on_is_run_last_in_a_process_of_its_own(tmp_path,
                                                                           tiny_weights):
    """A file that kills the process (the out-of-memory killer, a crash in a decoder) killed
    a serial batch again at every --skip-existing resume: nothing set it aside."""
    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(4):
        write_wav(src / f"{i}.wav", seconds=120 if i == 1 else 5)
    command = [sys.executable, "-m", "transcribe", src, "-o", out, "--weights", tiny_weights,
               "-q", "--threads", "1"]
    marker = out / ".1.mid.amt-running"
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    wait_until(marker.exists, 180, 0.01)
    process.kill()  # as the out-of-memory killer does, while 1.wav is transcribed
    process.communicate(timeout=60)
    assert marker.exists() and not (out / "1.mid").exists()

    # Resumed: the others first; 1.wav last, in a process that dies again: it fails alone.
    process = subprocess.Popen(command + ["--skip-existing"], stderr=subprocess.PIPE, text=True)
    workers = wait_until(lambda: workers_of(process.pid), 180, 0.01)
    assert (out / "2.mid").exists() and (out / "3.mid").exists()
    os.kill(workers[0], signal.SIGKILL)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1, stderr
    assert (f"a run before this one died while transcribing {src / '1.wav'} (killed: out of "
            "memory? a crash?); it is transcribed last, alone in a process of its own") in stderr
    assert (f"failed: {src / '1.wav'}: the process transcribing it died, with no other file "
            "beside it") in stderr
    assert marker.exists()

    # Once it goes through, the marker is gone and nothing is left but the notes.
    run = subprocess.run(command + ["--skip-existing"], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert "it is transcribed last" in run.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"{i}.mid" for i in range(4)]


def test_an_idle_worker_killed_while_another_is_mid_job_does_not_hang_the_batch(
        tmp_path, tiny_weights):
    """An idle worker waits for its next job holding the lock of the pool's queue.  Killed
    so, the broken pool stopped the other worker, mid-job, with SIGTERM, and waited for it
    to end; but it sent its result and waited for a next job, behind that lock, for good:
    the batch hung."""
    src, out = tmp_path / "in", tmp_path / "out"
    write_wav(src / "0.wav", seconds=1)
    write_wav(src / "1.wav", seconds=300)

    def reading_audio(pid: int) -> bool:
        try:
            return any(os.readlink(fd).endswith(".wav") for fd in Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            return False

    process = subprocess.Popen([sys.executable, "-m", "transcribe", src, "-o", out, "--weights",
                                tiny_weights, "-q", "--jobs", "2", "--threads", "1"],
                               stderr=subprocess.PIPE, text=True)
    try:
        def one_idle() -> list[int]:  # once 0.wav is done: the worker waiting, beside 1.wav's
            if not (out / "0.mid").exists():
                return []
            workers = workers_of(process.pid)
            busy = [pid for pid in workers if reading_audio(pid)]
            return [pid for pid in workers if pid not in busy] if busy else []

        idle = wait_until(one_idle, 120, 0.01)
        assert len(idle) == 1
        os.kill(idle[0], signal.SIGKILL)
        _, stderr = process.communicate(timeout=120)
    finally:
        kill_all(process)
    assert process.returncode == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == ["0.mid", "1.mid"]


def test_a_file_another_run_is_transcribing_is_left_to_it(tmp_path, tiny_weights):
    """Two runs on the same outputs at once (a second terminal, a second machine on a shared
    folder) each transcribed every file, and the one that published second failed each
    with "exists; use --overwrite": exit 1 for a batch that lost nothing.  A file whose
    marker a run that is alive holds is now left to it, and waited for."""
    import platform
    wav = write_wav(tmp_path / "a.wav")
    marker, out = tmp_path / ".a.mid.amt-running", tmp_path / "a.mid"
    command = [sys.executable, "-m", "transcribe", wav, "--weights", tiny_weights,
               "--skip-existing", "--report", tmp_path / "report.csv"]
    other = subprocess.Popen(["sleep", "120"])  # the other run, alive, on this machine
    try:
        # Without --skip-existing (or --overwrite) it is an output this run cannot write.
        marker.write_text(f"amt-transcribe, process {other.pid} on {platform.node()}: {wav}\n")
        result = invoke(wav, "--weights", tiny_weights)
        assert result.exit_code == 1
        assert result.output.endswith(
            f"amt-transcribe: error: {out}: another run is writing it (process {other.pid} on "
            f"{platform.node()}); use --skip-existing to leave such files to it\n"), result.output
        assert marker.exists() and not out.exists()
        for pid, host in ((other.pid, platform.node()), (1, "another-machine")):
            out.unlink(missing_ok=True)
            (tmp_path / "report.csv").unlink(missing_ok=True)
            # another machine's: alive while touched (HEARTBEAT_S), as now
            marker.write_text(f"amt-transcribe, process {pid} on {host}: {wav}\n")
            with open(tmp_path / "stderr", "w+") as stderr:
                run = subprocess.Popen(command, stderr=stderr, text=True)
                try:
                    wait_until(lambda: run.poll() is not None
                               or "waiting" in (tmp_path / "stderr").read_text(), 60)
                    assert run.poll() is None, (tmp_path / "stderr").read_text()
                    out.write_bytes(b"the other run's notes")  # it finishes the file
                    marker.unlink()
                    assert run.wait(timeout=60) == 0
                finally:
                    kill_all(run)
            said = (tmp_path / "stderr").read_text()
            assert (f"note: waiting for other runs on these outputs (process {pid} on {host}) "
                    f"to finish {wav}") in " ".join(said.split()), said
            assert "died" not in said
            assert "1 file: 1 skipped (1 transcribed by other runs)" in said
            assert out.read_bytes() == b"the other run's notes"  # not transcribed again
            row = next(csv.DictReader(open(tmp_path / "report.csv")))
            assert (row["status"], row["message"]) == ("skipped",
                                                       "transcribed by another run meanwhile")
        # The other run dies on the file, its marker left: this one transcribes it.
        out.unlink()
        marker.write_text(f"amt-transcribe, process {other.pid} on {platform.node()}: {wav}\n")
        run = subprocess.Popen(command[:-2], stderr=subprocess.PIPE, text=True)
        time.sleep(1)
        other.kill()
        other.wait()
        _, said = run.communicate(timeout=120)
        assert run.returncode == 0, said
        assert out.stat().st_size > 0 and out.read_bytes() != b"the other run's notes"
        assert not marker.exists()
    finally:
        other.kill()
        other.wait()
    # Put up by another machine and untouched for long, or by a process of this number
    # before (in a container, a run may get the number of the one that died): a run died
    # on it.
    for pid, host, age in ((other.pid, "another-machine", 600), (os.getpid(), platform.node(), 0)):
        marker.write_text(f"amt-transcribe, process {pid} on {host}: {wav}\n")
        os.utime(marker, (time.time() - age, time.time() - age))
        result = invoke(wav, "--weights", tiny_weights, "--overwrite")
        assert result.exit_code == 0, result.output
        assert f"a run before this one died while transcribing {wav}" in result.output
        assert not marker.exists()


@pytest.mark.parametrize("flag,jobs", [("--skip-existing", "1"), ("--skip-existing", "2"),
                                       ("--overwrite", "1")])
def test_two_runs_at_once_on_one_folder_share_its_files(tmp_path, tiny_weights, flag, jobs):
    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(8):
        write_wav(src / f"{i}.wav", seconds=4)
    runs = [subprocess.Popen([sys.executable, "-m", "transcribe", src, "-o", out, "--weights",
                              tiny_weights, "-q", flag, "--jobs", jobs,
                              "--threads", "1", "--report", tmp_path / f"{name}.csv"],
                             stderr=subprocess.PIPE, text=True) for name in "ab"]
    try:
        said = [run.communicate(timeout=240)[1] for run in runs]
    finally:
        for run in runs:
            kill_all(run)
    assert [run.returncode for run in runs] == [0, 0], said
    rows = [list(csv.DictReader(open(tmp_path / f"{name}.csv"))) for name in "ab"]
    for a, b in zip(*rows):  # each file transcribed by one run, and left by the other
        if flag == "--skip-existing":
            assert sorted([a["status"], b["status"]]) == ["done", "skipped"], (a, b)
            # (or found written by the other when the run began)
            assert {a["message"], b["message"]} - {""} <= {"transcribed by another run meanwhile",
                                                          "output exists"}, (a, b)
        else:  # an output one run finished before the other came to it is replaced
            assert "done" in (a["status"], b["status"]) and "failed" not in (a["status"],
                                                                           b["status"])
    assert sorted(p.name for p in out.iterdir()) == [f"{i}.mid" for i in range(8)]


def test_runs_sharing_a_batch_and_its_report_leave_the_whole_batchs_rows(tmp_path,
                                                                          tiny_weights):
    """Runs on the same outputs with the same --report: the last run to write it left only
    its own rows, and "transcribed by another run meanwhile" for the files the others did
    (their notes, seconds and warnings lost).  Here the other run writes a.wav and its
    report while this run waits for it."""
    import platform
    src, report, marker = tmp_path / "in", tmp_path / "report.csv", tmp_path / ".a.mid.amt-running"
    wav, _ = write_wav(src / "a.wav"), write_wav(src / "b.wav")
    other = subprocess.Popen(["sleep", "120"])  # the other run, alive, on this machine
    marker.write_text(f"amt-transcribe, process {other.pid} on {platform.node()}: {wav}\n")
    theirs = {"input": str(wav), "output": str(tmp_path / "a.mid"), "status": "done",
              "duration_s": "1.0", "notes": "3", "seconds": "0.5",
              "message": "clipped: 12 samples at full scale"}
    try:
        with open(tmp_path / "stderr", "w+") as stderr:
            run = subprocess.Popen([sys.executable, "-m", "transcribe", src, "-o", tmp_path,
                                    "--weights", tiny_weights, "--skip-existing", "--report",
                                    report], stderr=stderr, text=True)
            try:
                wait_until(lambda: run.poll() is not None
                           or "waiting" in (tmp_path / "stderr").read_text(), 60)
                assert run.poll() is None, (tmp_path / "stderr").read_text()
                (tmp_path / "a.mid").write_bytes(b"the other run's notes")
                with open(report, "w", newline="") as handle:  # its report, as it stands
                    writer = csv.DictWriter(handle, list(theirs))
                    writer.writeheader()
                    writer.writerow(theirs)
                    writer.writerow({**theirs, "input": str(src / "b.wav"), "output":
                                     str(tmp_path / "b.mid"), "status": "not done",
                                     "duration_s": "", "notes": "", "seconds": "",
                                     "message": ""})
                marker.unlink()
                assert run.wait(timeout=60) == 0, (tmp_path / "stderr").read_text()
            finally:
                kill_all(run)
    finally:
        other.kill()
        other.wait()
    rows = list(csv.DictReader(open(report)))
    assert rows[0] == theirs
    assert (rows[1]["input"], rows[1]["status"]) == (str(src / "b.wav"), "done")
    assert "1 skipped (1 transcribed by other runs)" in (tmp_path / "stderr").read_text()


@pytest.mark.skipif(shutil.which("faketime") is None,
                    reason="sets a run's clock off with libfaketime (apt-get install faketime)")
@pytest.mark.parametrize("clock_off", ["+5m", "-5m"])
def test_a_run_whose_clock_is_off_judges_markers_by_the_folders_clock(tmp_path, tiny_weights,
                                                                      clock_off):
    """Machines sharing a folder on a file server, which stamps the markers' times by its own
    clock.  A run on a machine 5 minutes ahead of it said "a run before this one died while
    transcribing" a file another machine was transcribing, and took it (seen with two real
    runs); one 5 minutes behind waited on a dead run's file 5 minutes longer.  Here a real
    run's clock is set off with libfaketime; the marker is another machine's."""
    src = tmp_path / "in"
    wav = write_wav(src / "a.wav")
    marker, out, log = tmp_path / ".a.mid.amt-running", tmp_path / "a.mid", tmp_path / "stderr"
    marker.write_text(f"amt-transcribe, process 4242 on another-machine: {wav}\n")
    if clock_off == "-5m":
        os.utime(marker, (time.time() - 180,) * 2)  # its run died 3 minutes ago
    with open(log, "w+") as stderr:
        run = subprocess.Popen(["faketime", "-f", clock_off, sys.executable, "-m", "transcribe",
                                src, "-o", tmp_path, "--weights", tiny_weights,
                                "--skip-existing"], stderr=stderr, text=True)
        try:
            if clock_off == "+5m":  # alive: left to its run, and waited for
                assert wait_until(lambda: run.poll() is not None
                                  or "waiting" in log.read_text(), 60)
                assert run.poll() is None, log.read_text()
                out.write_bytes(b"the other machine's notes")
                marker.unlink()
                assert run.wait(timeout=60) == 0, log.read_text()
                assert out.read_bytes() == b"the other machine's notes"
                assert "died" not in log.read_text()
            else:  # dead: taken back at once
                assert run.wait(timeout=60) == 0, log.read_text()
                assert f"a run before this one died while transcribing {wav}" in log.read_text()
                assert len(pretty_midi.PrettyMIDI(str(out)).instruments) == 1
        finally:
            kill_all(run)


@pytest.mark.parametrize("clock_off_s", [0, 300, -300])
def test_a_shared_report_keeps_the_rows_other_runs_wrote_for_their_files(tmp_path, monkeypatch,
                                                                        clock_off_s):
    """Seen with three runs on 6 files: one run's report written while another run's file
    was still to do here put "not done" over that run's "done", and the report written last
    lost it.  An earlier batch's row of a file to transcribe again is not kept.  On a shared
    folder the files' times are the file server's: this machine's clock 5 minutes off it
    (``clock_off_s``) must not lose the rows (ahead, it took the other run's output for one
    written before this run began)."""
    from transcribe import batch, files
    from transcribe.progress import read_report, write_report
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + clock_off_s)
    monkeypatch.setattr(files, "_CLOCK_OFFSETS", {})
    jobs = [batch.Job(tmp_path / f"{name}.wav", tmp_path / f"{name}.mid") for name in "abcd"]
    began = time.time() - 1
    jobs[1].output.write_text("written by the other run")
    jobs[2].output.write_text("an earlier batch's")
    os.utime(jobs[2].output, (began - 3600, began - 3600))
    jobs[0].status, jobs[0].message = "skipped", "transcribed by another run meanwhile"
    jobs[3].status, jobs[3].duration_s, jobs[3].notes, jobs[3].seconds = "done", 2.0, 5, 0.1
    theirs = tmp_path / "theirs.csv"
    write_report(theirs, [batch.Job(j.source, j.output, status="done", duration_s=1.0, notes=7,
                                    seconds=0.5, message="clipped") for j in jobs])
    ours = tmp_path / "ours.csv"
    write_report(ours, jobs, latest=batch.rows_of_others(read_report(theirs), jobs, began))
    rows = {row["input"]: row for row in csv.DictReader(open(ours))}
    status = {Path(name).stem: (row["status"], row["notes"]) for name, row in rows.items()}
    assert status == {"a": ("done", "7"),  # skipped here: the other run's row
                      "b": ("done", "7"),  # to do here, and written meanwhile: its row
                      "c": ("not done", ""),  # to do here, written before this run began
                      "d": ("done", "5")}  # done here: this run's own row


def test_a_json_reports_batch_line_counts_its_rows_where_its_summary_is_this_runs(tmp_path):
    """A resumed or shared batch's JSON report held the whole batch's rows under this run's
    summary ("3 files: 2 skipped, 1 done" over three done rows): a script reading it had to
    count the rows itself.  Its "batch" line now says what the rows say."""
    from transcribe import batch
    from transcribe.progress import read_report, write_report
    jobs = [batch.Job(tmp_path / f"{name}.wav", tmp_path / f"{name}.mid") for name in "abcd"]
    before = tmp_path / "before.json"
    write_report(before, [batch.Job(j.source, j.output, status="done", duration_s=30.0, notes=7,
                                    seconds=0.5, message="clipped" if j is jobs[0] else None)
                          for j in jobs[:2]], elapsed_s=1.0)
    jobs[0].status = jobs[1].status = "skipped"
    jobs[2].status, jobs[2].duration_s, jobs[2].notes, jobs[2].seconds = "done", 60.0, 5, 0.2
    report = tmp_path / "report.json"
    write_report(report, jobs, elapsed_s=2.0, earlier=read_report(before))
    written = json.loads(report.read_text())
    assert written["summary"] == ("4 files: 1 done, 2 skipped, 1 not done; "
                                  "1:00 of audio in 2.0 s (30x real time)")
    assert written["batch"] == "4 files: 3 done (1 with warnings), 1 not done; 2:00 of audio"
    assert [row["status"] for row in written["files"]] == ["done", "done", "done", "not done"]
    # A report edited by hand, its seconds no number: counted as none, and written.
    edited = json.loads(before.read_text())
    edited["files"][1]["duration_s"] = "half a minute"
    before.write_text(json.dumps(edited))
    write_report(report, jobs, elapsed_s=2.0, earlier=read_report(before))
    assert json.loads(report.read_text())["batch"].endswith("; 1:30 of audio")


def test_a_shared_reports_lock_is_waited_for_and_one_left_by_a_killed_run_is_broken(tmp_path):
    import threading
    from transcribe import progress
    report = tmp_path / "report.csv"
    lock = tmp_path / ".report.csv.amt-lock"
    order = []

    def second():
        with progress.report_lock(report):
            order.append("second")

    with progress.report_lock(report):
        assert lock.exists()
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)
        order.append("first")
    thread.join(timeout=10)
    assert order == ["first", "second"] and not lock.exists()
    lock.write_text("")
    os.utime(lock, (time.time() - 60, time.time() - 60))  # its run was killed holding it
    began = time.monotonic()
    with progress.report_lock(report):
        assert time.monotonic() - began < 1
    assert not lock.exists()


def test_long_recordings_get_numbered_pages_of_every_figure(tmp_path, tiny_weights):
    import matplotlib.image
    wav = write_wav(tmp_path / "long.wav", seconds=65)
    result = invoke(wav, "--plot", "--weights", tiny_weights, "-q")
    assert result.exit_code == 0, result.output
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    kinds = ("pianoroll", "posteriorgram", "reconstruction", "spectrogram")
    assert pngs == sorted(f"long.{kind}-{page:02d}.png" for kind in kinds for page in (1, 2, 3))
    # Every page of every figure has one size: 30 s at the same scale, axes aligned.
    assert len({matplotlib.image.imread(tmp_path / name).shape for name in pngs}) == 1


def test_a_piano_roll_page_counts_the_pedal_it_shows(monkeypatch, tmp_path):
    import matplotlib.colors
    from transcribe import plot
    figures = []
    monkeypatch.setattr(plot, "_save", lambda fig, path, overwrite: figures.append(fig))
    pedal = np.array([[1.0, 2.0], [29.0, 31.0], [40.0, 41.0], [50.0, 52.0], [70.0, 71.0]])
    plot.plot_piano_roll(np.zeros((0, 4)), tmp_path / "p.png", 30.0, pedal=pedal, start_s=30.0)
    legend = figures[0].axes[0].get_legend()
    assert [text.get_text() for text in legend.get_texts()] == ["sustain pedal, down 3 times"]
    plot.plot_piano_roll(np.zeros((0, 4)), tmp_path / "q.png", 3.0, pedal=pedal[:1])
    assert figures[1].axes[0].get_legend().get_texts()[0].get_text() == "sustain pedal, down 1 time"
    # A page with no span says so, in the pedal's own green.
    plot.plot_piano_roll(np.zeros((0, 4)), tmp_path / "r.png", 30.0, pedal=pedal, start_s=90.0)
    legend = figures[2].axes[0].get_legend()
    assert legend.get_texts()[0].get_text() == "sustain pedal, down 0 times"
    swatches = [legend.legend_handles[0] for legend in
                (figures[0].axes[0].get_legend(), legend)]
    green = matplotlib.colors.to_rgba("tab:green", 0.6)
    assert all(np.allclose(swatch.get_facecolor(), green) for swatch in swatches)
    one = np.array([[1.0, 2.0, 60, 80]])  # onset, offset, pitch, velocity
    plot.plot_piano_roll(one, tmp_path / "s.png", 3.0)
    assert figures[3].axes[0].get_title() == "piano roll, 1 note"
    assert figures[2].axes[0].get_title() == "piano roll, 0 notes"


def test_the_files_bar_counts_failures_as_they_happen(monkeypatch):
    from types import SimpleNamespace
    from transcribe.progress import Reporter
    monkeypatch.setenv("FORCE_COLOR", "1")  # a terminal: the bars are drawn only there
    with Reporter(total_files=3) as reporter:
        bar = reporter.progress.tasks[0]
        reporter.finish_file(SimpleNamespace(status="done"))
        assert bar.description == "files" and bar.completed == 1
        reporter.finish_file(SimpleNamespace(status="failed"))
        reporter.finish_file(SimpleNamespace(status="failed"))
        assert bar.description == "files (2 failed)" and bar.completed == 3


def test_a_report_that_cannot_be_written_fails_the_run(tmp_path, tiny_weights, monkeypatch):
    from transcribe import progress
    from transcribe.errors import TranscribeError

    def disk_full(path, jobs, elapsed_s=None, earlier=None, latest=None):
        raise TranscribeError(f"{path}: cannot write it (No space left on device)")

    monkeypatch.setattr(progress, "write_report", disk_full)
    wav = write_wav(tmp_path / "song.wav")
    result = invoke(wav, "--weights", tiny_weights, "--report", tmp_path / "r.csv")
    assert result.exit_code == 1 and (tmp_path / "song.mid").is_file()
    assert "r.csv: cannot write it (No space left on device)" in result.output


def test_a_device_or_pipe_is_never_replaced_by_an_output(tmp_path, tiny_weights):
    """An output is published by renaming a file over its name: with --overwrite, a pipe
    named as the output was replaced by a MIDI file, and run as root, -o /dev/null
    --overwrite would have put one where the system's /dev/null was."""
    wav = write_wav(tmp_path / "a.wav")
    fifo = tmp_path / "out.mid"
    os.mkfifo(fifo)
    for args in ((wav, "-o", fifo, "--overwrite"), (wav, "-o", tmp_path / "x.mid", "--report",
                                                    tmp_path / "r.csv", "--overwrite")):
        if "--report" in args:
            fifo.unlink()
            os.mkfifo(tmp_path / "r.csv")
        result = invoke(*args, "--weights", tiny_weights)
        assert result.exit_code == 2, result.output
        assert "not a file but a device, pipe or socket, which writing would replace" in \
            result.output and len(result.output.splitlines()) == 1, result.output
    assert stat.S_ISFIFO(os.stat(tmp_path / "r.csv").st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "r.csv"]
    # (never with --overwrite here: were the check gone, the test would do the harm)
    for target in ("/dev/null", "/dev/amt-transcribe-test.mid"):
        result = invoke(wav, "-o", target, "--weights", tiny_weights)
        assert result.exit_code == 2 and "name a file (-o - writes the notes to standard " \
            "output)" in result.output, result.output
    assert not os.path.exists("/dev/amt-transcribe-test.mid")


def test_file_names_with_brackets_are_printed_as_they_are(tmp_path, tiny_weights, monkeypatch):
    """Rich read "Song [Live].wav" as markup and printed "Song .wav"; a folder "a[" with
    "b]c.wav" in it ("a[/b]c.wav") ended the batch in a MarkupError traceback."""
    monkeypatch.chdir(tmp_path)  # short paths: the table is not cut to the width
    write_wav(Path("in") / "Chopin [Live].wav")
    write_wav(Path("in") / "a[" / "b]c.wav")
    result = invoke("in", "-o", "out", "--weights", tiny_weights)
    assert result.exit_code == 0, result.output
    assert "in/Chopin [Live].wav" in result.output and "in/a[/b]c.wav" in result.output
    single = invoke(Path("in") / "Chopin [Live].wav", "-o", "[red]one.mid", "--weights",
                    tiny_weights)
    assert single.exit_code == 0 and "[red]one.mid: " in single.output


def test_long_file_names_get_their_output_or_fail_alone_before_any_work(tmp_path, tiny_weights):
    """A 245-byte name: its .mid (249 bytes) was refused for the temporary file's longer
    name; with --plot, its .reconstruction.png (264) cannot be named, which is now said
    before any audio is read, and the rest of the batch goes on."""
    src = tmp_path / "in"
    long = write_wav(src / ("p" * 241 + ".wav"))
    write_wav(src / "short.wav")
    result = invoke(long, "-o", f"{tmp_path / 'one'}/", "--weights", tiny_weights)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "one" / ("p" * 241 + ".mid")).is_file()
    batch = invoke(src, "-o", tmp_path / "out", "--plot", "--weights", tiny_weights)
    assert batch.exit_code == 1 and (tmp_path / "out" / "short.pianoroll.png").is_file()
    assert ".reconstruction.png: the name is 260 bytes, more than the 255 this filesystem " \
           "takes" in batch.output
    assert not any((tmp_path / "out").glob("ppp*"))


def test_a_recording_cut_off_before_its_header_was_finished_is_transcribed(tmp_path,
                                                                           tiny_weights):
    from test_audio import unfinished
    wav = unfinished(write_wav(tmp_path / "take.wav", seconds=3))
    result = invoke(wav, "--weights", tiny_weights)
    assert result.exit_code == 0, result.output
    assert "its header was never finished (a recording cut off?): read as the 3.0 s of " \
           "samples that follow it" in result.output
    assert (tmp_path / "unfinished-take.mid").is_file()


def test_a_run_stopped_for_minutes_leaves_the_file_another_run_took_to_it(tmp_path,
                                                                           tiny_weights,
                                                                           monkeypatch):
    """A run stopped with Ctrl-Z for longer than STALE_S stops touching its marker: another
    run takes the file for a dead run's and writes it.  Resumed, the first run failed the
    file ("exists"), exit 1, and took the other run's marker down."""
    import platform
    from transcribe import transcriber
    wav = write_wav(tmp_path / "a.wav")
    out, marker = tmp_path / "a.mid", tmp_path / ".a.mid.amt-running"
    other = subprocess.Popen(["sleep", "60"])  # the run that took the file over, alive
    theirs = f"amt-transcribe, process {other.pid} on {platform.node()}: {wav}\n".encode()
    heard = transcriber._transcription

    def stopped_meanwhile(*args, **kwargs):
        result = heard(*args, **kwargs)
        marker.unlink()
        claims.put_up(marker, theirs)
        out.write_bytes(b"the other run's notes")
        return result

    monkeypatch.setattr(transcriber, "_transcription", stopped_meanwhile)
    try:
        result = invoke(wav, "--weights", tiny_weights, "--skip-existing")
        assert result.exit_code == 0, result.output
        assert "1 file: 1 skipped (1 transcribed by other runs)" in result.output
        assert out.read_bytes() == b"the other run's notes"
        assert marker.read_bytes() == theirs  # still up: its run is writing the side files
        assert sorted(p.name for p in tmp_path.iterdir()) == [marker.name, "a.mid", "a.wav"]
        # Without --skip-existing the user asked to hear of an output that exists.
        out.unlink()
        marker.unlink()
        failed = invoke(wav, "--weights", tiny_weights)
        assert failed.exit_code == 1 and "a.mid exists" in failed.output
    finally:
        other.kill()
        other.wait()


