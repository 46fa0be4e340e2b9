import json
import shutil

import pytest
import torch

from transcribe.errors import TranscribeError
from transcribe.weights import load_model, sha256_of


def copy(tiny_weights, tmp_path):
    shutil.copy(tiny_weights, tmp_path / "w.pt")
    shutil.copy(tiny_weights.with_suffix(".json"), tmp_path / "w.json")
    return tmp_path / "w.pt"


def test_loads_with_config_and_checksum(tiny_weights):
    loaded = load_model(tiny_weights, "cpu")
    assert loaded.config.unet_channels == (4, 8, 8, 8)
    assert not loaded.model.training
    card = json.loads(tiny_weights.with_suffix(".json").read_text())
    assert card["sha256"] == sha256_of(tiny_weights)


def test_damaged_weights_are_refused(tiny_weights, tmp_path):
    path = copy(tiny_weights, tmp_path)
    with open(path, "r+b") as handle:
        handle.seek(200)
        handle.write(b"\xff\xfe")
    with pytest.raises(TranscribeError, match="does not match"):
        load_model(path)


def test_missing_config_and_missing_file(tiny_weights, tmp_path):
    path = copy(tiny_weights, tmp_path)
    path.with_suffix(".json").unlink()
    with pytest.raises(TranscribeError, match="config .* is missing"):
        load_model(path)
    with pytest.raises(TranscribeError, match="no such weights file"):
        load_model(tmp_path / "none.pt")


def test_config_that_does_not_fit_the_weights(tiny_weights, tmp_path):
    path = copy(tiny_weights, tmp_path)
    card = json.loads(path.with_suffix(".json").read_text())
    card["model"]["lstm_hidden"] = 32
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(TranscribeError, match="do not fit"):
        load_model(path)


def test_weights_are_a_plain_state_dict(tiny_weights):
    state = torch.load(tiny_weights, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def with_checksum(path):
    card = json.loads(path.with_suffix(".json").read_text())
    card["sha256"] = sha256_of(path)
    path.with_suffix(".json").write_text(json.dumps(card))


@pytest.mark.parametrize("content", ["module", "tensor", "random", "empty", "list"])
def test_files_that_are_not_a_state_dict_are_refused_in_one_line(tiny_weights, tmp_path,
                                                                   content):
    path = copy(tiny_weights, tmp_path)
    if content == "module":
        torch.save(torch.nn.Linear(2, 2), path)
    elif content == "tensor":
        torch.save(torch.zeros(3), path)
    elif content == "random":
        path.write_bytes(bytes(range(256)) * 40)
    elif content == "empty":
        path.write_bytes(b"")
    else:
        torch.save([torch.zeros(3)], path)
    with_checksum(path)  # the checksum matches: the file itself is wrong
    with pytest.raises(TranscribeError, match="not a weights file|not a state_dict") as error:
        load_model(path, "cpu")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("card, message", [
    ([1, 2], "JSON object"),
    ({"model": "mel"}, "'model' must be a JSON object"),
    ({"model": {"unet_channels": "wide"}}, "bad model config"),
    ({"model": {"lstm_hidden": 12.5}}, "lstm_hidden must be a positive integer"),
    ({"model": {"reconstruction": "yes"}}, "reconstruction must be true or false"),
    ({"model": {"spectrogram": "cqt"}}, "above Nyquist"),
    ({"decoding": {"onset_threshold": "high"}}, "onset_threshold must be a number"),
    ({"decoding": {"frame_threshold": 2}}, "probability"),
    ({"decoding": {"loudness": 1}}, "bad decoding section"),
])
def test_malformed_cards_are_refused_in_one_line(tiny_weights, tmp_path, card, message):
    path = copy(tiny_weights, tmp_path)
    good = json.loads(path.with_suffix(".json").read_text())
    if isinstance(card, dict):
        for section, values in card.items():
            good[section] = {**good.get(section, {}), **values} if isinstance(values, dict) \
                else values
        card = good
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(TranscribeError, match=message):
        load_model(path, "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_device_this_machine_lacks_is_our_error(tiny_weights):
    with pytest.raises(TranscribeError, match="no CUDA GPU"):
        load_model(tiny_weights, "cuda")
    with pytest.raises(TranscribeError, match="unknown device"):
        load_model(tiny_weights, "tpu")
