"""Transcription metrics with mir_eval, as the literature's tables report them, and ``amt-evaluate``.

- frame: precision/recall/F1 of active pitches on the model's frame grid
  (``mir_eval.multipitch``), from the decoded notes as in Hawthorne et al. 2018;
- note: onset within 50 ms and same pitch (``offset_ratio=None``);
- note with offset: also offset within 20 % of the note or 50 ms (mir_eval's default);
- note with velocity: ``mir_eval.transcription_velocity`` (onset + velocity, no offset);
- by register (``amt-evaluate --by-register``): note-level recall and precision per
  octave of the keyboard, counts summed over files.
Reference notes follow the sustain pedal (CC64), as the training labels do.
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import numpy as np

from .. import constants as C

METRICS = ("frame", "note", "note_offset", "note_velocity")
# Octaves of the keyboard (MIDI pitch ranges, end excluded) for ``register_counts``.
REGISTERS = (("A0-B1", 21, 36), ("C2-B2", 36, 48), ("C3-B3", 48, 60), ("C4-B4", 60, 72),
             ("C5-B5", 72, 84), ("C6-C8", 84, 109))


def _hz(pitches: np.ndarray) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(pitches, np.float64) - 69) / 12)


def _valid(notes: np.ndarray) -> np.ndarray:
    notes = np.asarray(notes, np.float64).reshape(-1, 4)
    return notes[notes[:, 1] > notes[:, 0]]


def _frame_lists(notes: np.ndarray, n_frames: int, frame_rate_hz: float):
    from .labels import notes_to_rolls
    roll = notes_to_rolls(notes, 0, n_frames, frame_rate_hz)["frame"] > 0
    times = np.arange(n_frames) / frame_rate_hz
    freqs = [_hz(np.flatnonzero(row) + C.MIN_MIDI) for row in roll]
    return times, freqs


def f1(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def score(reference: np.ndarray, estimate: np.ndarray,
          frame_rate_hz: float = C.FRAME_RATE_HZ) -> dict[str, float]:
    """Precision, recall and F1 of every level for one piece; notes ``(n, 4)``.

    Keys: ``{level}_{precision|recall|f1}`` for level in ``METRICS``.
    """
    import mir_eval
    ref, est = _valid(reference), _valid(estimate)
    out: dict[str, float] = {}
    end = max(ref[:, 1].max(initial=0), est[:, 1].max(initial=0))
    n_frames = int(np.ceil(end * frame_rate_hz)) + 1
    ref_t, ref_f = _frame_lists(ref, n_frames, frame_rate_hz)
    est_t, est_f = _frame_lists(est, n_frames, frame_rate_hz)
    frame = mir_eval.multipitch.evaluate(ref_t, ref_f, est_t, est_f)
    out["frame_precision"], out["frame_recall"] = frame["Precision"], frame["Recall"]
    out["frame_f1"] = f1(frame["Precision"], frame["Recall"])
    args = (ref[:, :2], _hz(ref[:, 2]), est[:, :2], _hz(est[:, 2]))
    for level, ratio in (("note", None), ("note_offset", 0.2)):
        if len(ref) and len(est):
            p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(*args, offset_ratio=ratio)
        else:
            p = r = f = 0.0
        out[f"{level}_precision"], out[f"{level}_recall"], out[f"{level}_f1"] = p, r, f
    if len(ref) and len(est):
        p, r, f, _ = mir_eval.transcription_velocity.precision_recall_f1_overlap(
            ref[:, :2], _hz(ref[:, 2]), ref[:, 3], est[:, :2], _hz(est[:, 2]), est[:, 3],
            offset_ratio=None)
    else:
        p = r = f = 0.0
    out["note_velocity_precision"], out["note_velocity_recall"], out["note_velocity_f1"] = p, r, f
    return {k: float(v) for k, v in out.items()}


def register_counts(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Note-level (onset) matches by octave of the keyboard, to see where notes are missed.

    Returns int ``(len(REGISTERS), 3)``: reference notes, those matched (mir_eval's note
    level: same pitch, onset within 50 ms) and estimated notes, per register of
    ``REGISTERS``.  Sum over files, then recall = matched / reference and precision =
    matched / estimated.
    """
    import mir_eval
    ref, est = _valid(reference), _valid(estimate)
    matched = np.zeros(len(ref), bool)
    if len(ref) and len(est):
        pairs = mir_eval.transcription.match_notes(ref[:, :2], _hz(ref[:, 2]), est[:, :2],
                                                   _hz(est[:, 2]), offset_ratio=None)
        matched[[i for i, _ in pairs]] = True
    counts = np.zeros((len(REGISTERS), 3), np.int64)
    for row, (_, low, high) in enumerate(REGISTERS):
        in_ref = (ref[:, 2] >= low) & (ref[:, 2] < high)
        counts[row] = (in_ref.sum(), (matched & in_ref).sum(),
                       ((est[:, 2] >= low) & (est[:, 2] < high)).sum())
    return counts


def register_recall_precision(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision per register from summed ``register_counts`` (0 where no notes)."""
    n_ref, n_matched, n_est = counts.T
    return n_matched / np.maximum(n_ref, 1), n_matched / np.maximum(n_est, 1)


def register_table(counts: np.ndarray, title: str):
    """A rich table of summed ``register_counts``: notes, recall, precision, F1 per octave."""
    from rich.table import Table
    table = Table(title=title, title_justify="left")
    for column in ("register", "reference notes", "recall", "precision", "F1"):
        table.add_column(column, justify="left" if column == "register" else "right")
    for (name, _, _), n_ref, recall, precision in zip(REGISTERS, counts[:, 0],
                                                       *register_recall_precision(counts)):
        table.add_row(name, str(n_ref), f"{100 * recall:.1f}", f"{100 * precision:.1f}",
                      f"{100 * f1(precision, recall):.1f}")
    return table


def mean_scores(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = [k for k in rows[0] if isinstance(rows[0][k], float)] if rows else []
    return {k: float(np.mean([row[k] for row in rows])) for k in keys}


def reference_notes(midi_path: Path) -> np.ndarray:
    """Ground-truth notes of a MIDI file, offsets extended by the sustain pedal."""
    import pretty_midi

    from .synth import piano_notes
    return piano_notes(pretty_midi.PrettyMIDI(str(midi_path)))


def pair_files(audio_dir: Path, midi_dir: Path) -> list[tuple[Path, Path]]:
    """(audio, reference MIDI) pairs matched by relative path without suffix."""
    from ..audio import AUDIO_EXTENSIONS
    midis = {p.relative_to(midi_dir).with_suffix(""): p for p in midi_dir.rglob("*")
             if p.suffix.lower() in (".mid", ".midi")}
    pairs = []
    for audio in sorted(audio_dir.rglob("*")):
        if audio.suffix.lower() in AUDIO_EXTENSIONS:
            key = audio.relative_to(audio_dir).with_suffix("")
            if key in midis:
                pairs.append((audio, midis[key]))
    return pairs


def evaluate_model(loaded, pairs: list[tuple[Path, Path]], options=None,
                   progress=None) -> list[dict]:
    """Transcribe each audio file with ``loaded`` and score it against its MIDI."""
    from ..transcriber import transcribe
    rows = []
    for audio, midi in pairs:
        started = time.perf_counter()
        result = transcribe(audio, loaded, options=options)
        reference = reference_notes(midi)
        row = {"file": audio.name, "seconds": time.perf_counter() - started,
               **score(reference, result.notes),
               "registers": register_counts(reference, result.notes)}
        rows.append(row)
        if progress:
            progress(row)
    return rows


def tune_thresholds(loaded, pairs: list[tuple[Path, Path]], onset=(0.2, 0.3, 0.4, 0.5),
                    frame=(0.2, 0.3, 0.4, 0.5), offset=(0.5, 1.0), min_note_ms=(30.0, 60.0),
                    frame_onset=(0.4, 0.5, 0.6, 1.0)):
    """Grid-search decoding thresholds for the best mean note F1 (ties: note-with-offset F1).

    The network runs once per file; each combination only re-decodes.  Returns
    (best ``DecodingOptions``, its mean scores, all ``(options, means)`` tried).
    """
    import itertools

    from ..decode import DecodingOptions
    from ..transcriber import transcribe
    runs = [(transcribe(audio, loaded), reference_notes(midi)) for audio, midi in pairs]
    tried = []
    for values in itertools.product(onset, frame, offset, min_note_ms, frame_onset):
        options = DecodingOptions(onset_threshold=values[0], frame_threshold=values[1],
                                  offset_threshold=values[2], min_note_ms=values[3],
                                  frame_onset_threshold=values[4])
        rows = [score(reference, result.redecode(**options.as_dict()).notes)
                for result, reference in runs]
        tried.append((options, mean_scores(rows)))
    best = max(tried, key=lambda item: (item[1]["note_f1"], item[1]["note_offset_f1"]))
    return best[0], best[1], tried


def evaluate_predictions(pairs: list[tuple[Path, Path]], predictions: Path,
                         reference_root: Path) -> list[dict]:
    """Score MIDI files another transcriber wrote (mirroring the reference tree) against the references."""
    from ..midi import midi_to_notes
    import pretty_midi
    rows = []
    for audio, midi in pairs:
        predicted = predictions / midi.relative_to(reference_root)
        if not predicted.exists():
            predicted = predicted.with_suffix(".mid")
        estimate = midi_to_notes(pretty_midi.PrettyMIDI(str(predicted))) if predicted.exists() \
            else np.zeros((0, 4))
        reference = reference_notes(midi)
        rows.append({"file": audio.name, **score(reference, estimate),
                     "registers": register_counts(reference, estimate)})
    return rows


def write_csv(rows: list[dict], path: Path) -> None:
    from ..files import write_atomic
    if not rows:
        return
    import io
    buffer = io.StringIO()
    # Per-file scores; the register counts (arrays) are summed in the --by-register table.
    fields = [k for k, v in rows[0].items() if not isinstance(v, np.ndarray)]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{row[k]:.4f}" if isinstance(row[k], float) else row[k])
                         for k in fields})
    write_atomic(path, buffer.getvalue().encode())


def summary_table(means: dict[str, float], title: str):
    from rich.table import Table
    table = Table(title=title, title_justify="left")
    table.add_column("level")
    for column in ("precision", "recall", "F1"):
        table.add_column(column, justify="right")
    for level in METRICS:
        table.add_row(level.replace("_", " + "), *(f"{100 * means[f'{level}_{k}']:.1f}"
                                                   for k in ("precision", "recall", "f1")))
    return table


def main(argv=None):
    import click

    from ..cli import decoding_options, pop_decoding_options

    @click.command(context_settings={"help_option_names": ["-h", "--help"]})
    @click.argument("audio_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
    @click.argument("midi_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
    @click.option("--weights", type=click.Path(path_type=Path), help="Weights to evaluate (default: shipped).")
    @click.option("--predictions", type=click.Path(exists=True, file_okay=False, path_type=Path),
                  help="Score MIDI files from another transcriber (same relative paths) instead.")
    @click.option("--csv", "csv_path", type=click.Path(path_type=Path), help="Per-file scores CSV.")
    @click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda", "mps"]))
    @decoding_options
    @click.option("--by-register", is_flag=True,
                  help="Also note recall and precision per octave of the keyboard.")
    def command(audio_dir, midi_dir, weights, predictions, csv_path, device, by_register,
                **decoding):
        """Frame, note and note-with-offset P/R/F1 (mir_eval) of AUDIO_DIR against MIDI_DIR.

        Files pair by relative path without suffix (a/b.flac with a/b.mid).
        """
        from rich.console import Console

        from ..errors import TranscribeError
        console = Console(stderr=True)
        pairs = pair_files(audio_dir, midi_dir)
        if not pairs:
            console.print(f"amt-evaluate: error: no audio in {audio_dir} has a MIDI file of "
                          f"the same name in {midi_dir}")
            sys.exit(1)
        if predictions is not None:
            rows = evaluate_predictions(pairs, predictions, midi_dir)
            title = f"{predictions} on {len(rows)} files"
        else:
            from ..inference import pick_device
            from ..weights import load_model
            try:
                loaded = load_model(weights, pick_device(device))
            except TranscribeError as error:
                console.print(f"amt-evaluate: error: {error}")
                sys.exit(1)
            options = pop_decoding_options(decoding)
            rows = evaluate_model(loaded, pairs, options, progress=lambda row: console.print(
                f"{row['file']}: note F1 {100 * row['note_f1']:.1f}", highlight=False))
            title = f"{loaded.path} on {len(rows)} files"
        if csv_path:
            write_csv(rows, csv_path)
        Console().print(summary_table(mean_scores(rows), title))
        if by_register:
            counts = sum(row["registers"] for row in rows)
            Console().print(register_table(counts, "note level (50 ms onsets) by register, "
                                                   "summed over files"))

    command.main(args=argv, prog_name="amt-evaluate")
