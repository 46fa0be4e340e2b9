"""Fitting the note filter (``transcribe/notefilter.py``) to a network's posteriorgrams.

    amt-train make-filter-set ../shared/data/midi/MANIFEST.tsv --out cache/filter --hours 7.5
    amt-train fit-note-filter weights/amt-unet.pt cache/filter --tuning cache/tuning-all --files 15

The examples are training music (the manifest's train rows), rendered as training renders
it (``corpus.plan_renders``: the training pianos and SoundFonts, transposed, detuned,
some darkened, the pedal played) and cut into excerpts that go through training's own
augmentation (``data.SegmentSampler.augment_audio``: rooms, EQ, compression, noise,
gain), so that the network errs on them as it does on music it has not heard.  Every
note the decoding rules find in an excerpt is an example, labelled by whether mir_eval
matches it to a note played (onset within 50 ms, the pitch).  The perceptron is fitted to
those labels; its threshold, and with it the shortest note (the filter tells short
notes played from short notes not), are chosen on the tuning excerpts as
``tune-thresholds`` chooses (``evaluate.pick_decoding``).  Neither the development set
nor its pieces, pianos or rooms are used.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from .. import constants as C
from ..midi import notes_to_smf
from ..notefilter import WINDOW
from .corpus import MidiFile, plan_renders, render_planned, training_pianos_of
from .data import SegmentSampler, load_rooms, training_rooms
from .validation import window_arrays, write_excerpt

EXCERPT_S = 40.0
MIN_EXCERPT_NOTES = 20
# The threshold and the shortest note searched on the tuning excerpts.
THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7)  # 0: no filter
MIN_NOTE_MS = (30.0, 60.0)
# How much recall of the soft and the dense notes (the bands below) a filter may cost on
# the tuning excerpts, against the card's decoding rules without a filter, at their own
# onset bars and with the shortest note of the decoding before the filter (session 38).
RECALL_TOLERANCE = 0.005
BASELINE_MIN_NOTE_MS = 60.0
SOFT_BAND = (("velocity < 45", 0, 45),)
DENSE_BAND = (("10 or more sounding", 10, 10 ** 6),)


def make_filter_set(files: list[MidiFile], out_dir: Path, pianos_dir: Path, rir_dir: Path,
                    hours: float, seed: int = 90, jobs: int = 1, progress=None) -> list[Path]:
    """Render about ``hours`` of ``files`` (training rows) and write excerpts of
    ``EXCERPT_S`` (two of a piece longer than 100 s), augmented, as ``NAME.flac`` beside
    ``NAME.mid`` (the notes as the keys were held, the pedal as CC64) into ``out_dir``;
    returns the FLACs."""
    pianos = training_pianos_of(pianos_dir)
    planned = plan_renders(files, hours, seed, max_transpose=3, piano_names=sorted(pianos),
                           piano_share=0.75, max_detune_cents=30, dark_share=0.5)
    augmenter = SegmentSampler.__new__(SegmentSampler)  # its augmentation alone
    augmenter.rng = np.random.default_rng(seed)
    augmenter.rooms = load_rooms(training_rooms(rir_dir))
    preroll = int(2.0 * C.SAMPLE_RATE)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for job, path in zip(planned, render_planned(planned, Path(tmp), pianos, jobs, "wav")):
            audio, _ = sf.read(path, dtype="float32")
            sounding = np.load(path.with_suffix(".npy"))
            keys_path, pedal_path = path.with_suffix(".keys.npy"), path.with_suffix(".pedal.npy")
            keys = np.load(keys_path) if keys_path.exists() else sounding
            spans = np.load(pedal_path) if pedal_path.exists() else np.zeros((0, 2))
            duration_s = len(audio) / C.SAMPLE_RATE
            for _ in range(2 if duration_s > 100 else 1):
                if duration_s < EXCERPT_S + 3:
                    break
                start_s = float(augmenter.rng.uniform(0, duration_s - EXCERPT_S - 1))
                first = int(start_s * C.SAMPLE_RATE)
                before = min(preroll, first)
                segment = augmenter.augment_audio(
                    audio[first - before:first + int(EXCERPT_S * C.SAMPLE_RATE)], before)
                notes, pedal = window_arrays(keys, spans, start_s, EXCERPT_S)
                if len(notes) < MIN_EXCERPT_NOTES:
                    continue
                midi = notes_to_smf(notes, metadata=f"note-filter excerpt: {job.instrument}",
                                    pedal=pedal)
                item = dataclasses.replace(job.item, relative=f"{job.item.relative}_{job.instrument}")
                written.append(write_excerpt(out_dir, item, start_s, midi, segment))
                if progress:
                    progress(written[-1])
    return written


def examples(loaded, pairs: list[tuple[Path, Path]], options) -> list[tuple[np.ndarray, np.ndarray]]:
    """(features, labels) per pair (audio, reference MIDI): every note the decoding rules
    of ``options`` find in the first pass's posteriorgrams (``decode.note_candidates``),
    labelled 1 where mir_eval matches it to a reference note.  Not the notes in an
    excerpt's first frames: the filter reads the frames before a note, which a recording
    starts in silence (``decode.note_features``), but an excerpt cut from music starts on
    strings still ringing, which the notes there mostly are."""
    from ..decode import note_candidates
    from ..transcriber import transcribe
    from .evaluate import reference_notes
    from .metrics import note_matches
    found = []
    for audio, midi in pairs:
        p = transcribe(audio, loaded, options=options, model_pass="fast").posteriorgrams
        if p.key is None or p.level is None:
            raise ValueError("a note filter reads the key-down head and the input's key "
                             "levels: these weights give no key-down posteriorgram")
        notes, features = note_candidates(p.frame, p.onset, p.offset, p.velocity, p.key,
                                          p.level, options, p.frame_rate_hz)
        played = note_matches(reference_notes(midi), notes)[1]
        inside = notes[:, 0] >= -WINDOW[0] / p.frame_rate_hz
        found.append((features[inside], played[inside].astype(np.float32)))
    return found


def fit_perceptron(features: np.ndarray, labels: np.ndarray, hidden: int = 16,
                   epochs: int = 400, seed: int = 0) -> dict:
    """A note filter's section (``notefilter.section_of``): ``hidden`` ReLUs fitted to
    ``labels`` by full-batch Adam on the binary cross-entropy."""
    import torch

    from ..notefilter import section_of
    y = torch.tensor(labels, dtype=torch.float32)
    mean, scale, first, last, loss = fit_network(
        features, 1, lambda out: torch.nn.functional.binary_cross_entropy_with_logits(
            out[:, 0], y), hidden, epochs, seed)
    return section_of(mean, scale, first.weight.detach().numpy(), first.bias.detach().numpy(),
                      last.weight.detach().numpy()[0], float(last.bias.detach()[0]),
                      fitted_on=f"{len(labels)} notes, {100 * labels.mean():.1f} % played",
                      loss=round(float(loss.detach()), 4))


def fit_network(features: np.ndarray, outputs: int, loss_of, hidden: int, epochs: int,
                seed: int):
    """(mean, scale, first layer, last layer, final loss): ``features`` standardised, then
    ``hidden`` ReLUs and ``outputs`` linear outputs fitted by full-batch Adam (1e-2, weight
    decay 1e-4) to ``loss_of(outputs (rows, outputs))``; what a card's ``Perceptron``
    holds."""
    import torch
    torch.manual_seed(seed)
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale = np.where(scale > 1e-6, scale, 1.0)
    x = torch.tensor((features - mean) / scale, dtype=torch.float32)
    network = torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(),
                                  torch.nn.Linear(hidden, outputs))
    optimiser = torch.optim.Adam(network.parameters(), 1e-2, weight_decay=1e-4)
    for _ in range(epochs):
        optimiser.zero_grad()
        loss = loss_of(network(x))
        loss.backward()
        optimiser.step()
    return mean, scale, network[0], network[2], loss


def choose_threshold(loaded, pairs: list[tuple[Path, Path]], note_filter,
                     thresholds=THRESHOLDS, min_note_ms=MIN_NOTE_MS, bars: dict | None = None):
    """(options, means, all tried): the card's decoding, its fields in ``bars`` that are not
    None replaced (the onset bars the filter was fitted at), with ``note_filter`` and the
    threshold and shortest note of the best mean scores on ``pairs`` (``pick_decoding``)
    among those that keep the recall of soft notes (velocity below 45) and of dense ones
    (10 or more sounding) within ``RECALL_TOLERANCE`` of the card's rules without a filter
    (its own bars, notes from ``BASELINE_MIN_NOTE_MS``): a filter must not buy precision
    with the notes the network finds least well (the network runs once per file).
    ``means`` gain ``soft_recall`` and ``dense_recall``."""
    import itertools

    from .evaluate import pick_decoding
    from .metrics import band_counts, mean_scores, score
    card_options, runs = tuning_runs(loaded, pairs)

    def scores(options) -> dict:
        rows, soft, dense = [], np.zeros(2), np.zeros(2)
        for result, reference in runs:
            written = written_with(result, options)
            rows.append(score(reference, written))
            soft += band_counts(reference, written, "velocity", SOFT_BAND)[0]
            dense += band_counts(reference, written, "polyphony", DENSE_BAND)[0]
        return {**mean_scores(rows), "soft_recall": soft[1] / max(soft[0], 1),
                "dense_recall": dense[1] / max(dense[0], 1)}

    baseline = dataclasses.replace(card_options, note_filter_threshold=0.0,
                                   min_note_ms=BASELINE_MIN_NOTE_MS)
    unfiltered = scores(baseline)
    rules = card_options.merged(**(bars or {}))
    tried = [(options, scores(options)) for options in (
        dataclasses.replace(rules, note_filter=note_filter,
                            note_filter_threshold=threshold, min_note_ms=shortest)
        for threshold, shortest in itertools.product(thresholds, min_note_ms))]
    allowed = [(options, means) for options, means in tried
               if all(means[name] >= unfiltered[name] - RECALL_TOLERANCE
                      for name in ("soft_recall", "dense_recall"))]
    options, means = pick_decoding(allowed or [(baseline, unfiltered)])
    return options, means, tried


def tuning_runs(loaded, pairs: list[tuple[Path, Path]]):
    """(the card's decoding, [(transcription kept for re-decoding, reference notes)]) for
    ``pairs``: the network runs once per file, the fast pass."""
    from ..decode import DecodingOptions
    from ..transcriber import transcribe
    from .evaluate import read_references
    card_options = DecodingOptions().resolve(loaded.card)
    references = read_references(pairs)
    return card_options, [(transcribe(audio, loaded, options=card_options, model_pass="fast"),
                           reference.notes) for (audio, _), reference in zip(pairs, references)]


def tried_on(loaded, pairs: list[tuple[Path, Path]], variants: list[dict]) -> list[tuple]:
    """[(options, mean scores on ``pairs``)] for the card's decoding with the fields of
    each of ``variants`` replaced (the network runs once per file)."""
    from .metrics import mean_scores, score
    card_options, runs = tuning_runs(loaded, pairs)

    def scores(options) -> dict:
        return mean_scores([score(reference, written_with(result, options))
                            for result, reference in runs])

    return [(options, scores(options)) for options in (
        dataclasses.replace(card_options, **variant) for variant in variants)]


def written_with(result, options) -> np.ndarray:
    """The notes ``result``'s posteriorgrams give with ``options``, as written by default."""
    return dataclasses.replace(result, options=options).redecode().with_pedal(
        C.DEFAULT_PEDAL_MODE)[0]
