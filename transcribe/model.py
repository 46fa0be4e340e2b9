"""The U-net transcriber of Cheuk, Luo, Benetos and Herremans (ICPR 2020), with heads.

"The Effect of Spectrogram Reconstruction on Automatic Music Transcription":
a U-net and a BiLSTM map the spectrogram to an 88-key posteriorgram; a BiLSTM and
a second U-net reconstruct the spectrogram from that posteriorgram, and the first
U-net and BiLSTM transcribe again from the reconstruction.  Beside the paper's
frame head we add onset, offset and velocity heads as in Onsets and Frames
(Hawthorne et al. 2018), the frame head seeing the (detached) onset and offset
predictions.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from . import constants as C

HEADS = ("frame", "onset", "offset", "velocity")  # each (batch, frames, 88)
# The sustain-pedal head's columns, (batch, frames, 3): pedal down, pressed, released.
PEDAL_COLUMNS = ("down", "onset", "offset")


@dataclasses.dataclass
class ModelConfig:
    """Hyper-parameters of the network; stored as JSON beside the weights."""

    spectrogram: str = "mel"  # "mel" or "cqt"
    n_bins: int = C.N_MELS
    unet_channels: tuple[int, ...] = (16, 32, 64, 128)
    lstm_hidden: int = C.N_MELS  # per direction; the seed uses the number of bins
    reconstruction: bool = True
    pedal: bool = False  # a sustain-pedal head; weights without it load as before
    key_release: bool = False  # a key-down head: where each key is held (notes end at release)
    pedal_hidden: int = 0  # > 0: the pedal head has a recurrent layer of its own, this wide
    sample_rate: int = C.SAMPLE_RATE
    hop_length: int = C.HOP_LENGTH

    @property
    def time_multiple(self) -> int:
        """Frames per chunk must be a multiple of this (the U-net's down-sampling)."""
        return 2 ** len(self.unet_channels)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        values = dict(values)
        if "unet_channels" in values:
            channels = values["unet_channels"]
            if not isinstance(channels, (list, tuple)) or not channels:
                raise ValueError(f"unet_channels must be a list of channel counts, got {channels!r}")
            values["unet_channels"] = tuple(channels)
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ``ValueError`` for a field of the wrong type or out of range (e.g. a hand-edited card)."""
        def positive_int(name, value):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.spectrogram not in ("mel", "cqt"):
            raise ValueError(f"spectrogram must be 'mel' or 'cqt', got {self.spectrogram!r}")
        for name in ("n_bins", "lstm_hidden", "sample_rate", "hop_length"):
            positive_int(name, getattr(self, name))
        if self.pedal_hidden:
            positive_int("pedal_hidden", self.pedal_hidden)
        for value in self.unet_channels:
            positive_int("unet_channels", value)
        for name in ("reconstruction", "pedal", "key_release"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.spectrogram == "cqt":
            # The CQT's top bin must stay below Nyquist (24 bins per octave from A0).
            top_hz = C.CQT_FMIN_HZ * 2 ** ((self.n_bins - 1) / C.CQT_BINS_PER_OCTAVE)
            if top_hz >= self.sample_rate / 2:
                raise ValueError(f"a CQT of {self.n_bins} bins from {C.CQT_FMIN_HZ} Hz reaches "
                                 f"{top_hz:.0f} Hz, above Nyquist; use at most {C.N_CQT_BINS}")

    @classmethod
    def load(cls, path: str | Path) -> "ModelConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


def recurrent(layer: nn.RNNBase, x: torch.Tensor) -> torch.Tensor:
    """``layer``'s output sequence for ``x``, computed in float32 even under autocast.

    Mixed-precision training (``TrainConfig.amp``) runs the U-nets' convolutions in
    bfloat16.  Autocast leaves PyTorch's whole-sequence recurrent layers alone on CUDA
    (a bfloat16 input would meet float32 weights) and runs them in bfloat16 on the CPU;
    here they run in float32 either way, as they were trained.  Outside autocast this is
    ``layer(x)[0]``.
    """
    if torch.is_autocast_enabled(x.device.type):
        with torch.autocast(x.device.type, enabled=False):
            return layer(x.float())[0]
    return layer(x)[0]


class Norm(nn.BatchNorm2d):
    """BatchNorm that normalises in float32 when autocast hands it a bfloat16 or half input.

    Under bfloat16 autocast (``TrainConfig.amp``) the session-13 GPU profile shows a plain
    ``nn.BatchNorm2d`` in PyTorch's native kernels (``aten::native_batch_norm``), not
    cuDNN's, taking 48 % of the GPU's time (forward 16 %, backward 32 %): the likely reason
    bfloat16 trained no faster than float32.  ATen hands cuDNN float32 inputs, so the
    input is cast to float32 here (the next convolution casts back).  Whether that is
    faster on the GPU is for the next run's profile line to say.  Without autocast the
    input is float32 already and nothing changes; weights load the same.
    """

    def float_input(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in (torch.bfloat16, torch.float16) and self.weight.dtype == torch.float32:
            return x.float()
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.float_input(x))


class PassNorm(Norm):
    """BatchNorm with running statistics of its own for each pass of the shared transcriber.

    The transcriber reads the spectrogram in the first pass and the reconstruction in
    the second (Cheuk et al. 2020 share its weights between the two).  One set of
    running statistics averages two different inputs, and in eval mode the second pass
    is then normalised for neither: trained that way, our first GPU weights found no
    note at all in the full pass while training-mode batches were fine.  The scale and
    shift stay shared; the pass under way (``active_pass``, entered by
    ``UNetTranscriber``) picks the statistics.  Weights saved without the second pass's
    statistics load with a copy of the first's.
    """

    def __init__(self, channels: int):
        super().__init__(channels)
        self.register_buffer("running_mean_2", torch.zeros(channels))
        self.register_buffer("running_var_2", torch.ones(channels))
        self.momentum_2 = None  # None: the same as the first pass's

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _ACTIVE_PASS.get() == 1:
            return super().forward(x)
        x = self.float_input(x)
        momentum = self.momentum_2 if self.momentum_2 is not None else self.momentum
        return F.batch_norm(x, self.running_mean_2, self.running_var_2, self.weight, self.bias,
                            self.training, momentum if momentum is not None else 0.1, self.eps)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("running_mean", "running_var"):
            if prefix + name + "_2" not in state_dict and prefix + name in state_dict:
                state_dict[prefix + name + "_2"] = state_dict[prefix + name].clone()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


# The pass under way, for this thread (and asyncio task) alone: set on the modules, one
# thread's second pass switched the norms of another thread's first pass, sharing the
# model, to the second pass's statistics (and back, in the middle of its second pass).
_ACTIVE_PASS: contextvars.ContextVar[int] = contextvars.ContextVar("amt_active_pass",
                                                                    default=1)


@contextlib.contextmanager
def active_pass(index: int) -> Iterator[None]:
    """Make every ``PassNorm`` use the statistics of pass ``index`` (1 or 2) in the block,
    in the calling thread; outside any such block, pass 1's."""
    token = _ACTIVE_PASS.set(index)
    try:
        yield
    finally:
        _ACTIVE_PASS.reset(token)


class ConvBlock(nn.Module):
    """Two 3x3 conv + BatchNorm + LeakyReLU, with a 1x1 residual path."""

    def __init__(self, in_channels: int, out_channels: int, norm=Norm):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            norm(out_channels), nn.LeakyReLU(0.01, inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            norm(out_channels))
        self.skip = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In place: at full resolution each of these maps is 16 x frames x 229 floats,
        # and on the CPU a fresh one for every step costs more than the arithmetic.
        out = self.body(x)
        out += self.skip(x)
        return F.leaky_relu_(out, 0.01)


def upsample(up: nn.ConvTranspose2d, x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """``up(x, output_size=size)`` for a kernel-2, stride-2 ``up``, without its slow path.

    Such a layer writes each input pixel into its own 2x2 block, so an odd ``size`` only
    adds a last row or column that no input reaches: it holds the bias alone.  On the
    CPU, PyTorch runs a transposed convolution with ``output_padding`` outside oneDNN
    (16 channels at full resolution: 8.7-17.6 ms, against 2.3-2.5 ms this way for the
    same values), so the layer runs without it and that row or column gets the bias.
    """
    y = F.conv_transpose2d(x, up.weight, up.bias, stride=up.stride)
    pad_h, pad_w = size[0] - y.shape[-2], size[1] - y.shape[-1]
    if pad_h or pad_w:
        y = F.pad(y, (0, pad_w, 0, pad_h))
        bias = up.bias[:, None, None] if up.bias is not None else 0.0
        if pad_w:
            y[..., -pad_w:] = bias
        if pad_h:
            y[..., -pad_h:, :] = bias
    return y


class UNet(nn.Module):
    """Spectrogram-shaped map ``(batch, frames, bins)`` -> same shape in (0, 1).

    Encoder blocks each end in a 2x2 stride-2 convolution; the decoder mirrors them
    with transposed convolutions and skip concatenations.
    """

    def __init__(self, channels: tuple[int, ...], norm=Norm):
        super().__init__()
        self.down_blocks = nn.ModuleList()
        self.downs = nn.ModuleList()
        previous = 1
        for width in channels:
            self.down_blocks.append(ConvBlock(previous, width, norm))
            self.downs.append(nn.Conv2d(width, width, 2, stride=2))
            previous = width
        self.ups = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for level in reversed(range(len(channels))):
            width = channels[level]
            out = channels[level - 1] if level > 0 else channels[0]
            self.ups.append(nn.ConvTranspose2d(previous, width, 2, stride=2))
            self.up_blocks.append(ConvBlock(2 * width, out, norm))
            previous = out
        self.out = nn.Conv2d(previous, 1, 1)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        # Channels-last: with 8-16 channels over 229 bins, oneDNN's convolutions run
        # about 1.5x faster on CPU than in NCHW (benchmarks/README.md).
        x = spec.unsqueeze(1).contiguous(memory_format=torch.channels_last)
        skips = []
        for block, down in zip(self.down_blocks, self.downs):
            x = block(x)
            skips.append(x)
            x = down(x)
        for up, block in zip(self.ups, self.up_blocks):
            skip = skips.pop()
            x = upsample(up, x, skip.shape[-2:])
            x = block(torch.cat([x, skip], dim=1))
        return torch.sigmoid(self.out(x)).squeeze(1)


class PedalHead(nn.Module):
    """The sustain pedal from the transcriber's hidden state through a BiGRU of its own:
    one state for the whole keyboard that changes slowly, which Kong et al. (2021) give a
    network of its own; here a small recurrent layer over the notes' features."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.rnn = nn.GRU(width, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, len(PEDAL_COLUMNS))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.out(recurrent(self.rnn, hidden))


class Transcriber(nn.Module):
    """U-net + BiLSTM -> logits of the four heads, each ``(batch, frames, 88)``, of the
    pedal head ``(batch, frames, 3)`` and the key-down head ``key`` ``(batch, frames, 88)``
    when the config has them."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.unet = UNet(config.unet_channels, PassNorm if config.reconstruction else Norm)
        self.lstm = nn.LSTM(config.n_bins, config.lstm_hidden, batch_first=True,
                            bidirectional=True)
        width = 2 * config.lstm_hidden
        self.onset = nn.Linear(width, C.N_KEYS)
        self.offset = nn.Linear(width, C.N_KEYS)
        self.velocity = nn.Linear(width, C.N_KEYS)
        self.frame = nn.Linear(width + 2 * C.N_KEYS, C.N_KEYS)
        # The pedal is one state for the whole keyboard, read from the same hidden
        # state as the notes it holds (Kong et al. 2021 predict it beside the notes).
        self.pedal = None
        if config.pedal:
            self.pedal = PedalHead(width, config.pedal_hidden) if config.pedal_hidden else \
                nn.Linear(width, len(PEDAL_COLUMNS))
        # The frame head says where a string sounds; this one where its key is held,
        # which differs while the pedal holds the string (a player piano's offsets).
        self.key = nn.Linear(width, C.N_KEYS) if config.key_release else None

    def hidden(self, spec: torch.Tensor) -> torch.Tensor:
        """The state every head reads: U-net, then BiLSTM, ``(batch, frames, 2 x lstm_hidden)``."""
        return recurrent(self.lstm, self.unet(spec))

    def forward(self, spec: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.hidden(spec)
        onset = self.onset(hidden)
        offset = self.offset(hidden)
        # As in Onsets and Frames, the frame head is conditioned on the other
        # heads' beliefs but does not train them.
        evidence = torch.cat([hidden, torch.sigmoid(onset).detach(),
                              torch.sigmoid(offset).detach()], dim=-1)
        out = {"frame": self.frame(evidence), "onset": onset, "offset": offset,
               "velocity": self.velocity(hidden)}
        if self.pedal is not None:
            out["pedal"] = self.pedal(hidden)
        if self.key is not None:
            out["key"] = self.key(hidden)
        return out


class Reconstructor(nn.Module):
    """Frame posteriorgram ``(batch, frames, 88)`` -> spectrogram ``(batch, frames, bins)``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.lstm = nn.LSTM(C.N_KEYS, config.n_bins // 2, batch_first=True,
                            bidirectional=True)
        self.project = nn.Linear(2 * (config.n_bins // 2), config.n_bins)
        self.unet = UNet(config.unet_channels)

    def forward(self, posteriorgram: torch.Tensor) -> torch.Tensor:
        hidden = recurrent(self.lstm, posteriorgram)
        return self.unet(torch.sigmoid(self.project(hidden)))


class UNetTranscriber(nn.Module):
    """The whole network: spectrogram -> head logits (and the reconstruction).

    ``forward`` returns the logits of ``frame``, ``onset``, ``offset`` and
    ``velocity`` from the final pass (the pass over the reconstruction when the
    model has one), ``reconstruction`` (the second U-net's spectrogram) and the
    first pass's logits as ``frame_1`` ... when there is a reconstruction.
    Any number of frames is accepted; padding to the U-net's multiple is internal.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.transcriber = Transcriber(config)
        self.reconstructor = Reconstructor(config) if config.reconstruction else None

    def forward(self, spec: torch.Tensor, full: bool = True,
                reconstruct: bool = False) -> dict[str, torch.Tensor]:
        """``full=False`` stops after the first pass (about 2.5x faster); with
        ``reconstruct`` it still returns the ``reconstruction`` (for figures), without
        transcribing it."""
        n_frames = spec.shape[1]
        pad = -n_frames % self.config.time_multiple
        if pad:
            spec = F.pad(spec, (0, 0, 0, pad))
        with active_pass(1):
            first = self.transcriber(spec)
        if self.reconstructor is None or not full:
            out = dict(first)
            if self.reconstructor is not None and reconstruct:
                out["reconstruction"] = self.reconstructor(torch.sigmoid(first["frame"]))
        else:
            reconstruction = self.reconstructor(torch.sigmoid(first["frame"]))
            with active_pass(2):
                out = dict(self.transcriber(reconstruction))
            out["reconstruction"] = reconstruction
            out.update({f"{name}_1": value for name, value in first.items()})
        return {name: value[:, :n_frames] for name, value in out.items()}
