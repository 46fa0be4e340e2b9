"""End to end with the shipped weights: known MIDI -> fluidsynth audio -> transcription -> F1."""

import numpy as np
import pretty_midi
import pytest
import soundfile as sf

from transcribe import load_model, transcribe
from transcribe.training import synth
from transcribe.training.metrics import matched_velocities, score

# Floors well above chance (a random or silent transcriber scores ~0) and below what
# the shipped weights measure on these same renders (weights/README.md): 97.8 through
# FluidR3, 96.8 through TimGM6mb (the session-8 weights: 86.8 and 78.6); the example
# 93.1 (fast pass, the default), 91.8 as a 64 kbit/s AAC file, 78.4 by the second pass
# (81.5, 80.5 and now 78.4 in the last three weights: the second pass, not the default,
# drifts as the first is trained, so its floor leaves room).
NOTE_F1_FLOOR = 0.85
EXAMPLE_NOTE_F1_FLOOR = 0.9
SECOND_PASS_EXAMPLE_NOTE_F1_FLOOR = 0.75
# The example clipped by gains of 4, 6 and 8: mean note F1 85.9 with its crests redrawn,
# 84.6 without.
CLIPPED_EXAMPLE_GAIN = 0.005
# Velocities against the reference's on a melody at four dynamics (FluidR3): correlation
# 0.86 with the shipped weights and card (0.90 in session 18, the levels read with their
# register balance; 0.89 before the session-18 velocity head), 0.66 with the velocity
# head alone (0.57 before).
VELOCITY_CORRELATION_FLOOR = 0.8
# How far onsets found are written from the reference's, on average: 4.1 ms on the example,
# 5.4 and 5.0 ms on the written piece through FluidR3 and TimGM6mb, where onsets on the
# 32 ms frame grid (before session 38) were 8.7, 9.9 and 10.5 ms off; within 10 ms: 98, 78
# and 80 % of them (64, 50 and 47 % on the grid).
ONSET_ERROR_MS_CEILING = 7.0
WITHIN_10_MS_FLOOR = 0.7


def written_piece() -> pretty_midi.PrettyMIDI:
    """Twelve seconds written for this test: a melody, broken chords, a repeated note."""
    rng = np.random.default_rng(7)
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    t = 0.3
    for i in range(24):
        pitch = int(rng.choice([60, 62, 64, 65, 67, 69, 71, 72, 74, 76]))
        piano.notes.append(pretty_midi.Note(int(rng.integers(60, 110)), pitch, t, t + 0.35))
        if i % 4 == 0:
            for k, low in enumerate((36, 43, 48)):
                piano.notes.append(pretty_midi.Note(60, low + (i // 4) % 5, t + 0.12 * k, t + 1.5))
        t += 0.45
    for k in range(4):  # the same key struck four times
        piano.notes.append(pretty_midi.Note(90, 79, t + 0.3 * k, t + 0.3 * k + 0.25))
    midi.instruments.append(piano)
    return midi


@pytest.fixture(scope="module")
def shipped():
    return load_model(device="cpu")


@pytest.mark.parametrize("soundfont", ["FluidR3_GM.sf2", "TimGM6mb.sf2"])
def test_shipped_weights_transcribe_a_rendered_piece(shipped, tmp_path, soundfont):
    midi = written_piece()
    audio = synth.render(midi, synth.find_soundfont(soundfont), sample_rate=44100)
    path = tmp_path / "piece.wav"
    sf.write(path, audio / np.abs(audio).max() * 0.8, 44100)
    result = transcribe(path, shipped)
    scores = score(synth.piano_notes(midi), result.notes)
    assert scores["note_f1"] >= NOTE_F1_FLOOR, scores


def test_shipped_example_transcribes(shipped):
    from pathlib import Path
    examples = Path(__file__).resolve().parent.parent / "examples"
    result = transcribe(examples / "example.flac", shipped)
    reference = synth.piano_notes(pretty_midi.PrettyMIDI(str(examples / "example.mid")))
    assert score(reference, result.notes)["note_f1"] >= EXAMPLE_NOTE_F1_FLOOR


@pytest.mark.parametrize("source", ["example", "FluidR3_GM.sf2", "TimGM6mb.sf2"])
def test_onsets_are_written_within_a_few_milliseconds_of_the_keys_struck(shipped, tmp_path,
                                                                         source):
    """A pianist hears a chord spread or a note rushed by 10 ms: onsets lie where the
    onset posteriorgram peaks between frames, not on the 32 ms frame grid."""
    from pathlib import Path

    from transcribe.training.metrics import matched_onset_errors
    if source == "example":
        examples = Path(__file__).resolve().parent.parent / "examples"
        path, midi = examples / "example.flac", pretty_midi.PrettyMIDI(str(examples / "example.mid"))
    else:
        midi, path = written_piece(), tmp_path / "piece.wav"
        audio = synth.render(midi, synth.find_soundfont(source), sample_rate=44100)
        sf.write(path, audio / np.abs(audio).max() * 0.8, 44100)
    errors = np.abs(matched_onset_errors(synth.piano_notes(midi), transcribe(path, shipped).notes))
    assert len(errors) >= 40
    assert 1000 * errors.mean() <= ONSET_ERROR_MS_CEILING
    assert np.mean(errors <= 0.01) >= WITHIN_10_MS_FLOOR


def test_the_example_accents_its_melody_over_the_accompaniment(shipped):
    # The example's broken chords (F2-E4, velocity 55) lie under a melody at 70 with
    # accents at 85.  Through FluidR3 its bass reads as loud as the melody at the keys'
    # partials, so the onset levels, read as they are, made the velocities worse than
    # the head's alone (correlation 0.62 against 0.74); without the register's balance
    # they make them better (0.81, measured) and bring out the accents.  Since session 42
    # the velocity model weighs the levels: 0.91 (measured).
    from pathlib import Path
    examples = Path(__file__).resolve().parent.parent / "examples"
    result = transcribe(examples / "example.flac", shipped)
    reference = synth.piano_notes(pretty_midi.PrettyMIDI(str(examples / "example.mid")))
    written, played = matched_velocities(reference, result.notes)
    assert len(written) >= 90
    head = matched_velocities(reference, result.redecode(velocity_level_weight=0,
                                                         velocity_model_weight=0).notes)
    assert np.corrcoef(written, played)[0, 1] > np.corrcoef(*head)[0, 1] + 0.03
    means = [played[written == velocity].mean() for velocity in (55, 70, 85)]
    assert means[0] + 10 < means[1] < means[2] - 5


def test_notes_decoded_while_streaming_equal_decoding_the_kept_posteriorgrams(shipped, piano_wav):
    from transcribe.errors import TranscribeError

    # 64-frame chunks: many pushes into the streaming decoder even for a short file.
    kept = transcribe(piano_wav, shipped, chunk_frames=64)
    assert len(kept.notes) > 0
    np.testing.assert_array_equal(kept.notes, kept.redecode().notes)
    lean = transcribe(piano_wav, shipped, chunk_frames=64, keep_posteriorgrams=False)
    np.testing.assert_array_equal(lean.notes, kept.notes)
    assert lean.posteriorgrams is None
    with pytest.raises(TranscribeError, match="keep_posteriorgrams"):
        lean.redecode(onset_threshold=0.5)


@pytest.mark.skipif(not __import__("shutil").which("ffmpeg"),
                    reason="ffmpeg is not installed (apt-get install ffmpeg)")
def test_a_phone_recording_transcribes_as_its_lossless_original(shipped, tmp_path):
    import subprocess
    from pathlib import Path
    examples = Path(__file__).resolve().parent.parent / "examples"
    phone = tmp_path / "example.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(examples / "example.flac"), "-ac", "1",
                    "-c:a", "aac", "-b:a", "64k", str(phone)], check=True)
    result = transcribe(phone, shipped)
    reference = synth.piano_notes(pretty_midi.PrettyMIDI(str(examples / "example.mid")))
    assert score(reference, result.notes)["note_f1"] >= EXAMPLE_NOTE_F1_FLOOR


def test_a_clipped_recording_is_transcribed_from_its_crests_redrawn(shipped, tmp_path,
                                                                   monkeypatch):
    """The example clipped by gains of 4, 6 and 8 (6 to 31 % of its samples held at full
    scale) scored note F1 89.3, 83.5 and 81.0, the flat tops' harmonics taken for notes;
    with its crests redrawn (``declip.py``) 90.9, 84.5 and 82.2 (93.1 as it is)."""
    from pathlib import Path

    from transcribe import transcriber
    examples = Path(__file__).resolve().parent.parent / "examples"
    music, rate = sf.read(examples / "example.flac", dtype="float64")
    reference = synth.piano_notes(pretty_midi.PrettyMIDI(str(examples / "example.mid")))

    def mean_f1() -> float:
        scores = []
        for gain in (4, 6, 8):
            sf.write(tmp_path / "clipped.wav", np.clip(gain * music, -1, 1), rate)
            result = transcribe(tmp_path / "clipped.wav", shipped)
            scores.append(score(reference, result.notes)["note_f1"])
            assert not redrawn or ("its flat crests were redrawn" in result.warnings[0]
                                   and result.metadata["declipped"] is True)
        return float(np.mean(scores))

    redrawn = True
    with_redrawing = mean_f1()
    redrawn = False
    monkeypatch.setattr(transcriber, "_declipper", lambda peaks, rate: None)  # as before
    assert with_redrawing >= mean_f1() + CLIPPED_EXAMPLE_GAIN


@pytest.mark.parametrize("peak_dbfs, subtype", [(-60.0, "PCM_24"), (20.0, "FLOAT")])
def test_a_recording_at_any_level_gives_the_notes_of_the_same_recording_at_full_level(
        shipped, tmp_path, peak_dbfs, subtype):
    """Recorded with too little gain, or a float file past full scale (as recorded, the
    network gave 72 notes of the example's 108 at -60 dBFS, note F1 0.86, and 120 at +20
    dBFS, 0.89): the level is brought to the tuned one first, and the notes are those of
    the example as it ships."""
    from pathlib import Path
    examples = Path(__file__).resolve().parent.parent / "examples"
    audio, rate = sf.read(examples / "example.flac")
    path = tmp_path / "level.wav"
    sf.write(path, audio * (10 ** (peak_dbfs / 20) / np.abs(audio).max()), rate, subtype=subtype)
    result = transcribe(path, shipped)
    assert result.provenance["input_gain_db"] == pytest.approx(-1.94 - peak_dbfs, abs=0.01)
    as_shipped = transcribe(examples / "example.flac", shipped)
    assert score(as_shipped.notes, result.notes)["note_f1"] >= 0.98
    reference = synth.piano_notes(pretty_midi.PrettyMIDI(str(examples / "example.mid")))
    assert score(reference, result.notes)["note_f1"] >= EXAMPLE_NOTE_F1_FLOOR
    as_recorded = transcribe(path, shipped, normalize=False)
    assert "input_gain_db" not in as_recorded.provenance
    assert as_recorded.metadata["normalize"] is False


def test_clicks_far_above_a_quiet_recording_do_not_set_its_level(shipped, tmp_path):
    """A recording at -40 dBFS with two clicks near full scale: by its peak it would have
    been lowered 1 dB and heard 39 dB too quietly.  The clicks are set aside, with a warning,
    and held to full scale (raised 38 dB with the music, they cost 7 notes near them:
    note F1 0.967 against the example as it ships)."""
    from pathlib import Path
    examples = Path(__file__).resolve().parent.parent / "examples"
    audio, rate = sf.read(examples / "example.flac")
    audio = audio * (10 ** (-40 / 20) / np.abs(audio).max())
    audio[rate * 3] = 0.9  # one sample
    audio[rate * 11:rate * 11 + rate // 500] = -0.8  # 2 ms
    path = tmp_path / "clicks.wav"
    sf.write(path, audio, rate, subtype="FLOAT")
    result = transcribe(path, shipped)
    assert result.provenance["input_gain_db"] == pytest.approx(-1.94 + 40, abs=0.01)
    assert result.warnings == ["2 brief spikes (clicks? a knock?) stand up to 39 dB above the "
                               "music; its level was set by the music, and they were held "
                               "to full scale"]
    as_shipped = transcribe(examples / "example.flac", shipped)
    assert score(as_shipped.notes, result.notes)["note_f1"] >= 0.98


def test_shipped_weights_reconstruct_the_spectrogram_and_plot_it(shipped, tmp_path):
    """The seed's whole model: the second U-net rebuilds the input spectrogram from the
    posteriorgram, and `--plot` shows it beside the others."""
    from pathlib import Path

    from click.testing import CliRunner

    from transcribe.cli import main
    assert shipped.config.reconstruction
    example = Path(__file__).resolve().parent.parent / "examples" / "example.flac"
    full = transcribe(example, shipped, model_pass="full", keep_spectrograms=True)
    kept = full.posteriorgrams
    assert kept.reconstruction.shape == kept.spectrogram.shape
    # Rebuilt from 88 keys' probabilities, it follows the input's time-frequency pattern
    # (a blank or unrelated image correlates near 0).
    assert np.corrcoef(kept.spectrogram.ravel(), kept.reconstruction.ravel())[0, 1] > 0.5
    reference = synth.piano_notes(pretty_midi.PrettyMIDI(str(example.with_suffix(".mid"))))
    assert score(reference, full.notes)["note_f1"] >= SECOND_PASS_EXAMPLE_NOTE_F1_FLOOR
    copy = tmp_path / "example.flac"
    copy.write_bytes(example.read_bytes())
    result = CliRunner().invoke(main, [str(copy), "--plot", "-q"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "example.reconstruction.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_by_default_notes_last_as_heard_and_extend_lengthens_them_to_the_pedal(shipped, tmp_path):
    """The frame head learned notes held by the pedal, so the default writes them as
    decoded; ``--pedal extend`` lengthens them further to the predicted pedal's release,
    and ``amt-evaluate`` scores the default with extend's figures beside it."""
    from pathlib import Path

    from click.testing import CliRunner

    from transcribe.cli import main
    from transcribe.training.evaluate import evaluate_model
    example = Path(__file__).resolve().parent.parent / "examples" / "example.flac"
    result = transcribe(example, shipped)
    default, spans = result.with_pedal()
    assert spans is None and np.array_equal(default, result.notes)
    assert result.pedal is not None and len(result.pedal) > 0  # the example is pedalled
    extended, _ = result.with_pedal("extend")
    np.testing.assert_array_equal(extended[:, [0, 2]], default[:, [0, 2]])
    assert (extended[:, 1] >= default[:, 1]).all() and (extended[:, 1] > default[:, 1]).any()
    copy = tmp_path / "example.flac"
    copy.write_bytes(example.read_bytes())
    for name, extra in (("default", []), ("none", ["--pedal", "none"])):
        # Two threads in both: the network's sums differ in the last digits by thread count.
        outcome = CliRunner().invoke(main, [str(copy), "-o", str(tmp_path / f"{name}.csv"), "-q",
                                            "--threads", "2", *extra], catch_exceptions=False)
        assert outcome.exit_code == 0, outcome.output
    assert (tmp_path / "default.csv").read_text() == (tmp_path / "none.csv").read_text()
    row, = evaluate_model(shipped, [(example, example.with_suffix(".mid"))])
    reference = synth.piano_notes(pretty_midi.PrettyMIDI(str(example.with_suffix(".mid"))))
    assert row["note_offset_f1"] == pytest.approx(score(reference, default)["note_offset_f1"])
    assert row["extend_note_offset_f1"] == pytest.approx(
        score(reference, extended)["note_offset_f1"])


def test_dereverb_ends_notes_nearer_their_releases_in_a_reverberant_room(shipped, tmp_path):
    """``--dereverb``: the written piece in a room that rings for 0.8 s (the room the
    suppressor assumes) keeps its notes found and gets their ends much more often right;
    the JSON says the option was on."""
    import json
    from click.testing import CliRunner
    from transcribe.cli import main
    midi = written_piece()
    audio = synth.render(midi, synth.find_soundfont("FluidR3_GM.sf2"), sample_rate=16000)
    rng = np.random.default_rng(0)
    t = np.arange(int(0.8 * 16000)) / 16000
    room = rng.standard_normal(len(t)) * np.exp(-6.9 * t / 0.8)
    room[:160] = 0  # 10 ms before the first reflections
    room *= 0.3 / np.abs(room).max()
    room[0] = 1.0
    wet = np.convolve(audio, room)[:len(audio)]
    sf.write(tmp_path / "room.wav", (0.5 * wet / np.abs(wet).max()).astype(np.float32), 16000)
    reference, scores = synth.piano_notes(midi), {}
    for name, extra in (("as recorded", []), ("dereverb", ["--dereverb"])):
        out = tmp_path / f"{name.replace(' ', '_')}.json"
        result = CliRunner().invoke(main, [str(tmp_path / "room.wav"), "-o", str(out), "-q",
                                           *extra], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        written = json.loads(out.read_text())
        assert written["metadata"].get("dereverb", False) is bool(extra)
        notes = np.array([[n["onset_s"], n["offset_s"], n["pitch"], n["velocity"]]
                          for n in written["notes"]])
        scores[name] = score(reference, notes)
    # Measured: note+offset F1 68.2 as recorded, 71.1 with --dereverb (47.1 and 61.2 while
    # note ends were on the frame grid, before session 38: most of what the suppressor won
    # here, ends read between frames win without it).
    assert scores["dereverb"]["note_offset_f1"] > scores["as recorded"]["note_offset_f1"] + 0.015
    assert scores["dereverb"]["note_f1"] >= NOTE_F1_FLOOR


def dynamic_melody() -> pretty_midi.PrettyMIDI:
    """A melody at four clearly different dynamics, one note at a time (13 s)."""
    rng = np.random.default_rng(1)
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    for i in range(32):
        start = 0.3 + 0.4 * i
        piano.notes.append(pretty_midi.Note(int(rng.choice([35, 60, 85, 110])),
                                            int(rng.integers(52, 84)), start, start + 0.3))
    midi.instruments.append(piano)
    return midi


def test_velocities_follow_the_dynamics_and_survive_a_posteriorgram_save(shipped, tmp_path):
    from transcribe import load_posteriorgrams
    midi = dynamic_melody()
    audio = synth.render(midi, synth.find_soundfont("FluidR3_GM.sf2"), sample_rate=44100)
    result = transcribe(audio / np.abs(audio).max() * 0.8, shipped, 44100)
    reference = synth.piano_notes(midi)
    assert score(reference, result.notes)["note_f1"] >= NOTE_F1_FLOOR

    def correlation(notes):
        """Of the velocities of the notes matched to the reference (onset and pitch)."""
        written, played = matched_velocities(reference, notes)
        assert len(written) >= 30
        return np.corrcoef(written, played)[0, 1]

    # The shipped card blends the onsets' levels into the velocity head's values
    # (0.86 against 0.66 for the head alone, measured before session 42).
    weight = result.options.velocity_level_weight
    assert weight > 0
    assert correlation(result.notes) >= VELOCITY_CORRELATION_FLOOR
    # Since session 42 a velocity model decides them: it follows them more closely still
    # than the blend, and the blend than the head alone.
    assert result.options.velocity_model is not None
    blend = result.redecode(velocity_model_weight=0)
    assert correlation(result.notes) > correlation(blend.notes) > correlation(
        blend.redecode(velocity_level_weight=0).notes)
    # Saved posteriorgrams keep the levels: re-decoded, the same velocities.
    result.save_posteriorgrams(tmp_path / "melody.npz")
    np.testing.assert_array_equal(load_posteriorgrams(tmp_path / "melody.npz").notes,
                                  result.notes)


def test_tuning_chooses_the_velocity_level_weight_that_follows_the_dynamics(shipped, tmp_path):
    from transcribe.training.evaluate import tune_thresholds
    midi = dynamic_melody()
    midi.write(str(tmp_path / "melody.mid"))
    audio = synth.render(midi, synth.find_soundfont("TimGM6mb.sf2"), sample_rate=44100)
    sf.write(tmp_path / "melody.wav", audio / np.abs(audio).max() * 0.8, 44100)
    best, means, tried = tune_thresholds(
        shipped, [(tmp_path / "melody.wav", tmp_path / "melody.mid")], onset=(0.2,),
        frame=(0.5,), offset=(1.0,), min_note_ms=(60.0,), frame_onset=(0.6,),
        velocity_level=(0.0, 2.0), model_pass="fast")
    assert len(tried) == 1 and best.velocity_level_weight == 2.0
    # The velocities the weight gives score better than the head's alone.
    assert means["note_velocity_f1"] > tried[0][1]["note_velocity_f1"]


def test_amt_evaluate_writes_pages_showing_what_each_recording_missed(tmp_path, capsys):
    """``amt-evaluate --html``: a page per recording, mirroring the folders, its notes
    marked found or not as the scores count them, and an index of the pages, the lowest
    note F1 first; with --predictions, the other transcriber's notes so."""
    import csv
    import json
    import re
    from pathlib import Path

    from transcribe.training.cli import evaluate_main
    from transcribe.training.metrics import note_matches
    examples = Path(__file__).resolve().parent.parent / "examples"
    audio, ref = tmp_path / "audio" / "set", tmp_path / "ref" / "set"
    audio.mkdir(parents=True)
    ref.mkdir(parents=True)
    (audio / "example.flac").write_bytes((examples / "example.flac").read_bytes())
    (ref / "example.mid").write_bytes((examples / "example.mid").read_bytes())
    # A silent take of the piece (F1 0), in a sub-folder and with a name a link must quote.
    (audio / "takes").mkdir()
    (ref / "takes").mkdir()
    sf.write(audio / "takes" / "take #1.flac", np.zeros(16000, np.float32), 16000)
    (ref / "takes" / "take #1.mid").write_bytes((examples / "example.mid").read_bytes())
    pages = tmp_path / "pages"
    with pytest.raises(SystemExit) as exit_info:
        evaluate_main([str(tmp_path / "audio"), str(tmp_path / "ref"), "--html", str(pages),
                       "--csv", str(tmp_path / "s.csv")])
    assert exit_info.value.code == 0
    row, silent = csv.DictReader(open(tmp_path / "s.csv"))
    assert (silent["file"], float(silent["note_f1"])) == ("take #1.flac", 0.0)
    page = (pages / "set" / "example.html").read_text()
    data = json.loads(re.search(r"const DATA = (.*);\n", page).group(1))
    hits = [note[4] for note in data["notes"]]
    found = [note[4] for note in data["reference"]]
    assert sum(found) == sum(hits) > 90
    assert sum(found) / len(found) == pytest.approx(float(row["note_recall"]), abs=1e-4)
    assert sum(hits) / len(hits) == pytest.approx(float(row["note_precision"]), abs=1e-4)
    shown = float(re.search(r"note F1 ([0-9.]+)\.", page).group(1))
    assert shown == pytest.approx(100 * float(row["note_f1"]), abs=0.051)  # the CSV's, rounded
    # The flags are mir_eval's matching of the notes on the page.
    notes = np.array([note[:4] for note in data["notes"]])
    reference = np.array([note[:4] for note in data["reference"]])
    assert [list(flags) for flags in note_matches(reference, notes)] == [
        [bool(f) for f in found], [bool(h) for h in hits]]
    said = capsys.readouterr().err
    assert f"amt-evaluate: 2 review pages in {pages}; their index, the lowest note F1 first: " \
        f"{pages / 'index.html'}" in said
    index = (pages / "index.html").read_text()
    links = re.findall(r'<tr><td><a href="([^"]+)">([^<]+)</a></td><td>([0-9.]+)</td>', index)
    assert [name for _, name, _ in links] == ["set/takes/take #1.flac", "set/example.flac"]
    assert [float(f1) for _, _, f1 in links] == pytest.approx(
        [0.0, 100 * float(row["note_f1"])], abs=0.051)  # the CSV's, rounded
    from urllib.parse import unquote
    assert [pages / unquote(href) for href, _, _ in links] == [
        pages / "set" / "takes" / "take #1.html", pages / "set" / "example.html"]
    assert all((pages / unquote(href)).is_file() for href, _, _ in links)
    with pytest.raises(SystemExit) as exit_info:  # a file where the folder should be
        evaluate_main([str(audio), str(ref), "--html", str(tmp_path / "s.csv")])
    assert exit_info.value.code == 1
    assert "not a folder (--html names the folder for the pages)" in capsys.readouterr().err
    # Another transcriber's notes (here the reference's own, in basic-pitch's one folder,
    # and none for the take), with no threshold of ours on the page.
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "example_basic_pitch.mid").write_bytes((examples / "example.mid").read_bytes())
    with pytest.raises(SystemExit) as exit_info:
        evaluate_main([str(tmp_path / "audio"), str(tmp_path / "ref"), "--predictions",
                       str(theirs), "--html", str(tmp_path / "their pages")])
    assert exit_info.value.code == 0
    page = (tmp_path / "their pages" / "set" / "example.html").read_text()
    data = json.loads(re.search(r"const DATA = (.*);\n", page).group(1))
    assert len(data["notes"]) == len(data["reference"]) > 90
    assert all(note[4] for note in data["notes"] + data["reference"])
    assert "the notes of example_basic_pitch.mid (another transcriber&#x27;s), as they " \
        "sound" in page and "thresholds:" not in page
    assert "note F1 100.0." in page
    take = (tmp_path / "their pages" / "set" / "takes" / "take #1.html").read_text()
    assert f"0 notes, 1.0 s: no notes: {theirs} holds no transcription of this recording" in take


def test_a_held_note_is_not_split_where_its_key_is_not_struck_again(shipped):
    """The shipped card's re-strike bar: a faint onset inside a sounding note whose level
    does not rise is the note's decay.  On the example, by the rules alone (the note
    filter off, the onset bars and the shortest note the card had before the filter),
    without it many more notes that were not played are written, and no note is found
    that it does not find."""
    from pathlib import Path
    example = Path(__file__).resolve().parent.parent / "examples" / "example.flac"
    result = transcribe(example, shipped)
    assert result.options.restrike_onset_threshold == 0.4
    reference = synth.piano_notes(pretty_midi.PrettyMIDI(str(example.with_suffix(".mid"))))
    rules = result.redecode(note_filter_threshold=0.0, onset_threshold=0.2,
                            soft_onset_threshold=0.1, min_note_ms=60.0)
    with_bar = score(reference, rules.notes)
    without = score(reference, rules.redecode(restrike_onset_threshold=0.0).notes)
    assert with_bar["note_precision"] >= without["note_precision"] + 0.04
    assert with_bar["note_recall"] >= without["note_recall"] - 1e-9
    assert with_bar["note_f1"] >= 0.95


def test_the_note_filter_drops_notes_not_played_and_keeps_those_played(shipped):
    """The shipped card's note filter (session 39; since session 41 it sorts the notes of
    lower onset bars): on the example, the notes the decoding rules write that were not
    played (a lower key's partial, a held note's decay) are dropped, and every note played
    is still found."""
    from pathlib import Path
    example = Path(__file__).resolve().parent.parent / "examples" / "example.flac"
    result = transcribe(example, shipped)
    assert result.options.note_filter is not None and result.options.note_filter_threshold == 0.5
    reference = synth.piano_notes(pretty_midi.PrettyMIDI(str(example.with_suffix(".mid"))))
    filtered = score(reference, result.notes)
    without = score(reference, result.redecode(note_filter_threshold=0.0, min_note_ms=60.0).notes)
    assert filtered["note_precision"] >= without["note_precision"] + 0.04
    assert filtered["note_recall"] >= without["note_recall"] - 1e-9
    assert filtered["note_f1"] >= 0.98


def test_the_end_chooser_ends_notes_where_the_key_or_the_pedal_came_up(shipped):
    """The shipped card's end chooser (session 40): on the example, more notes end where
    they were played to end (the key's release, lengthened through the pedal), the notes
    themselves and their key releases unchanged; a saved posteriorgram re-decodes to the
    same ends."""
    from pathlib import Path
    example = Path(__file__).resolve().parent.parent / "examples" / "example.flac"
    result = transcribe(example, shipped)
    assert result.options.end_chooser is not None and result.options.end_choice_threshold == 0.0
    reference = synth.piano_notes(pretty_midi.PrettyMIDI(str(example.with_suffix(".mid"))))
    heard = result.redecode(end_choice_threshold=1.0)
    chosen, as_heard = score(reference, result.notes), score(reference, heard.notes)
    assert chosen["note_offset_f1"] >= as_heard["note_offset_f1"] + 0.05
    assert chosen["note_f1"] == as_heard["note_f1"] >= 0.98
    np.testing.assert_array_equal(result.notes[:, [0, 2, 3]], heard.notes[:, [0, 2, 3]])
    assert (result.notes[:, 1] != heard.notes[:, 1]).sum() >= 5
    np.testing.assert_array_equal(result.key_notes, heard.key_notes)  # --pedal cc64's notes
    np.testing.assert_array_equal(result.redecode().notes, result.notes)


def test_the_velocity_model_follows_the_example_s_dynamics(shipped, tmp_path):
    """The shipped card's velocity model (session 42): on the example, note+velocity F1
    well above the level blend's (51.5 against 33.0, measured), the notes (onsets and
    pitches) unchanged; saved posteriorgrams re-decode to the same velocities."""
    from pathlib import Path

    from transcribe import load_posteriorgrams
    example = Path(__file__).resolve().parent.parent / "examples" / "example.flac"
    result = transcribe(example, shipped)
    assert result.options.velocity_model is not None and result.options.velocity_model_weight == 1
    reference = synth.piano_notes(pretty_midi.PrettyMIDI(str(example.with_suffix(".mid"))))
    blend = result.redecode(velocity_model_weight=0)
    modelled, blended = score(reference, result.notes), score(reference, blend.notes)
    assert modelled["note_velocity_f1"] >= 0.45 and blended["note_velocity_f1"] <= 0.40
    np.testing.assert_array_equal(result.notes[:, [0, 2]], blend.notes[:, [0, 2]])
    assert modelled["note_f1"] == blended["note_f1"] >= EXAMPLE_NOTE_F1_FLOOR
    result.save_posteriorgrams(tmp_path / "example.npz")
    np.testing.assert_array_equal(load_posteriorgrams(tmp_path / "example.npz").notes,
                                  result.notes)
