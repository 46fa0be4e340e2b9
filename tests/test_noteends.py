"""The end chooser: what it reads, its card section, and the ends it chooses (noteends.py,
decode.end_readings, training/noteends.py)."""

import json
import shutil

import numpy as np
import pytest

from transcribe import constants as C
from transcribe.decode import DecodingOptions, decode_notes, end_readings, extend_through_pedal
from transcribe.errors import TranscribeError
from transcribe.noteends import (CANDIDATES, FEATURES, READINGS, EndChooser, candidate_ends,
                                 choose_ends, features)
from transcribe.notefilter import section_of

N, K = len(FEATURES), len(CANDIDATES)


def chooser_of(bias, hidden_weight=None, output_weight=None) -> EndChooser:
    """A chooser whose choice is set by its output biases (``bias``, one per candidate),
    unless the hidden layer says more."""
    hidden_weight = np.zeros((1, N)) if hidden_weight is None else hidden_weight
    output_weight = np.zeros((K, 1)) if output_weight is None else output_weight
    return EndChooser(section_of(np.zeros(N), np.ones(N), hidden_weight, [0.0], output_weight,
                                 bias, features=FEATURES, candidates=list(CANDIDATES)))


def test_the_readings_are_taken_at_the_notes_end_and_start():
    frames = 40
    frame, offset, key_down = (np.zeros((frames, C.N_KEYS), np.float32) for _ in range(3))
    level = np.full((frames, C.N_KEYS * C.VELOCITY_LEVEL_PARTIALS), 20.0, np.float32)
    k, first = 40, 40 * C.VELOCITY_LEVEL_PARTIALS
    frame[10:20, k] = 0.9
    frame[17, k] = 0.7                 # three frames before the end (20)
    frame[20, k] = 0.2                 # the end: the first frame no longer heard
    key_down[10:15, k] = 0.8           # the key came up at frame 15
    offset[20, k] = 0.6
    level[10, first] = 50.0            # struck at 50 dB, fallen to 30 by frame 17, 20 at 20
    level[17, first] = 30.0
    rows = np.array([[10, 20, k, 64], [30, 40, k, 64]])  # the second reaches the last frame
    read = end_readings(rows, frame, offset, key_down, level)
    got = dict(zip(READINGS, read[0]))
    assert got["frame_before_end"] == pytest.approx(0.7)
    assert got["frame_at_end"] == pytest.approx(0.2)
    assert got["offset_at_end"] == pytest.approx(0.6) and got["offset_before_end"] == 0.0
    assert got["key_down_before_end"] == 0.0 and got["key_down_after_start"] == pytest.approx(0.8)
    assert got["key_down_mean"] == pytest.approx(0.8 * 5 / 10)
    assert got["level_at_start_db"] == 50.0
    assert got["level_fall_before_end_db"] == 20.0 and got["level_fall_at_end_db"] == 30.0
    assert dict(zip(READINGS, read[1]))["frame_at_end"] == 0.0  # frame 39, the last


def test_the_features_give_the_pedal_and_the_candidates_lengths():
    notes = np.array([[1.0, 2.0, 60, 70]])
    key_notes = np.array([[1.0, 1.5, 60, 70]])
    spans = np.array([[1.8, 3.0]])  # down when the note stops sounding, up at 3 s
    ends = candidate_ends(notes, key_notes, spans)
    np.testing.assert_allclose(ends, [[2.0, 3.0, 1.5, 1.5]])  # the key came up before the pedal
    pedal = np.zeros(200)
    pedal[60:] = 0.9
    got = dict(zip(FEATURES, features(notes, ends, np.zeros((1, len(READINGS))), pedal, 50.0)[0]))
    assert got["pedal_at_end"] == pytest.approx(0.9) and got["pedal_at_start"] == 0.0
    assert got["pedal_mean"] == pytest.approx(0.9 * 40 / 50)
    assert got["velocity"] == 70 and got["key"] == 60 - C.MIN_MIDI
    assert got["log_length_heard_s"] == pytest.approx(0.0)
    assert got["log_ratio_extended"] == pytest.approx(np.log(2.0))
    assert got["log_ratio_key_release"] == pytest.approx(np.log(0.5))


def test_the_chosen_end_replaces_the_heard_one_where_the_chooser_is_sure_enough():
    notes = np.array([[0.0, 1.0, 60, 80], [0.5, 0.9, 64, 80], [2.0, 2.5, 67, 80]])
    key_notes = notes.copy()
    key_notes[:, 1] = [0.85, 0.7, 2.2]
    spans = np.array([[0.8, 1.6]])
    pedal = np.zeros(200)
    readings = np.zeros((3, len(READINGS)))
    extended = extend_through_pedal(notes, spans)
    always = chooser_of([0.0, 5.0, 0.0, 0.0])  # "extended", 98 % sure
    chosen = choose_ends(notes, key_notes, spans, pedal, readings, always, 0.9, 31.25)
    np.testing.assert_array_equal(chosen, extended)
    assert (chosen[:, 1] != notes[:, 1]).sum() == 2  # the third ends after the pedal's release
    for threshold, chooser in ((0.99, always), (1.0, always), (0.0, None)):
        np.testing.assert_array_equal(
            choose_ends(notes, key_notes, spans, pedal, readings, chooser, threshold, 31.25), notes)
    # Without a key-down head's notes or a pedal head, nothing to choose from.
    np.testing.assert_array_equal(choose_ends(notes, None, spans, pedal, readings, always, 0.0,
                                              31.25), notes)
    np.testing.assert_array_equal(choose_ends(notes, key_notes, None, None, readings, always, 0.0,
                                              31.25), notes)
    # A chooser that reads the key-down head at the end: the key still held -> the key's
    # release with the pedal, else where the frame head let go.
    hidden = np.zeros((1, N))
    hidden[0, FEATURES.index("key_down_at_end")] = 10.0
    output = np.zeros((K, 1))
    output[3, 0] = 1.0
    reads = chooser_of([0.0, -9.0, -9.0, -5.0], hidden, output)
    readings[0, READINGS.index("key_down_at_end")] = 0.9
    chosen = choose_ends(notes, key_notes, spans, pedal, readings, reads, 0.5, 31.25)
    assert chosen[0, 1] == pytest.approx(1.6) and (chosen[1:] == notes[1:]).all()


def test_a_malformed_chooser_is_refused_in_one_line():
    good = chooser_of([0.0] * K).section
    assert EndChooser(good) == EndChooser(json.loads(json.dumps(good)))
    for broken, why in (({**good, "candidates": list(CANDIDATES[:3])}, "other ends"),
                        ({**good, "features": good["features"][:-1]}, "other features"),
                        ({**good, "output_bias": [0.0] * (K - 1)}, "wrong shape"),
                        ({**good, "output_bias": 0.0}, "wrong shape"),
                        ({k: v for k, v in good.items() if k != "scale"}, "malformed")):
        with pytest.raises(TranscribeError, match=why):
            EndChooser(broken)


def test_a_card_without_a_chooser_ends_notes_as_heard():
    assert DecodingOptions().resolve({}).end_chooser is None
    assert DecodingOptions().resolve({}).end_choice_threshold == 1.0
    section = chooser_of([0.0] * K).section
    resolved = DecodingOptions().resolve({"note_ends": section})
    assert resolved.end_chooser == EndChooser(section)
    assert "end_chooser" not in resolved.as_dict()  # a MIDI file's metadata: thresholds only


def test_decoding_gives_the_readings_of_the_notes_it_writes_in_their_order():
    frames = 60
    frame, onset, offset, velocity, key_down = (np.zeros((frames, C.N_KEYS), np.float32)
                                                for _ in range(5))
    level = np.full((frames, C.N_KEYS * C.VELOCITY_LEVEL_PARTIALS), 20.0, np.float32)
    for k, start, stop, held in ((50, 20, 40, 0.2), (30, 5, 25, 0.9), (40, 5, 6, 0.5)):
        onset[start, k], frame[start:stop, k], key_down[start:stop, k] = 0.9, 0.9, held
    options = DecodingOptions(onset_threshold=0.5, min_note_ms=60.0)  # the 1-frame note goes
    notes, _, readings = decode_notes(frame, onset, offset, velocity, options, level=level,
                                      key=key_down, readings=True)
    assert notes[:, 2].tolist() == [30 + C.MIN_MIDI, 50 + C.MIN_MIDI]
    assert readings[:, READINGS.index("key_down_mean")] == pytest.approx([0.9, 0.2])
    assert decode_notes(frame, onset, offset, velocity, options, readings=True)[2] is None
    assert decode_notes(frame, onset, None, velocity, options, level=level, key=key_down,
                        readings=True)[2] is None


def test_a_chooser_fitted_to_separable_notes_chooses_their_ends():
    from transcribe.training.noteends import fit_chooser
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, N))
    truth = np.argmax(x[:, :K], axis=1)  # the right end: the candidate of the largest feature
    right = np.eye(K, dtype=bool)[truth]
    right[:50] = False  # notes with no right end teach nothing
    chooser = EndChooser(fit_chooser(x, right, hidden=16, epochs=400))
    fresh = rng.normal(size=(300, N))
    assert np.mean(chooser.probabilities(fresh).argmax(axis=1) == fresh[:, :K].argmax(axis=1)) > 0.85


def test_fit_note_ends_writes_a_chooser_and_its_threshold_into_the_card(tmp_path):
    # Fitted and tuned on the repo's example alone (the real set is hours of training
    # music): what is checked is the command's chain, not the chooser's skill.
    from click.testing import CliRunner

    from transcribe.training.cli import main
    weights = tmp_path / "w.pt"
    shutil.copy("weights/amt-unet.pt", weights)
    card = json.loads(open("weights/amt-unet.json").read())
    card.pop("note_ends", None)
    card.get("decoding", {}).pop("end_choice_threshold", None)
    (tmp_path / "w.json").write_text(json.dumps(card))
    done = CliRunner().invoke(main, ["fit-note-ends", str(weights), "examples", "--tuning",
                                     "examples", "--files", "1"])
    assert done.exit_code == 0, done.output
    assert "end choice threshold" in done.output
    written = json.loads((tmp_path / "w.json").read_text())
    assert EndChooser(written["note_ends"]).output_weight.shape == (K, 16)
    assert written["decoding"]["end_choice_threshold"] in (0.0, 0.4, 0.5, 0.6, 0.7, 1.0)
    assert written["sha256"] == card["sha256"]


def test_make_filter_set_takes_named_corpora_of_the_train_rows_alone(tmp_path, monkeypatch):
    """--corpora giantmidi,vienna4x22: the end chooser's examples of music played by people;
    a corpus with no train rows (validation only, or misspelt) is refused in one line."""
    from click.testing import CliRunner

    from transcribe.training import cli, notefilter
    rows = ["path\tset\tlicence\tduration_s"]
    for corpus_name, role in (("giantmidi", "train-midi"), ("pop909", "train-midi"),
                              ("batik_mozart", "validation-midi")):
        (tmp_path / corpus_name).mkdir()
        (tmp_path / corpus_name / "a.mid").write_bytes(b"")
        rows.append(f"{corpus_name}/a.mid\t{role}\tCC0\t60.0")
    manifest = tmp_path / "MANIFEST.tsv"
    manifest.write_text("\n".join(rows) + "\n")
    rendered = []
    monkeypatch.setattr(notefilter, "make_filter_set",
                        lambda files, *args, **kwargs: rendered.append(files) or [])
    args = ["make-filter-set", str(manifest), "--out", str(tmp_path / "out"), "--corpora"]
    done = CliRunner().invoke(cli.main, args + ["giantmidi"])
    assert done.exit_code == 0, done.output
    assert [f.corpus for f in rendered[0]] == ["giantmidi"]
    for wrong in ("batik_mozart", "giantmidi,giantmid"):
        refused = CliRunner().invoke(cli.main, args + [wrong])
        assert refused.exit_code == 1 and refused.output.count("\n") == 1, refused.output
        assert "no train rows of" in refused.output


def test_tune_thresholds_keeps_what_the_fit_commands_chose(tmp_path, monkeypatch):
    """The grid search decodes without the fitted stages (its options come from the
    constants): what fit-note-filter, fit-note-ends and fit-velocities chose must survive a
    re-tune."""
    from click.testing import CliRunner

    from transcribe.training import cli, evaluate
    weights = tmp_path / "w.pt"
    shutil.copy("weights/amt-unet.pt", weights)
    card = json.loads(open("weights/amt-unet.json").read())
    (tmp_path / "w.json").write_text(json.dumps(card))
    searched = DecodingOptions(onset_threshold=0.3, frame_threshold=0.4, min_note_ms=60.0)
    means = {"note_f1": 0.9, "note_offset_f1": 0.5, "note_velocity_f1": 0.4}
    monkeypatch.setattr(evaluate, "tune_thresholds", lambda loaded, pairs: (searched, means, []))
    done = CliRunner().invoke(cli.main, ["tune-thresholds", str(weights), "examples"])
    assert done.exit_code == 0, done.output
    decoding = json.loads((tmp_path / "w.json").read_text())["decoding"]
    assert decoding["frame_threshold"] == 0.4
    for kept in ("note_filter_threshold", "min_note_ms", "onset_threshold",
                 "soft_onset_threshold", "end_choice_threshold", "velocity_model_weight"):
        assert decoding[kept] == card["decoding"][kept]
    assert card["decoding"]["onset_threshold"] != 0.3  # the filter's bar, not the search's
    card.pop("note_ends")
    card.pop("note_velocities")
    (tmp_path / "w.json").write_text(json.dumps(card))
    assert CliRunner().invoke(cli.main, ["tune-thresholds", str(weights), "examples"]).exit_code == 0
    decoding = json.loads((tmp_path / "w.json").read_text())["decoding"]
    assert "end_choice_threshold" not in decoding and decoding["min_note_ms"] == card["decoding"]["min_note_ms"]
    assert "velocity_model_weight" not in decoding
    card.pop("note_filter")  # without a filter, the search's onset bar
    (tmp_path / "w.json").write_text(json.dumps(card))
    assert CliRunner().invoke(cli.main, ["tune-thresholds", str(weights), "examples"]).exit_code == 0
    assert json.loads((tmp_path / "w.json").read_text())["decoding"]["onset_threshold"] == 0.3
