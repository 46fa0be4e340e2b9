"""Function-preserving widening: start a wider network from a trained narrower one.

As Net2WiderNet (Chen, Goodfellow and Shlens, ICLR 2016), with zero-initialised
outgoing weights: every channel and LSTM unit of the narrow network keeps its weights
in the wide one, the new channels and units start from the wide network's own
initialisation, and every weight by which an old unit would read a new one is zero.
So the wide network computes exactly what the narrow one did, and training it goes
on from the narrow network's accuracy instead of from scratch.  The new weights
learn from the first step: the zero weights get gradients through the new units'
(non-zero) activations.

U-net channels and the transcriber's LSTM width may grow; the number of bins and
of keys may not change.  The pedal and key-down heads read the wider hidden state as the
note heads do; the pedal head's own recurrent layer keeps its width.
"""

from __future__ import annotations

import torch
from torch import nn

from ..model import ConvBlock, ModelConfig, PassNorm, UNet, UNetTranscriber

_UNET_FIRST_CONV = "transcriber.unet.down_blocks.{}.body.0.weight"


def config_of_state(state: dict[str, torch.Tensor], like: ModelConfig) -> ModelConfig:
    """The model config that produced ``state``: widths read from the tensors' shapes.

    Fields that no shape shows (front end, sample rate, hop) are taken from ``like``.
    """
    channels = []
    while _UNET_FIRST_CONV.format(len(channels)) in state:
        channels.append(state[_UNET_FIRST_CONV.format(len(channels))].shape[0])
    lstm = state["transcriber.lstm.weight_hh_l0"]
    reconstruction = any(name.startswith("reconstructor.") for name in state)
    pedal = any(name.startswith("transcriber.pedal.") for name in state)
    pedal_gru = state.get("transcriber.pedal.rnn.weight_hh_l0")
    return ModelConfig(spectrogram=like.spectrogram, n_bins=state["transcriber.lstm.weight_ih_l0"].shape[1],
                       unet_channels=tuple(channels), lstm_hidden=lstm.shape[1],
                       reconstruction=reconstruction, sample_rate=like.sample_rate,
                       hop_length=like.hop_length, pedal=pedal,
                       pedal_hidden=pedal_gru.shape[1] if pedal_gru is not None else 0,
                       key_release="transcriber.key.weight" in state)


def _put(new: torch.Tensor, old: torch.Tensor, out_map: torch.Tensor,
         in_map: torch.Tensor | None = None, transposed: bool = False) -> None:
    """Write ``old`` into ``new`` at rows ``out_map`` (and columns ``in_map``).

    Old rows read nothing from the new columns: those weights are set to zero.
    ``transposed`` says the tensor is laid out (in, out, ...), as ConvTranspose2d's is.
    """
    if transposed:
        new, old = new.transpose(0, 1), old.transpose(0, 1)
    if in_map is None:
        new[out_map] = old
        return
    new_columns = torch.ones(new.shape[1], dtype=torch.bool)
    new_columns[in_map] = False
    rows = out_map[:, None]
    new[rows, new_columns.nonzero().squeeze(1)[None, :]] = 0
    new[rows, in_map[None, :]] = old


def _widen_layer(new: nn.Module, old: nn.Module, out_map: torch.Tensor,
                 in_map: torch.Tensor | None) -> None:
    """A conv, transposed conv, linear or BatchNorm layer: old units at ``out_map``."""
    if isinstance(new, nn.BatchNorm2d):
        names = ["weight", "bias", "running_mean", "running_var"]
        if isinstance(new, PassNorm) and isinstance(old, PassNorm):
            names += ["running_mean_2", "running_var_2"]
        for name in names:
            getattr(new, name)[out_map] = getattr(old, name)
        new.num_batches_tracked.copy_(old.num_batches_tracked)
        return
    transposed = isinstance(new, nn.ConvTranspose2d)
    _put(new.weight, old.weight, out_map, in_map, transposed)
    if new.bias is not None:
        new.bias[out_map] = old.bias


def _widen_block(new: ConvBlock, old: ConvBlock, out_map: torch.Tensor,
                 in_map: torch.Tensor) -> None:
    _widen_layer(new.body[0], old.body[0], out_map, in_map)
    _widen_layer(new.body[1], old.body[1], out_map, None)
    _widen_layer(new.body[3], old.body[3], out_map, out_map)
    _widen_layer(new.body[4], old.body[4], out_map, None)
    _widen_layer(new.skip, old.skip, out_map, in_map)


def _widen_unet(new: UNet, old: UNet, new_channels: tuple[int, ...],
                old_channels: tuple[int, ...]) -> None:
    # Old channel k of a level stays channel k; the decoder's input concatenates the
    # up-sampled map and the skip, so the skip's old channels move to new_width + k.
    previous = torch.arange(1)
    for level, width in enumerate(old_channels):
        own = torch.arange(width)
        _widen_block(new.down_blocks[level], old.down_blocks[level], own, previous)
        _widen_layer(new.downs[level], old.downs[level], own, own)
        previous = own
    for index, level in enumerate(reversed(range(len(old_channels)))):
        width = old_channels[level]
        own = torch.arange(width)
        _widen_layer(new.ups[index], old.ups[index], own, previous)
        concatenated = torch.cat([own, new_channels[level] + own])
        out = torch.arange(old_channels[max(level - 1, 0)])
        _widen_block(new.up_blocks[index], old.up_blocks[index], out, concatenated)
        previous = out
    _widen_layer(new.out, old.out, torch.arange(1), previous)


def _widen_lstm(new: nn.LSTM, old: nn.LSTM) -> None:
    """A one-layer bidirectional LSTM with more hidden units per direction."""
    old_hidden, new_hidden = old.hidden_size, new.hidden_size
    units = torch.arange(old_hidden)
    # PyTorch stacks the input, forget, cell and output gates' rows.
    rows = torch.cat([gate * new_hidden + units for gate in range(4)])
    for suffix in ("_l0", "_l0_reverse"):
        _put(getattr(new, "weight_ih" + suffix), getattr(old, "weight_ih" + suffix), rows,
             torch.arange(old.input_size))
        _put(getattr(new, "weight_hh" + suffix), getattr(old, "weight_hh" + suffix), rows, units)
        for name in ("bias_ih", "bias_hh"):
            _put(getattr(new, name + suffix), getattr(old, name + suffix), rows)


def _widen_pedal(new: nn.Module, old: nn.Module, hidden_map: torch.Tensor) -> None:
    """The pedal head: a linear layer, or ``PedalHead``'s GRU (its input widened, its own
    width kept) and output layer."""
    if isinstance(old, nn.Linear):
        _widen_layer(new, old, torch.arange(old.out_features), hidden_map)
        return
    rows = torch.arange(old.rnn.weight_ih_l0.shape[0])
    for suffix in ("_l0", "_l0_reverse"):
        _put(getattr(new.rnn, "weight_ih" + suffix), getattr(old.rnn, "weight_ih" + suffix),
             rows, hidden_map)
        for name in ("weight_hh", "bias_ih", "bias_hh"):
            getattr(new.rnn, name + suffix).copy_(getattr(old.rnn, name + suffix))
    new.out.load_state_dict(old.out.state_dict())


def widen(new: UNetTranscriber, old: UNetTranscriber) -> None:
    """Copy ``old``'s weights into the wider ``new`` so that it computes the same outputs.

    A head that ``new`` has and ``old`` lacks keeps its initial weights."""
    new_config, old_config = new.config, old.config
    if (new_config.n_bins != old_config.n_bins or
            len(new_config.unet_channels) != len(old_config.unet_channels) or
            any(n < o for n, o in zip(new_config.unet_channels, old_config.unet_channels)) or
            new_config.lstm_hidden < old_config.lstm_hidden):
        raise ValueError(f"cannot widen {old_config} into {new_config}: "
                         "only U-net channels and LSTM width may grow")
    if ((old_config.pedal and (not new_config.pedal
                               or new_config.pedal_hidden != old_config.pedal_hidden))
            or (old_config.key_release and not new_config.key_release)):
        raise ValueError(f"cannot widen {old_config} into {new_config}: the pedal and "
                         "key-down heads must be kept, the pedal head at its width")
    with torch.no_grad():
        _widen_unet(new.transcriber.unet, old.transcriber.unet, new_config.unet_channels,
                    old_config.unet_channels)
        _widen_lstm(new.transcriber.lstm, old.transcriber.lstm)
        units = torch.arange(old_config.lstm_hidden)
        both_directions = torch.cat([units, new_config.lstm_hidden + units])
        keys = torch.arange(new.transcriber.onset.out_features)
        for head in ("onset", "offset", "velocity"):
            _widen_layer(getattr(new.transcriber, head), getattr(old.transcriber, head), keys,
                         both_directions)
        # The frame head reads the hidden state, then the onset and offset posteriorgrams.
        beliefs = 2 * new_config.lstm_hidden + torch.arange(2 * len(keys))
        _widen_layer(new.transcriber.frame, old.transcriber.frame, keys,
                     torch.cat([both_directions, beliefs]))
        if old.transcriber.key is not None:
            _widen_layer(new.transcriber.key, old.transcriber.key, keys, both_directions)
        if old.transcriber.pedal is not None:
            _widen_pedal(new.transcriber.pedal, old.transcriber.pedal, both_directions)
        if old.reconstructor is not None and new.reconstructor is not None:
            new.reconstructor.lstm.load_state_dict(old.reconstructor.lstm.state_dict())
            new.reconstructor.project.load_state_dict(old.reconstructor.project.state_dict())
            _widen_unet(new.reconstructor.unet, old.reconstructor.unet,
                        new_config.unet_channels, old_config.unet_channels)


def widened_state_dict(state: dict[str, torch.Tensor], model: UNetTranscriber) -> dict[str, torch.Tensor]:
    """``model``'s state with the narrower network ``state`` widened into it."""
    device = next(model.parameters()).device
    old = UNetTranscriber(config_of_state(state, model.config)).to(device)
    old.load_state_dict(state)
    widen(model, old)
    return model.state_dict()
