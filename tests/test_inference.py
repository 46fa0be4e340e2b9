import numpy as np
import pytest

from transcribe import constants as C
from transcribe.errors import TranscribeError
from transcribe.inference import pick_device, run


def blocks(audio, size):
    for start in range(0, len(audio), size):
        yield audio[start:start + size]


def test_output_does_not_depend_on_chunk_or_block_size(tiny_model):
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(C.SAMPLE_RATE * 30) * 0.1).astype(np.float32)
    m = tiny_model
    whole = run(m.model, m.frontend, blocks(audio, len(audio)), chunk_frames=1024,
                context_frames=96, batch_chunks=1, keep_spectrograms=True)
    assert whole.frame.shape == (len(audio) // C.HOP_LENGTH + 1, C.N_KEYS)
    for chunk_frames, block in ((64, 7001), (160, 16000), (640, 50000)):
        out = run(m.model, m.frontend, blocks(audio, block), chunk_frames=chunk_frames,
                  context_frames=96, batch_chunks=3, keep_spectrograms=True)
        for name in ("frame", "onset", "offset", "velocity", "spectrogram", "reconstruction"):
            np.testing.assert_allclose(getattr(out, name).astype(np.float32),
                                       getattr(whole, name).astype(np.float32), atol=2e-3)


def test_short_and_empty_streams(tiny_model):
    m = tiny_model
    short = run(m.model, m.frontend, [np.zeros(1600, np.float32)])
    assert short.frame.shape == (1600 // C.HOP_LENGTH + 1, C.N_KEYS)
    empty = run(m.model, m.frontend, [])
    assert empty.frame.shape == (1, C.N_KEYS)


def test_chunk_sizes_must_fit_the_unet_grid(tiny_model):
    with pytest.raises(ValueError, match="multiples"):
        run(tiny_model.model, tiny_model.frontend, [np.zeros(100, np.float32)], chunk_frames=100)


def test_device_choice():
    import torch
    assert pick_device("cpu").type == "cpu"
    mps = getattr(torch.backends, "mps", None)
    expected = "cuda" if torch.cuda.is_available() else \
        "mps" if mps is not None and mps.is_available() else "cpu"
    assert pick_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(TranscribeError, match="no CUDA"):
            pick_device("cuda")
    if expected != "mps":
        with pytest.raises(TranscribeError, match="no Apple MPS"):
            pick_device("mps")


def test_threads_follow_the_cores_this_process_may_use():
    import subprocess
    import sys
    # Pinned to one core, the default is one thread, whatever the machine has.
    code = ("import os; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); "
            "from transcribe.inference import default_threads, set_threads, usable_cores; "
            "print(usable_cores(), default_threads(), set_threads(), set_threads(3))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1", "1", "3"]


def test_an_array_in_either_layout_transcribes_as_its_file_does(tiny_model, piano_wav):
    import soundfile as sf

    from transcribe import transcribe
    from_file = transcribe(piano_wav, tiny_model)
    samples, rate = sf.read(piano_wav, dtype="int16")  # (samples, 2) integer PCM
    for array in (samples, samples.T, samples.astype(np.float32) / 32768):
        result = transcribe(array, tiny_model, sample_rate=rate)
        np.testing.assert_allclose(result.notes, from_file.notes)
        assert result.duration_s == pytest.approx(from_file.duration_s)
    with pytest.raises(TranscribeError, match="sample_rate"):
        transcribe(samples, tiny_model, sample_rate=0)


def test_recurrent_layers_run_on_one_thread_and_the_rest_on_all(tiny_weights):
    import torch

    from transcribe.weights import load_model
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        loaded = load_model(tiny_weights, "cpu")
        seen = []
        recurrent = [m for m in loaded.model.modules() if isinstance(m, torch.nn.RNNBase)]
        assert recurrent
        for module in recurrent:
            module.register_forward_pre_hook(lambda *_: seen.append(torch.get_num_threads()))
        spec = torch.rand(1, 64, loaded.config.n_bins)
        with torch.inference_mode():
            out = loaded.model(spec)
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2  # restored for the convolutions
        plain = load_model(tiny_weights, "cpu")  # same weights; compare against no hooks
        for module in plain.model.modules():
            module._forward_pre_hooks.clear()
            module._forward_hooks.clear()
        with torch.inference_mode():
            reference = plain.model(spec)
        for name in reference:
            torch.testing.assert_close(out[name], reference[name])
    finally:
        torch.set_num_threads(before)
