"""Clipped crests redrawn: closer to the wave before clipping, the same streamed as whole."""

import numpy as np

from transcribe.declip import CAP, CONTEXT, Declipper, plateaus, redraw

FULL = (-1.0, 1.0)  # the values a wave clipped at full scale is held at


def chord(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.6 * np.sin(2 * np.pi * 220 * t) + 0.3 * np.sin(2 * np.pi * 331 * t + 1)
            + 0.1 * np.sin(2 * np.pi * 523 * t + 2))


def test_redrawn_crests_come_back_near_the_wave_before_clipping():
    rate = 44100
    wave = 1.5 * chord(1.0, rate)
    clipped = np.clip(wave, -1, 1).astype(np.float32)[:, None]
    held = np.abs(clipped[:, 0]) >= 1
    assert 0.1 < held.mean() < 0.4
    redrawn = redraw(clipped, FULL, rate)[:, 0]
    before = np.sqrt(np.mean((clipped[held, 0] - wave[held]) ** 2))
    after = np.sqrt(np.mean((redrawn[held] - wave[held]) ** 2))
    assert after < before / 4, (before, after)
    # Never inside the level it was held at, never past CAP times it; the rest untouched.
    assert np.all(np.abs(redrawn[held]) >= 1) and np.all(np.abs(redrawn) <= CAP)
    assert np.array_equal(redrawn[~held], clipped[~held, 0])


def test_only_runs_held_where_clipping_holds_the_wave_are_redrawn():
    n = np.arange(200)
    wave = np.zeros(200, np.float32)
    for centre, amplitude in ((20.5, 1.02), (62, -1.1)):  # crests clipped over 2 and 5
        near = np.abs(n - centre) < 8
        wave[near] = amplitude * np.cos(2 * np.pi * (n[near] - centre) / 30)
    wave = np.clip(wave, -1, 1)
    wave[40:43] = 0.5  # a run at another value
    wave[199 - 2:] = 1.0  # at the very end, without samples after it to fit to
    wave[100:190] = 1.0  # longer than the longest run redrawn (a fault)
    starts, ends = plateaus(wave, np.float32(FULL), max_run=50)
    assert list(zip(starts, ends)) == [(20, 22), (60, 65), (197, 200)]
    out = redraw(wave[:, None], FULL, max_run=50)[:, 0]
    changed = np.flatnonzero(out != wave)
    assert set(changed) <= set(range(20, 22)) | set(range(60, 65))
    assert np.all(out[20:22] >= 1.0) and out[20:22].max() > 1.005  # 1.019 before clipping
    assert np.all(out[60:65] <= -1.0) and out[62] < -1.05  # -1.1 before clipping
    # A NaN beside a run is not fitted to, and no NaN is drawn.
    wave[59] = np.nan
    assert np.isfinite(redraw(wave[:, None], FULL, 50)[60:65]).all()


def test_streamed_in_any_blocks_it_redraws_as_the_whole():
    """Runs that a block ends in, or begins with, are held back until their right side
    comes: the output is the whole-array computation, sample for sample."""
    rate = 16000
    stereo = np.clip(np.stack([1.4 * chord(2.0, rate), -1.7 * chord(2.0, rate)], axis=1),
                     -1, 1).astype(np.float32)
    whole = redraw(stereo, FULL, 800)
    rng = np.random.default_rng(0)
    for sizes in ([1] * 50 + [len(stereo)], rng.integers(1, 3000, 100),
                  [CONTEXT] * (len(stereo) // CONTEXT + 1)):
        declipper, pieces, position = Declipper(FULL, rate), [], 0
        for size in sizes:
            block = stereo[position:position + size]
            position += len(block)
            pieces.append(declipper(block, last=position >= len(stereo)))
            if position >= len(stereo):
                break
        streamed = np.concatenate(pieces)
        assert streamed.shape == stereo.shape
        assert np.array_equal(streamed, whole)
    # The last block may hold nothing (a reader's last read): what is held back comes out.
    declipper = Declipper(FULL, rate)
    streamed = np.concatenate([declipper(stereo, last=False),
                               declipper(stereo[:0], last=True)])
    assert np.array_equal(streamed, whole)
    # An array's one channel, (samples,), comes back as it went in.
    mono = Declipper(FULL, rate)(stereo[:, 0], last=True)
    assert mono.shape == (len(stereo),) and np.array_equal(mono, whole[:, 0])
