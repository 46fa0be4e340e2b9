"""The library call behind the CLI: ``transcribe(audio, model) -> Transcription``.

audio.stream -> inference.run (features + network, chunked) -> decode.NoteStream.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shlex
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np
import torch

from . import constants as C
from . import audio as audio_io, declip, level
from .decode import (DecodingOptions, NoteStream, decode_notes, extend_through_pedal,
                     head_pedal_spans)
from .errors import TranscribeError
from .inference import Posteriorgrams, pick_device, run
from .files import all_or_none, named_path, write_atomic
from .noteends import choose_ends
from .midi import format_for, notes_bytes, notes_to_midi
from .timing import StageTimes
from .version import __version__

# The card's sections fitted to the weights' posteriorgrams (the note filter, the end
# chooser, the velocity model): saved with posteriorgrams as "weights_<section>", so that
# a re-decode decodes as the weights' card does.
FITTED_SECTIONS = ("note_filter", "note_ends", "note_velocities")


@dataclass
class Transcription:
    """Notes and posteriorgrams of one recording.

    ``notes`` is ``(n, 4)``: onset s, offset s, MIDI pitch, velocity.
    ``posteriorgrams`` is None when ``transcribe`` was asked not to keep them.
    """

    notes: np.ndarray
    posteriorgrams: Posteriorgrams | None
    duration_s: float
    options: DecodingOptions = field(default_factory=lambda: DecodingOptions().resolve())
    source: str | None = None
    warnings: list[str] = field(default_factory=list)
    pedal: np.ndarray | None = None  # sustain spans (k, 2) in s; None: the model has no pedal head
    # The notes ending where their key came up (``notes`` end where the string stops
    # sounding); None: the model has no key-down head.
    key_notes: np.ndarray | None = None
    # Which weights made the posteriorgrams: their SHA-256, the thresholds tuned for
    # them (their card's "decoding"), their note filter, end chooser and velocity model
    # (the card's "note_filter", "note_ends", "note_velocities") and the model pass; saved
    # with the posteriorgrams.
    provenance: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        # The dataclass's own printed every note and posteriorgram: screens of numbers for
        # one look at a result in a notebook.
        count = len(self.notes)
        parts = [f"{count} note{'s' * (count != 1)}", f"{self.duration_s:.1f} s"]
        if self.source is not None:
            parts.insert(0, repr(self.source))
        if self.pedal is not None:
            parts.append(f"pedal down {len(self.pedal)} time{'s' * (len(self.pedal) != 1)}")
        if self.posteriorgrams is None:
            parts.append("posteriorgrams not kept")
        if self.warnings:
            parts.append(f"warnings={self.warnings!r}")
        return f"Transcription({', '.join(parts)})"

    @property
    def posteriorgram(self) -> np.ndarray:
        """The frame posteriorgram ``(frames, 88)``."""
        return self.kept_posteriorgrams().frame

    def kept_posteriorgrams(self) -> Posteriorgrams:
        """``posteriorgrams``, or a clear error when they were not kept."""
        if self.posteriorgrams is None:
            raise TranscribeError("the posteriorgrams were not kept; transcribe with "
                                  "keep_posteriorgrams=True")
        return self.posteriorgrams

    @property
    def metadata(self) -> dict:
        return {"software": f"amt-transcribe {__version__}",
                **self.options.as_dict(),
                **({"dereverb": True} if self.provenance.get("dereverb") else {}),
                **({"declipped": True} if self.provenance.get("declipped") else {}),
                **{key: self.provenance[key] for key in ("input_gain_db", "normalize")
                   if key in self.provenance}}

    def with_pedal(self, mode: str = C.DEFAULT_PEDAL_MODE) -> tuple[np.ndarray, np.ndarray | None]:
        """(notes, pedal spans to write) for a pedal ``mode`` of ``constants.PEDAL_MODES``.

        ``none`` (the default): the notes as decoded, which last as long as the frame
        head hears them, pedal or not; ``extend``: those notes lengthened further to the
        predicted pedal's release, no pedal events (a score's view); ``cc64``: the notes
        ending at their key's release when the model has a key-down head (else as
        decoded) and the pedal as CC64 events (a player piano's view).  Without a pedal
        head all three give the notes as decoded.
        """
        if mode not in C.PEDAL_MODES:
            raise TranscribeError(f"pedal mode must be one of {', '.join(C.PEDAL_MODES)}, "
                                  f"not {mode!r}")
        if self.pedal is None or mode == "none":
            return self.notes, None
        if mode == "extend":
            return extend_through_pedal(self.notes, self.pedal), None
        return (self.notes if self.key_notes is None else self.key_notes), self.pedal

    def to_midi(self, tempo_bpm: float = 120.0, pedal: str = C.DEFAULT_PEDAL_MODE):
        """A ``pretty_midi.PrettyMIDI`` of the notes (times in seconds at any tempo)."""
        import json
        notes, spans = self.with_pedal(pedal)
        return notes_to_midi(notes, tempo_bpm, json.dumps(self.metadata, sort_keys=True), spans)

    def save(self, path: str | Path, fmt: str | None = None, tempo_bpm: float = 120.0,
             overwrite: bool = True, pedal: str = C.DEFAULT_PEDAL_MODE) -> None:
        """Write the notes as MIDI, CSV or JSON (from the suffix unless ``fmt``), atomically.

        ``pedal`` is the mode of ``with_pedal``.  With ``overwrite=False`` an existing
        file raises ``files.OutputExists``.
        """
        path = Path(path)
        write_atomic(path, self.to_bytes(fmt or format_for(path), tempo_bpm, pedal), overwrite)

    def to_bytes(self, fmt: str = "mid", tempo_bpm: float = 120.0,
                 pedal: str = C.DEFAULT_PEDAL_MODE) -> bytes:
        """The notes as the bytes of the file ``save`` writes in the format ``fmt``."""
        notes, spans = self.with_pedal(pedal)
        return notes_bytes(notes, fmt, tempo_bpm, self.metadata, spans)

    def save_posteriorgrams(self, path: str | Path, overwrite: bool = True) -> None:
        """Write the posteriorgrams to ``.npz`` with what re-decoding needs: the weights'
        SHA-256 and tuned thresholds, the options used, the software version
        (``load_posteriorgrams`` reads it back)."""
        import io
        import json
        buffer = io.BytesIO()
        p = self.kept_posteriorgrams()
        extra = {name: value for name, value in
                 (("pedal", p.pedal), ("key", p.key), ("level", p.level)) if value is not None}
        about = {**self.provenance, "software": f"amt-transcribe {__version__}",
                 "options": self.options.as_dict(), "source": self.source}
        np.savez_compressed(buffer, frame=p.frame, onset=p.onset, offset=p.offset,
                            velocity=p.velocity, frame_rate_hz=p.frame_rate_hz,
                            duration_s=self.duration_s, about=json.dumps(about), **extra)
        write_atomic(Path(path), buffer.getvalue(), overwrite)

    def redecode(self, **options) -> "Transcription":
        """The same posteriorgrams decoded with other thresholds (no network run).

        Options given as None keep their current value.
        """
        new = self.options.merged(**options).resolve()
        kept = self.kept_posteriorgrams()
        pedal = self.pedal if kept.pedal is None else head_pedal_spans(
            kept.pedal, new, kept.frame_rate_hz)
        notes, key_notes = decode(kept, new, pedal)
        return dataclasses.replace(self, notes=notes, options=new, pedal=pedal,
                                   key_notes=key_notes)


def decode(posteriorgrams: Posteriorgrams, options: DecodingOptions,
           pedal: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The notes of ``posteriorgrams``, and, with a key-down head's, the same notes ending
    at their key's release (else None).  Given the pedal's spans decoded from them
    (``pedal``; decoded here when not given), an end chooser (``options.end_chooser``)
    moves the notes' ends (``noteends.choose_ends``), as a transcription's stream does."""
    p = posteriorgrams
    if pedal is None and p.pedal is not None:
        pedal = head_pedal_spans(p.pedal, options, p.frame_rate_hz)
    notes, key_notes, readings = decode_notes(
        p.frame, p.onset, p.offset, p.velocity, options, p.frame_rate_hz, level=p.level,
        key=p.key, readings=True)
    down = None if p.pedal is None else p.pedal[:, 0]
    return choose_ends(notes, key_notes, pedal, down, readings, options.end_chooser,
                       options.end_choice_threshold, p.frame_rate_hz), key_notes


def transcribe(audio: str | Path | np.ndarray, model=None, sample_rate: int | None = None, *,
               options: DecodingOptions | None = None, device: str = "auto",
               chunk_frames: int = C.CHUNK_FRAMES, context_frames: int = C.CONTEXT_FRAMES,
               batch_chunks: int | None = None, keep_spectrograms: bool = False,
               progress: Callable[[float, float], None] | None = None,
               times: StageTimes | None = None,
               keep_posteriorgrams: bool = True, model_pass: str | None = None,
               dereverb: bool = False, normalize: bool = True) -> Transcription:
    """Transcribe a file path, or an audio array with its ``sample_rate`` (Hz).

    A file's rate is read from the file; a ``sample_rate`` given with a path must
    agree with it.

    An array is ``(samples,)`` or two-dimensional in either layout, ``(samples,
    channels)`` (soundfile) or ``(channels, samples)`` (librosa, torchaudio): the
    axis of at most ``audio.MAX_CHANNELS`` entries that is the shorter one holds
    the channels.  Floats are taken as they are ([-1, 1] full scale); integer PCM
    is scaled to [-1, 1] by its type's range.  Bad arguments raise ``TranscribeError``.

    ``model`` is a ``LoadedModel`` from ``load_model`` (reuse it across calls), or a
    weights path loaded on ``device`` for this call; by default the shipped weights,
    loaded once and kept for the next call given no model (from any thread).
    A number given as the model (``transcribe(y, sr)``, librosa's habit) raises
    ``TranscribeError`` saying that the rate is ``sample_rate=``.  ``progress`` is
    called with (seconds done, seconds in all).  ``keep_spectrograms`` keeps the
    input and reconstructed spectrograms for plotting.  ``times`` collects the
    seconds spent per stage (audio, spectrogram, network, note decoding).
    Notes are decoded as the network goes; with ``keep_posteriorgrams=False`` the
    posteriorgrams are not kept (``Transcription.posteriorgrams`` is None, no
    ``redecode``), so memory stays flat however long the recording.
    ``model_pass`` of weights that reconstruct: ``full`` transcribes again from the
    reconstructed spectrogram (the seed's model), ``fast`` stops after the first
    pass; None takes the card's ``default_pass`` (else ``full``).
    ``dereverb`` suppresses the room's late reverberation before the network hears the
    audio (``dereverb.py``): notes end closer to their key releases in a reverberant room;
    the pedal head, which hears the pedal in the room's ringing, does worse.
    ``normalize`` scales the audio so that its peak is ``constants.INPUT_PEAK``, the level
    the weights were tuned at (raised at most ``MAX_INPUT_GAIN_DB``), so the notes do not
    depend on the recording level and a quiet recording is heard whole; a file is then
    read twice.  A few brief spikes far above the music (clicks: ``level.Peaks.level``)
    do not set the level; they are held to full scale, with a warning.  The gain applied
    is in ``provenance["input_gain_db"]``.  A recording clipped enough to be warned of has
    its crests redrawn first (``declip.py``), and its level taken as ``declip.CAP`` times
    the level it was held at, where a redrawn crest may reach.
    """
    model = _model_of(model, device)
    options = (options or DecodingOptions()).resolve(model.card)
    times = times or StageTimes()
    stats = audio_io.StreamStats()
    target = model.config.sample_rate
    if isinstance(audio, (str, os.PathLike)):
        info = audio_io.probe(audio)
        if sample_rate is not None and sample_rate != info.sample_rate:
            raise TranscribeError(f"{audio}: sample_rate={sample_rate} is for audio arrays; "
                                  f"the file's own rate ({info.sample_rate} Hz) is read from it")
        total_s, source = info.duration_s, str(audio)
        with times.measure("input level (a first read)"):
            # As many readers as the network has threads: the cores it is about to use.
            peaks = level.peak(audio, info, parts=torch.get_num_threads()) \
                if normalize else None
        declipper = _declipper(peaks, info.sample_rate)
        blocks = audio_io.stream(audio, target, stats=stats, info=info, declip=declipper)
    else:
        array = audio_io.as_samples_first(audio)
        rate = audio_io.check_sample_rate(sample_rate)
        total_s, source = len(array) / rate, None
        peaks = level.array_peak(array, rate) if normalize else None
        declipper = _declipper(peaks, rate)
        blocks = audio_io.stream_array(array, rate, target, stats=stats, declip=declipper)
    # Redrawn, the crests may rise to declip.CAP times the level they were held at.
    heard_peak = peaks.level * (declip.CAP if declipper else 1.0) if peaks is not None else 0.0
    gain = level.level_gain(heard_peak)  # 1 where the level was not read
    # Spikes set aside are held to full scale: raised with the music, a click would stand
    # far above anything the network was trained on (and cost the notes around it).
    blocks = level.scaled(blocks, gain, 1.0 if peaks is not None and peaks.spikes else None)
    if dereverb:
        from .dereverb import dereverberate
        blocks = dereverberate(blocks, target)
    frontend = model.frontend
    frame_s = 1 / frontend.frame_rate_hz
    # A short recording needs only one chunk of its own length (the output is the same).
    multiple = model.config.time_multiple
    needed = frontend.frames_for_samples(math.ceil(total_s * target)) + 1  # + 1: rounding
    chunk_frames = min(chunk_frames, -(-needed // multiple) * multiple)
    report = (lambda frames: progress(min(frames * frame_s, total_s), total_s)) if progress else None
    decoder = NoteStream(options, frame_rate_hz=frontend.frame_rate_hz)

    # The pedal head's columns (down, pressed, released): 675 kB an hour.
    pedal_parts = [np.zeros((0, 3), np.float16)]

    def decode_frames(frames: dict[str, np.ndarray]) -> None:
        with times.measure("note decoding"):
            decoder.push(frames["frame"], frames["onset"], frames["offset"], frames["velocity"],
                         frames.get("key"), frames.get("level"))
            if "pedal" in frames:
                pedal_parts.append(frames["pedal"].copy())  # the buffer may be reused

    full = resolve_model_pass(model_pass, model.card) == "full"
    posteriorgrams = run(model.model, model.frontend, blocks, chunk_frames, context_frames,
                         batch_chunks, keep_spectrograms and keep_posteriorgrams, report,
                         expected_frames=needed, times=times, on_frames=decode_frames,
                         keep_posteriorgrams=keep_posteriorgrams, full=full)
    with times.measure("note decoding"):
        notes = decoder.finish()
        columns = np.concatenate(pedal_parts)
        pedal = head_pedal_spans(columns, options, frontend.frame_rate_hz
                                 ) if model.config.pedal else None
        key_notes = decoder.key_release_notes()
        notes = choose_ends(notes, key_notes, pedal, columns[:, 0] if model.config.pedal
                            else None, decoder.end_readings(), options.end_chooser,
                            options.end_choice_threshold, frontend.frame_rate_hz)
    warnings = [stats.shortfall] if stats.shortfall else []
    if isinstance(audio, (str, os.PathLike)) and audio_io.raw_data_warning(info):
        warnings.append(audio_io.raw_data_warning(info))
    if stats.nonfinite:
        warnings.append(f"{stats.nonfinite} NaN/Inf samples were replaced by silence")
    if peaks is not None and peaks.spikes:
        above = 20 * math.log10(peaks.mix / peaks.level)
        warnings.append(f"{peaks.spikes} brief spike{'s' * (peaks.spikes > 1)} (clicks? a "
                        f"knock?) stand up to {above:.0f} dB above the music; its level was "
                        "set by the music, and they were held to full scale")
    coded = isinstance(audio, (str, os.PathLike)) and info.lossy  # MP3, AAC...
    if declipper is not None:
        held_at = peaks.clipped_level
        where = ("held at full scale" if held_at >= level.CLIP_LEVEL else
                 f"held flat at {20 * math.log10(held_at):.1f} dBFS, its peak: clipped, then "
                 "lowered")
        warnings.append(f"{_percent(peaks.clipped_share)} of its samples are clipped "
                        f"({where}): its flat crests were redrawn, but the distortion may "
                        "still add notes that were not played")
    elif (coded and peaks is not None
          and peaks.coded_clipped_share >= level.CODED_CLIPPED_WARN_SHARE):
        warnings.append(f"{_percent(peaks.coded_clipped_share)} of its samples stand within "
                        f"{level.NEAR_FULL_DB:g} dB of full scale or past it, as a recording's "
                        "do that was clipped before it was encoded (MP3, AAC...): the "
                        "distortion may add notes that were not played")
    if peaks is not None and peaks.channels == 0:
        # "0 notes" alone reads as the transcriber's failure: a dead input, a muted track.
        warnings.append("the recording is silent: every sample is zero")
    elif peaks is not None and 0 < gain * heard_peak < C.INPUT_PEAK / 2:  # 0: cancelled
        warnings.append(f"the recording is very quiet (its peak is "
                        f"{20 * math.log10(peaks.level):.0f} dBFS): raised by "
                        f"{C.MAX_INPUT_GAIN_DB:.0f} dB, the most, it is still "
                        f"{20 * math.log10(C.INPUT_PEAK / (gain * heard_peak)):.0f} dB below "
                        "the level the weights were tuned at, and soft notes may be missed")
    if peaks is not None and peaks.cancelled:
        falls = (f"{20 * math.log10(peaks.channels / peaks.mix):.0f} dB below its loudest "
                 "channel" if peaks.mix > 0 else "to silence")
        if source is None:  # an array
            one = "audio[:, 0]"
        else:  # the path as given, not its name: the command runs where amt-transcribe ran
            left = Path(source).with_name(Path(source).stem + "-left.wav")
            one = (f"ffmpeg -i {shlex.quote(source)} -af 'pan=mono|c0=c0' "
                   f"{shlex.quote(str(left))}")
        warnings.append(f"its channels cancel when mixed to mono (the mix falls {falls}; "
                        f"is one polarity-inverted?): transcribe one channel, e.g. {one}")
    provenance = {"weights_sha256": model.card.get("sha256"),
                  "weights_decoding": model.card.get("decoding", {}),
                  **{f"weights_{section}": model.card[section]
                     for section in FITTED_SECTIONS if section in model.card},
                  "model_pass": "full" if full and model.config.reconstruction else "fast",
                  "dereverb": bool(dereverb),
                  **({"declipped": True} if declipper is not None else {}),
                  **({"input_gain_db": round(20 * math.log10(gain), 2)} if normalize
                     else {"normalize": False})}
    return Transcription(notes, posteriorgrams, stats.samples / target, options, source,
                         warnings, pedal=pedal, provenance=provenance, key_notes=key_notes)


def _declipper(peaks: level.Peaks | None, sample_rate: float) -> declip.Declipper | None:
    """What redraws a recording's clipped crests, where enough of it is clipped to be warned
    of (``level.CLIPPED_WARN_SHARE``); None otherwise, or where its level was not read
    (``normalize=False``: the samples as they are)."""
    if peaks is None or peaks.clipped_share < level.CLIPPED_WARN_SHARE:
        return None
    return declip.Declipper(peaks.clipped_values, sample_rate)


def _percent(share: float) -> str:
    """A share (0 to 1) as a warning gives it: "12 %", "1.3 %"."""
    percent = 100 * share
    return f"{percent:.{0 if percent >= 10 else 1}f} %"


def load_posteriorgrams(path: str | Path, options: DecodingOptions | None = None) -> Transcription:
    """A ``Transcription`` from posteriorgrams saved by ``--save-posteriorgram``, decoded anew.

    Fields of ``options`` left unset take the thresholds tuned for the weights that made
    the file (stored in it), as a direct transcription would.  No network runs: an hour
    of audio re-decodes in seconds.  ``TranscribeError`` for a file that is not such a save.
    """
    import json
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as saved:
            arrays = {name: saved[name] for name in saved.files}
    except (OSError, ValueError) as error:
        raise TranscribeError(f"{path}: not a saved posteriorgram file ({error})") from None
    needed = {"frame", "onset", "offset", "velocity", "frame_rate_hz", "duration_s"}
    if not needed <= set(arrays):
        raise TranscribeError(f"{path}: not a saved posteriorgram file (it lacks "
                              f"{', '.join(sorted(needed - set(arrays)))})")
    about = json.loads(str(arrays["about"])) if "about" in arrays else {}
    posteriorgrams = Posteriorgrams(arrays["frame"], arrays["onset"], arrays["offset"],
                                    arrays["velocity"], pedal=arrays.get("pedal"),
                                    key=arrays.get("key"), level=arrays.get("level"),
                                    frame_rate_hz=float(arrays["frame_rate_hz"]))
    provenance = {k: about[k] for k in ("weights_sha256", "weights_decoding",
                                        *(f"weights_{section}" for section in FITTED_SECTIONS),
                                        "model_pass", "dereverb",
                                        "declipped", "input_gain_db", "normalize")
                  if k in about}
    resolved = (options or DecodingOptions()).resolve(
        {"decoding": provenance.get("weights_decoding", {}),
         **{section: provenance.get(f"weights_{section}") for section in FITTED_SECTIONS}})
    result = Transcription(np.zeros((0, 4)), posteriorgrams, float(arrays["duration_s"]),
                           resolved, about.get("source"), provenance=provenance)
    return result.redecode()

MODEL_PASSES = ("fast", "full")


# The shipped weights as ``transcribe`` loaded them for a call given no model, by device,
# kept for the next such call: loading them anew cost 0.08 s a call, a third of a 19 s
# file's transcription.  One for all threads (a call keeps its own pass, ``model.
# active_pass``): a web app's pool of 40 threads would otherwise keep 40 copies.
_SHIPPED: dict[torch.device, object] = {}
_SHIPPED_LOADING = threading.Lock()


def _model_of(model, device: str):
    """``transcribe``'s ``model`` argument as a ``LoadedModel``."""
    from .weights import LoadedModel, load_model
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, (str, os.PathLike)):
        return load_model(model, device=pick_device(device))
    if model is None:
        chosen = pick_device(device)
        with _SHIPPED_LOADING:
            if chosen not in _SHIPPED:
                _SHIPPED[chosen] = load_model(device=chosen)
            return _SHIPPED[chosen]
    if isinstance(model, (int, float, np.number)) and not isinstance(model, bool):
        rate = format(float(model), "g")
        raise TranscribeError(f"transcribe(audio, model, sample_rate): {rate} was given as the "
                              f"model; give a rate as sample_rate={rate}")
    raise TranscribeError(f"transcribe(audio, model, sample_rate): the model is load_model()'s "
                          f"(or a weights path, or None for the shipped weights), not a "
                          f"{type(model).__name__}")


def resolve_model_pass(model_pass: str | None, card: dict) -> str:
    """``fast`` or ``full``: as asked, else the card's ``default_pass``, else ``full``."""
    chosen = model_pass or card.get("default_pass") or "full"
    if chosen not in MODEL_PASSES:
        raise TranscribeError(f"model pass must be fast or full, not {chosen!r}")
    return chosen


def is_posteriorgram_file(path: str | Path) -> bool:
    """Whether ``path`` names posteriorgrams saved by ``--save-posteriorgram`` (``.npz``)."""
    return Path(path).suffix.lower() == ".npz"


def side_outputs(output: Path, plot: bool = False, save_posteriorgram: bool = False,
                 html: bool = False) -> list[Path]:
    """The files written beside ``output`` by ``--plot``, ``--save-posteriorgram`` and ``--html``.

    ``STEM.reconstruction.png`` is listed too, though only weights that reconstruct write it.
    Recordings longer than ``plot.PAGE_S`` get numbered pages (``STEM.pianoroll-01.png``)
    instead, which the atomic publish checks as they are written.
    """
    stem = output.with_suffix("")
    paths = [output.with_suffix(".npz")] if save_posteriorgram else []
    if html:
        paths.append(output.with_suffix(".html"))
    if plot:
        paths += [stem.with_name(f"{stem.name}.{kind}.png") for kind in
                  ("spectrogram", "posteriorgram", "reconstruction", "pianoroll")]
    return paths


def _transcription(source: str | Path, model, options, progress, times, model_pass, dereverb,
                   normalize, keep_spectrograms: bool = False,
                   keep_posteriorgrams: bool = False) -> Transcription:
    """The transcription of an audio file, or of saved posteriorgrams (decoded anew)."""
    if is_posteriorgram_file(source):  # saved posteriorgrams: decoded anew, no network
        with times.measure("note decoding"):
            return load_posteriorgrams(source, options)
    return transcribe(source, model, options=options, keep_spectrograms=keep_spectrograms,
                      progress=progress, times=times, keep_posteriorgrams=keep_posteriorgrams,
                      model_pass=model_pass, dereverb=dereverb, normalize=normalize)


def transcribe_to_stream(source: str | Path, stream: BinaryIO, model, *,
                         options: DecodingOptions | None = None, fmt: str = "mid",
                         tempo_bpm: float = 120.0,
                         progress: Callable[[float, float], None] | None = None,
                         times: StageTimes | None = None, pedal: str = C.DEFAULT_PEDAL_MODE,
                         model_pass: str | None = None, dereverb: bool = False,
                         normalize: bool = True) -> Transcription:
    """Transcribe ``source`` and write its notes to ``stream`` (standard output, ``-o -``),
    whole once transcribed: a failed transcription writes nothing."""
    times = times or StageTimes()
    result = _transcription(source, model, options, progress, times, model_pass, dereverb,
                            normalize)
    with times.measure("output files"):
        stream.write(result.to_bytes(fmt, tempo_bpm, pedal))
        stream.flush()
    return result


def transcribe_to_file(source: str | Path, output: str | Path, model, *,
                       options: DecodingOptions | None = None, fmt: str | None = None,
                       tempo_bpm: float = 120.0, plot: bool = False,
                       save_posteriorgram: bool = False, overwrite: bool = False,
                       progress: Callable[[float, float], None] | None = None,
                       times: StageTimes | None = None, pedal: str = C.DEFAULT_PEDAL_MODE,
                       model_pass: str | None = None, html: bool = False,
                       dereverb: bool = False, normalize: bool = True,
                       source_name: str | None = None) -> Transcription:
    """Transcribe ``source`` and write ``output`` (plus its ``side_outputs``), each atomically.

    ``source_name``: what the saved posteriorgrams record as their source, where
    ``source`` is not it (standard input, read from a temporary file).

    The side files are written first and the notes last, so an existing ``output``
    means a finished job (``--skip-existing`` relies on it).  All are published
    together when the last is written, so a job that fails, is interrupted or is
    killed on the way leaves none of them.  Without ``overwrite``
    no existing file is replaced, even one another process wrote meanwhile:
    ``files.OutputExists`` is raised instead.
    """
    output = named_path(output, "output")
    times = times or StageTimes()
    if is_posteriorgram_file(source) and html:
        raise TranscribeError(f"{source}: --html needs the recording; give the audio file")
    result = _transcription(source, model, options, progress, times, model_pass, dereverb,
                            normalize, keep_spectrograms=plot,
                            keep_posteriorgrams=plot or save_posteriorgram)
    if source_name is not None:
        result.source = source_name
    with all_or_none():  # published together at the end: a failed job leaves none of them
        with times.measure("output files"):
            if save_posteriorgram:
                result.save_posteriorgrams(output.with_suffix(".npz"), overwrite)
        if plot:
            from .plot import plot_all
            with times.measure("plots"):
                plot_all(result, output.with_suffix(""),
                         model.config.spectrogram if model is not None else "mel", overwrite)
        if html:
            from .review import write_review_page
            with times.measure("review page"):
                write_review_page(result, source, output.with_suffix(".html"), overwrite, pedal,
                                  tempo_bpm)
        with times.measure("output files"):
            result.save(output, fmt, tempo_bpm, overwrite, pedal)
    return result
