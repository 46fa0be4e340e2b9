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


def test_busy_cores_ignore_a_moment_and_see_a_busy_process(monkeypatch):
    import io
    import subprocess
    import sys
    import time

    from transcribe import inference
    # A process kept busy is runnable at every read.
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        assert inference.busy_cores() >= 1
    finally:
        spinner.kill()
        spinner.wait()
    # Two others runnable at two reads of five (a kernel thread waking): none busy.
    reads = iter(["0.9 0.8 0.7 3/80 1", "0.9 0.8 0.7 1/80 1"] * 2 + ["0.9 0.8 0.7 1/80 1"])
    monkeypatch.setattr(inference, "open", lambda *_: io.StringIO(next(reads)), raising=False)
    assert inference.busy_cores() == 0
    # Another at three reads of five (a run that waits for the disk now and then): busy.
    reads = iter(["0.9 0.8 0.7 2/80 1"] * 3 + ["0.9 0.8 0.7 1/80 1"] * 2)
    assert inference.busy_cores() == 1


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
    # librosa's habit, transcribe(y, sr): the rate was taken for the model (AttributeError:
    # 'int' object has no attribute 'card').
    for rate_as_model in (rate, float(rate), np.int64(rate)):
        with pytest.raises(TranscribeError, match=f"{rate} was given as the model; give a "
                                                  f"rate as sample_rate={rate}$"):
            transcribe(samples, rate_as_model)
    with pytest.raises(TranscribeError, match=r"the model is load_model\(\)'s .* not a list"):
        transcribe(samples, [tiny_model], sample_rate=rate)
    # A path carries its own rate: one that disagrees is a mistake, one that agrees is fine.
    with pytest.raises(TranscribeError, match=f"the file's own rate \\({rate} Hz\\)"):
        transcribe(piano_wav, tiny_model, sample_rate=rate // 2)
    np.testing.assert_allclose(transcribe(piano_wav, tiny_model, sample_rate=rate).notes,
                               from_file.notes)


def test_the_package_lists_its_api_without_loading_torch():
    """``dir(transcribe)`` (a notebook's completion) listed only ``version``: the API's
    names load on first use."""
    import subprocess
    import sys
    listed = subprocess.run(
        [sys.executable, "-c", "import sys, transcribe; names = dir(transcribe); "
         "print(sorted(set(transcribe.__all__) - set(names)), 'torch' in sys.modules)"],
        capture_output=True, text=True, check=True).stdout
    assert listed.split() == ["[]", "False"]


def test_calls_given_no_model_load_the_shipped_weights_once(monkeypatch, tiny_model,
                                                            piano_wav):
    """Each call given no model loaded the shipped weights anew: 0.08 s, a third of a
    short file's transcription, in a notebook's loop over files."""
    import threading

    from transcribe import transcribe, transcriber, weights
    loads = []

    def load_model(weights=None, device="cpu"):
        loads.append((weights, str(device)))
        return tiny_model

    monkeypatch.setattr(weights, "load_model", load_model)
    monkeypatch.setattr(transcriber, "_SHIPPED", {}, raising=False)
    first = transcribe(piano_wav, device="cpu")
    np.testing.assert_array_equal(transcribe(piano_wav, device="cpu").notes, first.notes)
    other = threading.Thread(target=transcribe, args=(piano_wav,), kwargs={"device": "cpu"})
    other.start()
    other.join()
    transcribe(piano_wav, tiny_model)  # a model given is used as it is
    assert loads == [(None, "cpu")]  # once, for every thread


def test_a_model_may_be_given_as_its_weights_path(tiny_weights, tiny_model, piano_wav):
    from transcribe import transcribe
    by_path = transcribe(piano_wav, tiny_weights)
    np.testing.assert_array_equal(by_path.notes, transcribe(piano_wav, tiny_model).notes)
    assert by_path.provenance["weights_sha256"] == tiny_model.card["sha256"]
    with pytest.raises(TranscribeError, match="no such weights file"):
        transcribe(piano_wav, str(tiny_weights) + ".missing")


def test_an_empty_path_is_refused_not_taken_for_the_current_folder(tiny_model, piano_wav,
                                                                  tmp_path, monkeypatch):
    """``Path("")`` is the current folder: an empty audio path said ".: is a folder", and an
    empty output raised "exists" for the folder (an unset variable in a notebook)."""
    from transcribe import transcribe
    from transcribe.transcriber import transcribe_to_file
    monkeypatch.chdir(tmp_path)
    for call, what in ((lambda: transcribe(""), "audio"),
                       (lambda: transcribe(piano_wav, ""), "weights"),
                       (lambda: transcribe_to_file(piano_wav, "", tiny_model), "output")):
        with pytest.raises(TranscribeError, match=f"^an empty path was given as the {what}; "):
            call()
    assert list(tmp_path.iterdir()) == []


def test_an_array_whose_channels_cancel_is_warned_of_by_its_columns(tiny_model):
    """The hint for a file names an ffmpeg command; an array has no file: the hint is a
    column of it (it raised TypeError, building the command from no path, in session 29)."""
    from transcribe import transcribe
    left = (np.random.default_rng(0).standard_normal(2 * C.SAMPLE_RATE) * 0.1).astype(np.float32)
    result = transcribe(np.stack([left, -left], axis=1), tiny_model, sample_rate=C.SAMPLE_RATE)
    assert any(warning.startswith("its channels cancel when mixed to mono") and
               warning.endswith("transcribe one channel, e.g. audio[:, 0]")
               for warning in result.warnings), result.warnings


def test_a_result_shows_itself_in_a_line(tiny_model, piano_wav):
    """In a notebook a result printed every note and every posteriorgram's numbers (the
    dataclass's own repr); now the facts a look wants, in one line."""
    from transcribe import transcribe
    from transcribe.transcriber import Transcription
    result = transcribe(piano_wav, tiny_model)
    shown = repr(result)
    assert shown.startswith(f"Transcription({str(piano_wav)!r}, {len(result.notes)} note")
    assert f", {result.duration_s:.1f} s" in shown and "\n" not in shown and "array" not in shown
    bare = Transcription(np.array([[0.0, 1.0, 60, 80]]), None, 2.0, pedal=np.zeros((1, 2)),
                         warnings=["cut short"])
    assert repr(bare) == ("Transcription(1 note, 2.0 s, pedal down 1 time, posteriorgrams "
                          "not kept, warnings=['cut short'])")


def _plain_copy(loaded):
    """The same network without ``threaded_recurrence``: the layers' own forward."""
    import copy

    import torch
    plain = copy.deepcopy(loaded.model)
    for module in plain.modules():
        if isinstance(module, torch.nn.RNNBase):
            del module.forward
            module.__dict__.pop("directions", None)
    return plain


@pytest.mark.parametrize("threads", [1, 2])
def test_recurrent_directions_run_one_thread_each_and_at_once(tiny_weights, threads):
    import threading

    import torch

    from transcribe.weights import load_model
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        loaded = load_model(tiny_weights, "cpu")
        recurrent = [m for m in loaded.model.modules() if isinstance(m, torch.nn.RNNBase)]
        assert len(recurrent) >= 2  # the transcriber's BiLSTM and the reconstructor's
        seen, calls = [], []
        for module in recurrent:
            module.register_forward_pre_hook(lambda *_: calls.append(1))
            for direction in module.__dict__["directions"]:
                direction.register_forward_pre_hook(
                    lambda *_: seen.append((threading.get_ident(), torch.get_num_threads())))
        spec = torch.rand(1, 64, loaded.config.n_bins)
        with torch.inference_mode():
            out = loaded.model(spec)
        assert torch.get_num_threads() == threads  # restored for the convolutions
        if threads == 1:
            assert seen == []  # one thread: the layers' own forward, nothing at once
        else:
            assert len(seen) == 2 * len(calls) >= 2 * len(recurrent)
            assert {count for _, count in seen} == {1}
            assert {ident for ident, _ in seen} - {threading.get_ident()}  # a second thread
        with torch.inference_mode():
            reference = _plain_copy(loaded)(spec)
        for name in reference:
            assert torch.equal(out[name], reference[name]), name
        assert loaded.model.state_dict().keys() == _plain_copy(loaded).state_dict().keys()
    finally:
        torch.set_num_threads(before)


def test_threaded_recurrence_trains_through_the_layers_own_parameters(tiny_weights):
    """With gradients on, the layers run as before and train their own parameters."""
    import torch

    from transcribe.weights import load_model
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        loaded = load_model(tiny_weights, "cpu")
        lstm = loaded.model.transcriber.lstm
        spec = torch.rand(1, 64, loaded.config.n_bins)
        loaded.model(spec)["onset"].sum().backward()
        assert lstm.weight_hh_l0_reverse.grad is not None
        assert lstm.weight_hh_l0_reverse.grad.abs().sum() > 0
        # Weights changed in place (as load_state_dict does) are the ones the directions use.
        with torch.no_grad():
            lstm.weight_hh_l0_reverse.mul_(0.5)
        with torch.inference_mode():
            out = loaded.model(spec)
            reference = _plain_copy(loaded)(spec)
        assert torch.equal(out["onset"], reference["onset"])
    finally:
        torch.set_num_threads(before)
