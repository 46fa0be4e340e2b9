"""The late-reverberation suppressor behind ``--dereverb``."""

import numpy as np
import pytest

from transcribe import constants as C
from transcribe.dereverb import LateReverbSuppressor, dereverberate

RATE = C.SAMPLE_RATE


def reverberant_burst(rt60_s: float = 1.2, seed: int = 0) -> tuple[np.ndarray, int]:
    """A 0.5 s tone burst in a room of ``rt60_s``: the burst, then the room's tail only.
    Returns (audio, the sample where the burst stops)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(0.5 * RATE)) / RATE
    burst = np.sin(2 * np.pi * 440 * t) * np.hanning(len(t)) ** 0.1
    tail_t = np.arange(int(rt60_s * RATE)) / RATE
    room = rng.standard_normal(len(tail_t)) * np.exp(-6.9 * tail_t / rt60_s) * 0.05
    room[0] = 1.0
    audio = np.convolve(np.r_[burst, np.zeros(2 * RATE)], room)[:int(2.5 * RATE)]
    return (0.5 * audio / np.abs(audio).max()).astype(np.float32), len(burst)


def test_the_output_is_as_long_as_the_input_whatever_the_blocks():
    audio, _ = reverberant_burst()
    whole = np.concatenate(list(dereverberate([audio])))
    assert len(whole) == len(audio)
    for sizes in (1000, 4096, 7):
        blocks = [audio[i:i + sizes] for i in range(0, len(audio), sizes)]
        np.testing.assert_array_equal(np.concatenate(list(dereverberate(blocks))), whole)


def test_without_a_late_estimate_the_audio_comes_back():
    audio, _ = reverberant_burst()
    # A room that dies at once: nothing is late, every bin keeps all its power.
    out = np.concatenate(list(dereverberate([audio], rt60_s=1e-4)))
    np.testing.assert_allclose(out, audio, atol=1e-5)


def test_the_tail_after_a_note_is_suppressed_and_the_note_kept():
    # A room as long as the one assumed (RT60 0.8 s): its tail loses 8 dB, the note 0.8.
    audio, stop = reverberant_burst(0.8)
    out = np.concatenate(list(dereverberate([audio])))

    def db(x, start, end):
        return 10 * np.log10(np.mean(x[start:end] ** 2) + 1e-20)
    note, tail = (RATE // 10, stop), (stop + RATE // 5, stop + RATE)
    assert abs(db(out, *note) - db(audio, *note)) < 2  # the note itself: within 2 dB
    assert db(out, *tail) < db(audio, *tail) - 6  # the room's tail: at least 6 dB down


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="positive"):
        LateReverbSuppressor(RATE, rt60_s=0)
