"""A recording's level: its peak, clicks set aside, clipping, channels that cancel, the gain."""

import numpy as np
import pytest
import soundfile as sf

from transcribe import audio, level
from transcribe import constants as C
from conftest import cut_file, tone


def test_the_peak_is_the_mono_mix_of_finite_samples_in_files_and_arrays(tmp_path):
    left = tone(440, 3.0, 44100, amplitude=0.6)
    data = np.stack([left, -0.5 * left], axis=1)  # the mix's peak is 0.15, not 0.6
    data[1000, 0] = np.nan
    path = tmp_path / "stereo.wav"
    sf.write(path, data, 44100, subtype="FLOAT")
    for peaks in (level.peak(path), level.array_peak(audio.as_samples_first(data), 44100),
                  level.array_peak(audio.as_samples_first(data.T), 44100)):
        assert peaks.mix == pytest.approx(0.15, rel=1e-4)
        assert peaks.channels == pytest.approx(0.6, rel=1e-4) and not peaks.cancelled
    # A damaged file: the peak of what decodes (the transcribing pass reports the damage).
    cut = cut_file(tmp_path, "cut.flac")
    read = np.concatenate(list(audio.stream(cut)))
    assert level.peak(cut).mix == pytest.approx(np.abs(read).max(), rel=1e-4)
    # Read in parts by threads: the same peaks, a damaged file's too.
    long = tmp_path / "long.flac"
    ramp = np.linspace(0.1, 1, 70 * 44100)[:, None]  # the loudest sample near the end
    sf.write(long, np.tile(np.stack([left, -0.5 * left], axis=1)[:44100], (70, 1)) * ramp, 44100)
    assert level.peak(long, parts=2) == level.peak(long) and level.peak(long).mix > 0.1
    cut_long = cut_file(tmp_path, "cut-long.flac", seconds=90.0)
    assert level.peak(cut_long, parts=3) == level.peak(cut_long)
    # Channels that cancel: one polarity-inverted, the other a little louder.
    inverted = np.stack([left, -1.05 * left], axis=1)
    assert level.array_peak(inverted, 44100).cancelled
    assert level.array_peak(inverted, 44100).mix == pytest.approx(0.015, rel=1e-3)


def test_the_level_gain_brings_the_peak_to_the_tuned_level_within_its_cap():
    assert level.level_gain(0.08) == pytest.approx(C.INPUT_PEAK / 0.08)
    assert level.level_gain(8.0) == pytest.approx(C.INPUT_PEAK / 8.0)  # a float file past 0 dBFS
    assert level.level_gain(1e-7) == pytest.approx(10 ** (C.MAX_INPUT_GAIN_DB / 20))
    assert level.level_gain(0.0) == 1.0  # silence stays silence
    blocks = list(level.scaled(iter([np.full(4, 0.25, np.float32)]), 2.0))
    assert blocks[0].dtype == np.float32 and np.all(blocks[0] == 0.5)


def test_the_level_sets_aside_a_few_brief_spikes_far_above_the_music(tmp_path):
    rate = 44100
    notes = np.concatenate([tone(220 * (k + 1), 1.0, rate, amplitude=0.05 + 0.01 * k)
                            * np.exp(-3 * np.linspace(0, 1, rate)) for k in range(8)])
    music = level.array_peak(notes, rate)
    assert music.spikes == 0 and music.level == music.mix == pytest.approx(0.12, rel=0.01)
    clicked = notes.copy()
    clicked[rate // 2] = 0.9  # a click of one sample
    clicked[5 * rate:5 * rate + 40] = -0.7  # one of 1 ms
    path = tmp_path / "clicks.flac"
    sf.write(path, clicked, rate, subtype="PCM_24")
    for peaks in (level.array_peak(clicked, rate), level.peak(path), level.peak(path, parts=2)):
        assert peaks.spikes == 2 and peaks.mix == pytest.approx(0.9, rel=1e-4)
        assert peaks.level == pytest.approx(music.level, rel=1e-4)
    # Spikes not far above the music, or too many to be spikes, are the level as they are.
    for where, value in (([rate // 2], 0.3), ([k * rate // 2 for k in range(1, 9, 2)], 0.9)):
        loud = notes.copy()
        loud[where] = value
        peaks = level.array_peak(loud, rate)
        assert peaks.spikes == 0 and peaks.level == peaks.mix == pytest.approx(value)


def test_clipping_is_counted_where_the_wave_is_held_at_full_scale_or_its_own_peak(tmp_path):
    """A recording clipped at its converter (or by a gain) holds its wave at full scale for
    runs of samples, and where it was clipped and then lowered, at its own peak; a float
    file past full scale is loud, not clipped, and a quiet 8-bit file's crests stand on
    its coarse steps without having been clipped."""
    rate = 44100
    wave = tone(110, 2.0, rate, amplitude=1.0)
    plateau = np.array([0.5, 1.0, 1.0, 1.0, 1.0, 0.5, -1.0, -1.0, -1.0, 0.2, 1.0, 1.0, 0.3])
    assert level.clipped_samples(plateau.reshape(-1, 1)) == 7  # a run of 2 is not clipping
    assert level.clipped_samples(np.stack([plateau, 0.5 * plateau], 1)) == 7
    assert level.clipped_samples(0.5 * plateau.reshape(-1, 1)) == 7  # at its own top
    # Held at +-0.5 where the wave reaches +-0.6: not at its top, nor at full scale.
    assert level.clipped_samples(np.r_[0.5 * plateau, 0.6, -0.6].reshape(-1, 1)) == 0
    assert level.clipped_samples(np.r_[0.5 * plateau, 0.6].reshape(-1, 1)) == 3  # bottom
    clipped = np.clip(3 * wave, -1, 1)
    for name, samples, subtype, share in (
            ("clipped.wav", clipped, "PCM_16", (0.6, 0.8)),
            ("clipped-24.flac", clipped, "PCM_24", (0.6, 0.8)),
            ("lowered.wav", 0.5 * clipped, "PCM_16", (0.6, 0.8)),
            ("lowered-20dB.flac", 0.1 * clipped, "PCM_24", (0.6, 0.8)),
            ("lowered-asymmetric.wav", 0.7 * np.clip(3 * wave, -0.8, 0.9), "PCM_16", (0.8, 0.83)),
            ("loud.wav", 3 * wave, "FLOAT", (0, 0)),
            ("full-scale.wav", wave, "PCM_16", (0, 0.001)),
            ("quiet-8-bit.wav", tone(55, 2.0, rate, amplitude=0.02), "PCM_U8", (0, 0))):
        path = tmp_path / name
        sf.write(path, samples, rate, subtype=subtype)
        for peaks in (level.peak(path), level.array_peak(sf.read(path)[0], rate)):
            assert share[0] <= peaks.clipped_share <= share[1], (name, peaks.clipped_share)
            assert peaks.samples == len(samples)
    # A long file read in parts at once judges its runs as one read does.
    long = np.tile(0.5 * clipped, 40)
    sf.write(tmp_path / "long.flac", long, rate)
    assert level.peak(tmp_path / "long.flac", parts=2).clipped == level.peak(
        tmp_path / "long.flac").clipped > 0.6 * len(long)


def test_lossy_files_are_told_from_lossless_ones(tmp_path):
    """A wave clipped before lossy coding is no longer held flat, so MP3, AAC and the like
    are looked at for it otherwise (``Peaks.coded_clipped_share``)."""
    import shutil
    import subprocess
    data = tone(440, 1.0, 44100, amplitude=0.5)
    for name, options, lossy in (("a.wav", {}, False), ("a.flac", {}, False),
                                 ("a.ogg", {"subtype": "VORBIS"}, True),
                                 ("a.mp3", {"format": "MP3", "subtype": "MPEG_LAYER_III"}, True)):
        sf.write(tmp_path / name, data, 44100, **options)
        assert audio.probe(tmp_path / name).lossy is lossy, name
    if shutil.which("ffmpeg") and shutil.which("ffprobe"):  # read through ffmpeg
        for name, codec, lossy in (("aac.m4a", "aac", True), ("alac.m4a", "alac", False)):
            subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / "a.wav"), "-c:a",
                            codec, str(tmp_path / name)], check=True)
            info = audio.probe(tmp_path / name)
            assert (info.decoder, info.codec, info.lossy) == ("ffmpeg", codec, lossy), name
