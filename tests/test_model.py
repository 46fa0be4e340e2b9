import pytest
import torch

from transcribe import constants as C
from transcribe.model import HEADS, ConvBlock, ModelConfig, UNetTranscriber, upsample


@pytest.mark.parametrize("reconstruction", [False, True])
@pytest.mark.parametrize("frames", [1, 37, 64])
def test_outputs_have_the_input_length_for_any_frame_count(reconstruction, frames):
    config = ModelConfig(unet_channels=(4, 8, 8, 8), lstm_hidden=8, reconstruction=reconstruction)
    model = UNetTranscriber(config).eval()
    out = model(torch.rand(2, frames, C.N_MELS))
    for head in HEADS:
        assert out[head].shape == (2, frames, C.N_KEYS)
    assert ("reconstruction" in out) == reconstruction
    if reconstruction:
        assert out["reconstruction"].shape == (2, frames, C.N_MELS)
        assert out["frame_1"].shape == (2, frames, C.N_KEYS)
        assert 0 <= out["reconstruction"].min() and out["reconstruction"].max() <= 1


def test_config_round_trips_and_rejects_unknown_keys(tmp_path):
    config = ModelConfig(unet_channels=(8, 16, 32, 64), lstm_hidden=64, reconstruction=False)
    path = tmp_path / "c.json"
    path.write_text(config.to_json())
    assert ModelConfig.load(path) == config
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({"channels": 3})


def test_seed_size_matches_the_paper_parameter_count():
    # Cheuk et al. 2020's sizes: Mel with reconstruction 3.2 M parameters, the transcriber alone 1.7 M
    # (ours adds three small heads).
    full = sum(p.numel() for p in UNetTranscriber(ModelConfig()).parameters())
    alone = sum(p.numel() for p in UNetTranscriber(ModelConfig(reconstruction=False)).parameters())
    assert 2.5e6 < full < 3.6e6
    assert 1.5e6 < alone < 2.0e6


def test_pedal_head_and_the_fast_pass():
    config = ModelConfig(unet_channels=(4, 8, 8, 8), lstm_hidden=8, reconstruction=True, pedal=True)
    model = UNetTranscriber(config).eval()
    spec = torch.rand(2, 40, C.N_MELS)
    full = model(spec)
    assert full["pedal"].shape == (2, 40, 3) and full["pedal_1"].shape == (2, 40, 3)
    fast = model(spec, full=False)
    assert "reconstruction" not in fast and "frame_1" not in fast
    # The fast pass is the full pass's first pass.
    torch.testing.assert_close(fast["frame"], full["frame_1"])
    torch.testing.assert_close(fast["pedal"], full["pedal_1"])


def test_a_key_down_head_beside_the_pedal_in_both_passes():
    config = ModelConfig(unet_channels=(4, 8, 8, 8), lstm_hidden=8, reconstruction=True,
                         pedal=True, key_release=True)
    out = UNetTranscriber(config).eval()(torch.rand(2, 40, C.N_MELS))
    assert out["key"].shape == out["key_1"].shape == (2, 40, C.N_KEYS)
    # Weights without the head (the candidate's) load into it, all but the new layer.
    older = UNetTranscriber(ModelConfig(unet_channels=(4, 8, 8, 8), lstm_hidden=8,
                                        reconstruction=True, pedal=True))
    missing = UNetTranscriber(config).load_state_dict(older.state_dict(), strict=False)
    assert sorted(missing.missing_keys) == ["transcriber.key.bias", "transcriber.key.weight"]


def test_a_pedal_head_with_a_recurrent_layer_of_its_own():
    config = ModelConfig(unet_channels=(4, 8, 8, 8), lstm_hidden=8, reconstruction=True,
                         pedal=True, pedal_hidden=6)
    model = UNetTranscriber(config).eval()
    spec = torch.rand(2, 40, C.N_MELS)
    full, fast = model(spec), model(spec, full=False)
    assert full["pedal"].shape == (2, 40, 3)
    torch.testing.assert_close(fast["pedal"], full["pedal_1"])
    names = {name for name in model.state_dict() if name.startswith("transcriber.pedal.")}
    assert {"transcriber.pedal.rnn.weight_ih_l0", "transcriber.pedal.out.weight"} <= names
    with pytest.raises(ValueError, match="pedal_hidden must be a positive integer"):
        ModelConfig.from_dict({"pedal": True, "pedal_hidden": -2})


def test_a_config_without_the_new_parts_means_no_pedal():
    config = ModelConfig.from_dict({"unet_channels": [4, 8, 8, 8], "lstm_hidden": 8,
                                    "reconstruction": False})
    assert config.pedal is False and config.key_release is False
    out = UNetTranscriber(config)(torch.rand(1, 16, C.N_MELS))
    assert "pedal" not in out and "key" not in out
    with pytest.raises(ValueError, match="pedal must be true or false"):
        ModelConfig.from_dict({"pedal": 1})


def test_each_pass_normalises_with_its_own_statistics():
    from transcribe.model import PassNorm
    config = ModelConfig(unet_channels=(4, 8, 8, 8), lstm_hidden=8, reconstruction=True)
    model = UNetTranscriber(config)
    norms = [m for m in model.transcriber.modules() if isinstance(m, PassNorm)]
    assert norms and not any(isinstance(m, PassNorm) for m in model.reconstructor.modules())
    # Weights saved before the second pass had statistics of its own load with the first's.
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("_2")}
    state["transcriber.unet.down_blocks.0.body.1.running_mean"] = torch.full((4,), 0.5)
    model.load_state_dict(state)
    assert torch.equal(norms[0].running_mean_2, torch.full((4,), 0.5))
    model.eval()
    spec = torch.rand(1, 32, C.N_MELS)
    with torch.no_grad():
        before = model(spec)
        norms[0].running_mean_2 += 1.0  # the second pass's statistics alone
        after = model(spec)
    torch.testing.assert_close(after["frame_1"], before["frame_1"])  # the first pass: unchanged
    assert not torch.allclose(after["frame"], before["frame"])
    with torch.no_grad():
        fast = model(spec, full=False, reconstruct=True)
    assert "frame_1" not in fast and fast["reconstruction"].shape == (1, 32, C.N_MELS)
    torch.testing.assert_close(fast["reconstruction"], after["reconstruction"])


def test_threads_sharing_a_model_run_each_pass_with_its_own_norms():
    """The pass whose statistics the norms used was set on the modules: a thread's first
    pass, started while another thread sharing the model (a web app's pool, with one
    loaded model) ran its second, switched that second pass to the first pass's
    statistics, and its full transcription came out wrong."""
    import threading

    import transcribe.model as M
    torch.manual_seed(0)
    model = UNetTranscriber(ModelConfig(unet_channels=(4, 8, 8, 8), lstm_hidden=8,
                                        reconstruction=True)).eval()
    for norm in model.modules():
        if isinstance(norm, M.PassNorm):  # two passes' statistics that differ, as trained
            norm.running_mean_2.normal_()
            norm.running_var_2.uniform_(0.5, 2.0)
    spec = torch.randn(1, 32, C.N_MELS)
    with torch.no_grad():
        full_alone, fast_alone = model(spec), model(spec, full=False)
        calls, other = [], {}

        def other_thread():
            with torch.no_grad():
                other["fast"] = model(spec, full=False)

        def at_each_pass(module, inputs):
            calls.append(1)
            if len(calls) == 2:  # this thread's second pass begins: another's first runs
                thread = threading.Thread(target=other_thread)
                thread.start()
                thread.join()

        hook = model.transcriber.register_forward_pre_hook(at_each_pass)
        try:
            shared = model(spec)
        finally:
            hook.remove()
    assert len(calls) == 3
    for name in ("frame", "onset", "frame_1"):
        torch.testing.assert_close(shared[name], full_alone[name], rtol=0, atol=0)
    torch.testing.assert_close(other["fast"]["frame"], fast_alone["frame"], rtol=0, atol=0)


@pytest.mark.parametrize("norm_class, active_pass", [("Norm", 1), ("PassNorm", 1), ("PassNorm", 2)])
def test_norms_take_a_bfloat16_input_in_float32(norm_class, active_pass):
    """Under bfloat16 autocast the U-nets' norms compute in float32 (the kernels of a
    float32 input), matching a plain BatchNorm fed the same values in float32."""
    import transcribe.model as M
    norm = getattr(M, norm_class)(4)
    reference = torch.nn.BatchNorm2d(4)
    x = torch.randn(2, 4, 6, 5).to(torch.bfloat16)
    with M.active_pass(active_pass):
        out = norm(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, reference(x.float()))
    if active_pass == 2:
        torch.testing.assert_close(norm.running_mean_2, reference.running_mean)
    else:
        torch.testing.assert_close(norm.running_mean, reference.running_mean)
    model = UNetTranscriber(ModelConfig(unet_channels=(4, 8, 8, 8), lstm_hidden=8))
    assert all(isinstance(m, M.Norm) for m in model.modules()
               if isinstance(m, torch.nn.BatchNorm2d))


@pytest.mark.parametrize("size", [(8, 9), (9, 8), (9, 9), (8, 8)])
def test_upsample_equals_the_layer_with_an_output_size(size):
    """The U-net's fast path for odd sizes gives the layer's own values and gradients."""
    torch.manual_seed(0)
    up = torch.nn.ConvTranspose2d(3, 5, 2, stride=2)
    x = torch.randn(2, 3, size[0] // 2, size[1] // 2, requires_grad=True)
    expected = up(x, output_size=size)
    weights = torch.randn_like(expected)
    (expected * weights).sum().backward()
    grads = [t.grad.clone() for t in (x, up.weight, up.bias)]
    for t in (x, up.weight, up.bias):
        t.grad = None
    got = upsample(up, x, torch.Size(size))
    (got * weights).sum().backward()
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected)
    for before, t in zip(grads, (x, up.weight, up.bias)):
        torch.testing.assert_close(t.grad, before)


def test_conv_block_in_place_trains_as_the_out_of_place_sum():
    """ConvBlock adds and activates in place; in training its gradients are the plain sum's."""
    torch.manual_seed(0)
    block = ConvBlock(2, 4).train()
    x = torch.randn(3, 2, 6, 7, requires_grad=True)
    body, skip = block.body, block.skip
    reference = torch.nn.functional.leaky_relu(
        torch.nn.Sequential(body[0], body[1], torch.nn.LeakyReLU(0.01), body[3], body[4])(x)
        + skip(x), 0.01)
    weights = torch.randn_like(reference)
    (reference * weights).sum().backward()
    params = [x, *block.parameters()]
    grads = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    got = block(x)
    (got * weights).sum().backward()
    torch.testing.assert_close(got, reference)
    for before, p in zip(grads, params):
        torch.testing.assert_close(p.grad, before)
