"""The note filter: its features, its card section, and what it keeps (notefilter.py,
decode.note_features, training/notefilter.py)."""

import json
import shutil

import numpy as np
import pytest

from transcribe import constants as C
from transcribe.decode import DecodingOptions, NoteStream, decode_notes, note_features
from transcribe.errors import TranscribeError
from transcribe.notefilter import FEATURES, NoteFilter, section_of

N = len(FEATURES)


def heads(frames=40):
    """frame, onset, offset, velocity, key-down posteriorgrams and the key levels (dB)."""
    arrays = [np.zeros((frames, C.N_KEYS), np.float32) for _ in range(5)]
    level = np.full((frames, C.N_KEYS * C.VELOCITY_LEVEL_PARTIALS), 20.0, np.float32)
    return (*arrays, level)


def strike(frame, onset, key_down, key, start, stop, peak=0.9):
    onset[start, key] = peak
    frame[start:stop, key] = 0.9
    key_down[start:stop, key] = 0.9


def one_feature_filter(name: str, above: float, steepness: float = 100.0) -> NoteFilter:
    """Scores a note 0.5 where feature ``name`` is at most ``above``, more the further it
    lies above it: at a threshold over 0.5 it keeps only the notes above."""
    hidden = np.zeros((1, N))
    hidden[0, FEATURES.index(name)] = 1.0
    return NoteFilter(section_of(np.zeros(N), np.ones(N), hidden, [-above], [steepness], 0.0))


def test_the_features_read_the_note_its_octave_below_and_the_keys_struck_with_it():
    frame, onset, offset, velocity, key_down, level = heads()
    strike(frame, onset, key_down, 52, 10, 20, peak=0.8)   # E3
    strike(frame, onset, key_down, 40, 9, 30, peak=0.95)   # E2, an octave below, a frame earlier
    level[10:13, 52 * C.VELOCITY_LEVEL_PARTIALS] = 35.0    # E3's first partial rises 15 dB
    level[9:14, 52 * C.VELOCITY_LEVEL_PARTIALS + 1] = 26.0  # its second 6 dB, a frame early
    onset[11, 53] = 0.3                                     # F3 a semitone above, faintly
    level[11, 53 * C.VELOCITY_LEVEL_PARTIALS] = 24.0
    rows = np.array([[10, 20, 52, 64], [9, 30, 40, 90]])
    features = dict(zip(FEATURES, note_features(rows, frame, onset, key_down, level)[0]))
    assert features["onset_peak"] == pytest.approx(0.8)
    assert features["onset_octave_below"] == pytest.approx(0.95)
    assert features["frame_octave_below"] == pytest.approx(0.9)
    assert features["onset_twelfth_below"] == features["onset_octave_above"] == 0.0
    assert features["frame_mean"] == pytest.approx(0.9)
    assert features["log_length_s"] == pytest.approx(np.log(10 / C.FRAME_RATE_HZ))
    assert features["keys_struck"] == 2
    assert features["key"] == 52 and features["velocity_head"] == 64
    assert features["key_down"] == pytest.approx(0.9)
    assert features["level_rise_db"] == pytest.approx(15.0)
    assert features["level_db"] == pytest.approx(35.0)
    assert features["sounding_before"] == 0.0
    # The window around the start, frame by frame (-2 to 4), against the level at s - 2.
    assert [features[f"onset_at_{o}"] for o in range(-2, 5)] == pytest.approx([0, 0, 0.8, 0, 0, 0, 0])
    assert [features[f"frame_at_{o}"] for o in range(-2, 5)] == pytest.approx([0, 0] + [0.9] * 5)
    assert [features[f"key_down_at_{o}"] for o in range(-2, 5)] == pytest.approx([0, 0] + [0.9] * 5)
    assert [features[f"partial_1_rise_db_at_{o}"] for o in range(-1, 5)] == [0, 15, 15, 15, 0, 0]
    assert [features[f"partial_2_rise_db_at_{o}"] for o in range(-1, 5)] == [6, 6, 6, 6, 6, 0]
    assert [features[f"partial_{p}_db"] for p in (1, 2, 3)] == [35, 26, 20]
    assert features["onset_key_above"] == pytest.approx(0.3) and features["onset_key_below"] == 0.0
    assert features["level_rise_db_key_above"] == 4.0 and features["level_rise_db_key_below"] == 0.0
    # At the keyboard's ends the keys beyond read 0 (not the last key's rise, 30 dB).
    level[11, 87 * C.VELOCITY_LEVEL_PARTIALS] = 50.0
    edge = dict(zip(FEATURES, note_features(np.array([[10, 20, 87, 64]]), frame, onset,
                                            key_down, level)[0]))
    assert edge["level_rise_db_key_above"] == 0.0 and edge["partial_1_rise_db_at_1"] == 30.0
    # Before a recording begins, silence: a chord struck in its first frame rises from it.
    onset[0, 52] = 0.9
    first = dict(zip(FEATURES, note_features(np.array([[0, 20, 52, 64]]), frame, onset,
                                             key_down, level)[0]))
    assert first["onset_at_-2"] == first["onset_at_-1"] == 0.0
    assert first["onset_at_0"] == pytest.approx(0.9)
    assert first["partial_1_rise_db_at_0"] == 20.0 - C.SILENCE_DB


def test_a_filter_drops_the_note_on_an_octaves_partial_and_keeps_the_other():
    frame, onset, offset, velocity, key_down, level = heads()
    strike(frame, onset, key_down, 40, 9, 30)
    strike(frame, onset, key_down, 52, 10, 20)  # E3 over E2
    strike(frame, onset, key_down, 60, 10, 20)  # C4: no onset an octave below
    # A filter that drops a note where the onset an octave below peaks over 0.5
    # (a negative weight: scores fall below 0.5 above it).
    hidden = np.zeros((1, N))
    hidden[0, FEATURES.index("onset_octave_below")] = 1.0
    drops = NoteFilter(section_of(np.zeros(N), np.ones(N), hidden, [-0.5], [-100.0], 1.0))
    options = DecodingOptions(onset_threshold=0.5, min_note_ms=0.0, note_filter=drops)
    kept = decode_notes(frame, onset, offset, velocity, options.merged(note_filter_threshold=0.6),
                        level=level, key=key_down)[0]
    assert sorted(kept[:, 2].astype(int)) == [21 + 40, 21 + 60]
    everything = decode_notes(frame, onset, offset, velocity,
                              options.merged(note_filter_threshold=0.0), level=level,
                              key=key_down)[0]
    assert sorted(everything[:, 2].astype(int)) == [21 + 40, 21 + 52, 21 + 60]
    with pytest.raises(TranscribeError, match="key-down posteriorgram"):
        decode_notes(frame, onset, offset, velocity, options.merged(note_filter_threshold=0.6))


@pytest.mark.parametrize("feature, last", [("frame_start", 12), ("frame_at_4", 14)])
def test_a_stream_decides_a_note_only_once_the_frames_its_filter_reads_arrived(feature, last):
    # A one-frame note (frame 10) whose filter reads frames up to ``last`` (the start's
    # mean over 10-12, the window's last frame 14): a chunk that ends at that frame must
    # not decide it, or it reads the frame before twice for the missing one (a hold of
    # 2 frames fails the window's case).
    frame, onset, offset, velocity, key_down, level = heads(30)
    onset[10, 40], frame[10, 40], frame[11, 40], frame[last, 40] = 0.9, 0.9, 0.3, 0.45
    options = DecodingOptions(onset_threshold=0.5, min_note_ms=0.0, note_filter_threshold=0.6,
                              note_filter=one_feature_filter(feature, 0.4 if last == 14 else 0.525))
    whole = decode_notes(frame, onset, offset, velocity, options, level=level, key=key_down)[0]
    assert len(whole) == 1  # (0.9 + 0.3 + 0.45) / 3 = 0.55 is above 0.525; 0.45 above 0.4
    stream = NoteStream(options)
    for lo, hi in ((0, last), (last, 30)):
        stream.push(frame[lo:hi], onset[lo:hi], offset[lo:hi], velocity[lo:hi],
                    key_down[lo:hi], level[lo:hi])
    np.testing.assert_array_equal(stream.finish(), whole)


def test_a_malformed_filter_is_refused_in_one_line():
    good = section_of(np.zeros(N), np.ones(N), np.ones((2, N)), [0, 0], [1, 1], 0.0)
    assert NoteFilter(good) == NoteFilter(json.loads(json.dumps(good)))
    for broken, why in (({**good, "features": good["features"][:-1]}, "other features"),
                        ({**good, "scale": [0.0] * N}, "not finite"),
                        ({**good, "hidden_bias": [0.0]}, "wrong shape"),
                        ({k: v for k, v in good.items() if k != "mean"}, "malformed")):
        with pytest.raises(TranscribeError, match=why):
            NoteFilter(broken)


def test_a_card_without_a_filter_decodes_as_before():
    assert DecodingOptions().resolve({"decoding": {"note_filter_threshold": 0.5}}).note_filter is None
    section = section_of(np.zeros(N), np.ones(N), np.ones((2, N)), [0, 0], [1, 1], 0.0)
    resolved = DecodingOptions().resolve({"note_filter": section})
    assert resolved.note_filter == NoteFilter(section)
    assert "note_filter" not in resolved.as_dict()  # a MIDI file's metadata: thresholds only


def test_a_perceptron_fitted_to_separable_notes_tells_them_apart():
    from transcribe.training.notefilter import fit_perceptron
    rng = np.random.default_rng(0)
    features = rng.normal(size=(2000, N))
    labels = (features[:, 0] + features[:, 7] > 0).astype(np.float32)
    note_filter = NoteFilter(fit_perceptron(features, labels, hidden=8, epochs=200))
    fresh = rng.normal(size=(200, N))
    truth = fresh[:, 0] + fresh[:, 7] > 0
    assert np.mean((note_filter.probabilities(fresh) >= 0.5) == truth) > 0.9


def test_fit_note_filter_writes_a_filter_and_its_threshold_into_the_card(tmp_path):
    # Fitted and tuned on the repo's example alone (the real set is hours of training
    # music): what is checked is the command's chain, not the filter's skill.
    from click.testing import CliRunner

    from transcribe.training.cli import main
    weights = tmp_path / "w.pt"
    shutil.copy("weights/amt-unet.pt", weights)
    card = json.loads(open("weights/amt-unet.json").read())
    card["note_filter"]["features"] = card["note_filter"]["features"][:19]  # as fitted before session 41
    (tmp_path / "w.json").write_text(json.dumps(card))
    done = CliRunner().invoke(main, ["fit-note-filter", str(weights), "examples", "--tuning",
                                     "examples", "--files", "1", "--onset-threshold", "0.15",
                                     "--soft-onset-threshold", "0.1"])
    assert done.exit_code == 0, done.output
    assert "note filter threshold" in done.output
    written = json.loads((tmp_path / "w.json").read_text())
    assert NoteFilter(written["note_filter"]).hidden_weight.shape == (32, N)
    assert written["decoding"]["onset_threshold"] == 0.15  # the bars it sorts the notes of
    assert written["decoding"]["soft_onset_threshold"] == 0.1
    assert written["decoding"]["note_filter_threshold"] in (0.0, 0.3, 0.4, 0.5, 0.6, 0.7)
    assert written["decoding"]["min_note_ms"] in (30.0, 60.0)
    assert written["sha256"] == card["sha256"]


def test_the_filters_examples_leave_out_the_first_frames_of_an_excerpt():
    # An excerpt cut from music starts on strings still ringing, not in silence as a
    # recording does (what note_features reads before the first frame): its first notes
    # are no examples.  The repo's example starts on a chord.
    from transcribe import load_model, transcribe
    from transcribe.decode import note_candidates
    from transcribe.training.notefilter import examples
    loaded = load_model(None, "cpu")
    loaded.card = {k: v for k, v in loaded.card.items() if k != "note_filter"}
    options = DecodingOptions().resolve(loaded.card)
    [(features, labels)] = examples(loaded, [("examples/example.flac", "examples/example.mid")],
                                    options)
    p = transcribe("examples/example.flac", loaded, options=options).posteriorgrams
    notes, everything = note_candidates(p.frame, p.onset, p.offset, p.velocity, p.key, p.level,
                                        options, p.frame_rate_hz)
    later = notes[:, 0] >= 2 / C.FRAME_RATE_HZ
    assert (~later).sum() >= 2 and later.sum() >= 50
    np.testing.assert_array_equal(features, everything[later])
    assert len(labels) == later.sum() and labels.mean() > 0.5
