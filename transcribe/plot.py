"""PNG figures of a transcription: input spectrogram, posteriorgram, reconstruction, piano roll.

Time runs left to right in seconds; keys are labelled by note name (C4 = middle C).
Long recordings are max-pooled along time to at most ``MAX_COLUMNS`` columns so a
figure stays readable and small.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import constants as C
from .decode import OFFSET_S, ONSET_S, PITCH, VELOCITY

MAX_COLUMNS = 4000


def _pool(image: np.ndarray, max_columns: int = MAX_COLUMNS) -> tuple[np.ndarray, int]:
    """Max-pool ``(frames, rows)`` along frames to at most ``max_columns``; returns (image, factor)."""
    factor = max(1, int(np.ceil(len(image) / max_columns)))
    if factor == 1:
        return image, 1
    n = len(image) // factor * factor
    pooled = image[:n].reshape(-1, factor, image.shape[1]).max(axis=1)
    return pooled, factor


def _figure(duration_s: float):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    width = float(np.clip(4 + duration_s / 4, 8, 24))
    return plt.subplots(figsize=(width, 5), dpi=100, constrained_layout=True)


def _key_axis(ax) -> None:
    import pretty_midi
    octaves = [p for p in range(C.MIN_MIDI, C.MAX_MIDI + 1) if p % 12 == 0]  # every C
    ax.set_yticks(octaves)
    ax.set_yticklabels([pretty_midi.note_number_to_name(p) for p in octaves])
    ax.set_ylabel("key")


def _save(fig, path: Path, overwrite: bool = True) -> None:
    import io

    import matplotlib.pyplot as plt

    from .files import write_atomic
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    write_atomic(path, buffer.getvalue(), overwrite)


def plot_posteriorgram(posteriorgram: np.ndarray, path: Path, frame_rate_hz: float,
                       title: str = "Frame posteriorgram", overwrite: bool = True) -> None:
    """``(frames, 88)`` probabilities as an image, keys labelled."""
    image, factor = _pool(np.asarray(posteriorgram, np.float32))
    duration = len(posteriorgram) / frame_rate_hz
    fig, ax = _figure(duration)
    shown = ax.imshow(image.T, origin="lower", aspect="auto", cmap="magma", vmin=0, vmax=1,
                      extent=(0, len(image) * factor / frame_rate_hz, C.MIN_MIDI - 0.5,
                              C.MAX_MIDI + 0.5), interpolation="nearest")
    _key_axis(ax)
    ax.set_xlabel("time (s)")
    ax.set_title(title)
    fig.colorbar(shown, ax=ax, label="probability", pad=0.01)
    _save(fig, path, overwrite)


def plot_spectrogram(spectrogram: np.ndarray, path: Path, frame_rate_hz: float,
                     title: str, kind: str = "mel", overwrite: bool = True) -> None:
    """``(frames, bins)`` scaled log-power as an image, with bin centre frequencies labelled."""
    image, factor = _pool(np.asarray(spectrogram, np.float32))
    duration = len(spectrogram) / frame_rate_hz
    fig, ax = _figure(duration)
    shown = ax.imshow(image.T, origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=1,
                      extent=(0, len(image) * factor / frame_rate_hz, 0, image.shape[1]),
                      interpolation="nearest")
    frequencies = _bin_frequencies(kind, image.shape[1])
    ticks = [f for f in (100, 200, 500, 1000, 2000, 4000, 8000)
             if frequencies[0] <= f <= frequencies[-1]]
    ax.set_yticks([np.interp(f, frequencies, np.arange(len(frequencies))) for f in ticks])
    ax.set_yticklabels([f"{f:g}" if f < 1000 else f"{f // 1000:g}k" for f in ticks])
    ax.set_ylabel("frequency (Hz)")
    ax.set_xlabel("time (s)")
    ax.set_title(title)
    fig.colorbar(shown, ax=ax, label="log power (scaled)", pad=0.01)
    _save(fig, path, overwrite)


def _bin_frequencies(kind: str, n_bins: int) -> np.ndarray:
    if kind == "cqt":
        return C.CQT_FMIN_HZ * 2 ** (np.arange(n_bins) / C.CQT_BINS_PER_OCTAVE)
    # Centres of the Slaney-scale Mel filters (n_bins + 2 edges, the ends dropped).
    from nnAudio.librosa_functions import mel_frequencies
    return mel_frequencies(n_bins + 2, fmin=C.MEL_FMIN_HZ, fmax=C.MEL_FMAX_HZ, htk=False)[1:-1]


def plot_piano_roll(notes: np.ndarray, path: Path, duration_s: float,
                    overwrite: bool = True, pedal: np.ndarray | None = None) -> None:
    """Decoded notes as bars, brightness by velocity; sustain-pedal spans shaded below A0."""
    import matplotlib.pyplot as plt
    fig, ax = _figure(duration_s)
    notes = np.asarray(notes).reshape(-1, 4)
    if len(notes):
        colours = plt.get_cmap("Blues")(0.35 + 0.65 * notes[:, VELOCITY] / 127)
        ax.barh(notes[:, PITCH], notes[:, OFFSET_S] - notes[:, ONSET_S], left=notes[:, ONSET_S],
                height=0.8, color=colours, edgecolor="none")
    low = C.MIN_MIDI - 0.5
    if pedal is not None:
        low = C.MIN_MIDI - 3.5
        spans = np.asarray(pedal).reshape(-1, 2)
        ax.barh(np.full(len(spans), C.MIN_MIDI - 2), spans[:, 1] - spans[:, 0], left=spans[:, 0],
                height=2, color="tab:orange", alpha=0.6, edgecolor="none",
                label=f"sustain pedal ({len(spans)} presses)")
        ax.legend(loc="upper right", fontsize="small")
    ax.set_xlim(0, max(duration_s, 1e-3))
    ax.set_ylim(low, C.MAX_MIDI + 0.5)
    _key_axis(ax)
    ax.grid(axis="y", color="0.9", linewidth=0.5)
    ax.set_xlabel("time (s)")
    ax.set_title(f"Piano roll: {len(notes)} notes (darker = louder)")
    _save(fig, path, overwrite)


def plot_all(result, stem: Path, kind: str = "mel", overwrite: bool = True) -> list[Path]:
    """Write ``STEM.spectrogram.png``, ``.posteriorgram.png``, ``.reconstruction.png``
    (when the model reconstructs) and ``.pianoroll.png``; returns the paths."""
    p = result.kept_posteriorgrams()
    written = []
    if p.spectrogram is not None:
        path = stem.with_name(stem.name + ".spectrogram.png")
        plot_spectrogram(p.spectrogram, path, p.frame_rate_hz, "Input log-Mel spectrogram", kind,
                         overwrite)
        written.append(path)
    path = stem.with_name(stem.name + ".posteriorgram.png")
    plot_posteriorgram(p.frame, path, p.frame_rate_hz, overwrite=overwrite)
    written.append(path)
    if p.reconstruction is not None:
        path = stem.with_name(stem.name + ".reconstruction.png")
        plot_spectrogram(p.reconstruction, path, p.frame_rate_hz,
                         "Reconstructed spectrogram (second U-net)", kind, overwrite)
        written.append(path)
    path = stem.with_name(stem.name + ".pianoroll.png")
    plot_piano_roll(result.notes, path, result.duration_s, overwrite, result.pedal)
    written.append(path)
    return written
