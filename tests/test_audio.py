import io
import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from transcribe import audio, level
from transcribe import constants as C
from transcribe.errors import TranscribeError
from conftest import cut_file, tone


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


@pytest.mark.parametrize("channels", [1, 2, 3, 6, 8])
def test_the_mono_mix_is_the_mean_of_the_channels(channels):
    block = np.random.default_rng(channels).standard_normal((4410, channels)).astype(np.float32)
    mean = block.mean(axis=1, dtype=np.float32)
    if channels <= 6:  # the same float32 values, so the figures of mono and stereo files hold
        np.testing.assert_array_equal(audio.to_mono(block), mean)
    np.testing.assert_allclose(audio.to_mono(block), mean, rtol=0, atol=1e-6)
    assert audio.to_mono(block[:, 0]).dtype == np.float32


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


def test_a_missing_file_named_as_a_shell_leaves_a_pattern_or_a_tilde_says_so(tmp_path,
                                                                              monkeypatch):
    """A quoted ~ and a pattern that matched nothing reach us as they were typed: "no such
    file" alone left the user looking for a file that exists."""
    monkeypatch.chdir(tmp_path)
    for name, says in (("~/song.wav", "~/song.wav: no such file (nothing made ~ the home "
                                      "folder: a shell does outside quotes, Python with "
                                      "os.path.expanduser)"),
                       ("take*.wav", "take*.wav: no such file (no file matched this pattern)"),
                       ("take.wav", "take.wav: no such file")):
        with pytest.raises(TranscribeError) as error:
            audio.probe(name)
        assert str(error.value) == says


def test_folder_and_unsupported_container_errors(tmp_path):
    with pytest.raises(TranscribeError, match="folder"):
        audio.probe(tmp_path)
    m4a = tmp_path / "song.m4a"
    m4a.write_bytes(b"\0" * 100)
    expected = "not a readable audio or video file" if shutil.which("ffprobe") else \
        "read with ffmpeg, which is not installed"
    with pytest.raises(TranscribeError, match=expected):
        audio.probe(m4a)


needs_ffmpeg = pytest.mark.skipif(not shutil.which("ffmpeg") or not shutil.which("ffprobe"),
                                  reason="ffmpeg is not installed (apt-get install ffmpeg)")


@needs_ffmpeg
@pytest.mark.parametrize("suffix, extra", [(".m4a", []), (".mp4", ["-f", "lavfi", "-i",
                                                                  "color=black:s=64x64:r=5"])])
def test_phone_recordings_and_videos_stream_through_ffmpeg(tmp_path, suffix, extra):
    import subprocess
    wav = tmp_path / "tone.wav"
    sf.write(wav, np.stack([tone(440, 4.0, 44100), tone(440, 4.0, 44100)], axis=1), 44100)
    encoded = tmp_path / f"tone{suffix}"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(wav), *extra, "-shortest",
                    "-c:a", "aac", str(encoded)], check=True)
    info = audio.probe(encoded)
    assert info.decoder == "ffmpeg" and info.duration_s == pytest.approx(4.0, abs=0.1)
    stats = audio.StreamStats()
    out = np.concatenate(list(audio.stream(encoded, stats=stats, block_s=1.0)))
    assert abs(len(out) - 4 * C.SAMPLE_RATE) < 0.1 * C.SAMPLE_RATE and stats.shortfall is None
    assert abs(peak_hz(out[C.SAMPLE_RATE:3 * C.SAMPLE_RATE], C.SAMPLE_RATE) - 440) < 5
    silent = tmp_path / "silent.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=black:s=64x64:r=5",
                    "-t", "1", str(silent)], check=True)
    with pytest.raises(TranscribeError, match="has no audio track"):
        audio.probe(silent)


@needs_ffmpeg
def test_a_file_named_for_another_format_is_read_by_ffmpeg_quietly(tmp_path, capfd):
    """An AAC saved as ".mp3" (web downloads, phone apps): libsndfile took it for an MP3,
    libmpg123 printed "Note: Illegal Audio-MPEG-Header..." lines and nothing decoded ("the
    audio is corrupt"); saved as ".wav" it was "not a readable audio file"."""
    import subprocess
    wav = tmp_path / "tone.wav"
    sf.write(wav, tone(440, 3.0, 44100), 44100)
    m4a = tmp_path / "tone.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(wav), "-c:a", "aac", str(m4a)],
                   check=True)
    expected = audio.load(m4a)
    capfd.readouterr()
    for suffix in (".mp3", ".wav"):
        misnamed = tmp_path / f"download{suffix}"
        misnamed.write_bytes(m4a.read_bytes())
        assert audio.probe(misnamed).decoder == "ffmpeg"
        np.testing.assert_array_equal(audio.load(misnamed), expected)
    assert capfd.readouterr().err == ""
    garbage = tmp_path / "garbage.wav"  # what ffmpeg cannot read either keeps its error
    garbage.write_bytes(np.random.default_rng(0).bytes(50000))
    with pytest.raises(TranscribeError, match="not a readable audio file"):
        audio.probe(garbage)


@needs_ffmpeg
def test_an_archives_lossless_formats_are_found_and_read_to_the_sample(tmp_path):
    """WavPack, TTA, AIFF-C and Broadcast WAV (.bwf) files were passed over by a folder
    search without a word: an archive of them gave "no audio files found"."""
    import subprocess
    from transcribe.batch import plan_jobs
    rng = np.random.default_rng(0)
    wav = tmp_path / "take.wav"
    sf.write(wav, (rng.standard_normal((3 * 44100, 2)) * 0.1).astype(np.float32), 44100,
             subtype="PCM_16")
    archive = tmp_path / "archive"
    archive.mkdir()
    for suffix, codec in ((".wv", "wavpack"), (".tta", "tta"), (".aifc", "pcm_s16be"),
                          (".bwf", "pcm_s16le")):
        command = ["ffmpeg", "-v", "error", "-i", str(wav), "-c:a", codec]
        command += ["-f", {".aifc": "aiff", ".bwf": "wav"}[suffix]] if suffix in (
            ".aifc", ".bwf") else []
        subprocess.run(command + [str(archive / f"take{suffix}")], check=True)
    (archive / "notes.txt").write_text("not audio")
    found = sorted(job.source.name for job in plan_jobs((archive,), None, "mid"))
    assert found == ["take.aifc", "take.bwf", "take.tta", "take.wv"]
    for name in found:
        np.testing.assert_array_equal(audio.load(archive / name), audio.load(wav))


@needs_ffmpeg
def test_ffmpeg_files_are_mixed_and_leveled_as_their_lossless_original(tmp_path):
    """ffmpeg's own downmix raised a stereo mix by 3 dB, and its mix hid channels that
    cancel: it now hands over the channels, mixed here as libsndfile's are."""
    import subprocess
    left = tone(440, 4.0, 48000, amplitude=0.5) * np.minimum(1, np.linspace(0, 8, 4 * 48000))
    for name, right in (("same", left), ("inverted", -1.05 * left)):
        wav = tmp_path / f"{name}.wav"
        sf.write(wav, np.stack([left, right], axis=1), 48000, subtype="FLOAT")
        m4a = tmp_path / f"{name}.m4a"
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(wav), "-c:a", "aac", "-b:a", "192k",
                        str(m4a)], check=True)
        lossless, phone = level.peak(wav), level.peak(m4a)
        assert phone.channels == pytest.approx(lossless.channels, rel=0.05)
        assert phone.mix == pytest.approx(lossless.mix, rel=0.05, abs=0.005)
        assert phone.cancelled == lossless.cancelled == (name == "inverted")
    middle = slice(C.SAMPLE_RATE, 3 * C.SAMPLE_RATE)
    heard = np.abs(np.concatenate(list(audio.stream(tmp_path / "same.m4a")))[middle]).max()
    assert heard == pytest.approx(np.abs(audio.load(tmp_path / "same.wav")[middle]).max(), rel=0.05)


@needs_ffmpeg
def test_mp3_decoder_chatter_is_kept_off_the_terminal_and_other_messages_are_not(
        tmp_path, capfd, monkeypatch):
    """libmpg123 printed "error: part2_3_length ... too large for available bit count" at
    the end of every MP3 that ffmpeg encodes, though the samples are whole."""
    import subprocess
    from pathlib import Path
    example = Path(__file__).resolve().parent.parent / "examples" / "example.flac"
    mp3 = tmp_path / "example.mp3"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(example), str(mp3)], check=True)
    capfd.readouterr()
    out = audio.load(mp3)
    level.peak(mp3)
    assert "mpg123" not in capfd.readouterr().err
    decoded = subprocess.run(["ffmpeg", "-v", "error", "-i", str(mp3), "-ar", str(C.SAMPLE_RATE),
                              "-f", "f32le", "-"], capture_output=True, check=True).stdout
    assert abs(len(out) - len(decoded) // 4) < 0.01 * C.SAMPLE_RATE
    # Whatever else is written to stderr during a read is passed on, in order.
    real_read = sf.SoundFile.read
    reads = []

    def chatty_read(self, *args, **kwargs):
        reads.append(1)
        os.write(2, b"[src/libmpg123/layer3.c:INT123_do_layer3():1774] error: noise\n"
                    b"a warning of someone else\n")
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", chatty_read)
    np.testing.assert_array_equal(audio.load(mp3), out)
    err = capfd.readouterr().err
    assert "mpg123" not in err and err.count("a warning of someone else\n") == len(reads) > 1


@needs_ffmpeg
def test_a_damaged_mp3s_decoder_notes_are_kept_off_the_terminal(tmp_path, capfd):
    """A truncated MP3 made libmpg123 print "Warning: Xing stream size off by more than
    1%..." as each read of it opened the file (three a transcription), and one damaged
    inside "Note: Illegal Audio-MPEG-Header...", "Note: Trying to resync...": across a
    batch's progress display, besides our own warning of it."""
    import subprocess
    from pathlib import Path
    example = Path(__file__).resolve().parent.parent / "examples" / "example.flac"
    mp3 = tmp_path / "example.mp3"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(example), str(mp3)], check=True)
    whole = mp3.read_bytes()
    truncated, damaged = tmp_path / "truncated.mp3", tmp_path / "damaged.mp3"
    truncated.write_bytes(whole[:len(whole) // 2])
    rng = np.random.default_rng(1)
    hurt = bytearray(whole)
    for at in rng.integers(len(whole) // 4, len(whole) - 100, 20):
        hurt[at:at + 50] = rng.bytes(50)
    damaged.write_bytes(bytes(hurt))
    for path in (truncated, damaged):
        capfd.readouterr()
        with sf.SoundFile(path) as opened:  # what it printed without us
            opened.read()
        printed = capfd.readouterr().err
        assert "Warning: Xing stream size" in printed or "Note: Trying to resync" in printed
        stats = audio.StreamStats()
        info = audio.probe(path)
        level.peak(path, info)
        assert sum(len(block) for block in audio.stream(path, info=info, stats=stats)) > 0
        assert capfd.readouterr().err == ""
        assert "truncated or damaged" in stats.shortfall  # said by us, once, in our words


def unfinished(path):
    """``path`` as a recorder leaves it when it stops before finishing its header: the RIFF
    and data sizes still 0."""
    import struct
    data = bytearray(path.read_bytes())
    at = data.find(b"data")
    data[4:8] = data[at + 4:at + 8] = struct.pack("<I", 0)
    cut = path.with_name("unfinished-" + path.name)
    cut.write_bytes(bytes(data))
    return cut


@pytest.mark.parametrize("subtype, channels", [("PCM_16", 1), ("PCM_24", 2), ("FLOAT", 2),
                                               ("PCM_U8", 1), ("PCM_16", 3)])
def test_a_wav_whose_header_was_never_finished_is_read_whole(tmp_path, subtype, channels):
    """libsndfile read no samples of it, and it was called empty ("holds no audio")."""
    rng = np.random.default_rng(0)
    data = (rng.standard_normal((70 * 22050, channels)) * 0.1).astype(np.float32)
    whole = tmp_path / "take.wav"
    sf.write(whole, data, 22050, subtype=subtype)  # 3 channels: WAVE_FORMAT_EXTENSIBLE
    cut = unfinished(whole)
    assert sf.info(cut).frames == 0
    info = audio.probe(cut)
    assert info.raw_data.kind == "unfinished" and (info.sample_rate, info.channels, info.frames) == (
        22050, channels, 70 * 22050)
    np.testing.assert_array_equal(audio.load(cut), audio.load(whole))
    assert level.peak(cut, parts=2) == level.peak(cut) == level.peak(whole)


def test_an_empty_wav_with_chunks_after_its_data_is_still_empty(tmp_path):
    import struct
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 1), np.float32), 16000, subtype="PCM_16")
    listed = tmp_path / "listed.wav"
    info_chunk = b"INFOISFT" + struct.pack("<I", 4) + b"amt\0"
    tail = b"LIST" + struct.pack("<I", len(info_chunk)) + info_chunk
    listed.write_bytes(empty.read_bytes() + tail)
    assert not audio.probe(listed).raw_data
    with pytest.raises(TranscribeError, match="holds no audio"):
        audio.load(listed)


@pytest.mark.parametrize("declared", ["wrapped", 0xFFFFFFFF])
def test_a_wav_over_4_gb_that_is_not_rf64_is_read_whole(tmp_path, declared):
    """A WAV's sizes are 32-bit.  Past 4 GB, ffmpeg leaves them at 0xFFFFFFFF ("output file
    will be broken") and other writers wrap them past 2**32: libsndfile read 2,796 s of a
    2,900 s file of the first kind and 104 s of the second, and nothing said so."""
    import struct
    rate, channels = 48000, 2
    second = np.random.default_rng(0).standard_normal((rate, channels)) * 0.1
    small = tmp_path / "small.wav"
    sf.write(small, second.astype(np.float32), rate, subtype="PCM_16")
    header = bytearray(small.read_bytes()[:44])
    assert header[36:40] == b"data"
    tail = (second * 32767).astype("<i2").tobytes()  # the last second
    size = (1 << 32) + 4 * rate * 10 + len(tail)  # 4 GB and 10 s of zeros, then the tail
    sizes = (size, size + 36) if declared == "wrapped" else (0xFFFFFFFF, 0xFFFFFFFF)
    header[40:44] = struct.pack("<I", sizes[0] % (1 << 32))
    header[4:8] = struct.pack("<I", sizes[1] % (1 << 32))
    big = tmp_path / "big.wav"
    with open(big, "wb") as handle:  # sparse: the zeros take no disk
        handle.write(bytes(header))
        handle.seek(44 + size - len(tail))
        handle.write(tail)
    if big.stat().st_blocks * 512 > 1 << 28:
        pytest.skip("this filesystem has no sparse files")
    info = audio.probe(big)
    assert info.frames == size // 4 and info.duration_s == pytest.approx(size / 4 / rate)
    warning = audio.raw_data_warning(info)
    if declared == "wrapped":
        assert warning.startswith("its header's sizes wrapped past 4 GB")
    else:  # "to the end" is what the size says
        assert warning is None
    with audio.Reader(info) as reader:  # the last second, read where the file ends
        reader.seek(info.frames - rate)
        last = reader.read(2 * rate)
    np.testing.assert_allclose(last, np.frombuffer(tail, "<i2").reshape(-1, 2) / 32768.0)


@pytest.mark.parametrize("keep", [1.0, 0.6])
def test_a_wav_of_unknown_length_is_read_to_its_end_without_a_promise(tmp_path, keep):
    """ffmpeg writes a WAV's sizes as 0xFFFFFFFF ("to the end") to a pipe
    (``ffmpeg ... -f wav - > take.wav``), and until it finishes a file: every such file
    was "truncated or damaged: read 5.0 s of the 48695.8 s the header promises"."""
    import struct
    rng = np.random.default_rng(0)
    data = (rng.standard_normal((5 * 44100, 2)) * 0.1).astype(np.float32)
    whole = tmp_path / "take.wav"
    sf.write(whole, data, 44100, subtype="PCM_16")
    piped = bytearray(whole.read_bytes())
    at = piped.find(b"data")
    piped[4:8] = piped[at + 4:at + 8] = struct.pack("<I", 0xFFFFFFFF)
    piped = piped[:at + 8 + int((len(piped) - at - 8) * keep) // 4 * 4]  # 0.6: ffmpeg killed
    unknown = tmp_path / "piped.wav"
    unknown.write_bytes(bytes(piped))
    info = audio.probe(unknown)
    assert info.frames == int(len(data) * keep) and info.promised_frames is None
    stats = audio.StreamStats()
    streamed = np.concatenate(list(audio.stream(unknown, stats=stats)))
    assert stats.shortfall is None
    assert len(streamed) == pytest.approx(keep * 5 * C.SAMPLE_RATE, abs=2)
    same = len(streamed) - 100  # the resampler ends a cut stream as it ends it, not as before
    np.testing.assert_allclose(streamed[:same], audio.load(whole)[:same], atol=1e-6)


@pytest.mark.parametrize("seconds, channels", [(3.3, 1), (70.5, 2)])
def test_a_flac_whose_header_gives_no_length_is_read_to_its_end(tmp_path, seconds, channels):
    """A FLAC written to a pipe (``ffmpeg ... -f flac - > take.flac``) has no length in its
    header: libsndfile failed the read that reached its end, so the last second was lost,
    and the warning said the header promised 576460752303423.5 s."""
    rng = np.random.default_rng(0)
    data = (rng.standard_normal((int(seconds * 44100), channels)) * 0.1).astype(np.float32)
    whole = tmp_path / "take.flac"
    sf.write(whole, data, 44100, subtype="PCM_16")
    piped = bytearray(whole.read_bytes())
    piped[8 + 13] &= 0xF0  # STREAMINFO's 36-bit total samples: 0, unknown
    piped[8 + 14:8 + 18] = bytes(4)
    open_ended = tmp_path / "piped.flac"
    open_ended.write_bytes(bytes(piped))
    assert sf.info(open_ended).frames > 1 << 62
    info = audio.probe(open_ended)
    assert info.open_ended and info.frames == len(data)
    stats = audio.StreamStats()
    np.testing.assert_array_equal(np.concatenate(list(audio.stream(open_ended, stats=stats))),
                                  audio.load(whole))
    assert stats.shortfall is None
    assert level.peak(open_ended, parts=2) == level.peak(whole)


def test_a_truncated_flac_yields_what_decodes_and_says_how_much(tmp_path):
    cut = cut_file(tmp_path, "cut.flac")
    stats = audio.StreamStats()
    out = np.concatenate(list(audio.stream(cut, stats=stats)))
    # 60 % of the bytes hold about 12 s; at most the last second read is lost.
    assert 10 * C.SAMPLE_RATE <= len(out) <= 12.5 * C.SAMPLE_RATE
    assert stats.shortfall.startswith(f"truncated or damaged: read {len(out) / C.SAMPLE_RATE:.1f} s "
                                      "of the 20.0 s the header promises")


def test_a_wav_shorter_than_its_header_promises_is_reported(tmp_path):
    cut = cut_file(tmp_path, "cut.wav", seconds=10, keep=0.4, subtype="PCM_16")
    stats = audio.StreamStats()
    out = np.concatenate(list(audio.stream(cut, stats=stats)))
    assert abs(len(out) - 4 * C.SAMPLE_RATE) < C.SAMPLE_RATE // 100
    assert stats.shortfall == "truncated or damaged: read 4.0 s of the 10.0 s the header promises"
    whole = audio.StreamStats()
    list(audio.stream(tmp_path / "whole-cut.wav", stats=whole))
    assert whole.shortfall is None


def test_a_cut_mp3_is_reported(tmp_path):
    cut = cut_file(tmp_path, "cut.mp3", keep=0.5)
    stats = audio.StreamStats()
    out = np.concatenate(list(audio.stream(cut, stats=stats)))
    assert 8 * C.SAMPLE_RATE < len(out) < 12 * C.SAMPLE_RATE
    assert "of the 20.0 s the header promises" in stats.shortfall


def test_a_file_of_which_nothing_decodes_is_an_error(tmp_path):
    cut = cut_file(tmp_path, "cut.flac", keep=0.02)
    with pytest.raises(TranscribeError):
        list(audio.stream(cut))


def test_a_file_that_holds_no_samples_is_an_error(tmp_path):
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), C.SAMPLE_RATE)
    assert audio.probe(empty).frames == 0
    with pytest.raises(TranscribeError, match=r"empty.wav: holds no audio \(0 samples\)"):
        list(audio.stream(empty))
    whole = tmp_path / "whole.wav"
    sf.write(whole, np.zeros(3 * C.SAMPLE_RATE, np.float32), C.SAMPLE_RATE, subtype="PCM_16")
    header_only = tmp_path / "header.wav"
    header_only.write_bytes(whole.read_bytes()[:44])  # the header, no data
    with pytest.raises(TranscribeError, match="header promises 3.0 s of audio but the file "
                                              "holds none"):
        list(audio.stream(header_only))


def test_links_pipes_and_unreadable_files_are_named_for_what_they_are(tmp_path):
    loop = tmp_path / "loop.wav"
    loop.symlink_to(loop)
    with pytest.raises(TranscribeError, match="loops back on itself"):
        audio.probe(loop)
    dangling = tmp_path / "dangling.wav"
    dangling.symlink_to(tmp_path / "gone.wav")
    with pytest.raises(TranscribeError, match="link to a file that does not exist"):
        audio.probe(dangling)
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    with pytest.raises(TranscribeError, match="not a regular file"):
        audio.probe(fifo)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_file_says_permission_denied(tmp_path):
    path = tmp_path / "locked.wav"
    sf.write(path, np.zeros(1000, np.float32), C.SAMPLE_RATE)
    path.chmod(0)
    with pytest.raises(TranscribeError, match="permission denied"):
        audio.probe(path)


def test_arrays_in_either_layout_and_integer_pcm_read_alike():
    rng = np.random.default_rng(2)
    stereo = (rng.standard_normal((8000, 2)) * 0.2).astype(np.float32)
    reference = np.concatenate(list(audio.stream_array(stereo, C.SAMPLE_RATE)))
    channels_first = np.concatenate(list(audio.stream_array(stereo.T, C.SAMPLE_RATE)))
    np.testing.assert_array_equal(channels_first, reference)
    pcm16 = np.round(stereo * 32767).astype(np.int16)
    scaled = np.concatenate(list(audio.stream_array(pcm16, C.SAMPLE_RATE)))
    np.testing.assert_allclose(scaled, reference, atol=1e-4)
    pcm32 = pcm16.astype(np.int32) << 16
    np.testing.assert_allclose(np.concatenate(list(audio.stream_array(pcm32, C.SAMPLE_RATE))),
                               scaled, atol=1e-6)


@pytest.mark.parametrize("samples, rate, message", [
    (np.zeros(100), 0, "positive"), (np.zeros(100), -16000, "positive"),
    (np.zeros(100), float("nan"), "positive"), (np.zeros(100), "16000", "number"),
    (np.zeros(100), None, "needs its sample_rate"), (b"RIFF....", 16000, "not bytes"),
    (np.zeros((2, 3, 4)), 16000, "shape"), (np.zeros((100, 100)), 16000, "channels"),
    (np.zeros(0), 16000, "no samples"), (np.array(["a"]), 16000, "dtype"),
    # An upload as a web framework hands it on: it said "got dtype object".
    (io.BytesIO(b"RIFF...."), 16000, r"not a file object \(give its path, or decode it first"),
])
def test_bad_arrays_and_rates_raise_our_error(samples, rate, message):
    with pytest.raises(TranscribeError, match=message):
        list(audio.stream_array(samples, rate))