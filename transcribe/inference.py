"""Streaming inference: overlapping chunks of audio through the front end and network.

Chunk ``i`` covers frames ``[i*H - K, (i+1)*H + K)`` (``H`` = chunk frames, ``K`` =
context frames on each side, silence before the start and after the end); only
its centre ``H`` frames are kept.  ``H`` and ``K`` are multiples of the U-net's
down-sampling, so every chunk sees the same down-sampling grid and the output
does not depend on the chunk size beyond the BiLSTM's fading memory of the
context.  Several chunks go through the network per forward pass.  Memory is
bounded by the chunk size, not the length of the file, unless the caller keeps
the posteriorgrams (88 keys x 4 heads in float16: about 80 MB per hour).
"""

from __future__ import annotations

import math
import os
import statistics
import time
import types
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from . import constants as C
from .features import Frontend
from .model import HEADS, PEDAL_COLUMNS, UNetTranscriber
from .timing import StageTimes


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA, then Apple MPS, then CPU; ``cpu``/``cuda``/``mps`` (or ``cuda:N``) as asked.

    Raises ``TranscribeError`` for a device this machine does not have.
    """
    from .errors import TranscribeError
    mps = getattr(torch.backends, "mps", None)
    mps_ok = mps is not None and mps.is_available()
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_ok else torch.device("cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise TranscribeError(f"unknown device {device!r}; use auto, cpu, cuda or mps") from None
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise TranscribeError(f"device {device} was asked for but torch sees no CUDA GPU; "
                                  "use cpu or auto")
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise TranscribeError(f"device {device}: this machine has "
                                  f"{torch.cuda.device_count()} CUDA GPU(s)")
    elif chosen.type == "mps" and not mps_ok:
        raise TranscribeError(f"device {device} was asked for but this machine has no Apple "
                              "MPS GPU; use cpu or auto")
    elif chosen.type not in ("cpu", "cuda", "mps"):
        raise TranscribeError(f"unknown device {device!r}; use auto, cpu, cuda or mps")
    return chosen


def usable_cores() -> int:
    """CPU cores this process may run on: its affinity mask, capped by a cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    for path in ("/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"):
        try:
            fields = open(path).read().split()
        except OSError:
            continue
        if path.endswith("cpu.max") and fields and fields[0] != "max":
            cores = min(cores, max(1, math.ceil(int(fields[0]) / int(fields[1]))))
        elif path.endswith("quota_us") and fields and int(fields[0]) > 0:
            period = int(open(path.replace("quota", "period")).read())
            cores = min(cores, max(1, math.ceil(int(fields[0]) / period)))
        break
    return max(1, cores)


BUSY_SAMPLES = 5
BUSY_SAMPLE_GAP_S = 0.005


def busy_cores() -> int:
    """Threads of other processes that stay runnable (``/proc/loadavg``), 0 where unknown.

    The median of ``BUSY_SAMPLES`` reads ``BUSY_SAMPLE_GAP_S`` apart: a process that keeps
    a core busy (or another transcription, which now and then waits for the disk) is
    runnable at most reads, while a kernel thread or a shell that wakes for a moment is
    not.  One read alone saw such a blip at about one start in 30 on this idle 2-core
    machine, and that run then transcribed on one thread of two.
    """
    counts = []
    for sample in range(BUSY_SAMPLES):
        if sample:
            time.sleep(BUSY_SAMPLE_GAP_S)
        try:
            counts.append(int(open("/proc/loadavg").read().split()[3].split("/")[0]))
        except (OSError, IndexError, ValueError):
            return 0
    return max(0, statistics.median_low(counts) - 1)  # this process is one of them


def default_threads() -> int:
    """Intra-op threads for the network: usable cores that others are not busy with, at least 1."""
    return max(1, usable_cores() - busy_cores())


_DIRECTION_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _direction_pool() -> ThreadPoolExecutor:
    """One worker thread, shared by every model of the process, for the backward directions
    (a forked child, which inherits the pool but not its thread, makes its own).

    A new thread starts with every core for its OpenMP regions; the worker is set to one
    once, when it starts (inside ``_recurrent_forward``, while the caller holds torch at one
    thread too), and keeps it whatever the caller sets later.
    """
    global _DIRECTION_POOL
    if _DIRECTION_POOL is None or _DIRECTION_POOL[0] != os.getpid():
        _DIRECTION_POOL = (os.getpid(), ThreadPoolExecutor(
            1, thread_name_prefix="amt-recurrence", initializer=torch.set_num_threads,
            initargs=(1,)))
    return _DIRECTION_POOL[1]


def _one_direction(layer: torch.nn.RNNBase, suffix: str) -> torch.nn.RNNBase:
    """A one-way layer of ``layer``'s type sharing the parameters of one of its directions."""
    one = type(layer)(layer.input_size, layer.hidden_size, batch_first=True, bias=layer.bias)
    for name in one._flat_weights_names:
        setattr(one, name, getattr(layer, name + suffix))  # the same Parameter, not a copy
    return one.eval()


def _run_backward(layer: torch.nn.RNNBase, x: torch.Tensor, inference: bool) -> torch.Tensor:
    # Grad and inference modes are per thread: the caller's hold here too.
    with torch.no_grad(), torch.inference_mode(inference):
        return layer(x.flip(1))[0].flip(1)


def _recurrent_forward(module: torch.nn.RNNBase, x, hx=None):
    """``module.forward`` on the CPU: the layer on one thread, and, where torch has two or
    more and no gradient is wanted, its two directions at once on two threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        directions = module.__dict__.get("directions")
        if (threads < 2 or directions is None or hx is not None or torch.is_grad_enabled()
                or not isinstance(x, torch.Tensor) or x.dim() != 3 or x.device.type != "cpu"):
            return type(module).forward(module, x, hx)
        ahead, behind = directions
        later = _direction_pool().submit(_run_backward, behind, x,
                                         torch.is_inference_mode_enabled())
        return torch.cat([ahead(x)[0], later.result()], dim=-1), None
    finally:
        torch.set_num_threads(threads)


def threaded_recurrence(model: torch.nn.Module) -> torch.nn.Module:
    """Run ``model``'s LSTM and GRU layers one thread per direction, the rest on all of torch's.

    A recurrent layer is hundreds of steps of small matrix products; split over
    threads that sleep between steps (``OMP_WAIT_POLICY=PASSIVE``, set by the CLI so
    that concurrent runs do not starve each other), each step waits for a thread to
    wake.  So each direction runs on one thread; and where torch has two or more and
    no gradient is wanted, the two directions of a bidirectional layer run at once,
    the backward one on a worker thread, with the same values to the bit.  Measured on
    2 cores, 10 minutes of piano, the shipped weights in one process: 11.5 s with the
    BiLSTM and the pedal head's BiGRU on 2 threads, 7.3 s with everything on 1, 5.4 s
    with the layers on one thread (session 8; whole commands: ``benchmarks/README.md``);
    a 20 s chunk's BiLSTM took 62 ms on one thread and 35 ms with its directions at
    once, the BiGRU 35 and 23 ms (session 23).  For CPU inference only
    (``weights.load_model``).  torch's thread count is one per process: transcriptions
    in several Python threads of one process at once would see each other's setting
    (processes, as ``--jobs`` and Ray use, do not).
    """
    for module in model.modules():
        if not isinstance(module, torch.nn.RNNBase):
            continue
        if isinstance(module, (torch.nn.LSTM, torch.nn.GRU)) and module.bidirectional \
                and module.num_layers == 1 and module.batch_first and module.proj_size == 0:
            # In __dict__, not as submodules: the state_dict stays as it was.
            module.__dict__["directions"] = (_one_direction(module, ""),
                                             _one_direction(module, "_reverse"))
        module.forward = types.MethodType(_recurrent_forward, module)
    return model


def set_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads (``default_threads()`` when None); returns the number set.

    torch's default (every core of the machine) is too many for a process that
    shares the machine or runs under a quota.
    """
    threads = default_threads() if threads is None else int(threads)
    torch.set_num_threads(max(1, threads))
    return torch.get_num_threads()


@dataclass
class Posteriorgrams:
    """Network outputs over a whole file, ``(frames, 88)`` float16 per head, in [0, 1]."""

    frame: np.ndarray
    onset: np.ndarray
    offset: np.ndarray
    velocity: np.ndarray
    spectrogram: np.ndarray | None = None  # (frames, bins) input, if kept
    reconstruction: np.ndarray | None = None  # (frames, bins), if the model has one and kept
    pedal: np.ndarray | None = None  # (frames, 3): pedal down, pressed, released (model.PEDAL_COLUMNS)
    key: np.ndarray | None = None  # (frames, 88): key held down (a model with a key-down head)
    frame_rate_hz: float = C.FRAME_RATE_HZ
    # (frames, 88 x 3): each key's level in the input at its first 3 partials, dB
    # (features.Frontend.key_levels); (frames, 88), one level a key, in posteriorgrams
    # saved in session 18; None in those saved before.
    level: np.ndarray | None = None

    @property
    def n_frames(self) -> int:
        return len(self.frame)


@dataclass
class _Window:
    start_sample: int  # may be negative: silence before the file
    length: int


class ChunkCutter:
    """Cuts a stream of audio blocks into the overlapping windows of the chunks."""

    def __init__(self, blocks: Iterable[np.ndarray], frontend: Frontend, chunk_frames: int,
                 context_frames: int):
        self.blocks = iter(blocks)
        self.frontend = frontend
        self.hop = frontend.hop_length
        self.chunk_frames = chunk_frames
        self.context_frames = context_frames
        self.length = frontend.samples_for_frames(chunk_frames + 2 * context_frames)
        self.offset = context_frames * self.hop + frontend.context_samples
        self.buffer = np.zeros(0, np.float32)
        self.buffer_start = 0  # file sample index of buffer[0]
        self.total_samples = 0
        self.exhausted = False

    def _fill(self, until: int) -> None:
        while not self.exhausted and self.buffer_start + len(self.buffer) < until:
            try:
                block = next(self.blocks)
            except StopIteration:
                self.exhausted = True
                break
            self.buffer = np.concatenate([self.buffer, block])
            self.total_samples += len(block)

    def total_frames(self) -> int | None:
        """Frames of the whole file (centred frames: samples // hop + 1), once known."""
        return self.frontend.frames_for_samples(self.total_samples) if self.exhausted else None

    def __iter__(self) -> Iterator[np.ndarray]:
        index = 0
        while True:
            start = index * self.chunk_frames * self.hop - self.offset
            self._fill(start + self.length)
            if self.exhausted and index * self.chunk_frames >= self.total_frames():
                return
            window = np.zeros(self.length, np.float32)
            lo = max(start, self.buffer_start)
            hi = min(start + self.length, self.buffer_start + len(self.buffer))
            if hi > lo:
                window[lo - start:hi - start] = self.buffer[lo - self.buffer_start:hi - self.buffer_start]
            yield window
            index += 1
            next_start = index * self.chunk_frames * self.hop - self.offset
            drop = max(0, next_start - self.buffer_start)
            if drop:
                self.buffer = self.buffer[drop:]
                self.buffer_start += drop


def _batched(windows: Iterator[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    batch = []
    for window in windows:
        batch.append(window)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Rows:
    """A ``(frames, width)`` array filled chunk by chunk, allocated once when the
    length is known in advance (doubling otherwise), so that a long file's
    posteriorgram is never held twice as chunks and as their concatenation."""

    def __init__(self, width: int, capacity: int):
        self.data = np.empty((max(capacity, 1), width), np.float16)
        self.length = 0

    def append(self, rows: np.ndarray) -> None:
        end = self.length + len(rows)
        if end > len(self.data):
            grown = np.empty((max(end, 2 * len(self.data)), self.data.shape[1]), np.float16)
            grown[:self.length] = self.data[:self.length]
            self.data = grown
        self.data[self.length:end] = rows
        self.length = end

    def result(self, n_frames: int) -> np.ndarray:
        return self.data[:min(n_frames, self.length)]


@torch.inference_mode()
def run(model: UNetTranscriber, frontend: Frontend, blocks: Iterable[np.ndarray],
        chunk_frames: int = C.CHUNK_FRAMES, context_frames: int = C.CONTEXT_FRAMES,
        batch_chunks: int | None = None, keep_spectrograms: bool = False,
        progress: Callable[[int], None] | None = None, expected_frames: int | None = None,
        times: StageTimes | None = None,
        on_frames: Callable[[dict[str, np.ndarray]], None] | None = None,
        keep_posteriorgrams: bool = True, full: bool = True) -> Posteriorgrams | None:
    """Posteriorgrams of a whole stream of mono audio blocks at the model rate.

    ``batch_chunks`` chunks go through the network at once (default: by device).
    ``progress`` is called with the number of frames done after each batch.
    ``on_frames`` receives each batch's new frames, ``(frames, 88)`` float16 per
    head, in order (e.g. a ``decode.NoteStream``).  With ``keep_posteriorgrams``
    false nothing is kept and ``None`` is returned: memory then does not grow
    with the length of the file.  ``expected_frames`` (when the length is known)
    sizes the kept arrays once.  ``times`` collects seconds spent reading audio,
    in the spectrogram and in the network.  ``full=False`` runs only the first pass
    of a model that reconstructs (see ``UNetTranscriber.forward``).  A model with a
    pedal head adds ``pedal`` ``(frames, 3)`` to the frames and posteriorgrams, one
    with a key-down head ``key`` ``(frames, 88)``.  Every model adds ``level`` ``(frames,
    88 x VELOCITY_LEVEL_PARTIALS)``, each key's level in the input spectrogram at each of its
    first partials (dB), which decodes velocities.
    """
    multiple = model.config.time_multiple
    if chunk_frames % multiple or context_frames % multiple:
        raise ValueError(f"chunk and context frames must be multiples of {multiple}")
    times = times or StageTimes()
    device = next(model.parameters()).device
    if batch_chunks is None:
        batch_chunks = C.BATCH_CHUNKS_CPU if device.type == "cpu" else C.BATCH_CHUNKS_GPU
    cutter = ChunkCutter(times.iterate(blocks, "audio"), frontend, chunk_frames, context_frames)
    keep = slice(context_frames, context_frames + chunk_frames)
    capacity = (expected_frames or 0) + chunk_frames
    heads = list(HEADS) + (["pedal"] if model.config.pedal else []) + \
        (["key"] if model.config.key_release else [])
    reconstructs = model.config.reconstruction  # the fast pass still draws it for figures
    names = heads + ["level"] + (["spectrogram"] if keep_spectrograms else []) + \
        (["reconstruction"] if keep_spectrograms and reconstructs else [])
    widths = {name: C.N_KEYS for name in HEADS} | {"pedal": len(PEDAL_COLUMNS), "key": C.N_KEYS,
                                                   "level": C.N_KEYS * C.VELOCITY_LEVEL_PARTIALS}
    kept = {name: _Rows(widths.get(name, frontend.n_bins), capacity)
            for name in names} if keep_posteriorgrams else {}
    done = 0
    for batch in _batched(iter(cutter), batch_chunks):
        with times.measure("spectrogram"):
            spec = frontend(torch.from_numpy(np.stack(batch)).to(device))
            level = frontend.key_levels(spec[:, keep])
        with times.measure("network"):
            out = model(spec, full=full, reconstruct=keep_spectrograms)
            tensors = {name: torch.sigmoid(out[name][:, keep]) for name in heads}
            tensors["level"] = level
            if keep_spectrograms:
                tensors["spectrogram"] = spec[:, keep]
                if reconstructs:
                    tensors["reconstruction"] = out["reconstruction"][:, keep]
            # Frames past the end of the file (known once the audio is exhausted,
            # which it is by the last batch) are padding.
            total = cutter.total_frames()
            valid = len(batch) * chunk_frames if total is None else max(0, total - done)
            frames = {name: tensor.reshape(-1, tensor.shape[-1])[:valid].to(torch.float16)
                      .cpu().numpy() for name, tensor in tensors.items()}
        for name, rows in kept.items():
            rows.append(frames[name])
        if on_frames is not None:
            on_frames(frames)
        done += len(batch) * chunk_frames
        if progress is not None:
            progress(done)
    if not keep_posteriorgrams:
        return None
    total = cutter.total_frames() or 0
    arrays = {name: rows.result(total) for name, rows in kept.items()}
    return Posteriorgrams(arrays["frame"], arrays["onset"], arrays["offset"], arrays["velocity"],
                          spectrogram=arrays.get("spectrogram"),
                          reconstruction=arrays.get("reconstruction"),
                          pedal=arrays.get("pedal"), key=arrays.get("key"),
                          frame_rate_hz=frontend.frame_rate_hz, level=arrays["level"])
