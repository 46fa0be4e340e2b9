"""The training loop: losses of the seed plus onset/offset/velocity heads, resumable.

Losses (Cheuk et al. 2020; Hawthorne et al. 2018): binary cross-entropy on the
frame, onset and offset posteriorgrams, masked squared error of velocity on onset
frames, and when the model reconstructs, the squared error of the reconstruction
against the input spectrogram plus the first pass's head losses.  A checkpoint
(model, optimiser, step, sampler state, config and git commit) is written every
few minutes; ``train`` resumes from it.  Validation scores, and step checkpoints
hold, an exponential moving average of the weights (Polyak averaging): it smooths
the step-to-step noise of small batches at a high learning rate.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import subprocess
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..features import Frontend
from ..files import write_atomic
from ..model import ModelConfig, UNetTranscriber
from .data import SegmentSampler
from .velocity import velocity_loss
from .widen import widened_state_dict


@dataclasses.dataclass
class TrainConfig:
    steps: int = 20000
    batch_size: int = 8
    segment_frames: int = 160  # 5.12 s
    learning_rate: float = 1e-3
    lr_decay: float = 0.98  # every lr_decay_steps
    lr_decay_steps: int = 250
    grad_clip: float = 3.0
    ema_decay: float = 0.999  # 0 turns weight averaging off
    seed: int = 0
    checkpoint_minutes: float = 5.0
    log_every: int = 25
    mix_probability: float = 0.0  # share of segments that are two pieces summed
    max_minutes: float = 0.0  # stop (and checkpoint) after this much training; 0: no limit
    data_workers: int = 0  # processes drawing batches (a GPU outruns one CPU core)
    # Train only these heads (e.g. ["key"]): the rest frozen, BatchNorm statistics kept.
    # A head new to trained weights then learns at a fraction of a whole step's cost.
    train_only: list[str] = dataclasses.field(default_factory=list)
    # Mixed precision: the forward pass under bfloat16 autocast (the U-nets' convolutions;
    # the recurrent layers stay float32, ``model.recurrent``).  Weights, optimiser and
    # losses stay float32, so no loss scaling.  Where bfloat16 fails on a device, the run
    # logs it and goes on in float32.
    amp: bool = False
    # [after, steps]: once this many steps of a session have run, profile the next
    # ``steps`` and log where their time went (how busy the GPU was, how many kernels a
    # step launches, the costliest operators).  A GPU busy for a small share of each step
    # is waiting on Python and kernel launches: a larger batch then costs little more.
    profile: list[int] = dataclasses.field(default_factory=list)
    # Weight, in the pedal head's loss, of its pressed and released frames and of the
    # down column's frames beside each change (``pedal_weights``).  A pianist's quick
    # re-pedal lifts for 3-7 frames in a span of dozens; at 1 the head smooths over
    # the lift and two spans decode as one.
    pedal_event_weight: float = 1.0
    # Weight, in the onset and frame losses, of the onsets of notes played below velocity
    # ``SOFT_VELOCITY`` and of their first ``SOFT_FRAMES`` sounding frames
    # (``soft_note_weights``).  The development piano's pianissimo (velocities 1-40, its
    # softest layer low-passed at 1 kHz) is found 40 % of the time against 86 % above 45;
    # the frame head often sees such a note while the onset head does not fire.
    soft_onset_weight: float = 1.0
    # Weight of one minus each segment's correlation of predicted and true velocities at
    # its onsets, added to the velocity's squared error (``velocity.segment_correlations``):
    # each piano maps velocity to loudness its own way, and the squared error alone
    # teaches their average, which compresses any one piano's dynamics (session 18).
    velocity_correlation_weight: float = 0.0
    # For a model that reconstructs: train the second pass (the reconstruction and the
    # transcription of it) on every this-many-th step only; the others train the first
    # pass alone, the one transcription runs by default (the card's ``default_pass``).  On
    # 2 CPU cores a step of the wide model (batch 8 x 320 frames) took 10.9-13.9 s with
    # both passes and 2.2-3.9 s with the first alone; at 4, 4.2 s on average over 85
    # minutes.  The gradients the two passes' losses send into the shared transcriber
    # point the same way (cosine 0.86 over six batches, shipped weights, session 21): the
    # second pass adds little to the first but its cost.
    full_pass_every: int = 1


SOFT_VELOCITY = 45
SOFT_FRAMES = 4


def _start_profile(device: torch.device) -> torch.profiler.profile:
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
        torch.cuda.synchronize(device)
    profiler = torch.profiler.profile(activities=activities)
    profiler.start()
    return profiler


def _profile_summary(profiler: torch.profiler.profile, device: torch.device, steps: int,
                     started: float) -> str:
    """One log line: wall time a step, how much of it the device (or, on a CPU, the
    operators) was busy, and the operators that took most of that."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall_s = (time.monotonic() - started) / steps
    profiler.stop()
    events = profiler.key_averages()
    on_gpu = device.type == "cuda"

    def busy_us(event) -> float:
        if on_gpu:
            return event.self_device_time_total
        return event.self_cpu_time_total

    operators = [e for e in events if e.device_type == torch.autograd.DeviceType.CPU]
    if on_gpu:  # the kernels' own time; an operator's device time is its kernels'
        busy_s = sum(busy_us(e) for e in events
                     if e.device_type != torch.autograd.DeviceType.CPU) / 1e6 / steps
    else:
        busy_s = sum(busy_us(e) for e in operators) / 1e6 / steps
    where = "the GPU busy" if on_gpu else "in operators"
    line = (f"profile of {steps} steps: {wall_s:.3f} s/step; {where} {busy_s:.3f} s/step "
            f"({100 * busy_s / wall_s:.0f} %)")
    if on_gpu:
        launches = sum(e.count for e in operators if "LaunchKernel" in e.key)
        line += f", {launches / steps:,.0f} kernel launches a step"
    total_us = sum(busy_us(e) for e in operators) or 1.0
    top = sorted(operators, key=busy_us, reverse=True)[:8]
    return line + "; most of it in " + ", ".join(
        f"{e.key} {100 * busy_us(e) / total_us:.0f} %" for e in top if busy_us(e) > 0)


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def pedal_weights(roll: torch.Tensor, weight: float) -> torch.Tensor:
    """Per-frame weights of the pedal loss for a roll ``(batch, frames, 3)`` (down,
    pressed, released): ``weight`` on the pressed and released frames and on the down
    frames on either side of a change, 1 elsewhere."""
    weights = torch.ones_like(roll)
    if weight == 1.0:
        return weights
    down = roll[..., 0]
    changes = down[:, 1:] != down[:, :-1]
    beside = torch.zeros_like(down, dtype=torch.bool)
    beside[:, 1:] |= changes
    beside[:, :-1] |= changes
    weights[..., 0] = torch.where(beside, weight, 1.0)
    weights[..., 1:] = torch.where(roll[..., 1:] > 0, weight, 1.0)
    return weights


def soft_note_weights(rolls: dict[str, torch.Tensor], weight: float) -> torch.Tensor:
    """Per-cell weights ``(batch, frames, 88)`` for the onset and frame losses: ``weight``
    on the onset cells of notes below ``SOFT_VELOCITY`` and on the frame cells of their
    first ``SOFT_FRAMES`` frames, 1 elsewhere."""
    onsets = rolls["onset"] > 0
    soft = onsets & (rolls["velocity"] * 127 < SOFT_VELOCITY - 0.5)
    near = soft.clone()
    for shift in range(1, SOFT_FRAMES):
        near[:, shift:] |= soft[:, :-shift]
    near &= rolls["frame"] > 0
    return torch.where(soft | near, weight, 1.0)


def weighted_bce(logits: torch.Tensor, target: torch.Tensor,
                 weights: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy as a weighted mean over cells (0 where every weight is 0)."""
    each = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (each * weights).sum() / weights.sum().clamp(min=1)


def head_losses(logits: dict[str, torch.Tensor], rolls: dict[str, torch.Tensor],
                suffix: str = "", pedal_event_weight: float = 1.0,
                soft_onset_weight: float = 1.0,
                velocity_correlation_weight: float = 0.0) -> dict[str, torch.Tensor]:
    """Per-head losses of one pass; ``suffix`` picks ``frame_1`` ... for the first pass."""
    # With a soft-onset weight, the frame and onset losses are weighted means, as the
    # pedal's below: the soft notes weigh more within each loss.
    soft = soft_note_weights(rolls, soft_onset_weight) if soft_onset_weight != 1.0 else None
    losses = {}
    for name in ("frame", "onset", "offset"):
        if soft is not None and name != "offset":
            losses[name] = weighted_bce(logits[name + suffix], rolls[name], soft)
        else:
            losses[name] = F.binary_cross_entropy_with_logits(logits[name + suffix], rolls[name])
    losses["velocity"] = velocity_loss(torch.sigmoid(logits["velocity" + suffix]),
                                       rolls["onset"], rolls["velocity"],
                                       velocity_correlation_weight)
    # The pedal and where each key is held are taught only by segments whose render knew
    # them (sampled pianos; SoundFont caches know neither): binary cross-entropy over
    # the segments with ``NAME_known`` set.
    for name in ("pedal", "key"):
        if name + suffix in logits and name in rolls:
            known = rolls[f"{name}_known"].view(-1, 1, 1)
            # A weighted mean: the event frames weigh more within the pedal's loss, and
            # its scale stays that of a mean.  (A plain mean of the weighted frames made
            # the two pedal losses 67 % of the loss in the session-13 GPU run, where at
            # weight 1 they had made 39 %.)  Its share still grows with the weight, since
            # the event frames are the pedal's hardest: 61 % at weight 10 in session 15.
            weights = known.expand_as(rolls[name])
            if name == "pedal":
                weights = weights * pedal_weights(rolls[name], pedal_event_weight)
            losses[name] = weighted_bce(logits[name + suffix], rolls[name], weights)
    return {name + suffix: value for name, value in losses.items()}


def compute_losses(model: UNetTranscriber, spec: torch.Tensor, rolls: dict[str, torch.Tensor],
                   pedal_event_weight: float = 1.0, soft_onset_weight: float = 1.0,
                   velocity_correlation_weight: float = 0.0,
                   full: bool = True) -> dict[str, torch.Tensor]:
    """The losses of one batch, named by head; a model that reconstructs names its first
    pass's ``frame_1`` ..., and with ``full=False`` (``TrainConfig.full_pass_every``) runs
    and returns that pass alone."""
    weights = {"pedal_event_weight": pedal_event_weight, "soft_onset_weight": soft_onset_weight,
               "velocity_correlation_weight": velocity_correlation_weight}
    if model.reconstructor is not None and not full:
        first = {f"{name}_1": value for name, value in model(spec, full=False).items()}
        return head_losses(first, rolls, suffix="_1", **weights)
    out = model(spec)
    losses = head_losses(out, rolls, **weights)
    if "reconstruction" in out:
        losses.update(head_losses(out, rolls, suffix="_1", **weights))
        losses["reconstruction"] = F.mse_loss(out["reconstruction"], spec.clamp(0, 1))
    return losses


def export_checkpoint(checkpoint: Path, weights: Path, card: dict | None = None) -> str:
    """Write a checkpoint's model (its weight average when it has one) as inference weights
    with their card: the step, the validation scores if any, the git commit, then ``card``.
    Returns the SHA-256."""
    from ..weights import save_weights
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = UNetTranscriber(ModelConfig.from_dict(state["model_config"]))
    model.load_state_dict(averaged_state(state))
    full = {"training_step": state.get("step"), "git_commit": state.get("git_commit")}
    if state.get("scores") is not None:
        full["validation"] = state["scores"]
    return save_weights(model, weights, {**full, **(card or {})})


def averaged_state(state: dict) -> dict:
    """The weights to export from a checkpoint: its weight average when it holds one."""
    if state.get("averaged"):  # a run's last.pt (AveragedModel's state: "module." names)
        return {name.removeprefix("module."): value for name, value in state["averaged"].items()
                if name != "n_averaged"}
    return state["model"]


@torch.no_grad()
def recalibrate_second_pass(model: UNetTranscriber, frontend: Frontend, sampler: SegmentSampler,
                            batches: int = 200, batch_size: int = 8) -> UNetTranscriber:
    """Estimate the BatchNorm statistics of the second pass (``model.PassNorm``) and of the
    reconstruction U-net that feeds it, on ``batches`` batches of training segments; no
    weight and no first-pass statistic changes.

    For weights trained while both passes shared one set of running statistics: the
    first pass's (trained on mostly its own input) stay as training left them, which
    measured better than re-estimating them on a small sample.  Returns the model in
    eval mode.
    """
    device = next(model.parameters()).device
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    saved = [(m.momentum, getattr(m, "momentum_2", None)) for m in norms]
    rebuilt = {id(m) for m in model.reconstructor.modules()} if model.reconstructor else set()
    for module in norms:
        if id(module) in rebuilt:  # the reconstruction U-net feeds the second pass: re-estimated
            module.reset_running_stats()
            module.momentum = 0.05
        else:
            module.momentum = 0.0  # frozen: running = 1 * running + 0 * batch
        if hasattr(module, "running_mean_2"):
            module.running_mean_2.zero_()
            module.running_var_2.fill_(1.0)
            module.momentum_2 = 0.05
    model.train()
    for _ in range(batches):
        audio, _ = sampler.sample(batch_size)
        model(frontend(torch.as_tensor(audio).to(device)))
    for module, (momentum, momentum_2) in zip(norms, saved):
        module.momentum = momentum
        if hasattr(module, "momentum_2"):
            module.momentum_2 = momentum_2
    return model.eval()


def average_state(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor],
                  share: float) -> dict[str, torch.Tensor]:
    """``(1 - share) x first + share x second`` for every floating-point tensor of two
    state dicts of one architecture (a "model soup", Wortsman et al. 2022: weights
    fine-tuned from one start lie in one basin, and their average often beats both).
    Integer buffers (BatchNorm's batch counts) are the first's."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must lie in 0-1, not {share}")
    if first.keys() != second.keys():
        raise ValueError("the two weights have different tensors: not one architecture")
    out = {}
    for name, value in first.items():
        if value.shape != second[name].shape:
            raise ValueError(f"{name}: shapes {tuple(value.shape)} and "
                             f"{tuple(second[name].shape)} differ: not one architecture")
        out[name] = ((1 - share) * value + share * second[name]
                     if value.is_floating_point() else value.clone())
    return out


def load_checkpoint(path: Path, device: torch.device) -> dict:
    return torch.load(path, map_location=device, weights_only=False)


def _drop_rows_after(log_path: Path, step: int) -> None:
    """Keep the log rows of steps up to ``step``, the checkpoint a run resumes from.

    A run stopped between checkpoints has logged steps that the resumed run trains
    again; without this the CSV would hold those steps twice, with different numbers.
    """
    with open(log_path, newline="") as handle:
        rows = list(csv.reader(handle))
    kept = rows[:1] + [row for row in rows[1:] if row and int(row[0]) <= step]
    if len(kept) == len(rows):
        return
    buffer = io.StringIO()
    csv.writer(buffer).writerows(kept)
    write_atomic(log_path, buffer.getvalue().encode())


class _Batches(torch.utils.data.IterableDataset):
    """Endless batches from a ``SegmentSampler``; each worker process draws its own."""

    def __init__(self, sampler: SegmentSampler, batch_size: int, seed: list[int]):
        self.sampler, self.batch_size, self.seed = sampler, batch_size, seed

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        self.sampler.rng = np.random.default_rng([*self.seed, worker])
        while True:
            yield self.sampler.sample(self.batch_size)


def batches(sampler: SegmentSampler, batch_size: int, workers: int, seed: list[int]):
    """An endless iterator of (audio, rolls) batches, drawn in ``workers`` processes (0: here)."""
    if workers <= 0:
        while True:
            yield sampler.sample(batch_size)
    loader = torch.utils.data.DataLoader(_Batches(sampler, batch_size, seed), batch_size=None,
                                         num_workers=workers, prefetch_factor=4,
                                         persistent_workers=True)
    iterator = iter(loader)
    try:
        while True:
            yield next(iterator)
    finally:  # closed (the run takes in more files): its worker processes end now
        iterator._shutdown_workers()


def train(model_config: ModelConfig, train_config: TrainConfig, audio_paths: list[Path],
          run_dir: Path, device: str = "cpu", init_weights: Path | None = None,
          validate: Callable[[UNetTranscriber, Frontend], dict] | None = None,
          log: Callable[[str], None] = print, rooms: list[np.ndarray] | None = None,
          on_checkpoint: Callable[[Path], None] | None = None,
          stop_file: Path | None = None,
          more_audio: Callable[[], tuple[list[Path], bool]] | None = None) -> Path:
    """Train (or resume) in ``run_dir``; returns the path of the last checkpoint.

    Training stops, with a checkpoint, after ``max_minutes`` or as soon as ``stop_file``
    exists (a lent machine's later call ends the run it left going at the time it chooses).

    ``on_checkpoint`` is called with that path after every checkpoint (a lent machine's
    run exports it each time, so a run cut short still returns weights).

    ``more_audio()`` returns files rendered since its last call and whether their render
    is over (``corpus.BackgroundRender.poll``): every ``log_every`` steps the run takes
    them in once they add a quarter to its files, or the render is over.

    ``init_weights`` starts a new run from another run's checkpoint or from exported
    weights (e.g. the transcriber pre-trained without reconstruction); missing parameters
    keep their initial values.  Weights of a narrower network are widened into this one
    (``widen.py``), so a wider model starts from their accuracy.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = run_dir / "last.pt"
    torch.manual_seed(train_config.seed)
    device = torch.device(device)
    model = UNetTranscriber(model_config).to(device)
    frontend = Frontend(model_config.spectrogram, model_config.sample_rate,
                        model_config.hop_length, model_config.n_bins).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=train_config.learning_rate)
    sampler = SegmentSampler(audio_paths, train_config.segment_frames, frontend,
                             seed=train_config.seed, rooms=rooms,
                             mix_probability=train_config.mix_probability)
    step, elapsed_s, seen_s = 0, 0.0, 0.0
    if checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path, device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed_s, seen_s = state["step"], state["elapsed_s"], state["seen_s"]
        sampler.rng = np.random.default_rng([train_config.seed, step])
        log(f"resumed from {checkpoint_path} at step {step}")
    elif init_weights is not None:
        state = load_checkpoint(init_weights, device)
        # A run's checkpoint holds the model under "model", and its weight average, which
        # is what it exports and validates, so that is what goes on; exported weights
        # (weights/*.pt) are the state_dict itself, so training can go on from the shipped
        # weights.
        weights = averaged_state(state) if isinstance(state.get("model"), dict) else state
        current = model.state_dict()
        if any(name in current and current[name].shape != value.shape
               for name, value in weights.items()):
            weights = widened_state_dict(weights, model)
            log(f"widened {init_weights} into this model's U-net {model_config.unet_channels}, "
                f"LSTM {model_config.lstm_hidden} (same outputs to start)")
        missing, unexpected = model.load_state_dict(weights, strict=False)
        log(f"initialised from {init_weights}; new parameters: {len(missing)} tensors")
    if train_config.train_only:
        heads = tuple(f"transcriber.{head}." for head in train_config.train_only)
        for name, parameter in model.named_parameters():
            parameter.requires_grad = name.startswith(heads)
        trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
        if not trained:
            raise ValueError(f"train_only {train_config.train_only}: no such head in the model")
        log(f"training only {', '.join(train_config.train_only)}: {trained:,} parameters")
    # The average starts from the weights as loaded (n_averaged 0 copies them).
    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(train_config.ema_decay),
                             use_buffers=True) if train_config.ema_decay > 0 else None
    if averaged is not None and checkpoint_path.exists() and state.get("averaged"):
        averaged.load_state_dict(state["averaged"])
    evaluated = averaged.module if averaged is not None else model
    (run_dir / "model_config.json").write_text(model_config.to_json())
    (run_dir / "train_config.json").write_text(
        json.dumps(dataclasses.asdict(train_config), indent=2) + "\n")
    log(f"{sum(p.numel() for p in model.parameters()):,} parameters; "
        f"{sampler.hours:.1f} h of rendered audio in {len(audio_paths)} files")

    log_path = run_dir / "log.csv"
    if log_path.exists():
        _drop_rows_after(log_path, step)
    new_log = not log_path.exists()
    log_file = open(log_path, "a", newline="")
    writer = csv.writer(log_file)
    if new_log:
        writer.writerow(["step", "elapsed_s", "audio_hours_seen", "lr", "loss", "losses",
                         "validation"])

    def save() -> None:
        buffer = io.BytesIO()
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "averaged": averaged.state_dict() if averaged is not None else None,
                    "step": step, "elapsed_s": elapsed_s, "seen_s": seen_s,
                    "model_config": dataclasses.asdict(model_config),
                    "train_config": dataclasses.asdict(train_config),
                    "git_commit": git_commit()}, buffer)
        write_atomic(checkpoint_path, buffer.getvalue())
        if on_checkpoint is not None:
            log_file.flush()
            on_checkpoint(checkpoint_path)

    segment_s = train_config.segment_frames * model_config.hop_length / model_config.sample_rate
    last_save = time.monotonic()
    running: dict[str, float] = {}
    counts: dict[str, int] = {}  # steps that had each loss (full_pass_every: not all do)
    running_steps = 0
    model.train(not train_config.train_only)
    stream = batches(sampler, train_config.batch_size, train_config.data_workers,
                     [train_config.seed, step])
    amp = train_config.amp and (device.type != "cuda" or torch.cuda.is_bf16_supported())
    if train_config.amp and not amp:
        log(f"{device} has no bfloat16: training in float32")

    def backward(spec: torch.Tensor, rolls_t: dict, amp: bool) -> dict[str, torch.Tensor]:
        full = step % max(1, train_config.full_pass_every) == 0
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            losses = compute_losses(model, spec, rolls_t, train_config.pedal_event_weight,
                                    train_config.soft_onset_weight,
                                    train_config.velocity_correlation_weight, full)
        sum(losses.values()).backward()
        return losses

    pending: list[Path] = []
    growing = more_audio is not None

    def take_in_more() -> None:
        """More rendered files into the sampler, and data workers that hold them."""
        nonlocal stream, pending, growing
        new, over = more_audio()
        pending += new
        growing = not over
        if pending and (over or len(pending) >= len(sampler.audio) / 4):
            started = time.monotonic()
            sampler.add(pending)
            stream.close()  # its workers end; new ones start with every file
            stream = batches(sampler, train_config.batch_size, train_config.data_workers,
                             [train_config.seed, step])
            log(f"step {step}: {len(pending)} more rendered files, now {len(sampler.audio)} "
                f"({sampler.hours:.1f} h of audio" + ("" if growing else ", all rendered")
                + f"; loaded and data workers restarted in {time.monotonic() - started:.1f} s)")
            pending = []
        elif over:
            log(f"step {step}: all rendered, {len(sampler.audio)} files ({sampler.hours:.1f} h)")

    session_started = interval_started = time.monotonic()
    waited_s = 0.0
    profile_after, profile_steps = (list(train_config.profile) + [0, 0])[:2]
    session_steps, profiler = 0, None
    while step < train_config.steps:
        if profile_steps and session_steps == profile_after:
            try:
                profiler, profile_started = _start_profile(device), time.monotonic()
            except Exception as error:  # a measurement: where it fails, training goes on
                log(f"profiling failed on {device}: {error}")
        if train_config.max_minutes and \
                time.monotonic() - session_started > train_config.max_minutes * 60:
            log(f"stopping at step {step}: {train_config.max_minutes:g} min of training")
            break
        if stop_file is not None and stop_file.exists():
            log(f"stopping at step {step}: {stop_file} exists")
            break
        started = time.monotonic()
        lr = train_config.learning_rate * train_config.lr_decay ** (step / train_config.lr_decay_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        audio, rolls = next(stream)
        waited_s += time.monotonic() - started
        audio_t = torch.as_tensor(audio).to(device, non_blocking=True)
        rolls_t = {name: torch.as_tensor(roll).to(device, non_blocking=True)
                   for name, roll in rolls.items()}
        with torch.no_grad():
            spec = frontend(audio_t)
        optimizer.zero_grad(set_to_none=True)
        try:
            losses = backward(spec, rolls_t, amp)
        except RuntimeError as error:
            if not amp:
                raise
            amp = False
            log(f"bfloat16 autocast failed on {device} ({str(error).splitlines()[0]}); "
                f"training goes on in float32")
            optimizer.zero_grad(set_to_none=True)
            losses = backward(spec, rolls_t, amp)
        torch.nn.utils.clip_grad_norm_(model.parameters(), train_config.grad_clip)
        optimizer.step()
        if averaged is not None:
            averaged.update_parameters(model)
        step += 1
        session_steps += 1
        if profiler is not None and session_steps == profile_after + profile_steps:
            try:
                log(_profile_summary(profiler, device, profile_steps, profile_started))
            except Exception as error:  # a measurement: where it fails, training goes on
                log(f"profiling failed on {device}: {error}")
            profiler = None
        seen_s += train_config.batch_size * segment_s
        elapsed_s += time.monotonic() - started
        # Summed on the device: reading each loss every step would wait for the GPU.
        for name, value in losses.items():
            running[name] = running.get(name, 0.0) + value.detach()
            counts[name] = counts.get(name, 0) + 1
        running_steps += 1
        if step % train_config.log_every == 0:
            means = {name: float(total) / counts[name] for name, total in running.items()}
            total = sum(means.values())
            # The wall time of the steps since the last line, and how much of it the loop
            # waited for batches (the data workers are the bottleneck when that is most).
            interval = (time.monotonic() - interval_started) / running_steps
            log(f"step {step} loss {total:.4f} ({', '.join(f'{k} {v:.4f}' for k, v in means.items())}) "
                f"{elapsed_s / step:.2f} s/step, {seen_s / 3600:.1f} h seen; lately {interval:.3f} "
                f"s/step, {waited_s / running_steps:.3f} s waiting for data")
            running, counts, running_steps = {}, {}, 0
            interval_started, waited_s = time.monotonic(), 0.0
            writer.writerow([step, f"{elapsed_s:.1f}", f"{seen_s / 3600:.3f}", f"{lr:.6f}",
                             f"{total:.5f}", json.dumps({k: round(v, 5) for k, v in means.items()}),
                             ""])
            log_file.flush()
        if growing and step % train_config.log_every == 0:
            take_in_more()
        if time.monotonic() - last_save > train_config.checkpoint_minutes * 60 or \
                step == train_config.steps:
            save()
            last_save = time.monotonic()
            if validate is not None:
                evaluated.eval()
                scores = validate(evaluated, frontend)
                model.train(not train_config.train_only)
                log(f"validation at step {step}: {scores}")
                writer.writerow([step, f"{elapsed_s:.1f}", f"{seen_s / 3600:.3f}", f"{lr:.6f}",
                                 "", "", json.dumps(scores)])
                log_file.flush()
                buffer = io.BytesIO()
                torch.save({"model": evaluated.state_dict(), "step": step, "scores": scores,
                            "weights_averaged": averaged is not None,
                            "model_config": dataclasses.asdict(model_config),
                            "git_commit": git_commit()}, buffer)
                write_atomic(run_dir / f"step{step:06d}.pt", buffer.getvalue())
            last_save = time.monotonic()
    if profiler is not None:  # the run stopped before the profiled steps were done
        profiler.stop()
    stream.close()
    save()  # where a time limit stopped the run, or a no-op rewrite at the last step
    log_file.close()
    return checkpoint_path
