"""Facts of the signal chain shared by every stage (defaults for the model config).

The front end follows Cheuk et al. (ICPR 2020): 16 kHz audio, hop 512 samples
(31.25 frames/s), 2048-sample Hann windows, 229 Mel bins from 30 Hz to 8 kHz.
"""

SAMPLE_RATE = 16000
HOP_LENGTH = 512  # samples
N_FFT = 2048  # samples
N_MELS = 229
MEL_FMIN_HZ = 30.0
MEL_FMAX_HZ = 8000.0
# CQT variant of the seed: 176 bins, 2 per semitone, from A0.
N_CQT_BINS = 176
CQT_FMIN_HZ = 27.5
CQT_BINS_PER_OCTAVE = 24

FRAME_RATE_HZ = SAMPLE_RATE / HOP_LENGTH  # 31.25

MIN_MIDI = 21  # A0
MAX_MIDI = 108  # C8
N_KEYS = MAX_MIDI - MIN_MIDI + 1  # 88

# Spectrogram floor before the log; log-power is then mapped to about [0, 1]
# by a fixed affine map so that every chunk of a file is scaled alike.
LOG_FLOOR = 1e-5
LOG_SCALE = 20.0
SILENCE_DB = -50.0  # a key's level in silence: 10 log10(LOG_FLOOR) (features.to_decibels)

# Input level: a recording is scaled so that its peak (mono, finite samples) sits where the
# tuning and evaluation sets' renders have theirs, whatever level it was recorded at.
# Training drew each segment's peak between -34 and 0 dBFS; below that the network hears
# less (development set, shipped weights: note F1 80.6 at this peak, 79.3 at -34 dBFS,
# 73.7 at -50, 58.5 at -60; session 25).  The gain is capped so that a file of faint
# hiss is not raised to full scale.
INPUT_PEAK = 0.8  # -1.9 dBFS
MAX_INPUT_GAIN_DB = 60.0

# Decoding defaults, shared by the Python API and the CLI.
ONSET_THRESHOLD = 0.5
FRAME_THRESHOLD = 0.5
OFFSET_THRESHOLD = 0.5
MIN_NOTE_MS = 30.0
# Onsets inferred from the frame posteriorgram (decode.py): a rise above the
# frame-onset threshold after this many frames below this level.  The threshold's
# fallback of 1.0 turns the rule off; weights' cards set the value tuned for them.
FRAME_ONSET_THRESHOLD = 1.0
# Two frames below 0.4 (session 14; three below 0.3 before) found more soft notes at
# no cost: note F1 +0.06 on the tuning excerpts, +0.3 on the development set, +0.1 on
# validation (weights/README.md).
FRAME_ONSET_QUIET_FRAMES = 2  # 64 ms
FRAME_ONSET_QUIET_LEVEL = 0.4
# Two onsets that need more than the onset threshold (decode.py): a key re-struck while
# its note still sounds, and a key struck where a lower key that sounds has a partial (an
# octave, twelfth, two octaves, and the 5th and 6th partials above).  The onset head fires
# faintly at both where no key was struck: a sustained note's decay, a loud note's
# partials.  A note starts there only if its onset peaks at or above the threshold (a
# re-strike also where the key's level rises: below); 0 (the fallback) turns a rule off.
# The shipped card sets the re-strike bar and leaves the partial bar off: that one cost
# the development set's dense notes more than it gained (session 37).
RESTRIKE_ONSET_THRESHOLD = 0.0
PARTIAL_ONSET_THRESHOLD = 0.0
PARTIAL_INTERVALS = (12, 19, 24, 28, 31)  # keys above the sounding key: its 2nd-6th partials
# A faint onset inside a sounding note is its decay only where the key's level at its
# first partial does not rise by more than this many dB over the next frames (a re-strike
# adds energy) above its level in the frames before.  One frame before, not two: on the
# tuning excerpts the same note F1 (84.91 against 85.01) and note+offset F1 (55.42 both),
# with fewer soft notes lost (recall below velocity 45 -0.4 points against -0.9).
RESTRIKE_RISE_DB = 0.0
RESTRIKE_RISE_FRAMES = 3  # 96 ms
RESTRIKE_BEFORE_FRAMES = 1  # the frame before the onset: a stream keeps it (FRAME_ONSET_QUIET_FRAMES)
# An onset fainter than the onset threshold, above SOFT_ONSET_THRESHOLD, starts a note
# where the key's level at its first partial rises by SOFT_RISE_DB or more (measured as
# for re-strikes): a soft note the onset head nearly missed.  The fallback of 1 turns it
# off (no onset is fainter than the threshold and above 1).
SOFT_ONSET_THRESHOLD = 1.0
SOFT_RISE_DB = 3.0
# The note filter's score (notefilter.py) a decoded note needs to be kept, for weights
# whose card has a filter; 0 (the fallback) keeps every note.
NOTE_FILTER_THRESHOLD = 0.0
# How sure the end chooser (noteends.py) must be to move a note's end, for weights whose
# card has one and names no threshold: 1, never (their card's decoding says otherwise).
END_CHOICE_THRESHOLD = 1.0
# How much of each velocity the velocity model (notevelocity.py) decides, for weights whose
# card has one and names no weight: 0, none (their card's decoding says otherwise).
VELOCITY_MODEL_WEIGHT = 0.0

# Sustain pedal (models with a pedal head): down where its probability exceeds the
# threshold; shorter presses and shorter gaps between presses are merged away.
PEDAL_THRESHOLD = 0.5
KEY_THRESHOLD = 0.5  # key-down probability below which a key is up
MIN_PEDAL_MS = 60.0
# A pedal span ends at the pedal head's release peak (its "released" column above this)
# nearest to where the pedal-down probability falls, when one lies within this window:
# the down column is late and blurred at releases (weights/README.md, session 10).
PEDAL_RELEASE_PEAK = 0.05
PEDAL_RELEASE_WINDOW_MS = 200.0
# A quick re-pedal (the pedal lifted for 3-7 frames) barely dips the down column, so a
# span is split where the head's "pressed" column peaks above this inside it; the first
# part ends at the release peak at most PEDAL_SPLIT_WINDOW_MS before the press.  1 (the
# fallback) turns it off: weights trained without pedal_event_weight have no such peaks.
PEDAL_SPLIT_THRESHOLD = 1.0
PEDAL_SPLIT_WINDOW_MS = 320.0
# ... and only where the down column dips at the lift at least this far below its median
# over the part before: a press peak with no dip at all is mostly not a re-pedal (on the
# 15 tuning excerpts, dips of 0, 0.05, 0.1, 0.2: mean pedal F1 42.4, 44.6, 44.2, 41.6;
# 628, 384, 306, 230 spans for 342).
PEDAL_SPLIT_DIP = 0.05
# Velocity (decode.py): the velocity head's value plus this many velocity steps per dB by
# which the note's onset is louder than the recording's median note, its level read from
# the input spectrogram at the key's first partials over the note's first frames.  The
# velocity head alone follows the dynamics loosely (on the development set its velocities
# correlate with the reference's at r = 0.64 per piece); the level measures them.  The
# fallback of 0 keeps the head alone; weights' cards set the value tuned for them.
VELOCITY_LEVEL_WEIGHT = 0.0
VELOCITY_LEVEL_FRAMES = 3  # 96 ms from the onset: the attack's peak
VELOCITY_LEVEL_PARTIALS = 3  # the fundamental and the next two partials, each +-1 bin
# Below this many notes a recording's register balance is not fitted (decode.register_balanced).
VELOCITY_REGISTER_MIN_NOTES = 10
PEDAL_MODES = ("extend", "cc64", "none")
# The notes as decoded: the frame head learned notes held by the sustain pedal (its labels
# follow CC64), so they already last as long as they are heard.  Lengthening them further
# to the predicted pedal's release ("extend") cost note accuracy on the development and
# tuning excerpts with the session-10 weights (weights/README.md).
DEFAULT_PEDAL_MODE = "none"

# Streaming: chunk length and context on each side, in frames. Both are
# multiples of the U-net's total down-sampling (16) so that every chunk sees
# the same down-sampling grid.  Context costs time (48 frames: 15 % more
# network work); doubling it to 96 frames changed validation note F1 by 0.01.
CHUNK_FRAMES = 640  # 20.48 s
CONTEXT_FRAMES = 48  # 1.54 s
# Chunks per forward pass: on CPU more only costs memory (no speed); a GPU wants many.
BATCH_CHUNKS_CPU = 1
BATCH_CHUNKS_GPU = 16

# The colour of a recording's warnings on the review page and its figures: the terminal's
# yellow, darkened to read on white.
WARNING_COLOUR = "#8a4b00"
