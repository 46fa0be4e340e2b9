"""Shared fixtures: a tiny randomly initialised model (mechanics only, never quality)
and piano audio rendered from MIDI that the tests write."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import soundfile as sf
import torch

from transcribe import constants as C


def scale_midi(pitches=(60, 62, 64, 65, 67, 69, 71, 72), step_s=0.5, length_s=0.4,
               velocity=90, start_s=0.25) -> pretty_midi.PrettyMIDI:
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    for i, pitch in enumerate(pitches):
        onset = start_s + i * step_s
        piano.notes.append(pretty_midi.Note(velocity, pitch, onset, onset + length_s))
    midi.instruments.append(piano)
    return midi


def tone(frequency_hz: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency_hz * t)).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """Randomly initialised small model with reconstruction, saved as weights + card."""
    from transcribe.model import ModelConfig, UNetTranscriber
    from transcribe.weights import save_weights
    torch.manual_seed(0)
    model = UNetTranscriber(ModelConfig(unet_channels=(4, 8, 8, 8), lstm_hidden=16,
                                        reconstruction=True))
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    save_weights(model, path, {"note": "random initialisation, for mechanics tests only"})
    return path


@pytest.fixture(scope="session")
def tiny_model(tiny_weights):
    from transcribe.weights import load_model
    return load_model(tiny_weights, "cpu")


@pytest.fixture(scope="session")
def piano_wav(tmp_path_factory) -> Path:
    """A C-major scale rendered with FluidR3 at 44.1 kHz stereo."""
    from transcribe.training import synth
    audio = synth.render(scale_midi(), synth.find_soundfont("FluidR3_GM.sf2"), sample_rate=44100)
    path = tmp_path_factory.mktemp("audio") / "scale.wav"
    sf.write(path, np.stack([audio, 0.5 * audio], axis=1), 44100)
    return path


@pytest.fixture()
def silence_wav(tmp_path) -> Path:
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(C.SAMPLE_RATE * 2, np.float32), C.SAMPLE_RATE)
    return path


@pytest.fixture
def ctrl_c():
    """A function that presses Ctrl-C, as a terminal would (KeyboardInterrupt at the next
    step), whatever the shell that started the tests did with SIGINT."""
    import signal
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield lambda: signal.raise_signal(signal.SIGINT)
    signal.signal(signal.SIGINT, before)


def cut_file(tmp_path, name, seconds=20.0, keep=0.6, **write):
    """A noise file of ``seconds`` cut after the fraction ``keep`` of its bytes."""
    whole = tmp_path / f"whole-{name}"
    rng = np.random.default_rng(1)
    sf.write(whole, rng.standard_normal(int(C.SAMPLE_RATE * seconds)).astype(np.float32) * 0.1,
             C.SAMPLE_RATE, **write)
    data = whole.read_bytes()
    cut = tmp_path / name
    cut.write_bytes(data[: int(len(data) * keep)])
    return cut
