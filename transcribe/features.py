"""Log-frequency spectrogram front end (nnAudio), computed on the model's device.

The Mel spectrogram takes nnAudio's Slaney filter bank (``get_mel``, as its
``MelSpectrogram`` does) over a ``torch.stft`` power spectrum: nnAudio's own STFT
is a convolution with 2 x 1025 windowed sinusoids, O(n_fft) per bin, which on CPU
costs several times the FFT for the same values (2.1 s against 0.35 s for ten
minutes on 2 cores; they agree to 2e-6, see tests/test_features.py), and ``nnAudio.features`` imports scipy.signal (about a
second of start-up) where ``nnAudio.librosa_functions`` needs only numpy.  The
CQT is nnAudio's ``CQT1992v2``.

Frames are taken without centring padding: the caller supplies ``context_samples``
of real audio (or silence) on each side, so a chunk of a long file yields exactly
the frames that the whole file would have at those positions.  Frame ``j`` is
centred on sample ``j * hop_length``, as with ``center=True``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from . import constants as C


def bin_frequencies(kind: str, n_bins: int) -> np.ndarray:
    """Centre frequencies (Hz) of the spectrogram's bins."""
    if kind == "cqt":
        return C.CQT_FMIN_HZ * 2 ** (np.arange(n_bins) / C.CQT_BINS_PER_OCTAVE)
    # Centres of the Slaney-scale Mel filters (n_bins + 2 edges, the ends dropped).
    from nnAudio.librosa_functions import mel_frequencies
    return mel_frequencies(n_bins + 2, fmin=C.MEL_FMIN_HZ, fmax=C.MEL_FMAX_HZ, htk=False)[1:-1]


def to_decibels(spectrogram):
    """The front end's fixed scaling undone: ``10 log10(power)`` (array or tensor)."""
    return 10 / math.log(10) * (spectrogram * C.LOG_SCALE + math.log(C.LOG_FLOOR))


def partial_bins(kind: str, n_bins: int, partials: int = C.VELOCITY_LEVEL_PARTIALS) -> np.ndarray:
    """``(88, partials, 3)`` bin indices: for each key and each of its first ``partials``
    partials, the nearest bin and its neighbours; a partial above the top bin, which no
    bin hears, is -1."""
    centres = bin_frequencies(kind, n_bins)
    rows = np.full((C.N_KEYS, partials, 3), -1, np.int64)
    for key, pitch in enumerate(range(C.MIN_MIDI, C.MAX_MIDI + 1)):
        fundamental = 440.0 * 2 ** ((pitch - 69) / 12)
        for partial in range(1, partials + 1):
            if partial == 1 or fundamental * partial <= centres[-1]:
                nearest = int(np.argmin(np.abs(centres - fundamental * partial)))
                rows[key, partial - 1] = [max(nearest - 1, 0), nearest, min(nearest + 1, n_bins - 1)]
    return rows


class Frontend(nn.Module):
    """Audio ``(batch, samples)`` at the model rate -> spectrogram ``(batch, frames, bins)``.

    ``kind`` is ``"mel"`` (the seed's 229-bin Slaney Mel) or ``"cqt"`` (nnAudio's
    ``CQT1992v2``, 176 bins).  Power is mapped as ``(log(power + floor) - log(floor)) / scale``,
    a fixed affine map (unlike the seed's per-excerpt min-max) so chunked inference
    scales every chunk alike; silence maps to 0 and a loud piano to about 1.
    """

    def __init__(self, kind: str = "mel", sample_rate: int = C.SAMPLE_RATE,
                 hop_length: int = C.HOP_LENGTH, n_bins: int | None = None):
        super().__init__()
        self.kind = kind
        self.sample_rate = sample_rate
        self.hop_length = hop_length
        if kind == "mel":
            from nnAudio.librosa_functions import get_mel

            self.n_bins = n_bins or C.N_MELS
            mel_basis = get_mel(sample_rate, C.N_FFT, self.n_bins, C.MEL_FMIN_HZ,
                                C.MEL_FMAX_HZ, htk=False, norm=1)
            self.register_buffer("mel_basis", torch.from_numpy(mel_basis).float(), persistent=False)
            self.register_buffer("window", torch.hann_window(C.N_FFT), persistent=False)
            kernel_width = C.N_FFT
        elif kind == "cqt":
            from nnAudio import features  # imported here: it takes scipy.signal along

            self.n_bins = n_bins or C.N_CQT_BINS
            self.spec = features.CQT1992v2(
                sr=sample_rate, hop_length=hop_length, fmin=C.CQT_FMIN_HZ,
                n_bins=self.n_bins, bins_per_octave=C.CQT_BINS_PER_OCTAVE,
                center=False, output_format="Magnitude", verbose=False)
            kernel_width = self.spec.kernel_width
        else:
            raise ValueError(f"unknown spectrogram kind {kind!r} (expected 'mel' or 'cqt')")
        # Half a window of context each side centres frame j on sample j * hop.
        self.context_samples = kernel_width // 2
        self._log_floor = math.log(C.LOG_FLOOR)
        bins = partial_bins(kind, self.n_bins)
        self.register_buffer("partials", torch.from_numpy(np.maximum(bins, 0)), persistent=False)
        self.register_buffer("unheard", torch.from_numpy(bins[..., 0] < 0), persistent=False)

    @property
    def frame_rate_hz(self) -> float:
        return self.sample_rate / self.hop_length

    def frames_for_samples(self, n_samples: int) -> int:
        """Frames of ``n_samples`` of audio (centred frames: one on sample 0, one per hop)."""
        return n_samples // self.hop_length + 1

    def samples_for_frames(self, n_frames: int) -> int:
        """Number of input samples that yields exactly ``n_frames`` frames."""
        return (n_frames - 1) * self.hop_length + 2 * self.context_samples + 1

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        if self.kind == "mel":
            stft = torch.stft(audio, C.N_FFT, self.hop_length, window=self.window,
                              center=False, return_complex=True)
            power = self.mel_basis @ (stft.real ** 2 + stft.imag ** 2)  # (batch, bins, frames)
        else:
            power = self.spec(audio) ** 2
        spec = (torch.log(power + C.LOG_FLOOR) - self._log_floor) / C.LOG_SCALE
        return spec.transpose(1, 2)

    def key_levels(self, spec: torch.Tensor) -> torch.Tensor:
        """``(batch, frames, 88 x VELOCITY_LEVEL_PARTIALS)``: each key's level (dB) at each
        of its first partials in a spectrogram of ``forward`` (key by key: the partials of
        key 0, then of key 1 ...), the loudest of the partial's bins (``partial_bins``);
        a partial above the top bin reads silence.  What a note of the key adds as it is
        struck, read by the velocity decoding (``decode.onset_levels``)."""
        levels = spec[..., self.partials].amax(-1).masked_fill(self.unheard, 0.0)
        return to_decibels(levels.flatten(-2))
