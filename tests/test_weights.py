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
