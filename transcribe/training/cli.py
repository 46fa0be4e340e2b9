"""``amt-train`` (render the corpus, build the validation set, train, export weights)
and ``amt-evaluate`` (score weights or another transcriber's MIDI with mir_eval).

    amt-train render ../shared/data/midi/MANIFEST.tsv --hours 12
    amt-train make-validation ../shared/data/midi/MANIFEST.tsv
    amt-train fit runs/phase1 --config configs/phase1.json
    amt-train export runs/phase1/step012000.pt weights/amt-unet.pt --overwrite
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..cli import HELP_SETTINGS, NamedPath, decoding_options, pop_decoding_options

DEFAULT_CACHE = Path("cache")


class _Commands(click.Group):
    """A missing synthesizer, SoundFont or piano, or a file that cannot be read or
    written, is one line and exit 1, not a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError:
            raise  # click's usage message, exit 2
        except click.ClickException as error:  # a command's own refusal: the same one line
            click.echo(f"amt-train: error: {error.format_message()}", err=True)
            sys.exit(error.exit_code)
        except Exception as error:
            from ..errors import TranscribeError
            from .synth import SynthesisError
            if not isinstance(error, (SynthesisError, TranscribeError)):
                raise
            click.echo(f"amt-train: error: {error}", err=True)
            sys.exit(1)


# Commands that write weights to OUT never replace them unless asked (``refuse_existing``).
OVERWRITE_OUT = click.option("--overwrite", is_flag=True,
                             help="Replace OUT (and its card) if it exists.")


@click.group(cls=_Commands, context_settings=HELP_SETTINGS)
def main():
    """Train amt-transcribe's network on MIDI rendered through SoundFonts."""


@main.command()
@click.argument("manifest", type=NamedPath(exists=True, dir_okay=False, path_type=Path))
@click.option("--cache", type=NamedPath(file_okay=False, path_type=Path, written=True),
              default=DEFAULT_CACHE / "train",
              show_default=True)
@click.option("--hours", type=float, default=12.0, show_default=True,
              help="Render about this much of the training corpora (a larger value extends the cache).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--transpose", "max_transpose", type=click.IntRange(0, 24), default=0,
              show_default=True, help="Shift each file by a random -N..N semitones "
              "(notes leaving the 88 keys are dropped); a new --seed draws new files.")
@click.option("--pianos", "pianos_dir", type=NamedPath(exists=True, file_okay=False, path_type=Path),
              help="Folder of sampled pianos (PIANOS.tsv + SFZ), rendered with sfizz; the "
                   "development piano is never used.")
@click.option("--piano-share", type=click.FloatRange(0, 1), default=0.75, show_default=True,
              help="Share of files rendered through the sampled pianos (the rest: SoundFonts).")
@click.option("--detune", "max_detune_cents", type=click.FloatRange(0, 50), default=0.0,
              show_default=True, help="Detune each sampled-piano render by 10..N cents, up "
                                      "or down (labels unchanged): pianos not at A440.")
@click.option("--dark-share", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of sampled-piano renders made duller the softer a note is played "
                   "(a velocity-tracked low-pass, as a real piano's felt hammers sound).")
@click.option("--jobs", type=click.IntRange(1), default=1, show_default=True,
              help="Render in this many processes.")
def render(manifest, cache, hours, seed, max_transpose, pianos_dir, piano_share,
           max_detune_cents, dark_share, jobs):
    """Render the training corpora of MANIFEST (never validation-only ones) into the cache."""
    import time

    from .corpus import read_manifest, render_corpus, split_by_piece, training_files
    train, _dev = split_by_piece(training_files(read_manifest(manifest)), 0.02)
    started = time.monotonic()
    out = render_corpus(train, cache, hours, seed, progress=lambda s: click.echo(
        f"{s / 3600:.2f} h rendered in {time.monotonic() - started:.0f} s", err=True),
        max_transpose=max_transpose, pianos_dir=pianos_dir, piano_share=piano_share,
        max_detune_cents=max_detune_cents, dark_share=dark_share, jobs=jobs)
    click.echo(f"{len(out)} files in {cache}")


@main.command("make-validation")
@click.argument("manifest", type=NamedPath(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=NamedPath(file_okay=False, path_type=Path, written=True),
              default=DEFAULT_CACHE / "validation",
              show_default=True)
@click.option("--count", type=int, default=30, show_default=True)
@click.option("--seconds", type=float, default=30.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def make_validation(manifest, out, count, seconds, seed):
    """Excerpts of piano-midi.de rendered with MuseScore_General plus reverb."""
    from .corpus import read_manifest
    from .validation import make_validation_set
    files = [f for f in read_manifest(manifest) if f.corpus == "piano-midi.de"]
    written = make_validation_set(files, out, count, seconds, seed,
                                  progress=lambda stem: click.echo(stem, err=True))
    click.echo(f"{len(written)} excerpts in {out}")


@main.command("make-development")
@click.argument("manifest", type=NamedPath(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=NamedPath(file_okay=False, path_type=Path, written=True),
              default=DEFAULT_CACHE / "development",
              show_default=True)
@click.option("--part", type=click.Choice(["dev", "tuning"]), default="dev", show_default=True,
              help="The development pieces, or the separate slice for threshold tuning.")
@click.option("--pianos", "pianos_dir", type=NamedPath(exists=True, file_okay=False, path_type=Path),
              default=Path("../shared/data/pianos"), show_default=True)
@click.option("--rooms", "rooms_dir", type=NamedPath(exists=True, file_okay=False, path_type=Path),
              default=Path("../shared/data/rir"), show_default=True)
@click.option("--count", type=int, default=30, show_default=True)
@click.option("--seconds", type=float, default=30.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resonance", is_flag=True,
              help="Add the strings' ringing while the pedal is down, so the pedal is heard "
                   "(the same excerpts, rooms and noise as without): a set to score the "
                   "pedal head on.")
@click.option("--piano", help="Render through this piano of --pianos instead of the held-out "
                             "one (diagnosis: what that piano costs; a training piano tests "
                             "nothing unseen).")
@click.option("--dry", is_flag=True,
              help="No room and no noise (the same excerpts): what they cost.")
@click.option("--dark", "dark_hz", type=click.FloatRange(min=100, max=7000), default=None,
              help="Play the piano duller the softer it is played, as training's darkened "
                   "renders do: a low-pass with this cutoff (Hz) at velocity 40 "
                   "(diagnosis: what dullness costs).")
def make_development(manifest, out, part, pianos_dir, rooms_dir, count, seconds, seed,
                     resonance, piano, dry, dark_hz):
    """Batik and piano-midi.de excerpts through the held-out piano, unseen rooms and noise."""
    from .corpus import read_manifest
    from .development import make_development_set
    try:
        written = make_development_set(read_manifest(manifest), out, pianos_dir, rooms_dir, part,
                                       count, seconds, seed,
                                       progress=lambda stem: click.echo(stem, err=True),
                                       resonance=resonance, piano_name=piano, dry=dry,
                                       dark_hz=dark_hz or 0.0)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{len(written)} excerpts in {out}")


@main.command()
@click.argument("run_dir", type=NamedPath(file_okay=False, path_type=Path, written=True))
@click.option("--config", "config_path", type=NamedPath(exists=True, dir_okay=False, path_type=Path),
              help="JSON with 'model' (ModelConfig) and 'train' (TrainConfig) sections.")
@click.option("--cache", type=NamedPath(exists=True, file_okay=False, path_type=Path),
              default=DEFAULT_CACHE / "train", show_default=True)
@click.option("--validation", type=NamedPath(file_okay=False, path_type=Path),
              default=DEFAULT_CACHE / "validation", show_default=True)
@click.option("--validation-files", type=int, default=10, show_default=True,
              help="Excerpts scored at each checkpoint.")
@click.option("--init", "init_weights", type=NamedPath(exists=True, dir_okay=False, path_type=Path),
              help="Start from another run's checkpoint or exported weights (e.g. weights/amt-unet.pt).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--threads", type=int, default=None, help="torch threads (default: all cores).")
@click.option("--rooms", "rooms_dir", type=NamedPath(exists=True, file_okay=False, path_type=Path),
              help="Folder of measured room responses to convolve with (the development "
                   "rooms are left out); modelled rooms are used either way.")
def fit(run_dir, config_path, cache, validation, validation_files, init_weights, device, threads,
        rooms_dir):
    """Train into RUN_DIR, resuming from RUN_DIR/last.pt when it exists."""
    import os

    import torch

    from ..inference import pick_device
    from ..model import ModelConfig
    from .corpus import cached_audio
    from .data import load_rooms, training_rooms
    from .train import TrainConfig, train
    torch.set_num_threads(threads or os.cpu_count() or 1)
    sections = json.loads(config_path.read_text()) if config_path else {}
    model_config = ModelConfig.from_dict(sections.get("model", {}))
    train_config = TrainConfig(**sections.get("train", {}))
    paths = cached_audio(cache)
    validate = make_validator(validation, validation_files) if validation.exists() else None
    rooms = load_rooms(training_rooms(rooms_dir)) if rooms_dir else None
    train(model_config, train_config, paths, run_dir, str(pick_device(device)),
          init_weights=init_weights, validate=validate,
          log=lambda line: click.echo(line, err=True), rooms=rooms)


def make_validator(folder: Path, count: int):
    """A function scoring a model in training on the first ``count`` validation excerpts."""
    from ..weights import LoadedModel
    from .evaluate import evaluate_model, pair_files
    from .metrics import mean_scores

    def validate(model, frontend) -> dict:
        pairs = pair_files(folder, folder)[:count]  # re-read: the set may still be rendering
        if not pairs:
            return {}
        # The first pass: the second's BatchNorm statistics are only right once
        # re-estimated after averaging (amt-train recalibrate).
        rows = evaluate_model(LoadedModel(model, frontend, model.config), pairs,
                              model_pass="fast")
        means = mean_scores(rows)
        return {k: round(100 * v, 2) for k, v in means.items() if k.endswith("f1")}
    return validate


@main.command("tune-thresholds")
@click.argument("weights", type=NamedPath(exists=True, dir_okay=False, path_type=Path))
@click.argument("validation", type=NamedPath(exists=True, file_okay=False, path_type=Path))
@click.option("--files", type=int, default=10, show_default=True,
              help="Tune on the first FILES excerpts (the checkpoint-selection subset).")
def tune_thresholds_command(weights, validation, files):
    """Grid-search decoding thresholds on validation excerpts; store them in the weights' card
    (a note filter's threshold, shortest note and onset bars stay as fit-note-filter chose
    them, an end chooser's threshold as fit-note-ends chose it)."""
    from ..files import write_atomic
    from ..weights import load_model
    from .evaluate import pair_files, tune_thresholds
    loaded = load_model(weights)
    pairs = pair_files(validation, validation)[:files]
    best, means, _ = tune_thresholds(loaded, pairs)
    card_path = weights.with_suffix(".json")
    card = json.loads(card_path.read_text())
    tuned = {k: v for k, v in best.as_dict().items() if v is not None}
    # Tuned without them: a filter's threshold, shortest note and bars, a chooser's threshold
    # and a velocity model's weight stay.
    kept = (("note_filter_threshold", "min_note_ms", "onset_threshold", "soft_onset_threshold")
            if "note_filter" in card else ()) + \
        (("end_choice_threshold",) if "note_ends" in card else ()) + \
        (("velocity_model_weight",) if "note_velocities" in card else ())
    tuned.update({k: card["decoding"][k] for k in kept if k in card.get("decoding", {})})
    card["decoding"] = tuned
    card["decoding_tuned_on"] = f"first {len(pairs)} excerpts of {validation}"
    write_atomic(card_path, (json.dumps(card, indent=2, sort_keys=True) + "\n").encode())
    pedal = (f", pedal frame F1 {100 * means['pedal_frame_f1']:.1f} (held down throughout: "
             f"{100 * means['pedal_frame_f1_always_down']:.1f}), presses "
             f"{100 * means['pedal_onset_f1']:.1f}, releases {100 * means['pedal_offset_f1']:.1f}"
             if "pedal_frame_f1" in means else "")
    click.echo(f"{best} -> note F1 {100 * means['note_f1']:.1f}, "
               f"note+offset F1 {100 * means['note_offset_f1']:.1f}, note+velocity F1 "
               f"{100 * means['note_velocity_f1']:.1f}{pedal} on {len(pairs)} files")


@main.command("make-filter-set")
@click.argument("manifest", type=NamedPath(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=NamedPath(file_okay=False, path_type=Path, written=True),
              default=DEFAULT_CACHE / "filter", show_default=True)
@click.option("--pianos", "pianos_dir", type=NamedPath(exists=True, file_okay=False, path_type=Path),
              default=Path("../shared/data/pianos"), show_default=True,
              help="The sampled pianos (PIANOS.tsv); the held-out one is not used.")
@click.option("--rooms", "rooms_dir", type=NamedPath(exists=True, file_okay=False, path_type=Path),
              default=Path("../shared/data/rir"), show_default=True,
              help="The room responses (RIR.tsv); the development rooms are not used.")
@click.option("--hours", type=float, default=7.5, show_default=True,
              help="Render about this much training music, cut into 40-second excerpts.")
@click.option("--seed", type=int, default=90, show_default=True)
@click.option("--corpora", default=None,
              help="Only these corpora of the manifest's train rows, by name, comma-separated "
                   "(e.g. giantmidi,vienna4x22: music played by people, with their pedal).")
@click.option("--jobs", type=click.IntRange(1), default=1, show_default=True)
def make_filter_set(manifest, out, pianos_dir, rooms_dir, hours, seed, corpora, jobs):
    """Training music through the training pianos and rooms, to fit a note filter (or an
    end chooser) on."""
    from .corpus import read_manifest
    from .notefilter import make_filter_set as make
    files = [f for f in read_manifest(manifest) if f.role == "train"]
    if corpora is not None:
        wanted = {name.strip() for name in corpora.split(",") if name.strip()}
        unknown = wanted - {f.corpus for f in files}
        if unknown:
            raise click.ClickException(f"no train rows of {', '.join(sorted(unknown))} in "
                                       f"{manifest}")
        files = [f for f in files if f.corpus in wanted]
    written = make(files, out, pianos_dir, rooms_dir, hours, seed, jobs,
                   progress=lambda path: click.echo(path.stem, err=True))
    click.echo(f"{len(written)} excerpts in {out}")


def _fitting_examples(weights: Path, examples: tuple, collect, section: str,
                      decoding: dict | None = None):
    """(the weights loaded, the (audio, MIDI) pairs of the folders ``examples``, what
    ``collect(loaded, pairs, the card's decoding)`` finds in them), for a fit command that
    fits the card's ``section``: the card loaded is read without it (a section fitted to
    other features is fitted again, not read), and the decoding takes the fields of
    ``decoding`` that are not None.  A folder without pairs, or weights without the heads
    ``collect`` reads, in one line."""
    from ..decode import DecodingOptions
    from ..weights import load_model
    from .evaluate import pair_files
    loaded = load_model(weights)
    loaded.card = {name: value for name, value in loaded.card.items() if name != section}
    pairs = [pair for folder in examples for pair in pair_files(folder, folder)]
    if not pairs:
        raise click.ClickException(f"no audio with MIDI of the same name in {', '.join(map(str, examples))}")
    try:
        options = DecodingOptions(**(decoding or {})).resolve(loaded.card)
        return loaded, pairs, collect(loaded, pairs, options)
    except ValueError as error:
        raise click.ClickException(str(error)) from None


def _into_card(weights: Path, **sections) -> None:
    """Set ``sections`` of the card beside ``weights`` (``decoding`` updated, not replaced)."""
    from ..files import write_atomic
    card_path = weights.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card.setdefault("decoding", {}).update(sections.pop("decoding", {}))
    card.update(sections)
    write_atomic(card_path, (json.dumps(card, indent=2, sort_keys=True) + "\n").encode())


def _fit_command(name: str, stage: str, hidden: int):
    """The command ``name`` that fits the card section of a decoding ``stage`` (its help's
    word for it) with ``hidden`` units by default: WEIGHTS, EXAMPLES, --tuning, --files,
    --hidden and --seed, in that order, before the command's own options."""
    shared = [main.command(name),
              click.argument("weights", type=NamedPath(exists=True, dir_okay=False,
                                                       path_type=Path)),
              click.argument("examples", type=NamedPath(exists=True, file_okay=False,
                                                        path_type=Path),
                             nargs=-1, required=True),
              click.option("--tuning", type=NamedPath(exists=True, file_okay=False,
                                                      path_type=Path),
                           required=True, help=f"Excerpts to choose the {stage}'s threshold on."),
              click.option("--files", type=int, default=15, show_default=True,
                           help="Choose on the first FILES excerpts of --tuning."),
              click.option("--hidden", type=click.IntRange(1), default=hidden, show_default=True),
              click.option("--seed", type=int, default=0, show_default=True)]

    def decorate(function):
        for decorator in reversed(shared):
            function = decorator(function)
        return function
    return decorate


@_fit_command("fit-note-filter", "filter", hidden=32)
@click.option("--onset-threshold", type=click.FloatRange(0, 1), default=None,
              help="The onset peak that starts a note the filter sorts  [default: the card's]")
@click.option("--soft-onset-threshold", type=click.FloatRange(0, 1), default=None,
              help="The fainter onset peak that starts one where the key's level rises  "
                   "[default: the card's]")
def fit_note_filter(weights, examples, tuning, files, hidden, seed, onset_threshold,
                    soft_onset_threshold):
    """Fit a note filter to WEIGHTS' posteriorgrams of EXAMPLES (make-filter-set); store
    it, its threshold, the shortest note chosen with it and the onset bars it sorts the
    notes of in the weights' card.

    Run it after tune-thresholds: the filter sorts the notes those thresholds find, at
    lower onset bars if given (more notes for it to sort)."""
    import numpy as np

    from ..notefilter import NoteFilter
    from .evaluate import pair_files
    from .notefilter import choose_threshold, examples as note_examples, fit_perceptron
    bars = {"onset_threshold": onset_threshold, "soft_onset_threshold": soft_onset_threshold}
    loaded, pairs, found = _fitting_examples(weights, examples, note_examples, "note_filter",
                                             bars)
    section = fit_perceptron(np.concatenate([f for f, _ in found]),
                             np.concatenate([y for _, y in found]), hidden, seed=seed)
    section["fitted_on"] += f" of {len(pairs)} excerpts in {', '.join(map(str, examples))}"
    tuning_pairs = pair_files(tuning, tuning)[:files]
    best, means, tried = choose_threshold(loaded, tuning_pairs, NoteFilter(section), bars=bars)
    def line(scores: dict) -> str:
        return (f"note F1 {100 * scores['note_f1']:.2f}, note+offset F1 "
                f"{100 * scores['note_offset_f1']:.2f}, recall of soft notes "
                f"{100 * scores['soft_recall']:.1f} %, of dense ones "
                f"{100 * scores['dense_recall']:.1f} %")
    for options, scores in tried:
        click.echo(f"threshold {options.note_filter_threshold:g}, shortest note "
                   f"{options.min_note_ms:g} ms: {line(scores)}", err=True)
    _into_card(weights, note_filter=section,
               decoding={"note_filter_threshold": best.note_filter_threshold,
                         "min_note_ms": best.min_note_ms,
                         "onset_threshold": best.onset_threshold,
                         "soft_onset_threshold": best.soft_onset_threshold},
               note_filter_chosen_on=f"first {len(tuning_pairs)} excerpts of {tuning}")
    click.echo(f"note filter threshold {best.note_filter_threshold:g}, shortest note "
               f"{best.min_note_ms:g} ms -> {line(means)} on {len(tuning_pairs)} files")


def _fit_stage(weights: Path, examples: tuple, tuning: Path, files: int, section: str,
               collect, fit, stage, choose, option: str, short: str, line) -> None:
    """What fit-velocities and fit-note-ends do: fit the card's ``section`` to WEIGHTS'
    posteriorgrams of EXAMPLES (``collect`` gives (features, targets) per pair, ``fit`` a
    section from them all), choose its decoding ``option`` on the first FILES excerpts of
    TUNING (``choose(loaded, pairs, stage(section))``: (options, means, all tried)), say each
    tried (``short`` names the option, ``line`` the scores) and store both in the card."""
    import numpy as np

    from .evaluate import pair_files
    loaded, pairs, found = _fitting_examples(weights, examples, collect, section)
    fitted = fit(np.concatenate([f for f, _ in found]), np.concatenate([t for _, t in found]))
    fitted["fitted_on"] += f" in {len(pairs)} excerpts in {', '.join(map(str, examples))}"
    tuning_pairs = pair_files(tuning, tuning)[:files]
    best, means, tried = choose(loaded, tuning_pairs, stage(fitted))
    for options, scores in tried:
        click.echo(f"{short} {getattr(options, option):g}: {line(scores)}", err=True)
    chosen_on = f"first {len(tuning_pairs)} excerpts of {tuning}"
    _into_card(weights, **{section: fitted, f"{section}_chosen_on": chosen_on},
               decoding={option: getattr(best, option)})
    click.echo(f"{option.replace('_', ' ')} {getattr(best, option):g} -> {line(means)} on "
               f"{len(tuning_pairs)} files")


@_fit_command("fit-velocities", "velocity model", hidden=16)
def fit_velocities(weights, examples, tuning, files, hidden, seed):
    """Fit a velocity model to WEIGHTS' posteriorgrams of EXAMPLES (make-filter-set); store
    it and how much of each velocity it decides (chosen on --tuning) in the weights' card.

    Run it after fit-note-filter: the model weighs the notes the filter keeps.  The end
    chooser reads each note's velocity too; fitted again after the model, it tied with the
    one fitted on the blend's velocities (model card, session 42)."""
    from ..notevelocity import VelocityModel
    from .notevelocity import choose_weight, examples as velocity_examples, fit_model

    def line(scores: dict) -> str:
        return (f"note+velocity F1 {100 * scores['note_velocity_f1']:.2f}, note+offset F1 "
                f"{100 * scores['note_offset_f1']:.2f}")
    _fit_stage(weights, examples, tuning, files, "note_velocities", velocity_examples,
               lambda features, targets: fit_model(features, targets, hidden, seed=seed),
               VelocityModel, choose_weight, "velocity_model_weight", "weight", line)


@_fit_command("fit-note-ends", "chooser", hidden=16)
def fit_note_ends(weights, examples, tuning, files, hidden, seed):
    """Fit an end chooser to WEIGHTS' posteriorgrams of EXAMPLES (make-filter-set); store
    it and the threshold chosen for it in the weights' card.

    Run it after fit-note-filter: the chooser ends the notes the filter keeps."""
    from ..noteends import EndChooser
    from .noteends import choose_threshold, examples as end_examples, fit_chooser

    def line(scores: dict) -> str:
        return (f"note F1 {100 * scores['note_f1']:.2f}, note+offset F1 "
                f"{100 * scores['note_offset_f1']:.2f}, frame F1 {100 * scores['frame_f1']:.2f}")
    _fit_stage(weights, examples, tuning, files, "note_ends", end_examples,
               lambda features, right: fit_chooser(features, right, hidden, seed=seed),
               EndChooser, choose_threshold, "end_choice_threshold", "threshold", line)


@main.command("velocity-head")
@click.argument("weights", type=NamedPath(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", type=NamedPath(dir_okay=False, path_type=Path, written=True))
@OVERWRITE_OUT
@click.option("--cache", type=NamedPath(exists=True, file_okay=False, path_type=Path),
              default=DEFAULT_CACHE / "train", show_default=True)
@click.option("--rooms", "rooms_dir", type=NamedPath(exists=True, file_okay=False, path_type=Path),
              help="Measured room responses to convolve with, as fit takes them.")
@click.option("--work", type=NamedPath(file_okay=False, path_type=Path, written=True),
              default=DEFAULT_CACHE / "velocity-features", show_default=True,
              help="Where the frozen hidden states go (2,000 segments of 320 frames: 0.8 GB).")
@click.option("--segments", type=click.IntRange(2), default=2000, show_default=True)
@click.option("--frames", type=click.IntRange(16), default=320, show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=16, show_default=True)
@click.option("--mse-weight", type=click.FloatRange(0), default=1.0, show_default=True,
              help="Weight of the squared error beside the per-segment correlation.")
@click.option("--seed", type=int, default=11, show_default=True)
def velocity_head(weights, out, cache, rooms_dir, work, segments, frames, epochs, mse_weight,
                  seed, overwrite):
    """Retrain WEIGHTS' velocity head alone for relative dynamics; write the weights to OUT.

    The rest of the network is frozen, so its hidden states are computed once for
    SEGMENTS augmented training segments of the cache (training/velocity.py).
    """
    from ..weights import load_model
    from .corpus import cached_audio
    from .data import load_rooms, training_rooms
    from .velocity import frozen_features, train_velocity_head
    refuse_existing(out, overwrite)
    loaded = load_model(weights, "cpu")
    rooms = load_rooms(training_rooms(rooms_dir)) if rooms_dir else None
    features = frozen_features(loaded, cached_audio(cache), segments, frames, seed, work, rooms)
    head = loaded.model.transcriber.velocity
    before, after = train_velocity_head(head, *features, epochs=epochs, mse_weight=mse_weight,
                                        seed=seed, log=lambda line: click.echo(line, err=True))
    save_derived(loaded.model, out, loaded.card, velocity_head=(
        f"retrained alone from {weights.name} (amt-train velocity-head: {segments} segments "
        f"of {frames} frames of {cache}, {epochs} epochs, mse weight {mse_weight:g}, seed "
        f"{seed}); held-out r {before:.3f} -> {after:.3f}"))
    click.echo(f"{out}: held-out velocity correlation {before:.3f} -> {after:.3f}")


@main.command("gpu-bundle")
@click.argument("out", type=NamedPath(file_okay=False, path_type=Path, written=True))
@click.option("--manifest", type=NamedPath(exists=True, dir_okay=False, path_type=Path),
              default=Path("../shared/data/midi/MANIFEST.tsv"), show_default=True)
@click.option("--pianos", "pianos_dir", type=NamedPath(exists=True, file_okay=False, path_type=Path),
              default=Path("../shared/data/pianos"), show_default=True)
@click.option("--rooms", "rooms_dir", type=NamedPath(exists=True, file_okay=False, path_type=Path),
              default=Path("../shared/data/rir"), show_default=True)
@click.option("--wheels", "wheels_dir", type=NamedPath(exists=True, file_okay=False, path_type=Path),
              required=True, help="Wheels for the GPU machine's Python (pip download, README.md).")
@click.option("--midi-mb", type=float, default=None,
              help="MIDI to carry, unpacked (default: bundle.MIDI_BUDGET_MB, 40, or what "
                   "the 64 MiB leave).")
@click.option("--midi-seed", type=int, default=0, show_default=True,
              help="Which pieces of the corpora not carried whole: a new seed, new pieces.")
def gpu_bundle(out, manifest, pianos_dir, rooms_dir, wheels_dir, midi_mb, midi_seed):
    """Gather MIDI, pianos, rooms and packages for a training run on a bare GPU machine.

    A device call carries the checkout too (the weights most of it): the MIDI gets what
    the 64 MiB leave, less a margin, fewer pieces where the budget would not fit."""
    from .bundle import (CARRY_LIMIT_BYTES, CARRY_MARGIN_BYTES, MIDI_BUDGET_MB, build_bundle,
                         travelling_bytes)
    repo = travelling_bytes(Path(__file__).resolve().parents[2])
    room = None if repo is None else CARRY_LIMIT_BYTES - CARRY_MARGIN_BYTES - repo
    try:
        held = build_bundle(out, manifest, pianos_dir, rooms_dir, wheels_dir,
                            MIDI_BUDGET_MB if midi_mb is None else midi_mb, midi_seed, room)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    carried = "" if repo is None else (
        f"; with the checkout's {repo / 1e6:.1f} MB, {held['megabytes'] + repo / 1e6:.1f} "
        f"of the {CARRY_LIMIT_BYTES / 1e6:.1f} MB a device call carries")
    pianos = "; ".join(f"{name} ({how})" for name, how in held["pianos"].items())
    click.echo(f"{out}: {held['midi_files']} MIDI files ({held['midi_hours']:.1f} h); pianos: "
               f"{pianos}; {held['megabytes']:.1f} MB{carried}")


def refuse_existing(out: Path, overwrite: bool) -> None:
    """Weights are never replaced unless asked: an existing OUT or its card is a one-line
    error before any work, naming ``--overwrite``."""
    for path in (out, out.with_suffix(".json")):
        if path.exists() and not overwrite:
            raise click.ClickException(f"{path} exists; choose another name, or --overwrite "
                                       "to replace it")


def save_derived(model, out: Path, card: dict, **facts: str) -> str:
    """Save ``model`` to ``out`` with ``card`` (another weights' card, decoding included)
    plus ``facts`` saying how they were derived; returns the SHA-256.  The card's model
    config and checksum are written anew for ``model``."""
    from ..weights import save_weights
    derived = {k: v for k, v in card.items() if k not in ("model", "sha256")}
    return save_weights(model, out, {**derived, **facts})


@main.command()
@click.argument("weights", type=NamedPath(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", type=NamedPath(dir_okay=False, path_type=Path, written=True))
@OVERWRITE_OUT
@click.option("--cache", type=NamedPath(exists=True, file_okay=False, path_type=Path),
              required=True, help="Rendered training audio (amt-train render) to measure on.")
@click.option("--batches", type=int, default=200, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def recalibrate(weights, out, cache, batches, seed, overwrite):
    """Estimate the second pass's BatchNorm statistics of WEIGHTS (their own); write OUT."""
    import json as json_module

    from ..weights import load_model
    from .corpus import cached_audio
    from .data import SegmentSampler
    from .train import recalibrate_second_pass
    refuse_existing(out, overwrite)
    loaded = load_model(weights, "cpu")
    paths = cached_audio(cache)
    sampler = SegmentSampler(paths, 160, loaded.frontend, seed=seed)
    recalibrate_second_pass(loaded.model, loaded.frontend, sampler, batches)
    fact = (f"estimated on {batches} batches of 8 x 5.12 s from {len(paths)} renders "
            "(amt-train recalibrate)")
    digest = save_derived(loaded.model, out, loaded.card, second_pass_norms=fact)
    click.echo(f"{out} sha256 {digest} ({json_module.dumps(fact)})")


@main.command()
@click.argument("first", type=NamedPath(exists=True, dir_okay=False, path_type=Path))
@click.argument("second", type=NamedPath(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", type=NamedPath(dir_okay=False, path_type=Path, written=True))
@OVERWRITE_OUT
@click.option("--share", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="SECOND's share of the average.")
def average(first, second, out, share, overwrite):
    """Average two weights of one lineage: (1 - share) x FIRST + share x SECOND.

    Every floating-point tensor is averaged (a "model soup"); OUT gets SECOND's card,
    naming both.  Run tune-thresholds on OUT afterwards: the decoding is SECOND's.
    """
    from ..errors import TranscribeError
    from ..weights import load_model
    from .train import average_state
    refuse_existing(out, overwrite)
    try:
        a, b = load_model(first, "cpu"), load_model(second, "cpu")
        if a.model.config != b.model.config:
            raise ValueError("the two weights have different model configs")
        a.model.load_state_dict(average_state(a.model.state_dict(), b.model.state_dict(), share))
    except (TranscribeError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    fact = (f"{1 - share:g} x {first.name} (sha256 {a.card.get('sha256', '?')[:12]}) + "
            f"{share:g} x {second.name} (sha256 {b.card.get('sha256', '?')[:12]})")
    digest = save_derived(a.model, out, b.card, averaged=fact)
    click.echo(f"{out} sha256 {digest} ({fact})")


@main.command()
@click.argument("weights", type=NamedPath(exists=True, dir_okay=False, path_type=Path))
@click.argument("config", type=NamedPath(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", type=NamedPath(dir_okay=False, path_type=Path, written=True))
@OVERWRITE_OUT
def widen(weights, config, out, overwrite):
    """Widen WEIGHTS into CONFIG's wider network (its 'model' section), same outputs.

    What `fit --init` does to start a wider run, as weights of their own: to time the
    wider network (benchmarks/speed.py --weights) or check its size before a run.
    OUT gets WEIGHTS' card (decoding included), naming the widening.
    """
    from ..errors import TranscribeError
    from ..model import ModelConfig, UNetTranscriber
    from ..weights import load_model
    from .widen import widen as widen_model
    refuse_existing(out, overwrite)
    try:
        loaded = load_model(weights, "cpu")
        model = UNetTranscriber(ModelConfig.from_dict(json.loads(config.read_text())["model"]))
        widen_model(model, loaded.model)
    except (TranscribeError, ValueError, KeyError, json.JSONDecodeError) as error:
        raise click.ClickException(str(error)) from None
    digest = save_derived(model, out, loaded.card, widened=(
        f"{weights.name} (sha256 {loaded.card.get('sha256', '?')[:12]}) widened into "
        f"{config.name} (amt-train widen): the same outputs"))
    parameters = sum(p.numel() for p in model.parameters())
    click.echo(f"{out} sha256 {digest} ({parameters / 1e6:.2f} M parameters, "
               f"{out.stat().st_size / 1e6:.1f} MB)")


@main.command()
@click.argument("checkpoint", type=NamedPath(exists=True, dir_okay=False, path_type=Path))
@click.argument("weights", type=NamedPath(dir_okay=False, path_type=Path, written=True))
@click.option("--card", "card_path", type=NamedPath(exists=True, dir_okay=False, path_type=Path),
              help="JSON merged into the card (e.g. validation figures).")
@click.option("--overwrite", is_flag=True, help="Replace WEIGHTS (and its card) if they exist.")
def export(checkpoint, weights, card_path, overwrite):
    """Write CHECKPOINT's model as inference weights (state_dict + JSON card with SHA-256)."""
    from .train import export_checkpoint
    refuse_existing(weights, overwrite)
    digest = export_checkpoint(checkpoint, weights,
                               json.loads(card_path.read_text()) if card_path else None)
    click.echo(f"{weights} sha256 {digest}")


def register_table(counts, title: str):
    """A rich table of summed ``register_counts``: notes, recall, precision, F1 per octave."""
    from rich.markup import escape
    from rich.table import Table

    from .metrics import REGISTERS, f1, register_recall_precision
    table = Table(title=escape(title), title_justify="left")  # titles name paths
    for column in ("register", "reference notes", "recall", "precision", "F1"):
        table.add_column(column, justify="left" if column == "register" else "right")
    for (name, _, _), n_ref, recall, precision in zip(REGISTERS, counts[:, 0],
                                                       *register_recall_precision(counts)):
        table.add_row(name, str(n_ref), f"{100 * recall:.1f}", f"{100 * precision:.1f}",
                      f"{100 * f1(precision, recall):.1f}")
    return table


def summary_table(means: dict[str, float], title: str):
    from rich.markup import escape
    from rich.table import Table

    from .metrics import METRICS
    table = Table(title=escape(title), title_justify="left")  # titles name paths
    table.add_column("level")
    for column in ("precision", "recall", "F1"):
        table.add_column(column, justify="right")
    levels = list(METRICS) + [level for level in ("pedal_frame", "pedal_onset", "pedal_offset")
                              if f"{level}_f1" in means]
    for level in levels:
        table.add_row(level.replace("_", " + " if level.startswith("note") else " "),
                      *(f"{100 * means[f'{level}_{k}']:.1f}" for k in ("precision", "recall", "f1")))
    for level in ("frame", "note_offset"):
        if f"extend_{level}_f1" in means:
            table.add_row(f"{level.replace('_', ' + ')}, --pedal extend",
                          *(f"{100 * means[f'extend_{level}_{k}']:.1f}"
                            for k in ("precision", "recall", "f1")))
    if "cc64_note_offset_f1" in means:
        table.add_row("note + offset, --pedal cc64 vs key releases",
                      *(f"{100 * means[f'cc64_note_offset_{k}']:.1f}"
                        for k in ("precision", "recall", "f1")))
    for level, label in (("pedal_onset_kong", "pedal onset, within 200 ms (Kong et al.)"),
                         ("pedal_onset_offset_kong", "pedal onset + offset (Kong et al.)")):
        if f"{level}_f1" in means:
            table.add_row(label, *(f"{100 * means[f'{level}_{k}']:.1f}"
                                   for k in ("precision", "recall", "f1")))
    if "pedal_frame_f1_always_down" in means:
        table.add_row("pedal frame, held down throughout", "", "",
                      f"{100 * means['pedal_frame_f1_always_down']:.1f}")
    return table


def onset_timing_line(errors: list) -> str:
    """How far the onsets of the notes found lie from the reference's (``errors``: each
    file's, s, written minus played): what note F1's 50 ms tolerance does not show."""
    import numpy as np

    from ..progress import plural
    errors = np.concatenate([np.zeros(0), *errors])
    if not len(errors):
        return "onsets: no note found"
    return (f"onsets of the {plural(len(errors), 'note')} found: "
            f"{1000 * np.median(errors):+.1f} ms from the reference's at the median, "
            f"{1000 * np.mean(np.abs(errors)):.1f} ms off on average, "
            f"{100 * np.mean(np.abs(errors) <= 0.01 + 1e-9):.0f} % within 10 ms")


def band_table(counts, by: str, title: str):
    """A rich table of summed ``metrics.band_counts``: reference notes and recall per band."""
    from rich.markup import escape
    from rich.table import Table

    from .metrics import POLYPHONY_BANDS, VELOCITY_BANDS
    bands = VELOCITY_BANDS if by == "velocity" else POLYPHONY_BANDS
    table = Table(title=escape(title), title_justify="left")  # titles name paths
    for column in (by if by == "velocity" else "notes sounding", "reference notes", "recall"):
        table.add_column(column, justify="right")
    for (name, _, _), (n_ref, n_found) in zip(bands, counts):
        table.add_row(name, str(n_ref), f"{100 * n_found / max(n_ref, 1):.1f}")
    return table


def error_table(counts, title: str, names: tuple = ("notes",)):
    """A rich table of summed ``metrics.error_counts`` (``counts``: one array per transcriber
    named in ``names``): the notes of each kind, and their share of the notes missed or of
    those written that were not played; the kinds explained below it (a renderable)."""
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    from .metrics import ERROR_KINDS, ERROR_MEANINGS
    caption = "; ".join(f"{kind}: {meaning}" for kind, meaning in ERROR_MEANINGS.items())
    table = Table(title=escape(title), title_justify="left")
    table.add_column("error")
    table.add_column("kind")
    for name in names:
        table.add_column(escape(name), justify="right")
        table.add_column("%", justify="right")
    totals = {side: [sum(int(c[i]) for i, kind in enumerate(ERROR_KINDS) if kind[0] == side)
                     for c in counts] for side, _ in ERROR_KINDS}
    for index, (side, kind) in enumerate(ERROR_KINDS):
        cells = []
        for column, c in enumerate(counts):
            cells += [str(int(c[index])), f"{100 * c[index] / max(totals[side][column], 1):.1f}"]
        table.add_row(side, kind, *cells)
    return Group(table, Text(caption))


@click.command(context_settings=HELP_SETTINGS)
@click.argument("audio_dir", metavar="AUDIO", type=NamedPath(exists=True, path_type=Path))
@click.argument("midi_dir", metavar="MIDI", type=NamedPath(exists=True, path_type=Path))
@click.option("--weights", type=NamedPath(path_type=Path), help="Weights to evaluate (default: shipped).")
@click.option("--predictions", type=NamedPath(exists=True, path_type=Path),
              help="Score MIDI files from another transcriber (same relative paths, or all "
                   "in one folder; NAME.mid or basic-pitch's NAME_basic_pitch.mid; for one "
                   "recording, its MIDI file) instead.")
@click.option("--csv", "csv_path", type=NamedPath(path_type=Path, written=True),
              help="Per-file scores CSV.")
@click.option("--html", "html_dir", metavar="FOLDER", type=NamedPath(path_type=Path, written=True),
              help="Also a review page per recording in FOLDER (mirroring AUDIO's folders, "
                   "NAME.html, replaced if there), its notes (or --predictions') drawn as found "
                   "in the reference or not, the reference's notes not found as outlines; the "
                   "reference can be heard beside the recording; and FOLDER/index.html, the "
                   "lowest note F1 first.")
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda", "mps"]))
@decoding_options
@click.option("--model-pass", type=click.Choice(["fast", "full"]), default=None,
              help="Weights that reconstruct: score the first pass (fast) or the second (full).")
@click.option("--by-register", is_flag=True,
              help="Also note recall and precision per octave of the keyboard.")
@click.option("--by-velocity", is_flag=True, help="Also note recall per reference velocity band.")
@click.option("--by-polyphony", is_flag=True,
              help="Also note recall by the number of notes sounding at the onset.")
@click.option("--by-error", is_flag=True,
              help="Also where the errors lie: the notes missed (off in time, swallowed by a "
                   "longer note of the key, nothing near) and those written that were not "
                   "played (off in time, split from a played note, a played note's partial).")
def evaluate_main(audio_dir, midi_dir, weights, predictions, csv_path, html_dir, device,
                  model_pass, by_register, by_velocity, by_polyphony, by_error, **decoding):
    """Frame, note and note-with-offset P/R/F1 (mir_eval) of AUDIO against MIDI.

    AUDIO and MIDI are folders, whose files pair by relative path without suffix (a/b.flac
    with a/b.mid), or a recording and its reference MIDI file.
    """
    from rich.console import Console

    from ..errors import TranscribeError
    from ..progress import plural
    from .evaluate import evaluate_model, evaluate_predictions, pair_files, write_csv
    from .metrics import mean_scores
    console = Console(stderr=True)

    def say(text: str) -> None:  # one line, as written: file names are not markup
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    unpaired: list[Path] = []
    one = [path.is_file() for path in (audio_dir, midi_dir, predictions) if path is not None]
    if any(one) and not all(one):
        say("amt-evaluate: error: give folders, or files, to pair: a recording, its "
            "reference MIDI file (and the other transcriber's MIDI file)")
        sys.exit(2)
    pairs = [(audio_dir, midi_dir)] if all(one) else pair_files(audio_dir, midi_dir, unpaired)
    if not pairs:
        say(f"amt-evaluate: error: no audio in {audio_dir} has a MIDI file of the same name "
            f"in {midi_dir}")
        sys.exit(1)
    if unpaired:  # the set scored is not the folder's: say so before the figures
        say(f"amt-evaluate: note: {plural(len(unpaired), 'audio file')} without a MIDI file "
            f"of the same name in {midi_dir} left out (the first: {unpaired[0]})")
    # A file that cannot be read or written ends the run in one line: a mean over the
    # other files would not be the set's.
    try:
        if csv_path:  # before the work, not after it
            from ..files import check_not_special
            check_not_special(csv_path)
        pages = None
        if html_dir is not None:
            from ..files import check_writable
            if html_dir.exists() and not html_dir.is_dir():
                raise TranscribeError(f"{html_dir}: not a folder (--html names the folder "
                                      "for the pages)")
            check_writable(html_dir)
            pages = {audio: html_dir / (Path(audio.name) if all(one) else
                                        audio.relative_to(audio_dir)).with_suffix(".html")
                     for audio, _ in pairs}
        if predictions is not None:
            missing: list[Path] = []
            rows = evaluate_predictions(pairs, predictions, midi_dir, missing, pages)
            title = f"{predictions} on {plural(len(rows), 'file')}"
            if missing:
                say(f"amt-evaluate: note: {plural(len(missing), 'reference')} without a "
                    f"prediction in {predictions}, scored as no notes (the first: "
                    f"{missing[0]})")
        else:
            from ..inference import pick_device
            from ..weights import load_model
            loaded = load_model(weights, pick_device(device))
            options = pop_decoding_options(decoding)
            rows = evaluate_model(loaded, pairs, options, progress=lambda row: say(
                f"{row['file']}: note F1 {100 * row['note_f1']:.1f}"),
                model_pass=model_pass, pages=pages)
            title = f"{loaded.path} on {plural(len(rows), 'file')}" + (
                f" ({model_pass} pass)" if model_pass else "")
        if csv_path:
            write_csv(rows, csv_path)
        if pages:
            from .evaluate import write_index
            index = write_index(rows, [(audio.name if all(one) else
                                        audio.relative_to(audio_dir).as_posix(), pages[audio])
                                       for audio, _ in pairs], html_dir, title)
            say(f"amt-evaluate: {plural(len(rows), 'review page')} in {html_dir}; their "
                f"index, the lowest note F1 first: {index}")
    except TranscribeError as error:
        say(f"amt-evaluate: error: {error}")
        sys.exit(1)
    # A reference with no notes (on drum tracks only, or none on the 88 keys) scores 0
    # whatever is played: most likely the wrong file, and it pulls the mean down.
    empty = [midi for (_, midi), row in zip(pairs, rows) if not row["registers"][:, 0].any()]
    if empty:
        say(f"amt-evaluate: note: {plural(len(empty), 'reference')} "
            f"hold{'s' * (len(empty) == 1)} no notes on the 88 keys outside drum tracks: "
            f"scored 0 whatever is heard ({'the first: ' * (len(empty) > 1)}{empty[0]})")
    Console().print(summary_table(mean_scores(rows), title))
    click.echo(onset_timing_line([row["onset_errors"] for row in rows]))
    if by_register:
        counts = sum(row["registers"] for row in rows)
        Console().print(register_table(counts, "note level (50 ms onsets) by register, "
                                               "summed over files"))
    for by, wanted, key in (("velocity", by_velocity, "velocities"),
                            ("polyphony", by_polyphony, "polyphony")):
        if wanted:
            Console().print(band_table(sum(row[key] for row in rows), by,
                                       f"note recall (50 ms onsets) by {by}, summed over files"))
    if by_error:
        Console().print(error_table([sum(row["errors"] for row in rows)],
                                    "where the errors lie, summed over files"))
