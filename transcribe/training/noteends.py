"""Fitting the end chooser (``transcribe/noteends.py``) to a network's posteriorgrams.

    amt-train make-filter-set ../shared/data/midi/MANIFEST.tsv --out cache/ends-perf \\
        --hours 4 --seed 92 --corpora giantmidi,vienna4x22
    amt-train fit-note-ends weights/amt-unet.pt cache/filter cache/ends-perf \\
        --tuning cache/tuning-all --files 15

The examples are the note filter's excerpts (training music through the training pianos
and rooms, ``make-filter-set``) and as many again of the training corpora played by
people with their own pedalling (GiantMIDI-Piano, Vienna 4x22): most of the filter's
set is POP909 with a pedal drawn by rule, whose notes end otherwise than a pianist's.
Every note the decoding finds that mir_eval matches to a note played (onset within 50
ms, the pitch) is an example; each of its candidate ends (``noteends.CANDIDATES``) is
right where mir_eval's note+offset measure would take it (within 20 % of the played
note's length or 50 ms of its end, the pedal's lengthening included).  The perceptron
is fitted to make the right ends likely (the log of their summed probability); the
threshold is chosen on the tuning excerpts as ``tune-thresholds`` chooses
(``evaluate.pick_decoding``).  Neither the development set nor its pieces, pianos or
rooms are used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# The thresholds searched on the tuning excerpts (1: every end as heard).
THRESHOLDS = (0.0, 0.4, 0.5, 0.6, 0.7, 1.0)
OFFSET_RATIO, OFFSET_MIN_S = 0.2, 0.05  # mir_eval's note+offset tolerance


def examples(loaded, pairs: list[tuple[Path, Path]], options
             ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(features, right ends) per pair (audio, reference MIDI): for each note the decoding
    of ``options`` writes that mir_eval matches to a note played, its features
    (``noteends.features``) and which of its candidate ends are within mir_eval's
    note+offset tolerance of the played note's end ``(notes, len(CANDIDATES))``."""
    from ..decode import decode_notes
    from ..noteends import candidate_ends, features
    from ..transcriber import transcribe
    from .evaluate import reference_notes
    from .metrics import note_pairs
    found = []
    for audio, midi in pairs:
        result = transcribe(audio, loaded, options=options, model_pass="fast")
        p = result.posteriorgrams
        if p.key is None or p.level is None or p.pedal is None:
            raise ValueError("the end chooser reads the key-down and pedal heads and the "
                             "input's key levels: these weights lack one")
        notes, key_notes, readings = decode_notes(
            p.frame, p.onset, p.offset, p.velocity, options, p.frame_rate_hz, level=p.level,
            key=p.key, readings=True)
        ends = candidate_ends(notes, key_notes, result.pedal)
        reference = reference_notes(midi)
        pairs_found = note_pairs(reference, notes)
        played = reference[pairs_found[:, 0]]
        tolerance = np.maximum(OFFSET_MIN_S, OFFSET_RATIO * (played[:, 1] - played[:, 0]))
        right = np.abs(ends[pairs_found[:, 1]] - played[:, [1]]) <= tolerance[:, None]
        found.append((features(notes, ends, readings, p.pedal[:, 0], p.frame_rate_hz)
                      [pairs_found[:, 1]], right))
    return found


def fit_chooser(features: np.ndarray, right: np.ndarray, hidden: int = 16, epochs: int = 400,
                seed: int = 0) -> dict:
    """An end chooser's section (``notefilter.section_of`` with ``noteends.FEATURES``):
    ``hidden`` ReLUs and a softmax over the candidates, fitted by full-batch Adam to make
    the right ends ``right`` ``(notes, candidates)`` likely; notes with no right end teach
    nothing and are left out."""
    import torch

    from ..noteends import CANDIDATES, FEATURES
    from ..notefilter import section_of
    from .notefilter import fit_network
    some = right.any(axis=1)
    features, right = features[some], right[some]
    # log of 0 for the wrong ends: they add nothing to the sum of the right ones' chances
    wrong = torch.tensor(np.where(right, 0.0, -1e4), dtype=torch.float32)
    mean, scale, first, last, loss = fit_network(
        features, right.shape[1],
        lambda out: -torch.logsumexp(torch.log_softmax(out, dim=1) + wrong, dim=1).mean(),
        hidden, epochs, seed)
    return section_of(mean, scale, first.weight.detach().numpy(), first.bias.detach().numpy(),
                      last.weight.detach().numpy(), last.bias.detach().numpy(),
                      features=FEATURES, candidates=list(CANDIDATES),
                      fitted_on=f"{len(right)} notes found with a right end among "
                                f"{len(some)}",
                      loss=round(float(loss.detach()), 4))


def choose_threshold(loaded, pairs: list[tuple[Path, Path]], chooser,
                     thresholds=THRESHOLDS):
    """(options, means, all tried): the card's decoding with ``chooser`` and the threshold
    of the best mean scores on ``pairs`` (``pick_decoding``: the best note+offset F1; the
    chooser moves no onset, so note F1 does not change).  The network runs once per file."""
    from .evaluate import pick_decoding
    from .notefilter import tried_on
    tried = tried_on(loaded, pairs, [{"end_chooser": chooser, "end_choice_threshold": threshold}
                                     for threshold in thresholds])
    options, means = pick_decoding(tried)
    return options, means, tried
