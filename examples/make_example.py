"""Regenerate examples/example.mid (a short piece written for this repo) and its rendering.

    python examples/make_example.py

The audio is rendered with fluidsynth and the FluidR3_GM SoundFont (Debian's
fluid-soundfont-gm), with a little room reverb, as 16 kHz mono FLAC.
"""

from pathlib import Path

import numpy as np
import pedalboard as pb
import pretty_midi
import soundfile as sf

from transcribe.training import synth

HERE = Path(__file__).resolve().parent
BEAT_S = 0.5  # 120 bpm


def example_midi() -> pretty_midi.PrettyMIDI:
    """Sixteen bars: a melody in the right hand over broken chords, sustain pedal per bar."""
    melody = [72, 74, 76, 77, 79, 77, 76, 74, 72, 76, 79, 84, 83, 79, 74, 71,
              72, 72, 76, 76, 77, 76, 74, 72, 71, 74, 79, 77, 76, 74, 72, 72]
    chords = [(48, 55, 64), (43, 55, 62), (45, 52, 60), (41, 53, 57),
              (48, 55, 64), (43, 50, 59), (41, 53, 60), (43, 55, 59)]
    midi = pretty_midi.PrettyMIDI(initial_tempo=120)
    piano = pretty_midi.Instrument(0, name="Piano")
    for i, pitch in enumerate(melody):
        start = i * BEAT_S
        length = BEAT_S * (0.95 if i % 8 != 7 else 1.9)
        piano.notes.append(pretty_midi.Note(70 + 15 * (i % 4 == 0), pitch, start, start + length))
    for bar, chord in enumerate(chords * 2):
        start = bar * 2 * BEAT_S
        if start >= len(melody) * BEAT_S:
            break
        for k, pitch in enumerate(chord + (chord[1],)):
            onset = start + k * BEAT_S / 2
            piano.notes.append(pretty_midi.Note(55, pitch, onset, onset + BEAT_S / 2))
        piano.control_changes += [pretty_midi.ControlChange(64, 127, start + 0.02),
                                  pretty_midi.ControlChange(64, 0, start + 2 * BEAT_S - 0.05)]
    midi.instruments.append(piano)
    return midi


def main() -> None:
    midi = example_midi()
    midi.write(str(HERE / "example.mid"))
    audio = synth.render(midi, synth.find_soundfont("FluidR3_GM.sf2"))
    audio = pb.Reverb(room_size=0.3, wet_level=0.12, dry_level=1.0, width=0.0)(audio[None], 16000)[0]
    audio = 0.8 * audio / np.abs(audio).max()
    sf.write(HERE / "example.flac", audio, 16000, subtype="PCM_16")


if __name__ == "__main__":
    main()
