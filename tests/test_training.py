"""Training side: labels follow the pedal, splits keep pieces whole, a step trains and resumes."""

import csv
import json
import re
import subprocess
import time
from pathlib import Path

import mido
import numpy as np
import pretty_midi
import pytest
import soundfile as sf
import torch

from transcribe import constants as C
from transcribe.model import ModelConfig, UNetTranscriber
from transcribe.training import corpus, synth
from transcribe.training.cli import evaluate_main
from transcribe.training.metrics import ERROR_KINDS, REGISTERS, error_counts, register_counts, score
from transcribe.training.labels import notes_to_rolls
from transcribe.training.train import TrainConfig, train
from transcribe.weights import save_weights


def test_sustain_pedal_extends_notes_and_restrike_ends_them():
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    piano.notes += [pretty_midi.Note(80, 60, 0.0, 0.5), pretty_midi.Note(80, 60, 1.0, 1.2),
                    pretty_midi.Note(80, 64, 0.2, 0.4), pretty_midi.Note(80, 67, 3.0, 3.5)]
    piano.control_changes += [pretty_midi.ControlChange(64, 127, 0.1),
                              pretty_midi.ControlChange(64, 0, 2.0)]
    midi.instruments.append(piano)
    notes = synth.piano_notes(midi)
    by_pitch = {(n[2], n[0]): n[1] for n in notes}
    assert by_pitch[(60, 0.0)] == 1.0  # held by the pedal until the key is struck again
    assert by_pitch[(60, 1.0)] == 2.0  # held until the pedal lifts
    assert by_pitch[(64, 0.2)] == 2.0
    assert by_pitch[(67, 3.0)] == 3.5  # after the pedal: as played


def test_transposed_render_shifts_audio_and_labels_and_drops_keys_off_the_piano(tmp_path):
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    piano.notes += [pretty_midi.Note(100, 57, 0.0, 1.5), pretty_midi.Note(100, 100, 2.0, 2.5)]
    midi.instruments.append(piano)
    midi.write(str(tmp_path / "piece.mid"))
    item = corpus.MidiFile(tmp_path / "piece.mid", "music21_corpus/piece.mid", "music21_corpus",
                           "music21_corpus/piece", "PD", 2.5)
    soundfont = synth.find_soundfont("TimGM6mb.sf2")
    path = corpus.render_to_cache(item, tmp_path / "cache", soundfont, 0,
                                  np.random.default_rng(0), transpose=12)
    assert path.name.endswith("_t+12.flac")
    notes = np.load(path.with_suffix(".npy"))
    assert notes[:, 2].tolist() == [69]  # 57 + 12; 100 + 12 is past the top key: dropped
    audio, rate = sf.read(path)
    assert np.abs(audio[int(2.1 * rate):]).max() < 0.05 * np.abs(audio).max()  # not rendered
    head = audio[int(0.1 * rate):int(1.1 * rate)]
    spectrum = np.abs(np.fft.rfft(head * np.hanning(len(head))))
    peak_hz = np.argmax(spectrum) * rate / len(head)
    assert abs(12 * np.log2(peak_hz / 440.0)) < 0.5  # A4 sounds, not A3 (220 Hz)


def test_rolls_mark_onset_frame_offset_and_velocity():
    notes = np.array([[1.0, 2.0, 60, 127]])
    rolls = notes_to_rolls(notes, first_frame=20, n_frames=50)
    key = 60 - C.MIN_MIDI
    onset = round(1.0 * C.FRAME_RATE_HZ) - 20
    offset = round(2.0 * C.FRAME_RATE_HZ) - 20
    assert np.flatnonzero(rolls["onset"][:, key]).tolist() == [onset]
    assert np.flatnonzero(rolls["offset"][:, key]).tolist() == [offset]
    assert rolls["frame"][:, key].sum() == offset - onset
    assert rolls["velocity"][onset, key] == 1.0


def test_split_keeps_every_piece_on_one_side(tmp_path):
    files = [corpus.MidiFile(tmp_path / f"{p}_p{i:02d}.mid", f"vienna4x22/{p}_p{i:02d}.mid",
                             "vienna4x22", corpus.piece_of(f"vienna4x22/{p}_p{i:02d}.mid"), "CC", 1.0)
             for p in ("Chopin_a", "Mozart_b", "Schubert_c", "Chopin_d") for i in range(1, 23)]
    rest, held = corpus.split_by_piece(files, 0.5)
    assert {f.piece for f in rest}.isdisjoint({f.piece for f in held})
    assert len(rest) + len(held) == len(files)


def test_mir_eval_scores_perfect_and_shifted_transcriptions():
    ref = np.array([[0.5, 1.0, 60, 80], [1.0, 1.5, 64, 90], [2.0, 3.0, 67, 70]])
    assert score(ref, ref)["note_f1"] == 1.0
    late = ref.copy()
    late[:, :2] += 0.06  # beyond the 50 ms onset tolerance
    assert score(ref, late)["note_f1"] == 0.0
    assert score(ref, np.zeros((0, 4)))["note_f1"] == 0.0


def test_per_file_scores_keep_names_that_are_not_utf8(tmp_path):
    """amt-evaluate --csv died with a traceback (UnicodeEncodeError) on a Latin-1 name."""
    import os
    from transcribe.training.evaluate import write_csv
    name = os.fsdecode(b"caf\xe9.flac")
    write_csv([{"file": name, "note_f1": 0.5}], tmp_path / "s.csv")
    assert (tmp_path / "s.csv").read_bytes() == b"file,note_f1\ncaf\xe9.flac,0.5000\n"


def test_register_counts_show_where_notes_are_missed(tmp_path, capsys):
    reference = np.array([[0.5, 1.0, 24, 80], [1.0, 1.5, 30, 80],  # A0-B1
                          [0.5, 1.0, 60, 80], [1.0, 1.5, 64, 80],  # C4-B4
                          [2.0, 2.5, 100, 80]])                    # C6-C8
    estimate = np.array([[0.51, 1.0, 60, 80], [1.02, 1.4, 64, 80],  # both found
                         [0.5, 1.0, 36, 80],                        # an octave off: C2-B2
                         [2.2, 2.5, 100, 80]])                      # 200 ms late
    counts = register_counts(reference, estimate)
    by_name = {name: row.tolist() for (name, _, _), row in zip(REGISTERS, counts)}
    assert by_name["A0-B1"] == [2, 0, 0]
    assert by_name["C2-B2"] == [0, 0, 1]
    assert by_name["C4-B4"] == [2, 2, 2]
    assert by_name["C6-C8"] == [1, 0, 1]
    assert counts.sum(axis=0).tolist() == [5, 2, 4]
    # amt-evaluate --by-register sums them over files (here: another transcriber's MIDI).
    for folder in ("ref", "pred"):
        (tmp_path / folder).mkdir()
    sf.write(tmp_path / "ref" / "a.flac", np.zeros(C.SAMPLE_RATE, np.float32), C.SAMPLE_RATE)
    # Audio without a reference is left out of the set scored, and the user is told.
    sf.write(tmp_path / "ref" / "b.flac", np.zeros(C.SAMPLE_RATE, np.float32), C.SAMPLE_RATE)
    for folder, notes in (("ref", reference), ("pred", estimate)):
        midi = pretty_midi.PrettyMIDI()
        piano = pretty_midi.Instrument(0)
        piano.notes += [pretty_midi.Note(int(v), int(p), s, e) for s, e, p, v in notes]
        midi.instruments.append(piano)
        midi.write(str(tmp_path / folder / "a.mid"))
    with pytest.raises(SystemExit) as exit_info:
        evaluate_main([str(tmp_path / "ref"), str(tmp_path / "ref"), "--predictions",
                       str(tmp_path / "pred"), "--by-register", "--csv", str(tmp_path / "s.csv")])
    assert exit_info.value.code == 0
    printed, said = capsys.readouterr()
    assert "by register" in printed and all(name in printed for name, _, _ in REGISTERS)
    assert "pred on 1 file " in printed  # the table's title
    # How far the onsets found lie from the reference's: 10 and 20 ms late, as the MIDI
    # file's ticks (1/440 s here) hold them.
    timing = re.search(r"onsets of the 2 notes found: \+([\d.]+) ms from the reference's at "
                       r"the median, ([\d.]+) ms off on average, (\d+) % within 10 ms", printed)
    assert timing, printed
    assert float(timing[1]) == pytest.approx(15.0, abs=1.2)
    assert float(timing[2]) == pytest.approx(15.0, abs=1.2) and timing[3] == "50"
    assert said.startswith("amt-evaluate: note: 1 audio file without a MIDI file of the same "
                           f"name in {tmp_path / 'ref'} left out (the first: "
                           f"{tmp_path / 'ref' / 'b.flac'})")
    # The CSV holds the per-file scores that the table averages (the register counts,
    # arrays, only go to the table).
    with open(tmp_path / "s.csv", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert "registers" not in row
    assert float(row["note_recall"]) == pytest.approx(2 / 5)
    assert float(row["note_precision"]) == pytest.approx(2 / 4)


def test_error_counts_say_where_the_errors_lie(tmp_path, capsys):
    reference = np.array([[0.50, 1.00, 60, 80],   # found
                          [1.00, 1.50, 62, 80],   # written 100 ms late: off in time (both)
                          [2.00, 4.00, 64, 80],   # found ...
                          [3.00, 3.50, 64, 40],   # ... re-struck, not heard: swallowed
                          [5.00, 5.50, 67, 30],   # nothing written near
                          [6.00, 8.00, 48, 90],   # found, and its octave written too
                          [9.00, 11.0, 50, 70]])  # found, and split at 10 s
    estimate = np.array([[0.51, 1.00, 60, 80], [1.10, 1.50, 62, 80],
                         [2.01, 4.00, 64, 80],
                         [6.01, 7.00, 48, 90], [6.02, 6.50, 60, 60],  # the octave above
                         [9.00, 10.0, 50, 70], [10.0, 11.0, 50, 60],  # split
                         [12.0, 12.5, 70, 50]])                       # other
    counts = error_counts(reference, estimate)
    assert dict(zip(ERROR_KINDS, counts.tolist())) == dict(zip(ERROR_KINDS, [1, 1, 1, 1, 1, 1, 1]))
    # The order decides: a written note 100 ms off inside a longer played note is off in
    # time, not split; a fifth above a played note (not a partial) is other.
    assert error_counts(np.array([[1.0, 3.0, 60, 80], [2.0, 2.5, 60, 80]]),
                        np.array([[1.0, 3.0, 60, 80], [2.1, 2.5, 60, 80]])).tolist() == \
        [1, 0, 0, 1, 0, 0, 0]
    assert error_counts(np.array([[1.0, 2.0, 48, 80]]),
                        np.array([[1.0, 2.0, 48, 80], [1.0, 2.0, 55, 80]])).tolist() == \
        [0, 0, 0, 0, 0, 0, 1]
    # amt-evaluate --by-error sums them over files, with each kind's share.
    for folder, notes in (("ref", reference), ("pred", estimate)):
        (tmp_path / folder).mkdir()
        midi = pretty_midi.PrettyMIDI()
        piano = pretty_midi.Instrument(0)
        piano.notes += [pretty_midi.Note(int(v), int(p), s, e) for s, e, p, v in notes]
        midi.instruments.append(piano)
        for name in ("a", "b"):
            midi.write(str(tmp_path / folder / f"{name}.mid"))
    for name in ("a", "b"):
        sf.write(tmp_path / "ref" / f"{name}.flac", np.zeros(C.SAMPLE_RATE, np.float32),
                 C.SAMPLE_RATE)
    with pytest.raises(SystemExit) as exit_info:
        evaluate_main([str(tmp_path / "ref"), str(tmp_path / "ref"), "--predictions",
                       str(tmp_path / "pred"), "--by-error"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "where the errors lie" in printed
    rows = [re.search(f"{side} +│ {kind}" + r" +│ +(\d+) │ +([\d.]+)", printed)
            for side, kind in ERROR_KINDS]
    assert all(rows), printed
    # two files: each kind twice; a third of the notes missed, a quarter of those not played
    assert [int(row[1]) for row in rows] == [2] * 7
    assert [float(row[2]) for row in rows] == [33.3] * 3 + [25.0] * 4


def test_amt_evaluate_names_an_unreadable_file_in_one_line(tmp_path):
    import subprocess
    import sys
    ref, pred, header = tmp_path / "ref", tmp_path / "pred", tmp_path / "header"
    for folder in (ref, pred, header):
        folder.mkdir()
    sf.write(ref / "a.flac", np.zeros(C.SAMPLE_RATE, np.float32), C.SAMPLE_RATE)
    sf.write(tmp_path / "whole.wav", np.zeros(C.SAMPLE_RATE, np.float32), C.SAMPLE_RATE,
             subtype="PCM_16")
    (header / "a.wav").write_bytes((tmp_path / "whole.wav").read_bytes()[:44])  # no samples
    good = pretty_midi.PrettyMIDI()
    good.instruments.append(pretty_midi.Instrument(0))
    good.instruments[0].notes.append(pretty_midi.Note(80, 60, 0.1, 0.5))
    good.write(str(tmp_path / "good.mid"))
    good, bad = (tmp_path / "good.mid").read_bytes(), b"MThd not a MIDI file"
    code = "from transcribe.training.cli import evaluate_main; evaluate_main()"
    scored = ["--predictions", str(pred), str(ref), str(ref)]
    runs = [(bad, good, scored, f"{ref / 'a.mid'}: not a readable MIDI file"),
            (good, bad, scored, f"{pred / 'a.mid'}: not a readable MIDI file"),
            (good, good, [str(header), str(ref)], f"{header / 'a.wav'}: truncated")]
    for reference, predicted, args, message in runs:
        (ref / "a.mid").write_bytes(reference)
        (pred / "a.mid").write_bytes(predicted)
        result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                                text=True)
        assert result.returncode == 1, (args, result.stderr)
        assert result.stderr.startswith("amt-evaluate: error: ") and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def silent_pairs(folder: Path, names: str) -> pretty_midi.PrettyMIDI:
    """A second of silence (NAME.flac) and a one-note reference (NAME.mid) for each name
    in ``folder``; returns the reference."""
    folder.mkdir()
    midi = pretty_midi.PrettyMIDI()
    midi.instruments.append(pretty_midi.Instrument(0))
    midi.instruments[0].notes.append(pretty_midi.Note(80, 60, 0.1, 0.5))
    for name in names:
        sf.write(folder / f"{name}.flac", np.zeros(C.SAMPLE_RATE, np.float32), C.SAMPLE_RATE)
        midi.write(str(folder / f"{name}.mid"))
    return midi


def test_amt_evaluate_reads_every_reference_before_it_transcribes(tmp_path):
    """A damaged reference ended an evaluation only when its turn came, after the network
    had heard every file before it (hours, on a large set)."""
    import subprocess
    import sys
    ref = tmp_path / "ref"
    good = silent_pairs(ref, "ab")
    (ref / "b.mid").write_bytes(b"MThd not a MIDI file")
    result = subprocess.run([sys.executable, "-c", "from transcribe.training.cli import "
                             "evaluate_main; evaluate_main()", str(ref), str(ref)],
                            capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    # one line, and no file scored before it
    assert result.stderr.startswith(f"amt-evaluate: error: {ref / 'b.mid'}: not a readable "
                                    "MIDI file (")
    assert len(result.stderr.splitlines()) == 1, result.stderr
    good.write(str(ref / "b.mid"))
    (ref / "b.flac").write_bytes(b"not audio at all" * 64)
    result = subprocess.run(result.args, capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(f"amt-evaluate: error: {ref / 'b.flac'}: not a readable "
                                    "audio file")
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_amt_evaluate_says_which_references_another_transcriber_left_without_notes(
        tmp_path, capsys):
    from transcribe.training.cli import evaluate_main
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    pred.mkdir()
    silent_pairs(ref, "abc").write(str(pred / "a.mid"))  # it failed on b and c
    with pytest.raises(SystemExit) as exit_info:
        evaluate_main([str(ref), str(ref), "--predictions", str(pred)])
    assert exit_info.value.code == 0
    printed, said = capsys.readouterr()
    assert said == (f"amt-evaluate: note: 2 references without a prediction in {pred}, "
                    f"scored as no notes (the first: {pred / 'b.mid'})\n")
    assert "pred on 3 files" in printed


def test_amt_evaluate_scores_one_recording_and_reads_predictions_as_they_sound(tmp_path,
                                                                              capsys,
                                                                              monkeypatch):
    """A recording and its MIDI file may be given alone (folders were required).  A
    prediction that ends its notes at the key releases and holds them with CC64 (Transkun,
    --pedal cc64) was read without its pedal: the pedalled example scored against itself
    had frame F1 72 (recall 56) and note+offset F1 33."""
    from transcribe.training.cli import evaluate_main
    from transcribe.training.evaluate import reference_pedal
    examples = Path(__file__).resolve().parent.parent / "examples"
    audio, midi = examples / "example.flac", examples / "example.mid"
    assert reference_pedal(midi).size  # the example's pedal is down in places
    with pytest.raises(SystemExit) as exit_info:
        evaluate_main([str(audio), str(midi), "--predictions", str(midi),
                       "--csv", str(tmp_path / "scores.csv")])
    assert exit_info.value.code == 0
    assert "example.mid on 1 file" in capsys.readouterr().out
    row, = list(csv.DictReader(open(tmp_path / "scores.csv")))
    for level in ("frame", "note", "note_offset", "note_velocity"):
        assert float(row[f"{level}_f1"]) == 1.0, level
    # Folders and files mixed: which pairs are meant cannot be told.
    with pytest.raises(SystemExit) as exit_info:
        evaluate_main([str(audio), str(examples)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        "amt-evaluate: error: give folders, or files, to pair: a recording, its reference MIDI "
        "file (and the other transcriber's MIDI file)\n")
    # A quoted ~ (no shell made it the home folder) would make a folder named ~ here.
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    with pytest.raises(SystemExit) as exit_info:
        evaluate_main([str(audio), str(midi), "--predictions", str(midi), "--csv", "~/s.csv"])
    assert exit_info.value.code == 2 and "nothing made ~ the home folder" in capsys.readouterr().err
    # So are amt-train's outputs: weights, runs, caches.
    from transcribe.training.cli import main as train_main
    for args in (["export", str(midi), "~/w.pt"], ["fit", "~"],
                 ["make-validation", str(midi), "--out", "~"]):
        with pytest.raises(SystemExit) as exit_info:
            train_main(args)
        assert exit_info.value.code == 2, args
        assert "nothing made ~ the home folder" in capsys.readouterr().err, args
    assert list((tmp_path / "here").iterdir()) == []


def test_amt_evaluate_pairs_names_differing_in_case_and_finds_basic_pitchs_files(tmp_path,
                                                                                 capsys):
    """``Song.WAV`` did not pair with ``song.mid`` (names copied from Windows or a Mac,
    where case does not matter), nor a name whose accent a Mac wrote as a letter and a
    combining accent with the same name written with one character; nor did basic-pitch's
    ``song_basic_pitch.mid`` with ``song.mid`` as a prediction: each was scored as no
    notes."""
    from transcribe.training.cli import evaluate_main
    from transcribe.training.evaluate import pair_files
    audio, ref, predicted = tmp_path / "audio", tmp_path / "ref", tmp_path / "predicted"
    silent_pairs(audio, "abc")
    for name in ("a.flac", "b.flac"):
        (audio / name).rename(audio / name.upper())
    (audio / "c.flac").rename(audio / "C.Flac")
    (audio / "c.flac").write_bytes((audio / "C.Flac").read_bytes())  # c.flac takes c.mid
    midi = silent_pairs(ref, "abc")
    predicted.mkdir()
    midi.write(str(predicted / "a_basic_pitch.mid"))
    midi.write(str(predicted / "B.MID"))
    # An accent as a Mac writes it (E and a combining accent), and as one character.
    (audio / "\u00c9tude.flac").write_bytes((audio / "c.flac").read_bytes())
    midi.write(str(ref / "E\u0301tude.mid"))
    midi.write(str(predicted / "\u00e9tude.mid"))
    pairs = pair_files(audio, ref, unpaired := [])
    assert [(a.name, m.name) for a, m in pairs] == [
        ("A.FLAC", "a.mid"), ("B.FLAC", "b.mid"), ("c.flac", "c.mid"),
        ("\u00c9tude.flac", "E\u0301tude.mid")]
    assert unpaired == [audio / "C.Flac"]  # c.mid is c.flac's: not paired again by case
    with pytest.raises(SystemExit) as exit_info:
        evaluate_main([str(audio), str(ref), "--predictions", str(predicted),
                       "--csv", str(tmp_path / "scores.csv")])
    assert exit_info.value.code == 0
    said = capsys.readouterr().err.splitlines()
    assert said == [
        f"amt-evaluate: note: 1 audio file without a MIDI file of the same name in {ref} left "
        f"out (the first: {audio / 'C.Flac'})",
        f"amt-evaluate: note: 1 reference without a prediction in {predicted}, scored as no "
        f"notes (the first: {predicted / 'c.mid'})"]
    rows = list(csv.DictReader(open(tmp_path / "scores.csv")))
    assert [(row["file"], float(row["note_f1"])) for row in rows] == [
        ("A.FLAC", 1.0), ("B.FLAC", 1.0), ("c.flac", 0.0), ("\u00c9tude.flac", 1.0)]
    # Nothing pairs: one line, however long the names (it was cut over two).
    (tmp_path / "none").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        evaluate_main([str(audio), str(tmp_path / "none")])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == (f"amt-evaluate: error: no audio in {audio} has a MIDI "
                                       f"file of the same name in {tmp_path / 'none'}\n")


def test_amt_evaluate_finds_predictions_written_into_one_folder(tmp_path):
    """basic-pitch writes every output into one folder: references in sub-folders (a set by
    composer) found no prediction there, and each was scored as no notes.  A name two
    references share is not taken from the one folder: it could be either's."""
    from transcribe.training.evaluate import evaluate_predictions, pair_files
    audio, ref, predicted = tmp_path / "audio", tmp_path / "ref", tmp_path / "predicted"
    midi = silent_pairs(audio, "")
    silent_pairs(ref, "")
    for folder, name in (("bach", "prelude"), ("chopin", "etude"), ("chopin", "prelude"),
                         ("liszt", "sonata")):
        (audio / folder).mkdir(exist_ok=True)
        (ref / folder).mkdir(exist_ok=True)
        sf.write(audio / folder / f"{name}.flac", np.zeros(C.SAMPLE_RATE, np.float32),
                 C.SAMPLE_RATE)
        midi.write(str(ref / folder / f"{name}.mid"))
    predicted.mkdir()
    midi.write(str(predicted / "etude_basic_pitch.mid"))  # chopin/etude's, the only etude
    midi.write(str(predicted / "prelude_basic_pitch.mid"))  # bach's or chopin's: neither
    (predicted / "liszt").mkdir()  # mirrored: found where the reference is
    midi.write(str(predicted / "liszt" / "sonata.mid"))
    pairs = pair_files(audio, ref, [])
    missing = []
    rows = evaluate_predictions(pairs, predicted, ref, missing)
    assert [(row["file"], row["note_f1"]) for row in rows] == [
        ("prelude.flac", 0.0), ("etude.flac", 1.0), ("prelude.flac", 0.0), ("sonata.flac", 1.0)]
    assert missing == [predicted / "bach" / "prelude.mid", predicted / "chopin" / "prelude.mid"]


def test_amt_evaluate_says_which_references_hold_no_notes(tmp_path, capsys):
    """A reference whose notes are all on a drum track (or none at all) scored F1 0 without
    a word, and pulled the set's mean down."""
    from transcribe.training.cli import evaluate_main
    ref = tmp_path / "ref"
    midi = silent_pairs(ref, "abc")
    midi.instruments[0].is_drum = True
    midi.write(str(ref / "b.mid"))
    pretty_midi.PrettyMIDI().write(str(ref / "c.mid"))
    with pytest.raises(SystemExit) as exit_info:
        evaluate_main([str(ref), str(ref), "--predictions", str(ref)])
    assert exit_info.value.code == 0
    printed, said = capsys.readouterr()
    assert said == ("amt-evaluate: note: 2 references hold no notes on the 88 keys outside "
                    f"drum tracks: scored 0 whatever is heard (the first: {ref / 'b.mid'})\n")
    assert "ref on 3 files" in printed


def test_training_steps_run_checkpoint_and_resume(tmp_path):
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    piano.notes += [pretty_midi.Note(90, 48 + i, i * 0.3, i * 0.3 + 0.25) for i in range(20)]
    midi.instruments.append(piano)
    audio = synth.render(midi, synth.find_soundfont("TimGM6mb.sf2"))
    sf.write(tmp_path / "a.flac", audio, C.SAMPLE_RATE, subtype="PCM_16")
    np.save(tmp_path / "a.npy", synth.piano_notes(midi).astype(np.float32))
    model_config = ModelConfig(unet_channels=(4, 8, 8, 8), lstm_hidden=8, reconstruction=True)
    train_config = TrainConfig(steps=3, batch_size=2, segment_frames=32, log_every=1,
                               checkpoint_minutes=0.0, velocity_correlation_weight=1.0)
    run = tmp_path / "run"
    seen = []
    checkpoint = train(model_config, train_config, [tmp_path / "a.flac"], run, log=seen.append,
                       validate=lambda model, frontend: {"note_f1": 0.0})
    state = torch.load(checkpoint, weights_only=False)
    assert state["step"] == 3 and "git_commit" in state and state["model_config"]["reconstruction"]
    with open(run / "log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 + 3  # three loss rows, three validation rows
    losses = json.loads(rows[0]["losses"])
    assert json.loads(rows[1]["validation"]) == {"note_f1": 0.0}
    assert {"frame", "onset", "offset", "velocity", "reconstruction", "frame_1"} <= set(losses)
    # A run stopped after logging steps past its last checkpoint: the resumed run trains
    # those steps again, so their old rows must go.
    with open(run / "log.csv", "a", newline="") as handle:
        csv.writer(handle).writerow([7, "9.0", "0.1", "0.001", "0.5", "{}", ""])
    exported = []

    def export(path):  # what a lent machine's run does at each checkpoint (remote.py)
        with open(run / "log.csv", newline="") as handle:
            logged = [int(row["step"]) for row in csv.DictReader(handle)]
        exported.append((torch.load(path, weights_only=False)["step"], logged[-1]))
    resumed = train(model_config, TrainConfig(**{**train_config.__dict__, "steps": 5,
                                                 "log_every": 2}),
                    [tmp_path / "a.flac"], run, log=seen.append, on_checkpoint=export)
    assert torch.load(resumed, weights_only=False)["step"] == 5
    # Every checkpoint is handed over, with the log written up to it.
    assert exported == [(4, 4), (5, 4), (5, 4)]
    assert any("resumed" in line for line in seen)
    with open(run / "log.csv", newline="") as handle:
        losses = {int(row["step"]): float(row["loss"]) for row in csv.DictReader(handle)
                  if row["loss"]}
    assert list(losses) == [1, 2, 3, 4]
    # Step 4's row is the mean of the one step trained since the resume (a sum over
    # log_every = 2 steps divided by two would halve it).
    assert losses[4] > 0.75 * losses[3]
    # A stop file ends the run at once, with a checkpoint, however many steps are left.
    stop = tmp_path / "STOP"
    stop.touch()
    stopped = train(model_config, TrainConfig(**{**train_config.__dict__, "steps": 50}),
                    [tmp_path / "a.flac"], run, log=seen.append, stop_file=stop)
    assert torch.load(stopped, weights_only=False)["step"] == 5
    assert any("STOP exists" in line for line in seen)


def render_training_file(folder):
    """``folder/a.flac`` and its labels ``a.npy`` (15 short notes), as the render cache holds them."""
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    piano.notes += [pretty_midi.Note(80, 60 + i % 5, i * 0.2, i * 0.2 + 0.15) for i in range(15)]
    midi.instruments.append(piano)
    audio = synth.render(midi, synth.find_soundfont("TimGM6mb.sf2"))
    sf.write(folder / "a.flac", audio, C.SAMPLE_RATE, subtype="PCM_16")
    np.save(folder / "a.npy", synth.piano_notes(midi).astype(np.float32))


def test_mixed_precision_training_keeps_float32_recurrence_and_falls_back(tmp_path, monkeypatch):
    """``amp``: the forward pass under bfloat16 autocast, the LSTMs and GRU in float32; a
    device where bfloat16 fails goes on in float32 instead of losing the run."""
    from transcribe.model import recurrent
    from transcribe.training import train as train_module
    lstm = torch.nn.LSTM(6, 4, batch_first=True, bidirectional=True)
    x = torch.randn(2, 10, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = recurrent(lstm, x)
    assert inside.dtype == torch.float32
    assert torch.equal(inside, lstm(x)[0])
    # The whole model's losses under autocast are finite and near float32's.
    config = ModelConfig(unet_channels=(4, 8), lstm_hidden=8, reconstruction=True,
                         pedal=True, pedal_hidden=4, key_release=True)
    model = UNetTranscriber(config).train()
    torch.manual_seed(0)
    spec = torch.rand(2, 32, C.N_MELS)
    rolls = {name: (torch.rand(2, 32, C.N_KEYS) > 0.9).float()
             for name in ("frame", "onset", "offset", "velocity", "key")}
    rolls.update(pedal=(torch.rand(2, 32, 3) > 0.5).float(), pedal_known=torch.ones(2),
                 key_known=torch.ones(2))
    with torch.no_grad():
        full = train_module.compute_losses(model, spec, rolls)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = train_module.compute_losses(model, spec, rolls)
    assert set(mixed) == set(full)
    for name, value in mixed.items():
        assert torch.isfinite(value) and value.dtype == torch.float32, name
        assert float(value) == pytest.approx(float(full[name]), rel=0.1, abs=1e-3), name
    # A run with amp trains, and its log says how long each step waited for data and,
    # profiled, where the steps' time went.
    render_training_file(tmp_path)
    seen = []
    train_config = TrainConfig(steps=2, batch_size=2, segment_frames=32, log_every=1,
                               checkpoint_minutes=60.0, amp=True, profile=[0, 2])
    train(config, train_config, [tmp_path / "a.flac"], tmp_path / "run", log=seen.append)
    steps = [line for line in seen if line.startswith("step ")]
    assert len(steps) == 2 and all("s waiting for data" in line for line in steps)
    [profile] = [line for line in seen if line.startswith("profile of 2 steps: ")]
    busy = re.search(r"in operators ([0-9.]+) s/step \(([0-9]+) %\); most of it in (.*)", profile)
    assert busy and float(busy[1]) > 0 and 0 < int(busy[2]) <= 100, profile
    # The costliest operator is one of the network's own, and convolutions are among the
    # costliest listed (named after the kernels the CPU has: mkldnn_convolution, or
    # _slow_conv2d_forward ... where oneDNN has no bfloat16 convolution for it).  The
    # order below the first is a matter of load: the optimizer's own overhead
    # (Optimizer.step#Adam.step) took third place in a CI run on a busy machine, and with
    # the cores oversubscribed the recurrent layers' kernels came first.
    assert busy[3].startswith("aten::") and "conv" in busy[3], profile
    assert not any("float32" in line for line in seen)
    # Where autocast fails, the same run goes on in float32 and says so once.
    real = train_module.compute_losses

    def fails_under_autocast(*args):
        if torch.is_autocast_enabled("cpu"):
            raise RuntimeError("bfloat16 kernel not implemented\nmore detail")
        return real(*args)
    monkeypatch.setattr(train_module, "compute_losses", fails_under_autocast)
    seen.clear()
    last = train(config, TrainConfig(**{**train_config.__dict__, "steps": 4}),
                 [tmp_path / "a.flac"], tmp_path / "run", log=seen.append)
    assert torch.load(last, weights_only=False)["step"] == 4
    assert [line for line in seen if "float32" in line] == [
        "bfloat16 autocast failed on cpu (bfloat16 kernel not implemented); "
        "training goes on in float32"]


def test_full_pass_every_trains_the_second_pass_on_every_nth_step_only(tmp_path):
    """``full_pass_every``: the other steps run and train the first pass alone, whose
    losses are the ones a full step computes for it; the reconstruction stays as it was."""
    from transcribe.training.train import compute_losses
    render_training_file(tmp_path)
    model_config = ModelConfig(unet_channels=(4, 8, 8, 8), lstm_hidden=8, reconstruction=True)
    model = UNetTranscriber(model_config).eval()
    spec = torch.rand(2, 32, model_config.n_bins)
    rolls = {name: torch.as_tensor(roll)[None].expand(2, -1, -1) for name, roll in notes_to_rolls(
        np.array([[0.1, 0.5, 60, 80]]), 0, 32).items()}
    with torch.no_grad():
        both = compute_losses(model, spec, rolls)
        first = compute_losses(model, spec, rolls, full=False)
    assert set(first) == {name for name in both if name.endswith("_1")} and \
        {"frame_1", "onset_1", "velocity_1"} <= set(first)
    for name, value in first.items():
        assert float(value) == pytest.approx(float(both[name]), rel=1e-5), name

    train_config = TrainConfig(steps=1, batch_size=2, segment_frames=32, log_every=1,
                               checkpoint_minutes=0.0, ema_decay=0.0, full_pass_every=2)
    run = tmp_path / "run"
    states = [torch.load(train(model_config, TrainConfig(**{**train_config.__dict__,
                                                             "steps": steps}),
                               [tmp_path / "a.flac"], run, log=lambda line: None),
                         weights_only=False)["model"] for steps in (1, 2, 3)]

    def moved(before, after, prefix):
        return any(not torch.equal(before[name], after[name]) for name in before
                   if name.startswith(prefix) and before[name].is_floating_point())
    # Step 0 is a full one, step 1 trains the first pass alone, step 2 both again.
    assert moved(states[0], states[1], "transcriber.")
    assert not moved(states[0], states[1], "reconstructor.")
    assert moved(states[1], states[2], "reconstructor.")
    with open(run / "log.csv", newline="") as handle:
        logged = [set(json.loads(row["losses"])) for row in csv.DictReader(handle)]
    assert "reconstruction" in logged[0] and "frame" in logged[0]
    assert logged[1] == set(first)
    assert "reconstruction" in logged[2]


def test_training_starts_from_exported_weights(tmp_path):
    """--init takes the shipped weights file (a plain state_dict), not only a run's checkpoint."""
    render_training_file(tmp_path)
    model_config = ModelConfig(unet_channels=(4, 8, 8, 8), lstm_hidden=8, reconstruction=False)
    torch.manual_seed(123)  # weights unlike those train() would initialise with its seed
    exported = tmp_path / "w" / "amt-unet.pt"
    save_weights(UNetTranscriber(model_config), exported)
    # A learning rate of zero: the step changes no parameter, so the run's parameters are
    # the export's (BatchNorm's running statistics do move in a training step: not compared).
    config = TrainConfig(steps=1, batch_size=1, segment_frames=32, learning_rate=0.0,
                         ema_decay=0.0, checkpoint_minutes=0.0)
    checkpoint = train(model_config, config, [tmp_path / "a.flac"], tmp_path / "run",
                       init_weights=exported, log=lambda line: None)
    trained = torch.load(checkpoint, weights_only=False)["model"]
    shipped = torch.load(exported, weights_only=True)
    assert set(trained) == set(shipped)
    parameters = [name for name, _ in UNetTranscriber(model_config).named_parameters()]
    assert len(parameters) > 10
    assert all(torch.equal(trained[name], shipped[name]) for name in parameters)


def test_a_run_takes_in_files_rendered_while_it_trains(tmp_path):
    import multiprocessing
    first, second = tmp_path / "first", tmp_path / "second"
    for folder in (first, second):
        folder.mkdir()
        render_training_file(folder)
    more = [([], False), ([second / "a.flac"], False), ([], True)]  # a background render's
    seen = []
    train(ModelConfig(unet_channels=(4, 8, 8, 8), lstm_hidden=8),
          TrainConfig(steps=4, batch_size=2, segment_frames=32, log_every=1, data_workers=1),
          [first / "a.flac"], tmp_path / "run", log=seen.append,
          more_audio=lambda: more.pop(0) if more else ([], True))
    added = [line for line in seen if line.startswith("step") and "rendered" in line]
    assert [re.sub(r"; loaded .* s\)$", ")", line) for line in added] == [
        "step 2: 1 more rendered files, now 2 (0.0 h of audio)",
        "step 3: all rendered, 2 files (0.0 h)"]
    assert re.search(r"data workers restarted in \d+\.\d s\)$", added[0])
    assert not more  # polled until the render said it was over, not after
    assert any(line.startswith("step 4 loss") for line in seen)
    # The data workers of before and after the new files are gone with the run.
    assert not multiprocessing.active_children()


def test_a_sampler_draws_from_files_added_to_it(tmp_path):
    from transcribe.features import Frontend
    from transcribe.training.data import SegmentSampler
    paths = []
    for pitch in (60, 72):
        audio = 0.1 * np.sin(2 * np.pi * 440 * np.arange(3 * C.SAMPLE_RATE) / C.SAMPLE_RATE)
        sf.write(tmp_path / f"{pitch}.flac", audio, C.SAMPLE_RATE, subtype="PCM_16")
        np.save(tmp_path / f"{pitch}.npy", np.array([[0.0, 3.0, pitch, 80]], np.float32))
        paths.append(tmp_path / f"{pitch}.flac")
    sampler = SegmentSampler(paths[:1], 16, Frontend(), augment=False)

    def keys_drawn() -> set[int]:
        frames = sampler.sample(24)[1]["frame"]
        return set((np.flatnonzero(frames.max(axis=(0, 1))) + C.MIN_MIDI).tolist())
    assert keys_drawn() == {60}
    sampler.add(paths[1:])
    assert keys_drawn() == {60, 72} and np.isclose(sampler.hours, 6 / 3600, rtol=0.01)


def test_a_background_render_lists_the_files_it_finishes_as_a_plain_render_makes_them(tmp_path):
    items = []
    for index in range(3):
        midi = pretty_midi.PrettyMIDI()
        piano = pretty_midi.Instrument(0)
        piano.notes += [pretty_midi.Note(80, 60 + index, 0.1, 0.4)]
        midi.instruments.append(piano)
        midi.write(str(tmp_path / f"p{index}.mid"))
        items.append(corpus.MidiFile(tmp_path / f"p{index}.mid", f"music21_corpus/p{index}.mid",
                                     "music21_corpus", f"music21_corpus/p{index}", "PD", 1800.0))
    planned = corpus.plan_renders(items, hours=10, seed=0)
    head, rest = corpus.split_plan(planned, hours=0.4)  # each file counts as half an hour
    assert len(head) == 1 and head + rest == planned
    assert corpus.split_plan(planned, hours=0.0)[0] == planned[:1]
    assert corpus.split_plan(planned, hours=99)[0] == planned
    plain = corpus.render_planned(rest, tmp_path / "plain", {})
    background = corpus.BackgroundRender(rest, tmp_path / "cache", {}, jobs=2,
                                         listing=tmp_path / "rendered.txt")
    listed, over = [], False
    for _ in range(600):
        new, over = background.poll()
        listed += new
        if over:
            break
        time.sleep(0.1)
    background.stop()
    assert over and [p.name for p in listed] == [p.name for p in plain]
    for path, twin in zip(listed, plain):
        assert np.array_equal(np.load(path.with_suffix(".npy")), np.load(twin.with_suffix(".npy")))
        assert sf.info(path).frames == sf.info(twin).frames
    assert background.poll() == ([], True)


def test_a_lent_machines_run_trains_while_the_rest_of_its_bundle_renders(tmp_path):
    from transcribe.training import remote
    from transcribe.training.bundle import pack_midi
    source, bundle = tmp_path / "src", tmp_path / "bundle"
    (source / "c").mkdir(parents=True)
    rows = ["path\tset\tlicence\tduration_s"]
    for index in range(4):
        midi = pretty_midi.PrettyMIDI()
        piano = pretty_midi.Instrument(0)
        piano.notes += [pretty_midi.Note(70, 55 + index + i % 7, 0.3 * i, 0.3 * i + 0.25)
                        for i in range(20)]
        midi.instruments.append(piano)
        midi.write(str(source / "c" / f"{index}.mid"))
        rows.append(f"c/{index}.mid\ttrain-midi\tCC0\t6.0")
    (source / "MANIFEST.tsv").write_text("\n".join(rows) + "\n")
    (bundle / "pianos").mkdir(parents=True)  # no sampled pianos: fluidsynth's SoundFonts
    (bundle / "pianos" / "PIANOS.tsv").write_text("name\tsfz\tpeak_dbfs_c4_v70\n")
    (bundle / "rir").mkdir()
    pack_midi(corpus.read_manifest(source / "MANIFEST.tsv"), source / "MANIFEST.tsv",
              bundle / "midi.tar.gz")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "model": {"unet_channels": [4, 8, 8, 8], "lstm_hidden": 8},
        "train": {"steps": 400, "batch_size": 2, "segment_frames": 32, "log_every": 1,
                  "checkpoint_minutes": 0.05}}))
    out = tmp_path / "out"
    # 36 s of training: the three renders at low priority beside it were not over within
    # 18 s on a loaded 2-core machine (session 38), and the report needs them over first.
    remote.main([str(bundle), str(out), "--config", str(config), "--device", "cpu",
                 "--passes", "1", "--first-hours", "0.001", "--train-minutes", "0.6",
                 "--jobs", "2", "--work", str(tmp_path / "work")])
    report = (out / "render.txt").read_text().splitlines()
    # One file rendered before training, the other three while it ran, all taken in.
    assert report[0].startswith("1 renders") and report[0].endswith("3 more rendering while "
                                                                    "training runs")
    assert re.fullmatch(r"the background render over at \d+ s: 4 renders, 0\.0 h", report[1])
    with open(out / "log.csv", newline="") as handle:
        assert int(list(csv.DictReader(handle))[-1]["step"]) > 1
    assert json.loads((out / "amt-unet.json").read_text())["model"]["lstm_hidden"] == 8


def test_stopping_a_background_render_ends_its_processes(tmp_path):
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    piano.notes += [pretty_midi.Note(80, 60, 0.1, 0.4)]
    midi.instruments.append(piano)
    midi.write(str(tmp_path / "p.mid"))
    items = [corpus.MidiFile(tmp_path / "p.mid", f"music21_corpus/p{i}.mid", "music21_corpus",
                             f"music21_corpus/p{i}", "PD", 1.0) for i in range(200)]
    background = corpus.BackgroundRender(corpus.plan_renders(items, hours=10, seed=0),
                                         tmp_path / "cache", {}, jobs=2,
                                         listing=tmp_path / "rendered.txt")
    time.sleep(3)
    background.stop()
    assert not background.process.is_alive() and background.poll()[1]
    renders = len(list((tmp_path / "cache").glob("*.flac")))
    time.sleep(2)  # its render workers are gone too: nothing more appears
    assert len(list((tmp_path / "cache").glob("*.flac"))) == renders < 200


def test_training_from_a_run_goes_on_from_its_weight_average(tmp_path):
    """--init RUN/last.pt: the averaged weights it validates and exports, not its last step's."""
    from transcribe.training.train import averaged_state
    render_training_file(tmp_path)
    model_config = ModelConfig(unet_channels=(4, 8, 8, 8), lstm_hidden=8, reconstruction=False)
    first = train(model_config, TrainConfig(steps=3, batch_size=1, segment_frames=32,
                                            learning_rate=1e-2, ema_decay=0.5,
                                            checkpoint_minutes=0.0),
                  [tmp_path / "a.flac"], tmp_path / "first", log=lambda line: None)
    state = torch.load(first, weights_only=False)
    average = averaged_state(state)
    parameters = [name for name, _ in UNetTranscriber(model_config).named_parameters()]
    assert not all(torch.equal(average[name], state["model"][name]) for name in parameters)
    second = train(model_config, TrainConfig(steps=1, batch_size=1, segment_frames=32,
                                             learning_rate=0.0, ema_decay=0.0,
                                             checkpoint_minutes=0.0),
                   [tmp_path / "a.flac"], tmp_path / "second", init_weights=first,
                   log=lambda line: None)
    went_on = torch.load(second, weights_only=False)["model"]
    assert all(torch.equal(went_on[name], average[name]) for name in parameters)


def test_training_widens_narrower_weights(tmp_path):
    """--init with a narrower network's weights: the wider run starts from them, widened."""
    render_training_file(tmp_path)
    narrow_config = ModelConfig(unet_channels=(4, 4, 8, 8), lstm_hidden=6, reconstruction=False)
    exported = tmp_path / "w" / "amt-unet.pt"
    save_weights(UNetTranscriber(narrow_config), exported)
    wide_config = ModelConfig(unet_channels=(4, 8, 8, 16), lstm_hidden=10, reconstruction=False)
    config = TrainConfig(steps=1, batch_size=1, segment_frames=32, learning_rate=0.0,
                         ema_decay=0.0, checkpoint_minutes=0.0)
    seen = []
    checkpoint = train(wide_config, config, [tmp_path / "a.flac"], tmp_path / "run",
                       init_weights=exported, log=seen.append)
    assert any(line.startswith("widened") for line in seen)
    trained = torch.load(checkpoint, weights_only=False)["model"]
    narrow = torch.load(exported, weights_only=True)
    assert trained["transcriber.lstm.weight_hh_l0"].shape == (40, 10)
    torch.testing.assert_close(trained["transcriber.lstm.weight_hh_l0"][:6, :6],
                               narrow["transcriber.lstm.weight_hh_l0"][:6, :6])
    torch.testing.assert_close(trained["transcriber.unet.down_blocks.3.body.0.weight"][:8, :8],
                               narrow["transcriber.unet.down_blocks.3.body.0.weight"])


def test_validation_excerpts_pair_audio_with_their_own_midi(tmp_path):
    from transcribe.training.evaluate import pair_files
    from transcribe.training.validation import make_validation_set
    folder = tmp_path / "piano-midi.de" / "Composer"  # dots in names must survive
    folder.mkdir(parents=True)
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    piano.notes += [pretty_midi.Note(80, 50 + i % 30, i * 0.25, i * 0.25 + 0.2) for i in range(100)]
    midi.instruments.append(piano)
    midi.write(str(folder / "op.1.mid"))
    item = corpus.MidiFile(folder / "op.1.mid", "piano-midi.de/Composer/op.1.mid", "piano-midi.de",
                           "piano-midi.de/Composer/op.1", "research", 25.0)
    written = make_validation_set([item], tmp_path / "val", count=1, seconds=10)
    pairs = pair_files(tmp_path / "val", tmp_path / "val")
    assert len(written) == len(pairs) == 1
    clip = pretty_midi.PrettyMIDI(str(pairs[0][1]))
    notes = clip.instruments[0].notes
    assert 30 <= len(notes) <= 40 and min(n.start for n in notes) >= 0
    assert max(n.end for n in notes) <= 10.0
    assert abs(sf.info(str(pairs[0][0])).duration - 10.0) < 3.0


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_pianos = pytest.mark.skipif(not (SHARED / "pianos" / "PIANOS.tsv").exists(),
                                  reason="../shared/data/pianos is not beside the checkout")


def pedalled_midi(path):
    """C4 struck and released at 0.3 s under a pedal held 0.1..2.0 s, then E4 at 3 s without pedal;
    the pedal sits on a track without notes, as in Batik's files."""
    midi = mido.MidiFile(ticks_per_beat=480)  # 120 bpm: 960 ticks a second
    pedal = mido.MidiTrack([mido.Message("control_change", control=64, value=100, time=96),
                            mido.Message("control_change", control=64, value=40, time=1824)])
    notes = mido.MidiTrack([mido.Message("note_on", note=60, velocity=80, time=0),
                            mido.Message("note_off", note=60, velocity=0, time=288),
                            mido.Message("note_on", note=64, velocity=80, time=2592),
                            mido.Message("note_off", note=64, velocity=0, time=480)])
    midi.tracks += [pedal, notes]
    midi.save(path)
    return path


@needs_pianos
def test_a_sampled_piano_and_its_labels_agree_on_the_pedal(tmp_path):
    from transcribe.training import pianos
    piano = next(p for p in pianos.read_pianos(SHARED / "pianos") if p.name == "upright-kw")
    midi = pianos.prepare(pedalled_midi(tmp_path / "p.mid"))
    notes, spans = pianos.labels(midi)
    np.testing.assert_allclose(spans, [[0.1, 2.0]], atol=1e-6)
    np.testing.assert_allclose(notes[:, :3], [[0.0, 2.0, 60], [3.0, 3.5, 64]], atol=1e-6)
    audio = pianos.render(midi, piano)
    assert len(audio) >= (3.5 + pianos.PAD_S - 0.1) * C.SAMPLE_RATE  # the end is padded

    def level(start_s, end_s):
        part = audio[int(start_s * C.SAMPLE_RATE):int(end_s * C.SAMPLE_RATE)]
        return 20 * np.log10(np.sqrt(np.mean(part ** 2)) + 1e-9)
    # The key is up at 0.3 s but the pedal holds the string: still sounding at 1.5-1.9 s,
    # then damped once the pedal lifts at 2.0 s.
    assert level(1.5, 1.9) > level(2.4, 2.75) + 15
    # Velocities follow the curve; notes off the keyboard after a shift are left out.
    soft = pianos.labels(pianos.prepare(tmp_path / "p.mid", velocity_gamma=2.0))[0]
    assert soft[:, 3].tolist() == [round(127 * (80 / 127) ** 2)] * 2
    shifted = pianos.labels(pianos.prepare(tmp_path / "p.mid", transpose=46))[0]
    assert shifted[:, 2].tolist() == [106]  # 64 + 46 = 110 is above C8


def test_pedal_rolls_mark_down_pressed_and_released_frames():
    from transcribe.training.labels import pedal_to_roll
    roll = pedal_to_roll(np.array([[0.32, 0.64]]), first_frame=5, n_frames=20,
                         frame_rate_hz=C.FRAME_RATE_HZ)
    assert np.flatnonzero(roll[:, 0]).tolist() == list(range(5, 15))
    assert np.flatnonzero(roll[:, 1]).tolist() == [5]
    assert np.flatnonzero(roll[:, 2]).tolist() == [15]


@needs_pianos
def test_tuning_picks_the_pedal_and_key_thresholds_of_weights_that_have_those_heads(tmp_path):
    from transcribe.training import pianos
    from transcribe.training.evaluate import tune_thresholds
    from transcribe.weights import load_model
    piano = {p.name: p for p in pianos.read_pianos(SHARED / "pianos")}["upright-kw"]
    midi_path = pedalled_midi(tmp_path / "p.mid")
    sf.write(tmp_path / "p.flac", pianos.render(pianos.prepare(midi_path), piano), C.SAMPLE_RATE)
    torch.manual_seed(3)
    save_weights(UNetTranscriber(ModelConfig(unet_channels=(4, 8, 8, 8), lstm_hidden=8,
                                             reconstruction=False, pedal=True,
                                             key_release=True)), tmp_path / "w.pt")
    best, means, tried = tune_thresholds(
        load_model(tmp_path / "w.pt"), [(tmp_path / "p.flac", midi_path)], onset=(0.5,),
        frame=(0.5,), offset=(1.0,), min_note_ms=(30.0,), frame_onset=(1.0,),
        pedal=(0.3, 0.6), pedal_split=(0.4, 1.0), key_down=(0.2, 0.8))
    assert best.pedal_threshold in (0.3, 0.6) and best.key_threshold in (0.2, 0.8)
    assert best.pedal_split_threshold in (0.4, 1.0)
    assert len(tried) == 1 and "pedal_frame_f1" in means
    # A re-tune keeps session 37's rules on the key's level (it turned them off before).
    assert (best.restrike_onset_threshold, best.soft_onset_threshold) == (0.4, 0.1)


def test_free_strings_ring_only_while_the_pedal_is_down():
    from transcribe.training.pianos import damper_resonance
    rate = C.SAMPLE_RATE
    t = np.arange(12 * rate) / rate
    struck = (0.3 * np.sin(2 * np.pi * 261.63 * t) * np.exp(-(t % 2))).astype(np.float32)
    spans = np.array([[1.0, 5.0], [8.0, 12.0]])
    rung = damper_resonance(struck, spans, np.random.default_rng(0), level_db=(-12, -12))
    added = rung - struck
    # Pedal up (before 1 s, and from 5.04 s, once the dampers are back, until 8 s): untouched.
    assert not added[:rate].any() and not added[int(5.05 * rate):8 * rate].any()
    # Pedal down: the strings ring at the level asked for, at what was played (C4's
    # partials) and not elsewhere.
    under = slice(int(1.1 * rate), int(4.9 * rate))
    level_db = 20 * np.log10(np.std(added[under]) / np.std(struck[under]))
    assert -15 < level_db < -9
    spectrum = np.abs(np.fft.rfft(added[under]))
    hz = np.fft.rfftfreq(len(added[under]), 1 / rate)
    near_c4 = spectrum[(hz > 250) & (hz < 275)].max()
    assert near_c4 > 30 * np.median(spectrum[(hz > 300) & (hz < 500)])
    # Nothing under the pedal: the audio itself comes back.
    assert damper_resonance(struck, np.zeros((0, 2)), np.random.default_rng(0)) is struck


@needs_pianos
def test_a_piano_render_keeps_the_key_releases_apart_from_the_pedal(tmp_path):
    from transcribe.training import corpus as corpus_module
    from transcribe.training import pianos
    from transcribe.training.data import SegmentSampler
    from transcribe.features import Frontend
    piano = {p.name: p for p in pianos.read_pianos(SHARED / "pianos")}["upright-kw"]
    item = corpus_module.MidiFile(pedalled_midi(tmp_path / "p.mid"), "p.mid", "test", "p",
                                  "CC0", 3.5)
    cents = 20.0  # detuned: every time is scaled by the same ratio
    job = corpus_module.RenderJob(item, "upright-kw", 0, 1.0, cents, (0, 0))
    audio = corpus_module.render_job(job, tmp_path / "cache", {"upright-kw": piano})
    ratio = 2 ** (cents / 1200)
    sounding, keys = np.load(audio.with_suffix(".npy")), np.load(audio.with_suffix(".keys.npy"))
    # C4 struck at 0 and released at 0.3 s; the pedal holds it until 2.0 s.
    np.testing.assert_allclose(sounding[:, :2] * ratio, [[0.0, 2.0], [3.0, 3.5]], atol=1e-4)
    np.testing.assert_allclose(keys[:, :2] * ratio, [[0.0, 0.3], [3.0, 3.5]], atol=1e-4)
    sampler = SegmentSampler([audio], 96, Frontend(), augment=False)
    sampler.rng = np.random.default_rng(0)
    _, rolls = sampler.sample(4)
    assert rolls["key_known"].tolist() == [1.0] * 4
    # Where the pedal holds C4 its string sounds (frame) though its key is up.
    held = (rolls["frame"][..., 60 - C.MIN_MIDI] > 0) & (rolls["key"][..., 60 - C.MIN_MIDI] == 0)
    assert held.sum() > 0 and not ((rolls["key"] > 0) & (rolls["frame"] == 0)).any()


@needs_pianos
def test_a_tiny_model_with_pedal_and_reconstruction_learns_from_a_sampled_piano(tmp_path):
    from transcribe.training import corpus as corpus_module
    from transcribe.training import pianos
    piano = next(p for p in pianos.read_pianos(SHARED / "pianos") if p.name == "upright-kw")
    midi = pianos.prepare(pedalled_midi(tmp_path / "p.mid"))
    notes, spans = pianos.labels(midi)
    keys, _ = pianos.labels(midi, sustain=False)
    corpus_module.save_rendered(tmp_path / "a.wav", pianos.render(midi, piano), notes, spans,
                                keys)
    model_config = ModelConfig(unet_channels=(4, 8, 8, 8), lstm_hidden=16, reconstruction=True,
                               pedal=True, key_release=True)
    train_config = TrainConfig(steps=40, batch_size=4, segment_frames=64, log_every=10,
                               learning_rate=3e-3, ema_decay=0, checkpoint_minutes=60,
                               mix_probability=0.3)
    train(model_config, train_config, [tmp_path / "a.wav"], tmp_path / "run", log=lambda _: None)
    with open(tmp_path / "run" / "log.csv", newline="") as handle:
        rows = [json.loads(row["losses"]) for row in csv.DictReader(handle) if row["losses"]]
    assert {"pedal", "pedal_1", "key", "key_1", "reconstruction", "frame_1"} <= set(rows[0])
    # Forty steps on one file: the pedal, the keys, the notes and the reconstruction all
    # get better.
    for name in ("pedal", "key", "frame", "reconstruction"):
        assert rows[-1][name] < 0.8 * rows[0][name], (name, rows[0][name], rows[-1][name])


def test_recalibration_changes_only_the_second_pass_and_reconstruction_statistics(tmp_path):
    from transcribe.features import Frontend
    from transcribe.training.data import SegmentSampler
    from transcribe.training.train import recalibrate_second_pass
    render_training_file(tmp_path)
    model = UNetTranscriber(ModelConfig(unet_channels=(4, 8, 8, 8), lstm_hidden=8,
                                        reconstruction=True, pedal=True))
    frontend = Frontend()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sampler = SegmentSampler([tmp_path / "a.flac"], 64, frontend, augment=False)
    recalibrate_second_pass(model, frontend, sampler, batches=5, batch_size=2)
    assert not model.training
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed, "nothing was re-estimated"
    for name in changed:
        assert name.endswith(("_2", "num_batches_tracked")) or name.startswith("reconstructor."), name
    assert any(name.endswith("running_mean_2") for name in changed)
    assert any(name.startswith("reconstructor.") and "running_var" in name for name in changed)


def test_a_room_rings_on_with_the_notes_before_the_segment(tmp_path):
    """Augmented segments come with ``ROOM_PREROLL_S`` of what came before them, heard only
    through the room: a tone that stops before a silent segment leaves its room's tail in
    the segment's first moments, as in a recording, and the segment keeps its length."""
    from transcribe.features import Frontend
    from transcribe.training.data import ROOM_PREROLL_S, SegmentSampler
    render_training_file(tmp_path)
    sampler = SegmentSampler([tmp_path / "a.flac"], 64, Frontend())
    length, preroll = sampler.segment_samples(), int(ROOM_PREROLL_S * C.SAMPLE_RATE)
    tone = np.sin(2 * np.pi * 440 * np.arange(preroll) / C.SAMPLE_RATE).astype(np.float32)
    before_silence = np.r_[tone, np.zeros(length, np.float32)]
    def head_over_end(out):  # the first 0.1 s against the last second, by RMS
        head, end = out[:C.SAMPLE_RATE // 10], out[-C.SAMPLE_RATE:]
        return np.sqrt(np.mean(head ** 2)) / (np.sqrt(np.mean(end ** 2)) + 1e-12)
    with_tail, without = [], []
    for seed in range(20):
        sampler.rng = np.random.default_rng(seed)
        out = sampler.augment_audio(before_silence.copy(), preroll)
        assert len(out) == length
        with_tail.append(head_over_end(out))
        sampler.rng = np.random.default_rng(seed)  # the same draws without what came before
        without.append(head_over_end(sampler.augment_audio(np.zeros(length, np.float32))))
    # Where a room was drawn, its tail opens the segment loud and dies away; without the
    # preroll the segment holds at most the added noise, as loud at its end as its start.
    assert sum(r > 100 for r in with_tail) >= 3
    assert max(without) < 10


def test_training_only_a_new_head_leaves_every_other_weight_and_statistic_alone(tmp_path):
    render_training_file(tmp_path)
    np.save(tmp_path / "a.keys.npy", np.load(tmp_path / "a.npy"))  # no pedal: keys = notes
    model_config = ModelConfig(unet_channels=(4, 8, 8, 8), lstm_hidden=8, reconstruction=True,
                               pedal=True, key_release=True)
    torch.manual_seed(5)
    start = tmp_path / "start.pt"
    save_weights(UNetTranscriber(model_config), start)
    config = TrainConfig(steps=3, batch_size=2, segment_frames=32, learning_rate=1e-2,
                         ema_decay=0.0, checkpoint_minutes=0.0, train_only=["key"])
    checkpoint = train(model_config, config, [tmp_path / "a.flac"], tmp_path / "run",
                       init_weights=start, log=lambda _: None)
    before = torch.load(start, weights_only=True)
    after = torch.load(checkpoint, weights_only=False)["model"]
    changed = {name for name, value in after.items() if not torch.equal(value, before[name])}
    assert changed == {"transcriber.key.weight", "transcriber.key.bias"}


def test_scores_that_only_some_files_have_are_averaged_over_those(tmp_path):
    from transcribe.training.evaluate import write_csv
    from transcribe.training.metrics import mean_scores
    rows = [{"file": "a", "note_f1": 0.5}, {"file": "b", "note_f1": 0.7, "pedal_frame_f1": 0.9}]
    assert mean_scores(rows) == pytest.approx({"note_f1": 0.6, "pedal_frame_f1": 0.9})
    write_csv(rows, tmp_path / "s.csv")
    assert (tmp_path / "s.csv").read_text().splitlines() == [
        "file,note_f1,pedal_frame_f1", "a,0.5000,", "b,0.7000,0.9000"]


def test_pedal_scores_come_with_the_floor_of_a_pedal_held_down_throughout():
    from transcribe.training.metrics import pedal_scores
    reference = np.array([[1.0, 3.0], [5.0, 8.0]])  # down 5 of 10 s
    exact = pedal_scores(reference, reference, 10.0)
    assert exact["pedal_frame_f1"] == pytest.approx(1.0)
    assert exact["pedal_onset_f1"] == exact["pedal_offset_f1"] == 1.0
    held = pedal_scores(reference, np.array([[0.0, 10.0]]), 10.0)
    # Precision 0.5, recall 1: the floor, and it is what holding the pedal scores.
    assert held["pedal_frame_f1_always_down"] == pytest.approx(2 * 0.5 / 1.5, abs=0.01)
    assert held["pedal_frame_f1"] == pytest.approx(held["pedal_frame_f1_always_down"], abs=0.01)
    late = pedal_scores(reference, reference + 0.2, 10.0)  # 200 ms late: no event matches
    assert late["pedal_onset_f1"] == late["pedal_offset_f1"] == 0.0
    # Kong et al. give a press 200 ms, a release 20 % of its span (here 0.4 and 0.6 s).
    assert exact["pedal_onset_kong_f1"] == exact["pedal_onset_offset_kong_f1"] == 1.0
    near = pedal_scores(reference, reference + 0.1, 10.0)
    assert near["pedal_onset_f1"] == 0.0
    assert near["pedal_onset_kong_f1"] == near["pedal_onset_offset_kong_f1"] == 1.0
    released_late = pedal_scores(reference, reference + [0.0, 0.5], 10.0)
    assert released_late["pedal_onset_kong_f1"] == 1.0
    assert released_late["pedal_onset_offset_kong_precision"] == 0.5  # 0.5 s > 0.4 s: one of two
    far = pedal_scores(reference, reference + 0.25, 10.0)
    assert far["pedal_onset_kong_f1"] == 0.0
    assert pedal_scores(reference, np.zeros((0, 2)), 10.0)["pedal_onset_kong_f1"] == 0.0


@needs_pianos
def test_a_development_excerpt_holds_key_releases_and_the_pedal(tmp_path):
    from transcribe.training.corpus import read_manifest
    from transcribe.training.development import make_development_set, pieces
    files = read_manifest(SHARED / "midi" / "MANIFEST.tsv")
    dev, tuning = pieces(files, "dev"), pieces(files, "tuning")
    assert dev and tuning and not {f.piece for f in dev} & {f.piece for f in tuning}
    (flac,) = make_development_set(files, tmp_path, SHARED / "pianos", SHARED / "rir",
                                   count=1, seconds=10)
    assert flac.name.startswith("batik_mozart_") and sf.info(flac).duration == pytest.approx(10)
    midi = pretty_midi.PrettyMIDI(str(flac.with_suffix(".mid")))
    notes = midi.instruments[0].notes
    assert len(notes) >= 20 and max(n.end for n in notes) <= 10 + 1e-3
    pedal = [c for c in midi.instruments[0].control_changes if c.number == 64]
    assert pedal
    # With the strings ringing under the pedal: the same excerpt, room and noise, and the
    # same labels; the audio differs by the ringing, which is there only while the pedal
    # is down (and for the room's tail after it comes up).
    (ringing,) = make_development_set(files, tmp_path / "resonance", SHARED / "pianos",
                                      SHARED / "rir", count=1, seconds=10, resonance=True)
    assert ringing.name == flac.name
    again = pretty_midi.PrettyMIDI(str(ringing.with_suffix(".mid")))
    assert [(n.pitch, n.start, n.end, n.velocity) for n in again.instruments[0].notes] == \
        [(n.pitch, n.start, n.end, n.velocity) for n in notes]
    assert [(c.time, c.value) for c in again.instruments[0].control_changes if c.number == 64] \
        == [(c.time, c.value) for c in pedal]
    dry, wet = sf.read(flac)[0], sf.read(ringing)[0]
    down = np.zeros(len(dry), bool)
    for change in pedal:
        down[int(change.time * C.SAMPLE_RATE):] = change.value >= 64
    assert down.any() and not down.all()

    def added_db(where):  # what the ringing added, against the dry sound there
        return 10 * np.log10(np.mean((wet - dry)[where] ** 2) / np.mean(dry[where] ** 2))
    assert -35 < added_db(down) < -3
    assert added_db(down) > added_db(~down) + 6  # pedal up: the noise's level moved, little else
    # Diagnosis sets: the same excerpt dry (no room, no noise) and through another piano.
    (dry_flac,) = make_development_set(files, tmp_path / "dry", SHARED / "pianos", SHARED / "rir",
                                       count=1, seconds=10, dry=True)
    (other,) = make_development_set(files, tmp_path / "other", SHARED / "pianos", SHARED / "rir",
                                    count=1, seconds=10, dry=True, piano_name="upright-kw")
    assert dry_flac.name == other.name == flac.name
    plain, noisy, upright = sf.read(dry_flac)[0], dry, sf.read(other)[0]
    for path in (dry_flac, other):  # the same labels
        again = pretty_midi.PrettyMIDI(str(path.with_suffix(".mid")))
        assert [(n.pitch, n.start, n.end) for n in again.instruments[0].notes] == \
            [(n.pitch, n.start, n.end) for n in notes]
    # The development excerpt is the dry one (0.6 of it: direct sound) with a room and
    # noise added: the same music, and no scaling of the dry one comes within 20 dB of it.
    assert np.corrcoef(plain, noisy)[0, 1] > 0.5
    residual = noisy - np.dot(noisy, plain) / np.dot(plain, plain) * plain
    assert 10 * np.log10(np.mean(residual ** 2) / np.mean(noisy ** 2)) > -20
    assert not np.allclose(plain, upright[:len(plain)], atol=1e-3)
    # And through that piano played duller, as training's darkened renders are: the same
    # excerpt and labels, its treble (above 2 kHz) at least 10 dB further down.
    (dull,) = make_development_set(files, tmp_path / "dull", SHARED / "pianos", SHARED / "rir",
                                   count=1, seconds=10, dry=True, piano_name="upright-kw",
                                   dark_hz=800)
    assert dull.name == flac.name
    again = pretty_midi.PrettyMIDI(str(dull.with_suffix(".mid")))
    assert [(n.pitch, n.start, n.end) for n in again.instruments[0].notes] == \
        [(n.pitch, n.start, n.end) for n in notes]

    def treble_db(audio):
        power = np.abs(np.fft.rfft(audio)) ** 2
        return 10 * np.log10(power[np.fft.rfftfreq(len(audio), 1 / C.SAMPLE_RATE) > 2000].sum()
                             / power.sum())
    assert treble_db(sf.read(dull)[0]) < treble_db(upright) - 10
    with pytest.raises(ValueError, match="no piano 'steinway'"):
        make_development_set(files, tmp_path / "x", SHARED / "pianos", SHARED / "rir", count=1,
                             piano_name="steinway")


def test_tuning_prefers_right_lengths_when_note_f1_is_within_half_a_point():
    from transcribe.training.evaluate import pick_decoding
    tried = [("long notes", {"note_f1": 0.717, "note_offset_f1": 0.345}),
             ("right lengths", {"note_f1": 0.714, "note_offset_f1": 0.388}),
             ("fewer notes", {"note_f1": 0.700, "note_offset_f1": 0.420})]
    assert pick_decoding(tried)[0] == "right lengths"
    assert pick_decoding(tried, tolerance=0.0)[0] == "long notes"
    assert pick_decoding(tried, tolerance=0.02)[0] == "fewer notes"


def test_a_soundfont_sampled_into_a_piano_sounds_like_fluidsynth(tmp_path):
    """The GPU machine has no fluidsynth: its General-MIDI timbres are SoundFonts sampled
    into SFZ pianos.  Through sfizz they must sound like fluidsynth's own render, follow
    its velocity curve and hold notes under the pedal as the labels do."""
    from transcribe.training import pianos, soundfont_piano
    from transcribe.features import Frontend
    soundfont = synth.find_soundfont("TimGM6mb.sf2")
    folder = tmp_path / "sf-timgm6mb-p0"
    row = soundfont_piano.convert(soundfont, 0, folder, "sf-timgm6mb-p0", keys=[57, 60, 63],
                                  layers=(64, 127))
    assert len(list((folder / "samples").glob("*.flac"))) == 6
    piano = pianos.Piano(row["name"], tmp_path / row["sfz"], float(row["peak_dbfs_c4_v70"]))
    phrase = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    track = pretty_midi.Instrument(0)
    for k, (pitch, velocity) in enumerate([(60, 110), (62, 40), (58, 90), (61, 20), (60, 70)]):
        track.notes.append(pretty_midi.Note(velocity, pitch, 0.2 + 0.8 * k, 0.8 + 0.8 * k))
    phrase.instruments.append(track)
    phrase.write(str(tmp_path / "phrase.mid"))
    copy = pianos.render(pianos.prepare(tmp_path / "phrase.mid"), piano)
    original = synth.render(phrase, soundfont)
    n = min(len(copy), len(original), int(4.4 * C.SAMPLE_RATE))
    frontend = Frontend("mel", C.SAMPLE_RATE, C.HOP_LENGTH, 229)
    with torch.no_grad():
        mels = [frontend(torch.from_numpy(a[None, :n].copy()))[0].numpy() for a in (copy, original)]
    assert np.corrcoef(mels[0].ravel(), mels[1].ravel())[0, 1] > 0.85

    def note_levels(audio):
        return np.array([20 * np.log10(np.abs(audio[int((0.2 + 0.8 * k) * C.SAMPLE_RATE):
                                                    int((0.7 + 0.8 * k) * C.SAMPLE_RATE)]).max())
                         for k in range(5)])
    # Loudness against the first note: within 3 dB of fluidsynth's (velocity 20 is 30 dB down).
    levels = [note_levels(a) - note_levels(a)[0] for a in (copy, original)]
    np.testing.assert_allclose(levels[0], levels[1], atol=3.0)
    # The pedal (CC64 >= 64, as the labels read it) holds the key released at 0.3 s.
    held = pianos.render(pianos.prepare(pedalled_midi(tmp_path / "p.mid")), piano)

    def level(start_s, end_s):
        part = held[int(start_s * C.SAMPLE_RATE):int(end_s * C.SAMPLE_RATE)]
        return 20 * np.log10(np.sqrt(np.mean(part ** 2)) + 1e-9)
    assert level(1.5, 1.9) > level(2.5, 2.9) + 15


def test_soundfont_pianos_take_the_soundfonts_share_of_the_renders(tmp_path):
    files = [corpus.MidiFile(tmp_path / f"{i}.mid", f"c/{i}.mid", "c", str(i), "CC0", 60.0)
             for i in range(400)]
    jobs = corpus.plan_renders(files, hours=100, piano_names=["upright-kw", "sf-timgm6mb-p0"],
                               piano_share=0.75)
    instruments = [job.instrument for job in jobs]
    assert set(instruments) == {"upright-kw", "sf-timgm6mb-p0"}  # never fluidsynth itself
    assert 0.19 < instruments.count("sf-timgm6mb-p0") / len(jobs) < 0.31
    # Without SoundFont pianos, the plan is the one earlier caches were drawn by.
    plain = corpus.plan_renders(files, hours=100, piano_names=["upright-kw"], piano_share=0.75)
    assert {job.instrument for job in plain} >= {"upright-kw"}
    assert any(job.instrument.startswith("sf2:") for job in plain)


@needs_pianos
def test_a_darkened_piano_is_duller_the_softer_it_is_played(tmp_path):
    from transcribe.training import pianos
    piano = next(p for p in pianos.read_pianos(SHARED / "pianos") if p.name == "piano-fb")
    dark = pianos.darkened(piano, tmp_path / "dark", cutoff_hz_at_40=1000.0)

    def treble_db(which, velocity):
        """Energy above 1.5 kHz against the whole, first 0.5 s of C4 (dB)."""
        midi = mido.MidiFile()
        midi.tracks.append(mido.MidiTrack([
            mido.Message("note_on", note=60, velocity=velocity, time=0),
            mido.Message("note_off", note=60, velocity=0, time=960),
            mido.MetaMessage("end_of_track", time=0)]))
        audio = pianos.render(midi, which)[:C.SAMPLE_RATE // 2]
        power = np.abs(np.fft.rfft(audio)) ** 2
        return 10 * np.log10(power[np.fft.rfftfreq(len(audio), 1 / C.SAMPLE_RATE) > 1500].sum()
                             / power.sum())
    # piano-fb has one velocity layer: as sampled, soft and loud notes are equally bright.
    assert abs(treble_db(piano, 40) - treble_db(piano, 127)) < 1
    assert treble_db(dark, 40) < treble_db(piano, 40) - 15
    assert treble_db(dark, 127) > treble_db(piano, 127) - 3
    assert treble_db(dark, 40) < treble_db(dark, 80) < treble_db(dark, 127)


def test_darkening_is_drawn_for_a_share_of_piano_renders_and_leaves_other_draws_alone(tmp_path):
    files = [corpus.MidiFile(tmp_path / f"{i}.mid", f"c/{i}.mid", "c", str(i), "CC0", 60.0)
             for i in range(400)]
    before = corpus.plan_renders(files, hours=100, piano_names=["upright-kw"], piano_share=1.0)
    after = corpus.plan_renders(files, hours=100, piano_names=["upright-kw"], piano_share=1.0,
                                dark_share=0.5)
    assert [(j.item, j.transpose, j.velocity_gamma, j.detune_cents) for j in before] == \
        [(j.item, j.transpose, j.velocity_gamma, j.detune_cents) for j in after]
    cutoffs = np.array([job.dark_cutoff_hz for job in after])
    assert not any(job.dark_cutoff_hz for job in before)
    assert 0.4 < np.mean(cutoffs > 0) < 0.6
    assert cutoffs[cutoffs > 0].min() >= 800 and cutoffs.max() <= 4000
    # Renders of another darkness are other files in the cache.
    assert corpus.piano_cache_key("c/1.mid", "upright-kw", 0, 12.0, 1200.0) != \
        corpus.piano_cache_key("c/1.mid", "upright-kw", 0, 12.0)


def test_amt_train_says_in_one_line_that_a_soundfont_is_missing(tmp_path, monkeypatch):
    from click.testing import CliRunner
    from transcribe.training.cli import main
    monkeypatch.setattr(synth, "SOUNDFONT_DIRS", ())
    monkeypatch.setenv("AMT_SOUNDFONT_DIR", str(tmp_path))
    manifest = tmp_path / "MANIFEST.tsv"
    manifest.write_text("path\tcorpus\n")
    result = CliRunner().invoke(main, ["gpu-bundle", str(tmp_path / "bundle"), "--wheels",
                                       str(tmp_path), "--manifest", str(manifest), "--pianos",
                                       str(tmp_path), "--rooms", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("amt-train: error: SoundFont FluidR3_GM.sf2 not found")
    assert result.output.count("\n") == 1 and not (tmp_path / "bundle").exists()


def test_the_gpu_bundle_packs_its_midi_and_another_seed_carries_other_pieces(tmp_path):
    """What a lent GPU machine renders: a subset of the training MIDI within a budget,
    packed (the carried megabytes are few), unpacked there file for file."""
    from transcribe.training.bundle import choose_midi, pack_midi, pack_midi_within, unpack_midi
    rows = ["path\tset\tlicence\tduration_s"]
    for corpus_name, count in (("giantmidi", 3), ("pop909", 40), ("piano-midi.de", 5)):
        for i in range(count):
            midi = pretty_midi.PrettyMIDI()
            piano = pretty_midi.Instrument(0)
            piano.notes += [pretty_midi.Note(70, 50 + (i + k) % 30, 0.25 * k, 0.25 * k + 0.2)
                            for k in range(60)]
            midi.instruments.append(piano)
            relative = f"{corpus_name}/piece{i:02d}.mid"
            (tmp_path / corpus_name).mkdir(exist_ok=True)
            midi.write(str(tmp_path / relative))
            rows.append(f"{relative}\ttrain-midi\tCC0\t15.0")
    manifest = tmp_path / "MANIFEST.tsv"
    manifest.write_text("\n".join(rows) + "\n")
    size = (tmp_path / "pop909" / "piece00.mid").stat().st_size
    budget_mb = (3 + 12) * size / 1e6  # the pedalled corpus whole, then a dozen others
    first = choose_midi(manifest, budget_mb, seed=0)
    other = choose_midi(manifest, budget_mb, seed=1)
    for chosen in (first, other):
        corpora = [item.corpus for item in chosen]
        assert corpora.count("giantmidi") == 3 and "piano-midi.de" not in corpora
        assert 10 <= corpora.count("pop909") <= 12
        assert sum(item.path.stat().st_size for item in chosen) <= budget_mb * 1e6
    assert {item.relative for item in first} != {item.relative for item in other}
    archive = tmp_path / "bundle" / "midi.tar.gz"
    archive.parent.mkdir()
    pack_midi(first, manifest, archive)
    assert archive.stat().st_size < 0.5 * sum(item.path.stat().st_size for item in first)
    folder = unpack_midi(archive.parent, tmp_path / "work")
    unpacked = corpus.read_manifest(folder / "MANIFEST.tsv")
    assert [item.relative for item in unpacked] == [item.relative for item in first]
    assert all(item.path.read_bytes() == (tmp_path / item.relative).read_bytes()
               for item in unpacked)
    # A bundle of the older layout carries a midi/ folder, which is used as it is.
    assert unpack_midi(tmp_path, tmp_path / "unused") == tmp_path / "midi"
    # Where what a call carries leaves less room, fewer pieces go, the archive within it.
    room = archive.stat().st_size * 2 // 3
    smaller = tmp_path / "smaller.tar.gz"
    fitted = pack_midi_within(manifest, smaller, budget_mb, 0, max_bytes=room)
    assert smaller.stat().st_size <= room and len(fitted) < len(first)
    with pytest.raises(ValueError, match="no room for the MIDI"):
        pack_midi_within(manifest, smaller, budget_mb, 0, max_bytes=100)


THREE_LAYERS = """<global>
amp_veltrack=73
<group> lovel=1 hivel=40
<region> sample=C4v1.flac lokey=59 hikey=61 pitch_keycenter=60
<region> sample=E4v1.flac lokey=62 hikey=65 pitch_keycenter=64
<group> lovel=41 hivel=90
<region> sample=C4v2.flac lokey=59 hikey=61 pitch_keycenter=60
<region> sample=E4v2.flac lokey=62 hikey=65 pitch_keycenter=64
<group> lovel=91 hivel=127
<region> sample=C4v3.flac lokey=59 hikey=61 pitch_keycenter=60
<region> sample=E4v3.flac lokey=62 hikey=65 pitch_keycenter=64
<group> trigger=release volume=-37
<region> sample=rel60.flac key=60
"""


def test_thinned_velocity_layers_still_play_every_velocity():
    """Salamander's 16 layers do not all fit in a device call: a dropped layer's
    velocities go to the kept layer above, and only its own samples are left out."""
    from transcribe.training.bundle import thin_layers
    text, dropped = thin_layers(THREE_LAYERS, (1, 3))
    groups = re.findall(r"<group> lovel=(\d+) hivel=(\d+)", text)
    assert groups == [("1", "40"), ("41", "127")]
    assert dropped == ["C4v2.flac", "E4v2.flac"]
    assert "sample=E4v3.flac" in text and "trigger=release" in text and "rel60.flac" in text
    assert thin_layers(THREE_LAYERS, (1, 2, 3))[0] == THREE_LAYERS
    with pytest.raises(ValueError, match="loudest"):
        thin_layers(THREE_LAYERS, (1, 2))  # velocities 91-127 would fall silent
    with pytest.raises(ValueError, match="3 velocity layers"):
        thin_layers(THREE_LAYERS, (1, 4))
    with pytest.raises(ValueError, match="more than regions"):
        thin_layers(THREE_LAYERS.replace("<region> sample=C4v2", "#define $X 1\n<region> sample=C4v2"),
                    (1, 3))
    if (SHARED / "pianos" / "salamander" / "salamander.sfz").exists():
        from transcribe.training.bundle import BUNDLE_LAYERS
        real, dropped = thin_layers((SHARED / "pianos" / "salamander" / "salamander.sfz").read_text(),
                                    BUNDLE_LAYERS["salamander"])
        bounds = [(int(a), int(b)) for a, b in re.findall(r"<group> lovel=(\d+) hivel=(\d+)", real)]
        assert bounds[0][0] == 1 and bounds[-1][1] == 127
        assert all(b + 1 == c for (_, b), (c, _) in zip(bounds, bounds[1:]))
        assert len(bounds) == len(BUNDLE_LAYERS["salamander"]) and len(dropped) == 30 * (16 - 9)


@needs_pianos
def test_a_compacted_piano_sounds_as_sampled_and_a_lost_sample_is_caught(tmp_path):
    """The bundle's pianos travel as Ogg Vorbis at the training rate (half their FLAC or less):
    every key must keep its level, the device decodes them to WAV before rendering, and a
    piano whose SFZ counts sample frames (loop points) travels untouched."""
    from transcribe.training import pianos
    from transcribe.training.bundle import (COMPACT_LEVEL_DB, compact_piano, compare_pianos,
                                            unpack_pianos)
    source, folder = SHARED / "pianos" / "piano-fb", tmp_path / "pianos" / "piano-fb"
    how = compact_piano(source, "piano-fb.sfz", folder)
    assert how == f"Ogg Vorbis at {C.SAMPLE_RATE} Hz"
    samples = sorted(folder.rglob("*.ogg"))
    assert len(samples) == 78 and not list(folder.rglob("*.flac"))
    assert all(sf.info(path).samplerate == C.SAMPLE_RATE for path in samples)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size < 0.5 * sum(p.stat().st_size for p in source.rglob("*") if p.is_file())
    original = pianos.Piano("piano-fb", source / "piano-fb.sfz", 0.0)
    copy = pianos.Piano("piano-fb", folder / "piano-fb.sfz", 0.0)
    assert compare_pianos(original, copy) < COMPACT_LEVEL_DB
    # On the device: decoded to WAV once, so that no render decodes Ogg again.
    (tmp_path / "pianos" / "PIANOS.tsv").write_text(
        "name\tsfz\tpeak_dbfs_c4_v70\npiano-fb\tpiano-fb/piano-fb.sfz\t-22.4\n")
    unpacked = unpack_pianos(tmp_path / "pianos", tmp_path / "work")
    assert unpacked == tmp_path / "work" / "pianos"
    assert len(list(unpacked.rglob("*.wav"))) == 78 and not list(unpacked.rglob("*.ogg"))
    decoded = pianos.read_pianos(unpacked)[0]
    assert compare_pianos(copy, decoded) < 0.5
    assert unpack_pianos(SHARED / "pianos", tmp_path / "other") == SHARED / "pianos"  # no Ogg
    # Where Ogg cannot be decoded there, sfizz renders from the Ogg files as they came.
    samples[1].write_bytes(b"OggS, but not really")
    assert unpack_pianos(tmp_path / "pianos", tmp_path / "again") == tmp_path / "pianos"
    assert not (tmp_path / "again" / "pianos").exists()
    # A sample gone on the way: its key is silent, and the comparison says so.
    samples[0].unlink()
    assert compare_pianos(original, copy) > 20
    # No sample readable at all: a render fails, rather than give silence to train on.
    for path in samples[1:]:
        path.unlink()
    phrase = mido.MidiFile()
    phrase.tracks.append(mido.MidiTrack([mido.Message("note_on", note=60, velocity=90, time=0),
                                         mido.Message("note_off", note=60, time=480),
                                         mido.MetaMessage("end_of_track", time=0)]))
    with pytest.raises(synth.SynthesisError, match="as silence"):
        pianos.render(phrase, copy)
    looped = compact_piano(SHARED / "pianos" / "upright-kw", "upright-kw.sfz", tmp_path / "kw")
    assert "as sampled" in looped and not list((tmp_path / "kw").rglob("*.ogg"))


def test_what_a_device_call_carries_is_the_checkout_less_what_git_ignores(tmp_path):
    from transcribe.training.bundle import travelling_bytes
    assert travelling_bytes(tmp_path) is None  # not a git checkout
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("cache/\n")
    (tmp_path / "kept.bin").write_bytes(b"x" * 1000)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "ignored.bin").write_bytes(b"x" * 5000)
    assert travelling_bytes(tmp_path) == 1000 + len("cache/\n")


def test_the_pedal_loss_weighs_the_frames_around_a_quick_re_pedal():
    """``pedal_event_weight``: a 3-frame lift between two spans is a few frames in dozens;
    the frames that say where it is weigh more, so a head cannot smooth over it cheaply."""
    from transcribe.training.labels import pedal_to_roll
    from transcribe.training.train import head_losses, pedal_weights
    rate = C.FRAME_RATE_HZ
    roll = torch.as_tensor(pedal_to_roll(np.array([[2 / rate, 20 / rate], [23 / rate, 38 / rate]]),
                                         0, 40))[None]
    weights = pedal_weights(roll, 10.0)
    heavy = {column: set(np.flatnonzero(weights[0, :, column].numpy() == 10.0))
             for column in range(3)}
    assert heavy == {0: {1, 2, 19, 20, 22, 23, 37, 38}, 1: {2, 23}, 2: {20, 38}}
    assert float(weights.sum()) == 3 * 40 + 9 * 12
    assert torch.equal(pedal_weights(roll, 1.0), torch.ones_like(roll))
    # Holding the pedal down through the lift costs, over a head that lifts with the
    # reference, seven times as much (two of its three frames weigh 10) within the
    # pedal's loss, a weighted mean: the 228 weight of the 120 frames' columns.
    logits = {name: torch.zeros(1, 40, C.N_KEYS) for name in ("frame", "onset", "offset",
                                                              "velocity")}
    rolls = {name: torch.zeros(1, 40, C.N_KEYS) for name in ("frame", "onset", "offset",
                                                             "velocity")}
    rolls.update(pedal=roll, pedal_known=torch.ones(1))
    through = (roll * 12 - 6).clone()
    through[0, 20:23, 0] = 6.0  # down through the three lifted frames
    exact = roll * 12 - 6

    def pedal_loss(pedal_logits, weight):
        return float(head_losses({**logits, "pedal": pedal_logits}, rolls,
                                 pedal_event_weight=weight)["pedal"])
    def penalty(weight):
        return pedal_loss(through, weight) - pedal_loss(exact, weight)
    assert penalty(10.0) == pytest.approx(7 * penalty(1.0) * 120 / 228, rel=0.01)
    # The pedal's share of the whole loss does not grow with the weight: a head that
    # knows nothing (every logit 0) costs log 2 a frame at either weight.
    unsure = torch.zeros_like(roll)
    assert pedal_loss(unsure, 10.0) == pytest.approx(pedal_loss(unsure, 1.0)) == \
        pytest.approx(np.log(2))


def test_the_soft_onset_weight_weighs_the_starts_of_soft_notes():
    """``soft_onset_weight``: the onset cell of a note below velocity 45 and its first
    sounding frames weigh more in the onset and frame losses; louder notes, silence and
    the rest of a soft note weigh 1, and weight 1 leaves the plain mean."""
    from transcribe.training.train import SOFT_FRAMES, head_losses, soft_note_weights
    rolls = {name: torch.zeros(1, 20, C.N_KEYS) for name in ("frame", "onset", "offset",
                                                             "velocity")}
    for key, velocity in ((40, 30), (41, 44), (50, 45), (60, 90)):
        rolls["onset"][0, 2, key] = 1
        rolls["frame"][0, 2:12, key] = 1
        rolls["velocity"][0, 2, key] = velocity / 127
    weights = soft_note_weights(rolls, 4.0)
    heavy = {key: list(np.flatnonzero(weights[0, :, key].numpy() == 4.0)) for key in range(C.N_KEYS)
             if (weights[0, :, key] != 1).any()}
    assert heavy == {40: list(range(2, 2 + SOFT_FRAMES)), 41: list(range(2, 2 + SOFT_FRAMES))}
    assert torch.equal(soft_note_weights(rolls, 1.0), torch.ones_like(weights))
    logits = {name: torch.zeros(1, 20, C.N_KEYS) for name in ("frame", "onset", "offset",
                                                              "velocity")}
    exact = rolls["onset"] * 16 - 8  # sure and right everywhere
    missed = exact.clone()
    missed[0, 2, 40] = missed[0, 2, 41] = -8.0  # ...but for the two soft onsets
    def penalty(weight):
        def loss(onset):
            return float(head_losses({**logits, "onset": onset}, rolls,
                                     soft_onset_weight=weight)["onset"])
        return loss(missed) - loss(exact)
    # Missing the soft onsets costs four times as much at weight 4, within a weighted
    # mean whose weights grew by 24 cells' worth in 1,760; a head that knows nothing
    # costs log 2 a cell at any weight.
    assert penalty(4.0) == pytest.approx(4 * penalty(1.0) * 1760 / (1760 + 24), rel=0.001)
    assert float(head_losses(logits, rolls, soft_onset_weight=4.0)["onset"]) == \
        pytest.approx(np.log(2))


def test_amt_train_widen_writes_wider_weights_that_compute_the_same(tmp_path, tiny_weights):
    """``amt-train widen``: the wider network of the config, the same outputs, the card
    kept and naming the widening; a narrower config is a one-line error, nothing written."""
    import json

    from click.testing import CliRunner
    from transcribe.training.cli import main
    from transcribe.weights import load_model
    narrow = load_model(tiny_weights, "cpu")
    model = dict(json.loads(narrow.model.config.to_json()), lstm_hidden=24,
                 unet_channels=[4, 8, 12, 8])
    config = tmp_path / "wide-config.json"  # not wide.json: OUT's card is written there
    config.write_text(json.dumps({"model": model, "train": {}}))
    out = tmp_path / "wide.pt"
    result = CliRunner().invoke(main, ["widen", str(tiny_weights), str(config), str(out)])
    assert result.exit_code == 0, result.output
    wide = load_model(out, "cpu")
    assert wide.model.config.lstm_hidden == 24 and wide.model.config.unet_channels == (4, 8, 12, 8)
    assert "tiny.pt" in wide.card["widened"] and wide.card["note"] == narrow.card["note"]
    spec = torch.rand(1, 48, narrow.model.config.n_bins)
    with torch.no_grad():
        expected, got = narrow.model.eval()(spec), wide.model.eval()(spec)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-5, rtol=1e-5)
    config.write_text(json.dumps({"model": dict(model, lstm_hidden=8)}))
    result = CliRunner().invoke(main, ["widen", str(tiny_weights), str(config),
                                       str(tmp_path / "bad.pt")])
    assert result.exit_code == 1 and "only U-net channels and LSTM width may grow" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "bad.pt").exists()


def test_amt_train_average_mixes_two_weights_of_one_lineage(tmp_path, tiny_weights):
    """``amt-train average``: every float tensor is the weighted mean, the card names both
    parents, and weights of another architecture are a one-line error."""
    from click.testing import CliRunner
    from transcribe.model import ModelConfig, UNetTranscriber
    from transcribe.training.cli import main
    from transcribe.weights import load_model, save_weights
    first = load_model(tiny_weights, "cpu")
    torch.manual_seed(1)
    other = UNetTranscriber(first.model.config)
    second = tmp_path / "second.pt"
    save_weights(other, second)
    out = tmp_path / "soup.pt"
    result = CliRunner().invoke(main, ["average", str(tiny_weights), str(second), str(out),
                                       "--share", "0.25"])
    assert result.exit_code == 0, result.output
    soup = load_model(out, "cpu")
    a, b, mixed = (m.state_dict() for m in (first.model, other, soup.model))
    name = "transcriber.onset.weight"
    torch.testing.assert_close(mixed[name], 0.75 * a[name] + 0.25 * b[name])
    assert not torch.equal(mixed[name], a[name]) and not torch.equal(mixed[name], b[name])
    assert "0.75 x tiny.pt" in soup.card["averaged"] and "0.25 x second.pt" in soup.card["averaged"]
    wider = UNetTranscriber(ModelConfig(unet_channels=(4, 8, 8, 16), lstm_hidden=16,
                                        reconstruction=True))
    save_weights(wider, tmp_path / "wider.pt")
    result = CliRunner().invoke(main, ["average", str(tiny_weights), str(tmp_path / "wider.pt"),
                                       str(tmp_path / "bad.pt")])
    assert result.exit_code == 1 and "different model configs" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "bad.pt").exists()


@pytest.mark.parametrize("command", ["average", "widen", "recalibrate", "export", "velocity-head"])
def test_amt_train_never_replaces_weights_unless_asked(tmp_path, tiny_weights, command):
    """``amt-train average A B A`` once wrote over A, the shipped weights included: every
    command that writes weights refuses an existing OUT, in one line, before any work."""
    import shutil
    from click.testing import CliRunner
    from transcribe.training.cli import main
    out = tmp_path / "kept.pt"
    shutil.copy(tiny_weights, out)
    shutil.copy(tiny_weights.with_suffix(".json"), out.with_suffix(".json"))
    before = out.read_bytes(), out.with_suffix(".json").read_bytes()
    arguments = {"average": [tiny_weights, out, out], "widen": [out, out.with_suffix(".json"), out],
                 "recalibrate": [out, out, "--cache", tmp_path],
                 "export": [out, out], "velocity-head": [out, out, "--cache", tmp_path]}[command]
    result = CliRunner().invoke(main, [command, *map(str, arguments)])
    assert result.exit_code == 1, result.output
    assert result.output.strip() == (f"amt-train: error: {out} exists; choose another name, "
                                     "or --overwrite to replace it")
    assert (out.read_bytes(), out.with_suffix(".json").read_bytes()) == before
    if command == "average":  # asked: replaced
        again = CliRunner().invoke(main, [command, *map(str, arguments), "--overwrite"])
        assert again.exit_code == 0, again.output
        assert "0.5 x tiny.pt" in json.loads(out.with_suffix(".json").read_text())["averaged"]


def test_the_velocity_loss_correlates_each_segment_alone_whatever_its_scale():
    from transcribe.training.velocity import correlation_and_error
    rng = np.random.default_rng(0)
    onsets = torch.zeros(4, 20, C.N_KEYS, dtype=torch.bool)
    velocities = torch.zeros(4, 20, C.N_KEYS)
    for segment, count in enumerate((8, 8, 8, 3)):  # the last has too few onsets
        onsets[segment, :count, segment] = True
        velocities[segment, :count, segment] = torch.from_numpy(rng.integers(20, 120, count)
                                                                .astype(np.float32))
    predicted = torch.zeros_like(velocities)
    predicted[0] = 0.5 * velocities[0] + 30  # another scale, the same order: r = 1
    predicted[1] = 127 - velocities[1]  # the order reversed: r = -1
    predicted[2] = torch.from_numpy(rng.uniform(1, 127, (20, C.N_KEYS)).astype(np.float32))
    predicted[3] = velocities[3]
    r, error = correlation_and_error(predicted, onsets, velocities)
    assert len(r) == 3
    expected = np.corrcoef(predicted[2, :8, 2].numpy(), velocities[2, :8, 2].numpy())[0, 1]
    np.testing.assert_allclose(r.numpy(), [1, -1, expected], atol=1e-4)
    # The squared error, over every onset, is what keeps the scale.
    mask = onsets.numpy()
    np.testing.assert_allclose(float(error), np.mean(
        ((predicted.numpy() - velocities.numpy())[mask] / 127) ** 2), rtol=1e-5)


def test_amt_train_velocity_head_retrains_that_head_alone(tmp_path, tiny_weights):
    from click.testing import CliRunner
    from transcribe.training.cli import main
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    rng = np.random.default_rng(2)
    piano.notes += [pretty_midi.Note(int(rng.choice([30, 70, 115])), 55 + i % 17, i * 0.15,
                                     i * 0.15 + 0.12) for i in range(120)]
    midi.instruments.append(piano)
    cache = tmp_path / "cache"
    cache.mkdir()
    audio = synth.render(midi, synth.find_soundfont("TimGM6mb.sf2"))
    sf.write(cache / "a.flac", audio, C.SAMPLE_RATE, subtype="PCM_16")
    np.save(cache / "a.npy", synth.piano_notes(midi).astype(np.float32))
    out = tmp_path / "v.pt"
    arguments = ["velocity-head", str(tiny_weights), str(out), "--cache", str(cache),
                 "--work", str(tmp_path / "features"), "--segments", "40", "--frames", "64",
                 "--epochs", "40"]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    before = torch.load(tiny_weights, weights_only=True)
    after = torch.load(out, weights_only=True)
    changed = {name for name, value in after.items() if not torch.equal(value, before[name])}
    assert changed == {"transcriber.velocity.weight", "transcriber.velocity.bias"}
    card = json.loads(out.with_suffix(".json").read_text())
    assert "40 segments of 64 frames" in card["velocity_head"]
    r_before, r_after = map(float, re.search(r"correlation (\S+) -> (\S+)", result.output).groups())
    assert r_after > r_before + 0.1, result.output
    # An existing output is refused, in one line.
    again = CliRunner().invoke(main, arguments)
    assert again.exit_code == 1 and "exists" in again.output


def test_the_velocity_correlation_weight_adds_what_a_segment_gets_wrong_of_its_dynamics():
    from transcribe.training.train import head_losses
    rolls = {name: torch.zeros(2, 20, C.N_KEYS) for name in ("frame", "onset", "offset",
                                                             "velocity")}
    levels = torch.tensor([20.0, 40, 60, 80, 100, 120]) / 127
    for segment in range(2):
        for i, level in enumerate(levels):
            rolls["onset"][segment, 2 * i, 30 + i] = 1
            rolls["velocity"][segment, 2 * i, 30 + i] = level
    logits = {name: torch.zeros(2, 20, C.N_KEYS) for name in ("frame", "onset", "offset",
                                                              "velocity")}

    def velocity_loss(predicted, weight):
        velocity = logits["velocity"].clone()
        for segment in range(2):
            for i, value in enumerate(predicted[segment]):
                velocity[segment, 2 * i, 30 + i] = torch.logit(torch.tensor(value))
        return float(head_losses({**logits, "velocity": velocity}, rolls,
                                 velocity_correlation_weight=weight)["velocity"])

    in_order = [[0.4, 0.45, 0.5, 0.55, 0.6, 0.65]] * 2  # compressed, but in order: r = 1
    reversed_ = [in_order[0], in_order[0][::-1]]  # the second segment's order reversed: r = -1
    for predicted in (in_order, reversed_):
        assert velocity_loss(predicted, 0.0) > 0  # the squared error alone
    assert velocity_loss(in_order, 1.0) == pytest.approx(velocity_loss(in_order, 0.0), abs=1e-5)
    # Mean of (1 - r) over the two segments: (0 + 2) / 2, times the weight.
    assert velocity_loss(reversed_, 0.5) - velocity_loss(reversed_, 0.0) == \
        pytest.approx(0.5, abs=1e-4)


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parent.parent / "configs")
                                        .glob("*.json")), ids=lambda path: path.name)
def test_every_config_reads_as_a_model_and_a_training(path):
    # A config a lent GPU machine cannot read costs the run: read each here first.
    sections = json.loads(path.read_text())
    ModelConfig.from_dict(sections.get("model", {}))
    TrainConfig(**sections.get("train", {}))

