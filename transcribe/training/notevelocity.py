"""Fitting the velocity model (``transcribe/notevelocity.py``) to a network's posteriorgrams.

    amt-train fit-velocities weights/amt-unet.pt cache/filter cache/filter-b cache/ends-perf \\
        --tuning cache/tuning-all --files 15

The examples are the note filter's excerpts (training music through the training pianos
and rooms, ``make-filter-set``).  Every note the card's decoding writes that mir_eval
matches to a note played (onset within 50 ms, the pitch) is an example; its target is
the played note's velocity less the median velocity of the excerpt's notes found, so the
model learns the contrast between a recording's notes (which mir_eval's note+velocity
measure scores, after fitting each file's velocities to the reference's by a line), not
each piano's loudness.  The perceptron is fitted by least squares; how much of each
velocity it decides is chosen on the tuning excerpts by note+velocity F1.  Neither the
development set nor its pieces, pianos or rooms are used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# How much of each velocity the model decides, searched on the tuning excerpts (0: none).
WEIGHTS = (0.0, 0.5, 0.75, 1.0)


def examples(loaded, pairs: list[tuple[Path, Path]], options
             ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(features, targets) per pair (audio, reference MIDI): for each note the decoding of
    ``options`` writes that mir_eval matches to a note played, what the model reads
    (``decode.velocity_readings``) and the played note's velocity less the median of the
    matched played notes' velocities."""
    from ..decode import velocity_readings
    from ..transcriber import transcribe
    from .evaluate import reference_notes
    from .metrics import note_pairs
    found = []
    for audio, midi in pairs:
        p = transcribe(audio, loaded, options=options, model_pass="fast").posteriorgrams
        if p.level is None:
            raise ValueError("the velocity model reads the input's key levels: these "
                             "weights' posteriorgrams lack them")
        notes, features = velocity_readings(p.frame, p.onset, p.offset, p.velocity, p.key,
                                            p.level, options, p.frame_rate_hz)
        reference = reference_notes(midi)
        matched = note_pairs(reference, notes)
        played = reference[matched[:, 0], 3]
        found.append((features[matched[:, 1]],
                      played - (np.median(played) if len(played) else 0.0)))
    return found


def fit_model(features: np.ndarray, targets: np.ndarray, hidden: int = 16,
              epochs: int = 800, seed: int = 0) -> dict:
    """A velocity model's section (``notefilter.section_of`` with ``notevelocity.FEATURES``):
    ``hidden`` ReLUs and one linear output fitted by full-batch Adam on the mean squared
    error to ``targets``."""
    import torch

    from ..notefilter import section_of
    from ..notevelocity import FEATURES
    from .notefilter import fit_network
    y = torch.tensor(targets, dtype=torch.float32)
    mean, scale, first, last, loss = fit_network(
        features, 1, lambda out: ((out[:, 0] - y) ** 2).mean(), hidden, epochs, seed)
    return section_of(mean, scale, first.weight.detach().numpy(), first.bias.detach().numpy(),
                      last.weight.detach().numpy()[0], float(last.bias.detach()[0]),
                      features=FEATURES,
                      fitted_on=f"{len(targets)} notes found",
                      loss=round(float(loss.detach()), 2))


def choose_weight(loaded, pairs: list[tuple[Path, Path]], model, weights=WEIGHTS):
    """(options, means, all tried): the card's decoding with ``model`` and the weight of
    the best mean note+velocity F1 on ``pairs`` (ties: the lower weight).  The network
    runs once per file."""
    from .notefilter import tried_on
    tried = tried_on(loaded, pairs, [{"velocity_model": model, "velocity_model_weight": weight}
                                     for weight in weights])
    options, means = max(tried, key=lambda item: item[1]["note_velocity_f1"])
    return options, means, tried
