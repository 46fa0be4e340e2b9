import numpy as np
import torch

from transcribe import constants as C
from transcribe.features import Frontend, to_decibels
from conftest import tone


def test_frames_centre_on_hop_multiples_so_windows_agree():
    frontend = Frontend()
    rng = np.random.default_rng(0)
    audio = torch.from_numpy(rng.standard_normal(40000).astype(np.float32))
    whole = frontend(audio[None])[0]
    assert whole.shape == ((40000 - 2 * frontend.context_samples - 1) // C.HOP_LENGTH + 1, C.N_MELS)
    # frames 10..30 computed from just the samples they need
    start = 10 * C.HOP_LENGTH
    part = frontend(audio[None, start:start + frontend.samples_for_frames(20)])[0]
    assert part.shape[0] == 20
    torch.testing.assert_close(part, whole[10:30], atol=1e-5, rtol=1e-5)


def test_scaling_is_fixed_silence_zero_loud_about_one():
    frontend = Frontend()
    silence = frontend(torch.zeros(1, frontend.samples_for_frames(8)))
    assert torch.allclose(silence, torch.zeros_like(silence), atol=1e-6)
    loud = frontend(torch.from_numpy(tone(440, 1.0, C.SAMPLE_RATE, 0.9))[None])
    assert 0.6 < loud.max() < 1.2


def test_top_key_c8_is_resolved_below_the_mel_ceiling():
    frontend = Frontend()
    c8_hz = 440 * 2 ** ((C.MAX_MIDI - 69) / 12)
    c7_hz = c8_hz / 2
    top = frontend(torch.from_numpy(tone(c8_hz, 0.5, C.SAMPLE_RATE))[None])[0].mean(0).argmax()
    lower = frontend(torch.from_numpy(tone(c7_hz, 0.5, C.SAMPLE_RATE))[None])[0].mean(0).argmax()
    assert lower < top < C.N_MELS - 5


def test_cqt_variant_has_176_bins():
    frontend = Frontend("cqt")
    spec = frontend(torch.zeros(1, frontend.samples_for_frames(4)))
    assert spec.shape == (1, 4, C.N_CQT_BINS)


def test_mel_equals_nnaudios_mel_spectrogram():
    # The weights were trained on nnAudio's conv-STFT MelSpectrogram; the FFT path
    # must give the same spectrogram.
    from nnAudio import features

    frontend = Frontend()
    reference = features.MelSpectrogram(
        sr=C.SAMPLE_RATE, n_fft=C.N_FFT, n_mels=C.N_MELS, hop_length=C.HOP_LENGTH,
        center=False, fmin=C.MEL_FMIN_HZ, fmax=C.MEL_FMAX_HZ, norm=1, htk=False,
        verbose=False)
    rng = np.random.default_rng(1)
    audio = torch.from_numpy(0.3 * rng.standard_normal((2, 30000)).astype(np.float32))
    audio[1] += torch.from_numpy(tone(1000, 30000 / C.SAMPLE_RATE, C.SAMPLE_RATE))
    power = reference(audio)
    expected = ((torch.log(power + C.LOG_FLOOR) - np.log(C.LOG_FLOOR)) / C.LOG_SCALE).transpose(1, 2)
    torch.testing.assert_close(frontend(audio), expected, atol=1e-5, rtol=1e-4)


def test_key_levels_read_a_tone_at_its_key_in_decibels():
    for kind in ("mel", "cqt"):
        frontend = Frontend(kind)
        a4 = 69 - C.MIN_MIDI
        levels = []
        for amplitude in (0.5, 0.25):
            audio = torch.from_numpy(tone(440.0, 3.0, C.SAMPLE_RATE, amplitude))[None]
            flat = frontend.key_levels(frontend(audio))[0, 10:-10]
            assert flat.shape[-1] == C.N_KEYS * C.VELOCITY_LEVEL_PARTIALS
            levels.append(flat.reshape(len(flat), C.N_KEYS, C.VELOCITY_LEVEL_PARTIALS))
        loudest = levels[0].amax(-1)
        # Half the amplitude: 6 dB lower at A4's fundamental.
        np.testing.assert_allclose((levels[0][:, a4, 0] - levels[1][:, a4, 0]).numpy(), 6.02,
                                   atol=0.1)
        # Keys a whole tone or more away, whose partials miss 440 Hz, lie far below (a
        # semitone away the Mel filters below 1 kHz, 13 Hz apart, still hear it).
        for neighbour in (a4 - 5, a4 - 2, a4 + 2, a4 + 5):
            assert (loudest[:, a4] - loudest[:, neighbour]).min() > 20, (kind, neighbour)
        # A3 and D3 have 440 Hz as their second and third partials: they hear it there,
        # and not at their fundamentals.
        for key, partial in ((a4 - 12, 1), (a4 - 19, 2)):
            assert (levels[0][:, key, partial] - levels[0][:, a4, 0]).abs().max() < 1
            assert (levels[0][:, a4, 0] - levels[0][:, key, 0]).min() > 20, (kind, key)
        # C8's third partial lies above the top bin: it reads silence, never a neighbour.
        assert frontend.unheard[-1, 2]
        np.testing.assert_allclose(levels[0][:, -1, 2].numpy(), to_decibels(0.0), rtol=1e-6)


