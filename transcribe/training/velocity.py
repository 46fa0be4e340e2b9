"""The velocity head retrained alone on frozen hidden states, for relative dynamics.

Each training piano maps MIDI velocity to loudness its own way, so a head trained by
squared error on velocity/127 learns their average mapping and compresses the dynamics
of any one of them (session 18: its velocities correlate with a development piece's at
r = 0.64).  Transcription is scored as mir_eval scores velocity, per piece up to a linear
map, so this trains for what a piece's notes say of each other: the loss is, per
segment, one minus the Pearson correlation of predicted and true velocities at the
onsets, plus ``mse_weight`` times the squared error that keeps the scale.

The transcriber's hidden state does not depend on the head, so it is computed once for
``segments`` augmented training segments (``frozen_features``) and the head, a linear
layer, trains on it in minutes on a CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

# Segments with fewer onsets than this say little of their dynamics; the correlation
# term skips them (the squared error does not).
MIN_ONSETS = 5


def frozen_features(loaded, paths: list[Path], segments: int, frames: int, seed: int,
                    work: Path, rooms: list[np.ndarray] | None = None,
                    mix_probability: float = 0.2, batch: int = 4):
    """(hidden ``(segments, frames, width)`` float16 memory map in ``work``, onsets
    ``(segments, frames, 88)`` bool, velocities uint8 1..127 at the onsets) of segments
    drawn and augmented as ``fit`` draws them, through the first pass of ``loaded``."""
    from .data import SegmentSampler
    net, frontend = loaded.model.transcriber, loaded.frontend  # outside a pass: the first's
    sampler = SegmentSampler(paths, frames, frontend, seed=seed, rooms=rooms,
                             mix_probability=mix_probability)
    width = net.velocity.in_features
    work.mkdir(parents=True, exist_ok=True)
    hidden = np.lib.format.open_memmap(work / "hidden.npy", "w+", np.float16,
                                       (segments, frames, width))
    onsets = np.zeros((segments, frames, net.velocity.out_features), bool)
    velocities = np.zeros(onsets.shape, np.uint8)
    multiple = loaded.config.time_multiple
    with torch.inference_mode():
        for start in range(0, segments, batch):
            size = min(batch, segments - start)
            audio, rolls = sampler.sample(size)
            spec = frontend(torch.as_tensor(audio))
            spec = torch.nn.functional.pad(spec, (0, 0, 0, -spec.shape[1] % multiple))
            hidden[start:start + size] = net.hidden(spec)[:, :frames].numpy().astype(np.float16)
            onsets[start:start + size] = rolls["onset"][:, :frames] > 0.5
            velocities[start:start + size] = np.round(rolls["velocity"][:, :frames] * 127)
    hidden.flush()
    return hidden, onsets, velocities


def segment_correlations(predicted: torch.Tensor, onsets: torch.Tensor,
                         velocities: torch.Tensor) -> torch.Tensor:
    """Pearson r of predicted and true velocities at the onsets, one per segment of
    ``(segments, frames, 88)`` with at least ``MIN_ONSETS`` onsets of differing velocity
    (any scale: r does not change with it)."""
    mask = onsets.float()
    predicted, velocities = predicted.float(), velocities.float()
    count = mask.sum((1, 2))
    mean_p = (predicted * mask).sum((1, 2)) / count.clamp(min=1)
    mean_v = (velocities * mask).sum((1, 2)) / count.clamp(min=1)
    dp = (predicted - mean_p[:, None, None]) * mask
    dv = (velocities - mean_v[:, None, None]) * mask
    spread_p, spread_v = (dp ** 2).sum((1, 2)), (dv ** 2).sum((1, 2))
    # Relative floors keep the gradient finite where a segment has no onsets.
    r = (dp * dv).sum((1, 2)) / ((spread_p + 1e-8 * count + 1e-12).sqrt()
                                 * (spread_v + 1e-8 * count + 1e-12).sqrt())
    return r[(count >= MIN_ONSETS) & (spread_v > 0)]


def onset_squared_error(predicted: torch.Tensor, onsets: torch.Tensor,
                        velocities: torch.Tensor) -> torch.Tensor:
    """Mean squared error of predicted velocities over the onset cells (``onsets``: a
    0/1 roll or a boolean mask), in the velocities' own scale."""
    weights = onsets.float()
    return (weights * (predicted - velocities) ** 2).sum() / weights.sum().clamp(min=1)


def velocity_loss(predicted: torch.Tensor, onsets: torch.Tensor, velocities: torch.Tensor,
                  correlation_weight: float = 0.0) -> torch.Tensor:
    """The velocity head's loss in training (velocities in 0..1): the squared error at
    the onsets plus ``correlation_weight`` times the mean of one minus each segment's
    correlation (segments that have none add nothing)."""
    loss = onset_squared_error(predicted, onsets, velocities)
    if correlation_weight:
        r = segment_correlations(predicted, onsets > 0, velocities)
        if len(r):
            loss = loss + correlation_weight * (1 - r).mean()
    return loss


def correlation_and_error(predicted: torch.Tensor, onsets: torch.Tensor,
                          velocities: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(``segment_correlations``; mean squared error over all onsets, velocities 1..127
    scaled to 0..1)."""
    return (segment_correlations(predicted, onsets, velocities),
            onset_squared_error(predicted / 127, onsets, velocities / 127))


def train_velocity_head(head: torch.nn.Linear, hidden: np.ndarray, onsets: np.ndarray,
                        velocities: np.ndarray, epochs: int, mse_weight: float = 1.0,
                        learning_rate: float = 1e-3, batch: int = 32, held_out: float = 0.1,
                        seed: int = 0, log=print) -> tuple[float, float]:
    """Train ``head`` (hidden -> velocity logits) in place on the first ``1 - held_out`` of
    the segments; returns the mean r on the others (held out) before and after."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    n_train = max(1, int(round((1 - held_out) * len(hidden))))

    def tensors(index):
        return (torch.from_numpy(np.asarray(hidden[index], np.float32)),
                torch.from_numpy(onsets[index]), torch.from_numpy(velocities[index].astype(np.float32)))

    def held_out_r() -> float:
        rs = []
        with torch.no_grad():
            for start in range(n_train, len(hidden), 64):
                h, m, v = tensors(np.arange(start, min(start + 64, len(hidden))))
                rs.append(correlation_and_error(torch.sigmoid(head(h)) * 127, m, v)[0])
        return float(torch.cat(rs).mean()) if rs and len(torch.cat(rs)) else float("nan")

    before = held_out_r()
    optimizer = torch.optim.Adam(head.parameters(), lr=learning_rate)
    for epoch in range(epochs):
        order = rng.permutation(n_train)
        for start in range(0, n_train, batch):
            h, m, v = tensors(np.sort(order[start:start + batch]))
            r, error = correlation_and_error(torch.sigmoid(head(h)) * 127, m, v)
            loss = (1 - r).mean() + mse_weight * error if len(r) else mse_weight * error
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        log(f"epoch {epoch + 1}: held-out r {held_out_r():.4f}")
    return before, held_out_r()
