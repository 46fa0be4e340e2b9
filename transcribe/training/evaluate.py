"""Evaluation runs: transcribe paired audio and MIDI files and score them (``metrics``).

Files pair by relative path without suffix; reference notes follow the sustain pedal
(CC64), as the training labels do.  Also the grid search of decoding thresholds.
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import constants as C
from .metrics import (band_counts, error_counts, matched_onset_errors, mean_scores, pedal_scores,
                      register_counts, score)


def read_midi(midi_path: Path, reader: str = "pretty_midi"):
    """``midi_path`` parsed by pretty_midi (or ``reader="mido"``); a file that does not
    parse raises ``TranscribeError`` naming it."""
    from ..errors import TranscribeError
    try:
        if reader == "mido":
            import mido
            return mido.MidiFile(str(midi_path))
        import pretty_midi
        return pretty_midi.PrettyMIDI(str(midi_path))
    except Exception as error:  # the parsers raise many types for a damaged file
        why = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        raise TranscribeError(f"{midi_path}: not a readable MIDI file ({why})") from None


def reference_notes(midi_path: Path, sustain: bool = True) -> np.ndarray:
    """Ground-truth notes of a MIDI file, offsets extended by the sustain pedal (unless
    ``sustain`` is false: offsets at the key releases)."""
    from .synth import piano_notes
    return piano_notes(read_midi(midi_path), sustain)


def pair_files(audio_dir: Path, midi_dir: Path,
               unpaired: list[Path] | None = None) -> list[tuple[Path, Path]]:
    """(audio, reference MIDI) pairs matched by relative path without suffix, letter case
    and the composing of accents aside where the name differs only by them and no other
    file takes the MIDI file (names copied from Windows or a Mac, where they do not matter:
    ``Song.WAV`` with ``song.mid``); the audio files without a reference are appended to
    ``unpaired``, if given."""
    from ..audio import AUDIO_EXTENSIONS
    midis = {p.relative_to(midi_dir).with_suffix(""): p for p in midi_dir.rglob("*")
             if p.suffix.lower() in (".mid", ".midi")}
    audio = [(a.relative_to(audio_dir).with_suffix(""), a) for a in sorted(audio_dir.rglob("*"))
             if a.suffix.lower() in AUDIO_EXTENSIONS]
    by_case: dict[str, list[Path]] = {}
    for key, midi in midis.items():
        by_case.setdefault(_folded(key), []).append(midi)
    taken = {key for key, _ in audio if key in midis}
    pairs = []
    for key, recording in audio:
        if key in midis:
            pairs.append((recording, midis[key]))
            continue
        others = [midi for midi in by_case.get(_folded(key), [])
                  if midi.relative_to(midi_dir).with_suffix("") not in taken]
        if len(others) == 1:
            pairs.append((recording, others[0]))
        elif unpaired is not None:
            unpaired.append(recording)
    return pairs


def _folded(path: Path | str) -> str:
    """``path`` without letter case, and its accents composed one way (a Mac writes "É" as
    E and an accent, most others as one character), as Windows' and a Mac's disks compare
    names."""
    import unicodedata
    return unicodedata.normalize("NFC", Path(path).as_posix()).casefold()


def reference_pedal(midi_path: Path) -> np.ndarray:
    """Sustain-pedal spans ``(k, 2)`` of a MIDI file, read from every track."""
    from .pianos import pedal_spans
    return pedal_spans(read_midi(midi_path, "mido"))


@dataclass
class Reference:
    """A reference MIDI file, read once: ``notes`` lengthened through its sustain pedal,
    ``key_notes`` ending at the key releases, ``pedal`` its sustain-pedal spans."""

    notes: np.ndarray
    key_notes: np.ndarray
    pedal: np.ndarray


def read_references(pairs: list[tuple[Path, Path]]) -> list[Reference]:
    """The references of ``pairs``, all read, and their audio files looked at (``probe``),
    before any audio is transcribed: a damaged file ends an evaluation at once, not after
    the network has heard every file before it."""
    from ..audio import probe
    references = [Reference(reference_notes(midi), reference_notes(midi, sustain=False),
                            reference_pedal(midi)) for _, midi in pairs]
    for audio, _ in pairs:
        probe(audio)
    return references


def note_rows(reference: np.ndarray, estimate: np.ndarray) -> dict:
    """The scores of one file, its counts by register, velocity and polyphony and of its
    errors by kind (``metrics.error_counts``), and the onset errors (s) of its notes found
    (``metrics.matched_onset_errors``)."""
    return {**score(reference, estimate), "registers": register_counts(reference, estimate),
            "velocities": band_counts(reference, estimate, "velocity"),
            "polyphony": band_counts(reference, estimate, "polyphony"),
            "errors": error_counts(reference, estimate),
            "onset_errors": matched_onset_errors(reference, estimate)}


def evaluate_model(loaded, pairs: list[tuple[Path, Path]], options=None,
                   progress=None, model_pass: str | None = None,
                   pages: dict[Path, Path] | None = None) -> list[dict]:
    """Transcribe each audio file with ``loaded`` and score it against its MIDI.

    Notes are scored as the default pedal mode writes them (``constants.
    DEFAULT_PEDAL_MODE``), against the reference notes lengthened through its pedal.  A
    model with a pedal head also gets ``extend_frame_*`` and ``extend_note_offset_*``
    (the notes as ``--pedal extend`` writes them, against the same reference) and, on a
    reference with pedal, ``pedal_scores`` and ``cc64_note_offset_*``: the notes as
    ``--pedal cc64`` writes them against the reference's key releases.

    ``pages`` maps audio files to where each one's review page is to be written, its notes
    shown against the reference (``amt-evaluate --html``).
    """
    from ..transcriber import transcribe
    rows = []
    for (audio, midi), reference in zip(pairs, read_references(pairs)):
        started = time.perf_counter()
        result = transcribe(audio, loaded, options=options, keep_posteriorgrams=False,
                            model_pass=model_pass)
        notes, _ = result.with_pedal(C.DEFAULT_PEDAL_MODE)
        row = {"file": audio.name, "seconds": time.perf_counter() - started,
               **note_rows(reference.notes, notes)}
        if result.pedal is not None:
            extended = score(reference.notes, result.with_pedal("extend")[0])
            row.update({f"extend_{name}": value for name, value in extended.items()
                        if name.startswith(("frame_", "note_offset_"))})
        if result.pedal is not None and len(reference.pedal):
            row.update(pedal_scores(reference.pedal, result.pedal, result.duration_s))
            keys = score(reference.key_notes, result.with_pedal("cc64")[0])
            row.update({f"cc64_{name}": value for name, value in keys.items()
                        if name.startswith("note_offset_")})
        rows.append(row)
        if pages and audio in pages:
            write_compared_page(result, audio, pages[audio], notes, reference.notes, midi)
        if progress:
            progress(row)
    return rows


def write_index(rows: list[dict], pages: list[tuple[str, Path]], folder: Path,
                title: str) -> Path:
    """``folder``'s index of the review pages ``amt-evaluate --html`` wrote there: ``pages``
    (each recording's name as shown, and its page) in the order of ``rows``, the lowest
    note F1 first: where to listen first.  Named ``index.html`` unless a recording's page
    has that name.  Returns its path."""
    import html
    from urllib.parse import quote

    from ..files import readable, write_atomic
    from .metrics import mean_scores
    taken = {page.resolve() for _, page in pages}
    index = next(folder / name for name in ("index.html", "amt-evaluate-index.html",
                                            "amt-evaluate-index-2.html")
                 if (folder / name).resolve() not in taken)
    columns = [("note F1", "note_f1"), ("recall", "note_recall"), ("precision", "note_precision"),
               ("note+offset F1", "note_offset_f1"), ("frame F1", "frame_f1")]
    if any("pedal_frame_f1" in row for row in rows):
        columns.append(("pedal frame F1", "pedal_frame_f1"))

    def cells(row: dict) -> str:
        return "".join(f"<td>{100 * row[key]:.1f}</td>" if key in row else "<td></td>"
                       for _, key in columns)

    def link(name: str, page: Path) -> str:
        href = quote(page.relative_to(folder).as_posix(), errors="surrogateescape")
        return f'<a href="{html.escape(href)}">{html.escape(readable(name))}</a>'

    order = sorted(range(len(rows)), key=lambda i: (rows[i]["note_f1"], pages[i][0]))
    body = "".join(f"<tr><td>{link(*pages[i])}</td>{cells(rows[i])}</tr>\n" for i in order)
    means = mean_scores(rows)
    head = "".join(f"<th>{name}</th>" for name, _ in columns)
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
            f"<title>{html.escape(readable(title))}</title>\n<style>body {{ font: 14px "
            "system-ui, sans-serif; margin: 12px; color: #222; } td, th { padding: 2px 10px; "
            "text-align: right; } td:first-child, th:first-child { text-align: left; } "
            "tr:nth-child(even) { background: #f4f4f4; }</style></head><body>\n"
            f"<h2>{html.escape(readable(title))}</h2>\n<p>{len(rows)} recording"
            f"{'s' * (len(rows) != 1)}, the lowest note F1 first; mean note F1 "
            f"{100 * means['note_f1']:.1f}, recall {100 * means['note_recall']:.1f} %, "
            f"precision {100 * means['note_precision']:.1f} % (mir_eval, mean over the "
            "recordings). Each page shows the notes found, missed and added, to hear "
            "where.</p>\n"
            f"<table>\n<tr><th>recording</th>{head}</tr>\n{body}</table>\n</body></html>\n")
    write_atomic(index, page.encode("utf-8", "surrogateescape"))
    return index


def write_compared_page(result, audio: Path, page: Path, notes: np.ndarray,
                        reference: np.ndarray, midi: Path, made_by: str | None = None) -> None:
    """The review page of ``result`` (``notes`` as scored) against ``reference``, the notes
    of ``midi`` as they sound: what was found, missed and added, to hear where.  ``made_by``
    says whose notes they are, where another transcriber's."""
    from ..review import Comparison, write_review_page
    from .metrics import note_matches
    found, hits = note_matches(reference, notes)
    page.parent.mkdir(parents=True, exist_ok=True)
    write_review_page(result, audio, page, comparison=Comparison(reference, found, hits,
                                                                  midi.name, made_by))


def tune_thresholds(loaded, pairs: list[tuple[Path, Path]], onset=(0.2, 0.3, 0.4, 0.5),
                    frame=(0.2, 0.3, 0.4, 0.5), offset=(0.5, 1.0), min_note_ms=(30.0, 60.0),
                    frame_onset=(0.4, 0.5, 0.6, 1.0),
                    pedal=(0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7),
                    pedal_split=(0.2, 0.3, 0.4, 0.5, 1.0),
                    key_down=(0.1, 0.2, 0.3, 0.4, 0.5), velocity_level=(0.0, 1.0, 2.0, 3.0, 4.0),
                    restrike=(0.4,), soft_onset=(0.1,), model_pass: str | None = None):
    """Grid-search decoding thresholds for the best mean note F1 and, within half a point
    of it, the best note-with-offset F1 (``pick_decoding``).

    Weights with a pedal head first get a pedal threshold and a split threshold, on the
    files whose reference has pedal: the best mean of pedal frame, press and release F1
    among the pairs whose notes, as ``--pedal extend`` writes them (lengthened through
    the predicted pedal), keep their frame F1 within 1 point of the best (a pedal found
    too often lengthens every note).  Weights
    with a key-down head get the key threshold of the best note-with-offset F1 of
    ``--pedal cc64``'s notes against the key releases.  The notes are then tuned as the
    default pedal mode writes them.  Last, with those notes, the velocity level weight
    of the best mean note-with-velocity F1 (it changes velocities only).  The network
    runs once per file; each combination only re-decodes.  ``restrike`` and ``soft_onset``
    (the re-strike bar and the soft onsets, which read the input's key levels) are searched
    with the note thresholds; their single defaults are the values session 37 chose on the
    15 tuning excerpts, kept so that a re-tune does not turn those rules off.  Returns (best
    ``DecodingOptions``, its mean scores, all ``(options, means)`` tried).
    """
    import itertools

    from ..decode import DecodingOptions
    from ..transcriber import transcribe
    # From the constants, not the card: a card tuned before must not steer the pedal and
    # key searches below, which decode the notes with these base thresholds.
    base = DecodingOptions().resolve(None)
    references = read_references(pairs)
    runs = [(transcribe(audio, loaded, options=base, model_pass=model_pass),
             reference.notes, reference.pedal) for (audio, _), reference in zip(pairs, references)]
    pedalled = [(result, reference, spans, keys.key_notes) for (result, reference, spans), keys
                in zip(runs, references) if result.pedal is not None and len(spans)]
    pedal_threshold = key_threshold = split_threshold = None
    if pedalled:
        by_choice = {}
        for threshold, split in itertools.product(pedal, pedal_split):
            decoded = [(result.redecode(pedal_threshold=threshold, pedal_split_threshold=split),
                        reference, spans) for result, reference, spans, _ in pedalled]
            events = [pedal_scores(spans, result.pedal, result.duration_s)
                      for result, _, spans in decoded]
            by_choice[threshold, split] = (
                np.mean([np.mean([row[f"pedal_{level}_f1"] for level in ("frame", "onset",
                                                                            "offset")])
                         for row in events]),
                np.mean([score(reference, result.with_pedal("extend")[0])["frame_f1"]
                         for result, reference, _ in decoded]))
        best_frame = max(frame_f1 for _, frame_f1 in by_choice.values())
        pedal_threshold, split_threshold = max(
            (choice for choice, (_, frame_f1) in by_choice.items()
             if frame_f1 >= best_frame - 0.01), key=lambda choice: by_choice[choice][0])
    if pedalled and pedalled[0][0].key_notes is not None:
        releases = [(result, key_notes) for result, _, _, key_notes in pedalled]
        key_threshold = max(key_down, key=lambda threshold: np.mean([
            score(reference, result.redecode(key_threshold=threshold).with_pedal("cc64")[0])
            ["note_offset_f1"] for result, reference in releases]))
    tried = []
    for values in itertools.product(onset, frame, offset, min_note_ms, frame_onset, restrike,
                                    soft_onset):
        options = DecodingOptions(onset_threshold=values[0], frame_threshold=values[1],
                                  offset_threshold=values[2], min_note_ms=values[3],
                                  frame_onset_threshold=values[4],
                                  restrike_onset_threshold=values[5],
                                  soft_onset_threshold=values[6],
                                  pedal_threshold=pedal_threshold, key_threshold=key_threshold,
                                  pedal_split_threshold=split_threshold)
        rows = []
        for result, reference, spans in runs:
            decoded = result.redecode(**options.as_dict())
            rows.append(score(reference, decoded.with_pedal(C.DEFAULT_PEDAL_MODE)[0]))
            if decoded.pedal is not None and len(spans):
                rows[-1].update(pedal_scores(spans, decoded.pedal, decoded.duration_s))
        tried.append((options, mean_scores(rows)))
    chosen, means = pick_decoding(tried)
    by_weight = {}
    for weight in velocity_level:
        options = chosen.merged(velocity_level_weight=weight)
        by_weight[weight] = (options, mean_scores([
            score(reference, result.redecode(**options.as_dict()).with_pedal(
                C.DEFAULT_PEDAL_MODE)[0]) for result, reference, _ in runs]))
    if by_weight:
        weight = max(by_weight, key=lambda w: by_weight[w][1]["note_velocity_f1"])
        chosen = by_weight[weight][0]
        means = {**means, "note_velocity_f1": by_weight[weight][1]["note_velocity_f1"]}
    return chosen, means, tried


NOTE_F1_TOLERANCE = 0.005


def pick_decoding(tried: list[tuple], tolerance: float = NOTE_F1_TOLERANCE) -> tuple:
    """The ``(options, means)`` of the best note-with-offset F1 among those whose note F1
    is within ``tolerance`` of the best (ties: note F1).

    On a tuning slice of 15 excerpts note F1 differs by a few tenths of a point between
    frame thresholds, within its noise, while the notes' lengths (note+offset F1) differ
    by several points: the highest note F1 alone chose notes held far too long.
    """
    top = max(means["note_f1"] for _, means in tried)
    return max((item for item in tried if item[1]["note_f1"] >= top - tolerance - 1e-12),
               key=lambda item: (item[1]["note_offset_f1"], item[1]["note_f1"]))


def evaluate_predictions(pairs: list[tuple[Path, Path]], predictions: Path,
                         reference_root: Path, missing: list[Path] | None = None,
                         pages: dict[Path, Path] | None = None) -> list[dict]:
    """Score MIDI files another transcriber wrote (mirroring the reference tree, ``.mid`` or
    the reference's suffix, or all in one folder, as basic-pitch writes them, where no two
    references share a name; or, ``predictions`` a file, the one reference's) against the
    references.  A prediction's notes are read as they sound, lengthened through its own
    sustain pedal as the reference's are (a transcriber that writes notes to the key
    release and CC64, as Transkun and ``--pedal cc64`` do, scored frame F1 72 and
    note+offset F1 33 against its own file as reference).  A reference without a prediction
    is scored as one without notes (the transcriber wrote nothing for it), and appended to
    ``missing``, if given.  ``pages`` as for ``evaluate_model``: the other transcriber's
    notes shown against the reference."""
    rows = []
    one_file = predictions.is_file()
    names = Counter(_folded(midi.stem) for _, midi in pairs)
    for audio, midi in pairs:
        relative = midi.relative_to(reference_root)
        predicted = predictions if one_file else find_prediction(
            predictions, relative, flat=names[_folded(midi.stem)] == 1)
        if predicted is not None:
            estimate = reference_notes(predicted)
        else:
            estimate = np.zeros((0, 4))
            if missing is not None:
                missing.append(predictions / relative)
        reference = reference_notes(midi)
        rows.append({"file": audio.name, **note_rows(reference, estimate)})
        if pages and audio in pages:
            from ..audio import probe
            from ..files import readable
            from ..transcriber import Transcription
            made_by = (f"the notes of {readable(predicted.name)} (another transcriber's), as "
                       "they sound (lengthened through its own sustain pedal)"
                       if predicted is not None else f"no notes: {predictions} holds no "
                       "transcription of this recording")
            write_compared_page(Transcription(estimate, None, probe(audio).duration_s),
                                audio, pages[audio], estimate, reference, midi, made_by)
    return rows


# The names a transcriber gives the MIDI file of a reference named STEM.SUFFIX: its own,
# .mid or .midi, and basic-pitch's (it adds "_basic_pitch"; scored as no notes before).
PREDICTION_NAMES = ("{stem}{suffix}", "{stem}.mid", "{stem}.midi", "{stem}_basic_pitch.mid")


def find_prediction(predictions: Path, relative: Path, flat: bool = False) -> Path | None:
    """The MIDI file another transcriber wrote under ``predictions`` for the reference at
    ``relative`` (its path under the references' folder), by ``PREDICTION_NAMES``; letter
    case and the composing of accents aside where one file alone matches.  With ``flat``
    (no other reference has this name), in ``predictions`` itself too, where the reference
    lies in a sub-folder: basic-pitch writes every output into one folder.  None if there
    is none."""
    names = [name.format(stem=relative.stem, suffix=relative.suffix)
             for name in PREDICTION_NAMES]
    wanted = {_folded(name) for name in names}
    folders = [predictions / relative.parent]
    if flat and relative.parent != Path("."):
        folders.append(predictions)
    for folder in folders:
        for name in names:
            if (folder / name).is_file():
                return folder / name
        try:
            found = [path for path in folder.iterdir()
                     if _folded(path.name) in wanted and path.is_file()]
        except OSError:  # no such folder
            found = []
        if found:  # two files that differ only so: neither is taken
            return found[0] if len(found) == 1 else None
    return None


def write_csv(rows: list[dict], path: Path) -> None:
    from ..files import write_atomic
    if not rows:
        return
    import io
    buffer = io.StringIO()
    # Per-file scores; the register counts (arrays) are summed in the --by-register table.
    # Pedal scores exist only for files whose reference has pedal: empty cells elsewhere.
    fields = list(dict.fromkeys(k for row in rows for k, v in row.items()
                                if not isinstance(v, np.ndarray)))
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n", restval="")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v)
                         for k, v in row.items() if k in fields})
    # A name that is not UTF-8 (Latin-1) is written as the bytes it is: it failed the run.
    write_atomic(path, buffer.getvalue().encode("utf-8", "surrogateescape"))
