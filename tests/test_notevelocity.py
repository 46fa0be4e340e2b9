"""The velocity model: what it reads, its card section, and the velocities it gives
(notevelocity.py, decode.onset_rises, training/notevelocity.py)."""

import json
import shutil

import numpy as np
import pytest

from transcribe import constants as C
from transcribe.decode import DecodingOptions, frames_to_notes, onset_levels, onset_rises
from transcribe.errors import TranscribeError
from transcribe.notefilter import section_of
from transcribe.notevelocity import FEATURES, VelocityModel, features

N = len(FEATURES)


def constant_model(steps: float) -> VelocityModel:
    """A model that puts every note ``steps`` above the recording's median head velocity."""
    return VelocityModel(section_of(np.zeros(N), np.ones(N), np.zeros((1, N)), [1.0], [steps],
                                    0.0, features=FEATURES))


def test_the_features_read_each_note_against_the_recording():
    rows = np.array([[10, 20, 40, 50], [10, 13, 47, 70], [12, 32, 52, 90], [40, 50, 30, 60]])
    levels = np.array([[30.0, 20, 10], [40, 50, 20], [20, 10, 0], [35, 25, 15]])
    rises = np.array([[3.0, 2, 1], [30, 0, 0], [5, 5, 5], [0, 1, 2]])
    got = {name: column for name, column in zip(FEATURES, features(rows, levels, rises, 31.25).T)}
    np.testing.assert_allclose(got["velocity_head"], [50, 70, 90, 60])
    np.testing.assert_allclose(got["velocity_head_from_median"], [-15, 5, 25, -5])
    # the loudest partial (no octaves here), against the median of 30, 50, 20, 35
    np.testing.assert_allclose(got["level_from_median_db"], [-2.5, 17.5, -12.5, 2.5])
    np.testing.assert_allclose(got["median_level_db"], 32.5)
    np.testing.assert_allclose(got["partial_2_from_median_db"], [-12.5, 17.5, -22.5, -7.5])
    np.testing.assert_allclose(got["partial_1_rise_db"], [3, 30, 5, 0])
    np.testing.assert_allclose(got["partial_3_rise_db"], [1, 0, 5, 2])
    np.testing.assert_allclose(got["key"], np.array([40, 47, 52, 30]) / 88)
    np.testing.assert_allclose(got["key_from_mean"], np.array([-2.25, 4.75, 9.75, -12.25]) / 88)
    np.testing.assert_allclose(got["notes_struck_with_it"], [2, 2, 1, 1])  # within a frame
    np.testing.assert_allclose(got["log_length_s"], np.log(np.array([10, 3, 20, 10]) / 31.25))
    assert features(rows[:0], levels[:0], rises[:0], 31.25).shape == (0, N)
    # Saves from before session 19 hold one level a key: it stands for every partial.
    one = {name: column for name, column in zip(
        FEATURES, features(rows, levels[:, :1], rises[:, :1], 31.25).T)}
    np.testing.assert_allclose(one["partial_3_from_median_db"], [-2.5, 7.5, -12.5, 2.5])
    np.testing.assert_allclose(one["partial_2_rise_db"], [3, 30, 5, 0])


def test_a_rise_is_measured_from_two_frames_before_the_start_or_from_silence():
    level = np.full((10, C.N_KEYS * C.VELOCITY_LEVEL_PARTIALS), 10.0, np.float32)
    k = 5 * C.VELOCITY_LEVEL_PARTIALS
    level[3, k], level[4:7, k] = 12.0, 40.0  # frame 3 is two before the start at 5
    rows = np.array([[5, 9, 5, 64], [1, 9, 6, 64]])  # the second starts before frame 2
    rises = onset_rises(rows, level)
    assert rises[0, 0] == 28.0 and rises[0, 1] == 0.0
    np.testing.assert_allclose(rises[1], onset_levels(rows, level)[1] - C.SILENCE_DB)


def test_a_card_without_a_model_keeps_the_level_blend():
    assert DecodingOptions().resolve({}).velocity_model is None
    assert DecodingOptions().resolve({}).velocity_model_weight == 0.0
    section = constant_model(3.0).section
    resolved = DecodingOptions().resolve({"note_velocities": section})
    assert resolved.velocity_model == VelocityModel(section)
    assert "velocity_model" not in resolved.as_dict()  # a MIDI file's metadata: numbers only
    with pytest.raises(TranscribeError, match=r"velocity_model_weight is a share in \[0, 1\]"):
        DecodingOptions(velocity_model_weight=1.5)
    for broken, why in (({**section, "features": section["features"][:-1]}, "other features"),
                        ({**section, "output_bias": [0.0, 0.0]}, "wrong shape")):
        with pytest.raises(TranscribeError, match=why):
            VelocityModel(broken)


def test_the_model_decides_its_weight_of_each_velocity():
    frames = 60
    frame, onset, offset, velocity = (np.zeros((frames, C.N_KEYS), np.float32) for _ in range(4))
    level = np.full((frames, C.N_KEYS * C.VELOCITY_LEVEL_PARTIALS), 10.0, np.float32)
    for k, start, head, loud in ((30, 5, 0.4, 40.0), (40, 20, 0.5, 30.0), (50, 35, 0.6, 20.0)):
        onset[start, k], frame[start:start + 10, k], velocity[start, k] = 0.9, 0.9, head
        level[start:start + 3, k * C.VELOCITY_LEVEL_PARTIALS] = loud
    base = DecodingOptions(onset_threshold=0.5, min_note_ms=30.0, velocity_level_weight=1.0)
    blended = frames_to_notes(frame, onset, offset, velocity, base, level=level)[:, 3]
    np.testing.assert_array_equal(blended, [51 + 10, 64, 76 - 10])  # the head's, +-1 step a dB
    model = constant_model(-7.0)
    for weight, expected in ((1.0, [57, 57, 57]), (0.5, np.round((blended + 57) / 2)),
                             (0.0, blended)):
        options = DecodingOptions(**{**base.as_dict(), "velocity_model_weight": weight},
                                  velocity_model=model)
        got = frames_to_notes(frame, onset, offset, velocity, options, level=level)[:, 3]
        np.testing.assert_array_equal(got, expected)  # 57: the head's median (64) - 7


def test_a_model_fitted_to_a_known_rule_learns_it():
    from transcribe.training.notevelocity import fit_model
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, N))
    target = 10 * x[:, 2] - 5 * np.maximum(x[:, 0], 0)
    model = VelocityModel(fit_model(x, target, hidden=16, epochs=600))
    fresh = rng.normal(size=(300, N))
    truth = 10 * fresh[:, 2] - 5 * np.maximum(fresh[:, 0], 0)
    assert np.sqrt(np.mean((model.logits(fresh) - truth) ** 2)) < 0.15 * truth.std()


def test_fit_velocities_writes_a_model_and_its_weight_into_the_card(tmp_path):
    # Fitted and tuned on the repo's example alone (the real set is hours of training
    # music): what is checked is the command's chain, not the model's skill.
    from click.testing import CliRunner

    from transcribe.training.cli import main
    weights = tmp_path / "w.pt"
    shutil.copy("weights/amt-unet.pt", weights)
    card = json.loads(open("weights/amt-unet.json").read())
    card.pop("note_velocities", None)
    card.get("decoding", {}).pop("velocity_model_weight", None)
    (tmp_path / "w.json").write_text(json.dumps(card))
    done = CliRunner().invoke(main, ["fit-velocities", str(weights), "examples", "--tuning",
                                     "examples", "--files", "1", "--hidden", "8"])
    assert done.exit_code == 0, done.output
    assert "velocity model weight" in done.output
    written = json.loads((tmp_path / "w.json").read_text())
    assert VelocityModel(written["note_velocities"]).hidden_weight.shape == (8, N)
    assert written["decoding"]["velocity_model_weight"] in (0.0, 0.5, 0.75, 1.0)
    assert written["sha256"] == card["sha256"]
