import numpy as np
import pytest
import soundfile as sf

from transcribe import audio
from transcribe import constants as C
from transcribe.errors import TranscribeError
from conftest import tone


def peak_hz(signal: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return np.fft.rfftfreq(len(signal), 1 / rate)[spectrum.argmax()]


@pytest.mark.parametrize("fmt,suffix", [("WAV", ".wav"), ("FLAC", ".flac"), ("OGG", ".ogg"),
                                         ("MP3", ".mp3")])
def test_reads_common_formats_and_resamples(tmp_path, fmt, suffix):
    rate = 44100
    stereo = np.stack([tone(440, 2.0, rate), tone(440, 2.0, rate)], axis=1)
    path = tmp_path / f"a{suffix}"
    sf.write(path, stereo, rate, format=fmt)
    mono = audio.load(path)
    assert abs(len(mono) - 2.0 * C.SAMPLE_RATE) < 0.05 * C.SAMPLE_RATE  # mp3 pads a little
    assert abs(peak_hz(mono[4000:28000], C.SAMPLE_RATE) - 440) < 2
    assert 0.3 < np.abs(mono).max() < 0.7


def test_resampler_removes_content_above_the_new_nyquist(tmp_path):
    # A 12 kHz tone at 48 kHz would alias to 4 kHz under naive decimation.
    path = tmp_path / "high.wav"
    sf.write(path, tone(12000, 1.0, 48000), 48000)
    out = audio.load(path)
    assert np.sqrt(np.mean(out[2000:-2000] ** 2)) < 1e-3


def test_streaming_matches_whole_file_and_downmixes_many_channels(tmp_path):
    rate = 96000
    rng = np.random.default_rng(0)
    data = rng.standard_normal((rate * 3, 8)).astype(np.float32) * 0.1
    path = tmp_path / "eight.wav"
    sf.write(path, data, rate, subtype="FLOAT")
    small = np.concatenate(list(audio.stream(path, block_s=0.37)))
    large = np.concatenate(list(audio.stream(path, block_s=10)))
    assert len(small) == len(large) == 3 * C.SAMPLE_RATE
    np.testing.assert_allclose(small, large, atol=1e-5)


def test_array_stream_matches_file_stream(tmp_path):
    rate = 22050
    data = tone(330, 1.5, rate)
    path = tmp_path / "a.wav"
    sf.write(path, data, rate, subtype="FLOAT")
    from_file = np.concatenate(list(audio.stream(path)))
    from_array = np.concatenate(list(audio.stream_array(data, rate)))
    np.testing.assert_allclose(from_file, from_array, atol=1e-6)


def test_nan_and_inf_become_silence_and_are_counted(tmp_path):
    data = tone(440, 1.0, C.SAMPLE_RATE)
    data[100:110] = np.nan
    data[500] = np.inf
    path = tmp_path / "nan.wav"
    sf.write(path, data, C.SAMPLE_RATE, subtype="FLOAT")
    stats = audio.StreamStats()
    out = np.concatenate(list(audio.stream(path, stats=stats)))
    assert np.isfinite(out).all()
    assert stats.nonfinite == 11


@pytest.mark.parametrize("make,message", [
    (lambda p: None, "no such file"),
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: p.write_text("this is not audio\n" * 50), "not a readable audio file"),
])
def test_bad_files_raise_one_clear_error(tmp_path, make, message):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(TranscribeError, match=message):
        audio.probe(path)


def test_folder_and_unsupported_container_errors(tmp_path):
    with pytest.raises(TranscribeError, match="folder"):
        audio.probe(tmp_path)
    m4a = tmp_path / "song.m4a"
    m4a.write_bytes(b"\0" * 100)
    with pytest.raises(TranscribeError, match="ffmpeg"):
        audio.probe(m4a)


def test_truncated_flac_raises_or_stops_cleanly(tmp_path):
    path = tmp_path / "whole.flac"
    rng = np.random.default_rng(1)
    sf.write(path, rng.standard_normal(C.SAMPLE_RATE * 5).astype(np.float32) * 0.1,
             C.SAMPLE_RATE)
    data = path.read_bytes()
    cut = tmp_path / "cut.flac"
    cut.write_bytes(data[: len(data) // 2])
    try:
        out = np.concatenate(list(audio.stream(cut)))
    except TranscribeError as error:
        assert "truncated or corrupt" in str(error) or "not a readable" in str(error)
    else:  # libsndfile may decode what is there: then it must be at most the first half
        assert len(out) <= C.SAMPLE_RATE * 3
