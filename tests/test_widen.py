"""Widening a trained network: same outputs to start, new units that learn."""

import pytest
import torch

from transcribe.model import ModelConfig, UNetTranscriber
from transcribe.training.widen import config_of_state, widen, widened_state_dict


def trained_like(config: ModelConfig) -> UNetTranscriber:
    """A model whose BatchNorm statistics are not the initial zeros and ones."""
    model = UNetTranscriber(config)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(3, 24, config.n_bins))
    return model.eval()


@pytest.mark.parametrize("reconstruction, heads", [
    (False, {}), (True, {}),
    # The shipped weights' heads: a recurrent pedal head and a key-down head.
    (True, {"pedal": True, "pedal_hidden": 3, "key_release": True}),
    (False, {"pedal": True, "pedal_hidden": 0})])
def test_widened_model_computes_what_the_narrow_one_did(reconstruction, heads):
    torch.manual_seed(0)
    narrow_config = ModelConfig(n_bins=20, unet_channels=(2, 4, 6), lstm_hidden=5,
                                reconstruction=reconstruction, **heads)
    narrow = trained_like(narrow_config)
    assert config_of_state(narrow.state_dict(), narrow_config) == narrow_config
    wide = UNetTranscriber(ModelConfig(n_bins=20, unet_channels=(3, 7, 8), lstm_hidden=9,
                                       reconstruction=reconstruction, **heads))
    wide.load_state_dict(widened_state_dict(narrow.state_dict(), wide))
    wide.eval()
    spec = torch.rand(2, 40, 20)
    with torch.no_grad():
        expected, got = narrow(spec), wide(spec)
    assert set(expected) == set(got)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-5, rtol=1e-5)
    # A fresh wide model computes something else: the widening is what made them equal.
    with torch.no_grad():
        other = UNetTranscriber(wide.config).eval()(spec)
    assert not torch.allclose(other["frame"], expected["frame"], atol=1e-3)


def test_new_units_get_gradients():
    """Weights set to zero (old units reading new ones) must still learn."""
    torch.manual_seed(1)
    narrow = trained_like(ModelConfig(n_bins=16, unet_channels=(2, 4), lstm_hidden=4,
                                      reconstruction=False))
    wide = UNetTranscriber(ModelConfig(n_bins=16, unet_channels=(4, 4), lstm_hidden=6,
                                       reconstruction=False))
    widen(wide, narrow)
    wide.train()
    wide(torch.rand(2, 32, 16))["frame"].sigmoid().sum().backward()
    hh = wide.transcriber.lstm.weight_hh_l0
    assert torch.count_nonzero(hh.detach()[:4, 4:]) == 0  # old input gates ignore new units
    assert torch.count_nonzero(hh.grad[:4, 4:]) > 0
    first = wide.transcriber.unet.down_blocks[0].body[3]
    assert torch.count_nonzero(first.weight.detach()[:2, 2:]) == 0
    assert torch.count_nonzero(first.weight.grad[:2, 2:]) > 0


def test_widening_keeps_the_heads():
    """A head of the narrow weights cannot be dropped, nor the pedal head's width changed."""
    narrow = UNetTranscriber(ModelConfig(n_bins=16, unet_channels=(2, 4), lstm_hidden=4,
                                         pedal=True, pedal_hidden=3, key_release=True))
    for heads in ({"pedal": True, "pedal_hidden": 3}, {"key_release": True},
                  {"pedal": True, "pedal_hidden": 5, "key_release": True}):
        wide = UNetTranscriber(ModelConfig(n_bins=16, unet_channels=(4, 4), lstm_hidden=6,
                                           **heads))
        with pytest.raises(ValueError, match="heads must be kept"):
            widen(wide, narrow)


def test_narrowing_is_refused():
    wide = UNetTranscriber(ModelConfig(n_bins=16, unet_channels=(4, 4), lstm_hidden=6))
    narrow = UNetTranscriber(ModelConfig(n_bins=16, unet_channels=(2, 4), lstm_hidden=8))
    with pytest.raises(ValueError, match="only U-net channels and LSTM width may grow"):
        widen(narrow, wide)
