"""PNG figures of a transcription: input spectrogram, posteriorgram, reconstruction, piano roll.

Time runs left to right in seconds; keys are labelled by note name (C4 = middle C).
Long recordings are max-pooled along time to at most ``MAX_COLUMNS`` columns so a
figure stays readable and small.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import constants as C
from .decode import OFFSET_S, ONSET_S, PITCH, VELOCITY
from .files import readable

MAX_COLUMNS = 4000


def _pool(image: np.ndarray, max_columns: int = MAX_COLUMNS) -> tuple[np.ndarray, int]:
    """Max-pool ``(frames, rows)`` along frames to at most ``max_columns``; returns (image, factor)."""
    factor = max(1, int(np.ceil(len(image) / max_columns)))
    if factor == 1:
        return image, 1
    n = len(image) // factor * factor
    pooled = image[:n].reshape(-1, factor, image.shape[1]).max(axis=1)
    return pooled, factor


# Every figure has the same size and margins, so their time axes line up when the
# PNGs are viewed one above the other; the colour bar sits in a fixed strip on the right.
FIGURE_HEIGHT_IN = 5.0
MARGINS = {"left": 0.06, "right": 0.90, "bottom": 0.11, "top": 0.90}
BLACK_KEYS = (1, 3, 6, 8, 10)  # pitch classes: C#, D#, F#, G#, A#


def _figure(duration_s: float):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    width = float(np.clip(4 + duration_s / 4, 10, 24))
    fig = plt.figure(figsize=(width, FIGURE_HEIGHT_IN), dpi=100)
    ax = fig.add_axes([MARGINS["left"], MARGINS["bottom"], MARGINS["right"] - MARGINS["left"],
                       MARGINS["top"] - MARGINS["bottom"]])
    colour_axis = fig.add_axes([MARGINS["right"] + 0.015, MARGINS["bottom"], 0.012,
                                MARGINS["top"] - MARGINS["bottom"]])
    return fig, ax, colour_axis


def _key_axis(ax, shade: bool = True) -> None:
    """Keys as on a keyboard: every C and F named (C4 = middle C), black keys shaded."""
    import pretty_midi
    named = [p for p in range(C.MIN_MIDI, C.MAX_MIDI + 1) if p % 12 in (0, 5)]
    ax.set_yticks(named)
    ax.set_yticklabels([pretty_midi.note_number_to_name(p) for p in named], fontsize=7)
    if shade:
        for pitch in range(C.MIN_MIDI, C.MAX_MIDI + 1):
            if pitch % 12 in BLACK_KEYS:
                ax.axhspan(pitch - 0.5, pitch + 0.5, color="0.93", zorder=0, linewidth=0)
    ax.set_ylim(C.MIN_MIDI - 0.5, C.MAX_MIDI + 0.5)
    ax.set_ylabel("key")


def _titled(title: str, name: str | None) -> str:
    # A "$" in a file name would start matplotlib's mathtext: "x$\\alpha$.wav" drew an
    # alpha, "a$\\q$.wav" failed the job.
    # A name that is not UTF-8 failed the job when its title was drawn.
    return readable(name).replace("$", r"\$") + ": " + title if name else title


def _warn(ax, warnings: Sequence[str], width_in: float) -> None:
    """The recording's warnings (clipped, cut short, too quiet...), by which its figures are
    to be judged, in a box at the top left of the plot, as the review page shows them."""
    if not warnings:
        return
    # At 8 points about 16 characters an inch: lines of half the figure's width, clear of
    # the piano roll's pedal legend at the top right.
    columns = max(40, int(width_in * 8))
    lines = [textwrap.fill(f"Warning: {warning}", columns, subsequent_indent="  ")
             for warning in warnings]
    ax.text(0.005, 0.985, "\n".join(lines), transform=ax.transAxes, ha="left", va="top",
            fontsize=8, color=C.WARNING_COLOUR, parse_math=False, zorder=10,
            bbox=dict(boxstyle="round,pad=0.3", facecolor="white", alpha=0.9,
                      edgecolor=C.WARNING_COLOUR, linewidth=0.8))


def _save(fig, path: Path, overwrite: bool = True) -> None:
    import io

    import matplotlib.pyplot as plt

    from .files import write_atomic
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    write_atomic(path, buffer.getvalue(), overwrite)


def plot_posteriorgram(posteriorgram: np.ndarray, path: Path, frame_rate_hz: float,
                       title: str = "Frame posteriorgram", overwrite: bool = True,
                       threshold: float | None = None, notes: np.ndarray | None = None,
                       name: str | None = None, start_s: float = 0.0,
                       width_s: float | None = None, warnings: Sequence[str] = ()) -> None:
    """``(frames, 88)`` probabilities as an image on the key axis.

    With ``threshold`` the colour scale turns bright at it (what becomes a note is what
    stands out); ``notes`` are outlined on top.
    """
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.patches import Rectangle
    image, factor = _pool(np.asarray(posteriorgram, np.float32))
    duration = width_s or len(posteriorgram) / frame_rate_hz
    fig, ax, colour_axis = _figure(duration)
    norm = TwoSlopeNorm(vmin=0, vcenter=min(max(threshold, 0.01), 0.99), vmax=1) \
        if threshold is not None else None
    shown = ax.imshow(image.T, origin="lower", aspect="auto", cmap="magma",
                      norm=norm, vmin=None if norm else 0, vmax=None if norm else 1,
                      extent=(start_s, start_s + len(image) * factor / frame_rate_hz,
                              C.MIN_MIDI - 0.5, C.MAX_MIDI + 0.5), interpolation="nearest")
    for onset, offset, pitch, _ in np.asarray(notes if notes is not None else []).reshape(-1, 4):
        ax.add_patch(Rectangle((onset, pitch - 0.5), offset - onset, 1.0, fill=False,
                               edgecolor="cyan", linewidth=0.6))
    _key_axis(ax, shade=False)
    ax.set_xlim(start_s, start_s + max(duration, 1e-3))
    ax.set_xlabel("time (s)")
    label = title + (f" (decoding threshold {threshold:g}: the colour turns bright there; "
                     "decoded notes outlined)" if threshold is not None else "")
    ax.set_title(_titled(label, name), fontsize=10)
    _warn(ax, warnings, fig.get_figwidth())
    fig.colorbar(shown, cax=colour_axis, label="probability")
    _save(fig, path, overwrite)


def plot_spectrogram(spectrogram: np.ndarray, path: Path, frame_rate_hz: float,
                     title: str, kind: str = "mel", overwrite: bool = True,
                     name: str | None = None, start_s: float = 0.0,
                     width_s: float | None = None, warnings: Sequence[str] = ()) -> None:
    """``(frames, bins)`` log power on the key axis of the other figures, in dB.

    Each bin is drawn at the pitch of its centre frequency (A4 = 440 Hz), so a note's
    fundamental sits on its key; bins below A0 and above C8 are left out.
    """
    from .features import bin_frequencies, to_decibels
    image, factor = _pool(np.asarray(spectrogram, np.float32))
    duration = width_s or len(spectrogram) / frame_rate_hz
    fig, ax, colour_axis = _figure(duration)
    frequencies = bin_frequencies(kind, image.shape[1])
    pitches = 69 + 12 * np.log2(frequencies / 440.0)
    edges = np.r_[pitches[0] - (pitches[1] - pitches[0]) / 2,
                  (pitches[1:] + pitches[:-1]) / 2,
                  pitches[-1] + (pitches[-1] - pitches[-2]) / 2]
    decibels = to_decibels(image)
    times = start_s + np.arange(len(image) + 1) * factor / frame_rate_hz
    shown = ax.pcolormesh(times, edges, decibels.T, cmap="viridis", shading="flat",
                          vmin=float(np.percentile(decibels, 5)) if decibels.size else None,
                          vmax=float(decibels.max()) if decibels.size else None,
                          rasterized=True)
    _key_axis(ax, shade=False)
    ax.set_xlim(start_s, start_s + max(duration, 1e-3))
    ax.set_xlabel("time (s)")
    ax.set_title(_titled(title + " (each bin at the pitch of its centre frequency)", name),
                 fontsize=10)
    _warn(ax, warnings, fig.get_figwidth())
    fig.colorbar(shown, cax=colour_axis, label="power (dB)")
    _save(fig, path, overwrite)


def plot_piano_roll(notes: np.ndarray, path: Path, duration_s: float,
                    overwrite: bool = True, pedal: np.ndarray | None = None,
                    name: str | None = None, start_s: float = 0.0,
                    warnings: Sequence[str] = ()) -> None:
    """Decoded notes as bars coloured by velocity (with its colour bar) on a keyboard axis;
    sustain-pedal spans shaded below A0."""
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.patches import Patch
    fig, ax, colour_axis = _figure(duration_s)
    notes = np.asarray(notes).reshape(-1, 4)
    colours = plt.get_cmap("plasma_r")
    velocity = Normalize(1, 127)
    _key_axis(ax)
    if len(notes):
        ax.barh(notes[:, PITCH], notes[:, OFFSET_S] - notes[:, ONSET_S], left=notes[:, ONSET_S],
                height=0.8, color=colours(velocity(notes[:, VELOCITY])), edgecolor="none",
                zorder=2)
    low = C.MIN_MIDI - 0.5
    if pedal is not None:
        low = C.MIN_MIDI - 3.5
        spans = np.asarray(pedal).reshape(-1, 2)
        # A page of a long recording: the spans it shows, as its notes are (the title's count).
        spans = spans[(spans[:, 1] > start_s) & (spans[:, 0] < start_s + duration_s)]
        shade = dict(color="tab:green", alpha=0.6)
        ax.barh(np.full(len(spans), C.MIN_MIDI - 2), spans[:, 1] - spans[:, 0], left=spans[:, 0],
                height=2, edgecolor="none", **shade)
        # Its own swatch: a page without a span has no bar for the legend to take it from.
        swatch = Patch(label=f"sustain pedal, down {len(spans)} time{'s' * (len(spans) != 1)}",
                       **shade)
        ax.legend(handles=[swatch], loc="upper right", fontsize="small")
    ax.set_xlim(start_s, start_s + max(duration_s, 1e-3))
    ax.set_ylim(low, C.MAX_MIDI + 0.5)
    ax.set_xlabel("time (s)")
    ax.set_title(_titled(f"piano roll, {len(notes)} note{'s' * (len(notes) != 1)}", name),
                 fontsize=10)
    _warn(ax, warnings, fig.get_figwidth())
    fig.colorbar(ScalarMappable(velocity, colours), cax=colour_axis, label="velocity")
    _save(fig, path, overwrite)


PAGE_S = 30.0  # a page of every figure: a readable time scale, the same on every page


def pages(duration_s: float, page_s: float = PAGE_S) -> int:
    """How many pages the figures of a recording of ``duration_s`` take."""
    return max(1, int(np.ceil(duration_s / page_s - 1e-9)))


def figure_path(stem: Path, kind: str, page: int, n_pages: int) -> Path:
    """``STEM.KIND.png``, or ``STEM.KIND-NN.png`` (page NN, from 01) when there are pages."""
    suffix = f"{kind}.png" if n_pages == 1 else f"{kind}-{page + 1:02d}.png"
    return stem.with_name(f"{stem.name}.{suffix}")


_PAGE = re.compile(r"(?P<stem>.+\.[a-z]+)-\d{2,}\.png")


def unpaged(name: str) -> str | None:
    """``STEM.KIND.png`` for a page's name, ``STEM.KIND-NN.png`` (``figure_path``); else None."""
    match = _PAGE.fullmatch(name)
    return f"{match['stem']}.png" if match else None


def plot_all(result, stem: Path, kind: str = "mel", overwrite: bool = True) -> list[Path]:
    """Write ``STEM.spectrogram.png``, ``.posteriorgram.png``, ``.reconstruction.png``
    (when the model reconstructs) and ``.pianoroll.png``; returns the paths.  The
    recording's warnings stand on every figure.

    A recording longer than ``PAGE_S`` gets numbered pages of every figure
    (``STEM.pianoroll-01.png``...), each covering the same ``PAGE_S`` seconds.
    """
    p = result.kept_posteriorgrams()
    name = Path(result.source).name if result.source else stem.name
    n_pages = pages(result.duration_s)
    width = PAGE_S if n_pages > 1 else None
    rate = p.frame_rate_hz
    notes = np.asarray(result.notes).reshape(-1, 4)
    warnings = [readable(warning) for warning in result.warnings]
    written = []
    for page in range(n_pages):
        start, end = page * PAGE_S, (page + 1) * PAGE_S
        frames = slice(int(round(start * rate)), int(round(end * rate)) if n_pages > 1 else None)
        label = name + (f", page {page + 1} of {n_pages}" if n_pages > 1 else "")
        shown = notes[(notes[:, OFFSET_S] > start) & (notes[:, ONSET_S] < end)] \
            if n_pages > 1 else notes
        if p.spectrogram is not None:
            path = figure_path(stem, "spectrogram", page, n_pages)
            plot_spectrogram(p.spectrogram[frames], path, rate, "input log-Mel spectrogram",
                             kind, overwrite, label, start, width, warnings)
            written.append(path)
        path = figure_path(stem, "posteriorgram", page, n_pages)
        plot_posteriorgram(p.frame[frames], path, rate, "frame posteriorgram", overwrite,
                           result.options.frame_threshold, shown, label, start, width,
                           warnings)
        written.append(path)
        if p.reconstruction is not None:
            path = figure_path(stem, "reconstruction", page, n_pages)
            plot_spectrogram(p.reconstruction[frames], path, rate,
                             "spectrogram reconstructed from the posteriorgram (second U-net)",
                             kind, overwrite, label, start, width, warnings)
            written.append(path)
        path = figure_path(stem, "pianoroll", page, n_pages)
        plot_piano_roll(shown, path, width or result.duration_s, overwrite, result.pedal, label,
                        start, warnings)
        written.append(path)
    return written
