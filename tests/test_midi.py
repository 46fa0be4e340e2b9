import io
import json

import mido
import numpy as np
import pretty_midi
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from transcribe.files import OutputExists, all_or_none, write_atomic
from transcribe.midi import (TICKS_PER_BEAT, midi_to_notes, notes_to_csv, notes_to_json,
                             notes_to_midi, notes_to_smf, trim_overlaps, write_notes)


def note_lists():
    # onsets on a 1 ms grid, durations of 10 ms to 20 s
    note = st.tuples(st.integers(0, 600_000), st.integers(10, 20_000), st.integers(21, 108),
                     st.integers(1, 127))
    return st.lists(note, max_size=40).map(lambda rows: np.array(
        [(a / 1000, (a + d) / 1000, p, v) for a, d, p, v in rows], np.float64).reshape(-1, 4))


@settings(max_examples=40, deadline=None)
@given(notes=note_lists(), tempo=st.floats(30, 240))
# Onsets 1 ms apart that round to one tick: read back, they are sorted by pitch.
@example(notes=np.array([[599.999, 600.009, 22, 1], [600.0, 600.01, 21, 1]]), tempo=30.0)
def test_notes_read_back_identical_at_any_tempo(notes, tempo):
    buffer = io.BytesIO()
    notes_to_midi(notes, tempo_bpm=tempo).write(buffer)
    buffer.seek(0)
    back = midi_to_notes(pretty_midi.PrettyMIDI(buffer))
    ordered = trim_overlaps(notes)
    assert back.shape == ordered.shape
    # Half a tick of rounding (1 ms at 30 bpm) plus the header's tempo rounded to
    # whole microseconds per beat (a relative error under 1e-5).
    half_tick = 60 / tempo / TICKS_PER_BEAT / 2
    # Compare key by key (a key's notes never overlap, so their order is the onsets'):
    # notes of different keys whose onsets round to one tick come back sorted by pitch.
    back = back[np.lexsort((back[:, 0], back[:, 2]))]
    ordered = ordered[np.lexsort((ordered[:, 0], ordered[:, 2]))]
    np.testing.assert_allclose(back[:, :2], ordered[:, :2], atol=half_tick + 1e-9, rtol=1e-5)
    np.testing.assert_array_equal(back[:, 2:], ordered[:, 2:])


def test_overlapping_notes_of_one_key_are_trimmed():
    notes = np.array([[0.0, 2.0, 60, 80], [1.0, 3.0, 60, 90], [1.0, 1.5, 60, 70],
                      [0.5, 4.0, 64, 50]])
    trimmed = trim_overlaps(notes)
    np.testing.assert_allclose(trimmed, [[0.0, 1.0, 60, 80], [0.5, 4.0, 64, 50],
                                         [1.0, 3.0, 60, 90]])


def test_a_key_struck_again_as_it_ends_is_released_first():
    # At the shared tick the note-off must come before the note-on: a plain
    # reader pairs each note-off with the key's sounding note and would otherwise
    # end the new note at once.
    notes = np.array([[0.0, 1.0, 60, 80], [1.0, 2.0, 60, 90], [1.0, 1.5, 67, 70]])
    midi = mido.MidiFile(file=io.BytesIO(notes_to_smf(notes)))
    events = [(msg.type, msg.note) for msg in midi.tracks[1] if msg.type.startswith("note")]
    assert events == [("note_on", 60), ("note_off", 60), ("note_on", 60), ("note_on", 67),
                      ("note_off", 67), ("note_off", 60)]
    back = midi_to_notes(notes_to_midi(notes))
    np.testing.assert_allclose(back, [[0.0, 1.0, 60, 80], [1.0, 2.0, 60, 90],
                                      [1.0, 1.5, 67, 70]])


def test_tempo_and_metadata_are_in_the_file(tmp_path):
    notes = np.array([[0.5, 1.0, 60, 80]])
    path = tmp_path / "a.mid"
    write_notes(notes, path, "mid", tempo_bpm=90, metadata={"onset_threshold": 0.4})
    midi = pretty_midi.PrettyMIDI(str(path))
    assert midi.get_tempo_changes()[1][0] == pytest.approx(90, rel=1e-5)
    assert midi.instruments[0].program == 0
    assert "onset_threshold" in midi.text_events[0].text


def test_csv_and_json_note_events(tmp_path):
    notes = np.array([[0.5, 1.25, 60, 80], [0.75, 2.0, 64, 100]])
    write_notes(notes, tmp_path / "a.csv", "csv")
    lines = (tmp_path / "a.csv").read_text().splitlines()
    assert lines[0] == "onset_s,offset_s,pitch,velocity"
    assert lines[1] == "0.5000,1.2500,60,80"
    write_notes(notes, tmp_path / "a.json", "json", metadata={"software": "x"})
    data = json.loads((tmp_path / "a.json").read_text())
    assert data["notes"][1] == {"onset_s": 0.75, "offset_s": 2.0, "pitch": 64, "velocity": 100}


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path):
    target = tmp_path / "out.mid"
    target.write_bytes(b"old")

    with pytest.raises(TypeError):
        write_atomic(target, object())  # fails while writing
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]


def test_the_files_of_one_job_appear_together_or_not_at_all(tmp_path):
    """A job's plots were published as each was drawn: killed (SIGKILL, out of memory, power
    lost) before its notes, it left files that made its retry fail ("exists")."""
    def visible():
        return sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))

    with all_or_none():
        write_atomic(tmp_path / "a.png", b"plot", overwrite=False)
        write_atomic(tmp_path / "a.mid", b"notes", overwrite=False)
        assert visible() == []  # a kill here leaves nothing in the way
    assert visible() == ["a.mid", "a.png"] and (tmp_path / "a.png").read_bytes() == b"plot"
    assert len(list(tmp_path.iterdir())) == 2  # no temporary file left
    # One publish fails (another process wrote that output): the others are taken back.
    (tmp_path / "b.mid").write_bytes(b"theirs")
    with pytest.raises(OutputExists), all_or_none():
        write_atomic(tmp_path / "b.png", b"plot", overwrite=False)
        write_atomic(tmp_path / "b.mid", b"notes", overwrite=False)
    assert visible() == ["a.mid", "a.png", "b.mid"] and (tmp_path / "b.mid").read_bytes() == b"theirs"
    # The job fails (Ctrl-C) after its first file: nothing is published, nothing left.
    with pytest.raises(KeyboardInterrupt), all_or_none():
        write_atomic(tmp_path / "c.png", b"plot", overwrite=False)
        raise KeyboardInterrupt
    assert len(list(tmp_path.iterdir())) == 3


def test_pedal_spans_become_cc64_events_and_sustain_rows():
    notes = np.array([[0.0, 0.5, 60, 80], [1.0, 1.5, 62, 90]])
    pedal = np.array([[0.0, 0.8], [1.0, 2.0]])
    midi = pretty_midi.PrettyMIDI(io.BytesIO(notes_to_smf(notes, pedal=pedal)))
    changes = [(round(c.time, 3), c.number, c.value) for c in midi.instruments[0].control_changes]
    assert changes == [(0.0, 64, 127), (0.8, 64, 0), (1.0, 64, 127), (2.0, 64, 0)]
    # At one tick a note-on comes before the pedal press, so the pedal catches it.
    events = [m for m in mido.MidiFile(file=io.BytesIO(notes_to_smf(notes, pedal=pedal))).tracks[1]
              if m.type in ("note_on", "control_change")]
    assert [m.type for m in events[:2]] == ["note_on", "control_change"]
    rows = notes_to_csv(notes, pedal).splitlines()
    assert rows[0] == "onset_s,offset_s,pitch,velocity,event"
    assert rows[1:3] == ["0.0000,0.5000,60,80,note", "0.0000,0.8000,,,sustain"]
    assert json.loads(notes_to_json(notes, {}, pedal))["pedal"][1] == {"onset_s": 1.0,
                                                                       "offset_s": 2.0}
    assert notes_to_csv(notes).splitlines()[0] == "onset_s,offset_s,pitch,velocity"
