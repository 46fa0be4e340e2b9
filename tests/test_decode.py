import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from transcribe import constants as C
from transcribe.decode import (OFFSET_S, VELOCITY, DecodingOptions, NoteStream,
                               blend_velocities, decode_notes, extend_through_pedal,
                               frames_to_notes, note_levels, pedal_spans, register_balanced)
from transcribe.errors import TranscribeError
from transcribe.notefilter import FEATURES, NoteFilter, section_of
from transcribe.notevelocity import FEATURES as VELOCITY_FEATURES, VelocityModel

FPS = C.FRAME_RATE_HZ


def empty(frames=100):
    return [np.zeros((frames, C.N_KEYS), np.float32) for _ in range(4)]


def decode_with(frame, onset, offset, velocity, **options):
    return frames_to_notes(frame, onset, offset, velocity, DecodingOptions(**options))


def falls(end, level=0.9, threshold=C.FRAME_THRESHOLD):
    """Where (frames) a note's frame posteriorgram, at ``level`` up to frame ``end`` and
    then 0, falls through ``threshold``, read linearly between the two frames: its end
    (``decode._end_shifts``)."""
    return end - 1 + (level - threshold) / level


def near(frames):
    """Onsets at these frames, give or take where the onset posteriorgram peaks between
    frames (``decode._onset_shifts``: up to half a frame before, a frame and a half after)."""
    return pytest.approx(frames, abs=1.5)


def test_a_note_spans_onset_to_where_its_frames_fall():
    frame, onset, offset, velocity = empty()
    key = 60 - C.MIN_MIDI
    onset[10, key] = 0.9
    frame[10:30, key] = 0.8
    velocity[10, key] = 0.5
    notes = frames_to_notes(frame, onset, offset, velocity)
    assert notes.shape == (1, 4)
    np.testing.assert_allclose(notes[0], [10 / FPS, falls(30, 0.8) / FPS, 60, round(0.5 * 127)])
    np.testing.assert_allclose(decode_notes(frame, onset, offset, velocity,
                                            between_frames=False)[0][0, :2] * FPS, [10, 30])
    frame[29, key] = 0.3  # fading: it falls through 0.5 three fifths of the way to 29
    assert frames_to_notes(frame, onset, offset, velocity)[0, 1] * FPS == pytest.approx(28.6)


@pytest.mark.parametrize("centre", [10.3, 10.8, 9.7])
def test_an_onset_lies_where_the_onset_posteriorgram_peaks_between_frames(centre):
    """The onset head answers in the frames either side of an onset, more where it lies
    nearer them; the note starts at the first frame above the threshold, before the
    peak.  Its onset is where a Gaussian through the peak and its neighbours peaks."""
    frame, onset, offset, velocity = empty()
    frames = np.arange(100)
    onset[:, 40] = 0.95 * np.exp(-0.5 * ((frames - centre) / 0.6) ** 2)
    frame[10:30, 40] = 0.9
    notes = frames_to_notes(frame, onset, offset, velocity, DecodingOptions(onset_threshold=0.2))
    assert len(notes) == 1
    assert notes[0, 0] * FPS == pytest.approx(centre, abs=0.01)
    assert notes[0, 1] * FPS == pytest.approx(falls(30))


def test_an_onset_without_the_onset_heads_peak_and_a_re_strike_stay_in_order():
    """A note the frame head started (no onset peak) keeps its frame; a re-strike's onset
    peaking before its start frame does not move into the note before it."""
    frame, onset, offset, velocity = empty()
    frame[20:40, 30] = 0.9  # started by the frame head alone
    frame[10:50, 50] = 0.9
    onset[9:12, 50] = [0.3, 0.9, 0.3]
    onset[29:32, 50] = [0.18, 0.5, 0.05]  # struck again, peaking early in frame 30
    notes = decode_with(frame, onset, offset, velocity, onset_threshold=0.2,
                        frame_onset_threshold=0.6)
    assert notes[:, 2].tolist() == [71, 51, 71]
    np.testing.assert_allclose(notes[:, :2] * FPS, [[10, 30], [20, falls(40)], [30, falls(50)]])
    onset[29:32, 50] = [0.05, 0.5, 0.18]  # peaking late in frame 30
    notes = decode_with(frame, onset, offset, velocity, onset_threshold=0.2)
    assert 30 < notes[-1, 0] * FPS < 30.5 and notes[0, 1] * FPS == 30


def test_velocity_adds_the_onset_level_above_the_median_note():
    frame, onset, offset, velocity = empty()
    level = np.full((100, C.N_KEYS), 20.0, np.float32)
    for key, dbs in ((30, 60), (40, 50), (50, 70)):  # onsets at frame 10, velocity head 64
        onset[10, key], frame[10:40, key], velocity[10, key] = 0.9, 0.8, 64 / 127
        level[12, key] = dbs  # the attack's peak, two frames in
        level[20, key] = 90  # past the onset's first frames: not read
    pitches = np.array([30, 40, 50]) + C.MIN_MIDI

    def velocities(**options):
        notes = frames_to_notes(frame, onset, offset, velocity, DecodingOptions(**options),
                                level=level)
        np.testing.assert_array_equal(notes[:, 2], pitches)
        return notes[:, VELOCITY]

    np.testing.assert_array_equal(velocities(velocity_level_weight=0), [64, 64, 64])
    # 2 steps a dB around the median note (60 dB): 64 -> 64, 44, 84.
    np.testing.assert_array_equal(velocities(velocity_level_weight=2), [64, 44, 84])
    np.testing.assert_array_equal(velocities(velocity_level_weight=10), [64, 1, 127])
    # Without levels (posteriorgrams saved before they were kept) the head alone.
    notes = frames_to_notes(frame, onset, offset, velocity,
                            DecodingOptions(velocity_level_weight=2))
    np.testing.assert_array_equal(notes[:, VELOCITY], [64, 64, 64])
    # A note shorter than the level's frames reads only its own: one frame at 20 dB,
    # which moves the median note to 50 dB.
    frame[11:40, 50] = 0.0
    np.testing.assert_array_equal(velocities(velocity_level_weight=2, min_note_ms=0),
                                  [64 + 20, 64, 64 - 60])
    with pytest.raises(TranscribeError, match="velocity_level_weight must be >= 0"):
        DecodingOptions(velocity_level_weight=-1)


def test_the_level_loses_the_register_balance_the_velocity_head_does_not_hear():
    # Twenty notes at ten keys, each key once soft (level +0 dB) and once loud (+6 dB),
    # the velocity head at 64 for all; the instrument's bass reads 0.5 dB a semitone louder.
    keys = np.repeat(np.arange(30, 50, 2), 2)
    loud = np.tile([0.0, 6.0], 10)
    head = np.full(20, 64.0)
    levels = 50 - 0.5 * (keys - 40) + loud
    # The register's 10 dB would swamp the playing's 6; without it, soft 58 and loud 70
    # at every key, within a step: the trend is clear (t = 3.9) but the loud and soft notes
    # leave a residual, so 94 % of it goes.
    assert np.ptp(blend_velocities(head, levels, 2.0)[loud == 0]) >= 18
    balanced = blend_velocities(head, levels, 2.0, keys)
    assert np.abs(balanced - np.where(loud > 0, 70, 58)).max() <= 1
    # On levels that follow the keys exactly, all of it.
    np.testing.assert_array_equal(blend_velocities(head, levels - loud, 2.0, keys), 64)
    # Levels with no trend of their own, 12 notes at random keys: a fitted trend is chance,
    # and the balance leaves it nearly alone; a trend of 4 dB an octave added, clear
    # against the same noise, goes but for a tenth or so.
    rng = np.random.default_rng(3)
    keys12, head12, noise = rng.integers(40, 80, 12), np.full(12, 64.0), rng.normal(0, 3, 12)
    trend = register_balanced(noise, head12, keys12) - noise
    fitted = np.polyfit(keys12, noise, 1)[0] * (keys12 - keys12.mean())
    assert np.abs(trend).max() < 0.25 * np.abs(fitted).max()
    steep = noise + 4 / 12 * (keys12 - keys12.mean())
    left = register_balanced(steep, head12, keys12)
    assert np.abs(np.polyfit(keys12, left, 1)[0]) < 0.2 * 4 / 12
    # A trend over pitch that the head hears too (louder notes up high, in the head's
    # velocities as in the levels) is the playing's: kept as it is.
    head = 40 + 2.0 * (keys - 30) + np.tile([0.0, 8.0], 10)
    levels = 20 + 0.5 * head
    np.testing.assert_array_equal(blend_velocities(head, levels, 2.0, keys),
                                  blend_velocities(head, levels, 2.0))
    # Too few notes to fit a balance: the levels as read.
    few = slice(C.VELOCITY_REGISTER_MIN_NOTES - 1)
    sloped = levels - keys
    np.testing.assert_array_equal(blend_velocities(head[few], sloped[few], 2.0, keys[few]),
                                  blend_velocities(head[few], sloped[few], 2.0))
    assert not np.array_equal(blend_velocities(head, sloped, 2.0, keys),
                              blend_velocities(head, sloped, 2.0))


def test_the_lower_note_of_an_octave_reads_its_level_at_odd_partials():
    # Rows: start frame, end frame, key, velocity.  C3 and C4 struck together, G3 a frame
    # after G5 (two octaves up), E3 alone, and C4's upper note itself.
    rows = np.array([[10, 40, 27, 64], [10, 40, 39, 64], [11, 40, 34, 64], [10, 30, 58, 64],
                     [30, 60, 31, 64]])
    # Each note's level at its partials 1-3: the second partial is the loudest.
    levels = np.tile([50.0, 60.0, 40.0], (5, 1))
    # The lower notes of octaves (C3, G3) read 50, the loudest of their odd partials: their
    # second partial is where their octave's fundamental sounds.  The rest read 60.
    np.testing.assert_array_equal(note_levels(rows, levels), [50, 60, 50, 60, 60])
    # Two frames apart is not struck together; a tenth is not an octave.
    apart = rows.copy()
    apart[2, 0], apart[1, 2] = 12, 43
    np.testing.assert_array_equal(note_levels(apart, levels), [60, 60, 60, 60, 60])
    # Levels saved in session 18, one a key, are read as they are.
    np.testing.assert_array_equal(note_levels(rows, levels.max(axis=1, keepdims=True)),
                                  [60] * 5)


def test_repeated_onsets_split_a_held_key_and_never_overlap():
    frame, onset, offset, velocity = empty()
    key = 40
    frame[5:60, key] = 0.9
    onset[5, key] = onset[25, key] = onset[40, key] = 0.9
    notes = frames_to_notes(frame, onset, offset, velocity)
    np.testing.assert_allclose(notes[:, 0] * FPS, [5, 25, 40])
    np.testing.assert_allclose(notes[:, 1] * FPS, [25, 40, falls(60)])  # the key struck again


def test_offset_head_ends_a_note_and_can_be_ignored():
    frame, onset, offset, velocity = empty()
    frame[5:60, 0] = 0.9
    onset[5, 0] = 0.9
    offset[20, 0] = 0.9
    assert frames_to_notes(frame, onset, offset, velocity)[0, 1] * FPS == 20
    assert decode_with(frame, onset, offset, velocity, offset_threshold=1)[0, 1] * FPS == \
        pytest.approx(falls(60))


def test_frames_without_onset_make_no_note_and_short_notes_drop():
    frame, onset, offset, velocity = empty()
    frame[5:60, 3] = 0.9  # no onset: not a note
    onset[70, 4] = 0.9  # one frame (32 ms) long
    assert len(decode_with(frame, onset, offset, velocity, min_note_ms=0)) == 1
    assert len(decode_with(frame, onset, offset, velocity, min_note_ms=50)) == 0


def test_thresholds_are_respected():
    frame, onset, offset, velocity = empty()
    onset[10, 0] = 0.6
    frame[10:20, 0] = 0.6
    assert len(decode_with(frame, onset, offset, velocity, onset_threshold=0.5)) == 1
    assert len(decode_with(frame, onset, offset, velocity, onset_threshold=0.7)) == 0
    short = decode_with(frame, onset, offset, velocity, frame_threshold=0.7, min_note_ms=0)
    assert short[0, 1] * FPS == 11  # the note lasts only while its onset is on


probabilities = arrays(np.float32, st.tuples(st.integers(1, 60), st.just(C.N_KEYS)),
                       elements=st.floats(0, 1, width=32))


@settings(max_examples=60, deadline=None)
@given(frame=probabilities, data=st.data(),
       thresholds=st.tuples(st.floats(0.05, 0.95), st.floats(0.05, 0.95)),
       min_note_ms=st.floats(0, 200))
def test_decoded_notes_are_always_valid(frame, data, thresholds, min_note_ms):
    shape = frame.shape
    onset = data.draw(arrays(np.float32, shape, elements=st.floats(0, 1, width=32)))
    offset = data.draw(arrays(np.float32, shape, elements=st.floats(0, 1, width=32)))
    velocity = data.draw(arrays(np.float32, shape, elements=st.floats(0, 1, width=32)))
    notes = decode_with(frame, onset, offset, velocity, onset_threshold=thresholds[0],
                        frame_threshold=thresholds[1], min_note_ms=min_note_ms)
    assert notes.shape[1] == 4
    assert (notes[:, 0] < notes[:, 1]).all()
    assert ((notes[:, 1] - notes[:, 0]) * 1000 >= min_note_ms - 1e-6).all()
    assert ((notes[:, 2] >= C.MIN_MIDI) & (notes[:, 2] <= C.MAX_MIDI)).all()
    assert ((notes[:, 3] >= 1) & (notes[:, 3] <= 127)).all()
    assert (notes[:, 1] <= shape[0] / FPS + 1e-9).all()
    for pitch in np.unique(notes[:, 2]):
        same = notes[notes[:, 2] == pitch]
        assert (same[1:, 0] >= same[:-1, 1] - 1e-9).all(), "a key overlaps itself"


def test_a_frame_rise_from_quiet_starts_a_note_the_onset_head_missed():
    frame, onset, offset, velocity = empty()
    key = 30
    frame[20:45, key] = 0.8
    onset[19:22, key] = 0.15  # below the onset threshold: a soft note's weak onset
    velocity[20, key] = 0.3
    assert len(decode_with(frame, onset, offset, velocity, frame_onset_threshold=1.0)) == 0
    notes = decode_with(frame, onset, offset, velocity, frame_onset_threshold=0.5)
    np.testing.assert_allclose(notes, [[20 / FPS, falls(45, 0.8) / FPS, key + C.MIN_MIDI,
                                        round(0.3 * 127)]])


def test_a_wavering_frame_does_not_split_a_sustained_note():
    frame, onset, offset, velocity = empty()
    key = 50
    onset[10, key] = 0.9
    frame[10:80, key] = 0.8
    quiet = C.FRAME_ONSET_QUIET_FRAMES
    frame[30:30 + quiet - 1, key] = 0.1  # quiet frames, one fewer than a frame onset needs
    frame[50:54, key] = C.FRAME_ONSET_QUIET_LEVEL + 0.05  # four frames, above the quiet level
    notes = decode_with(frame, onset, offset, velocity, frame_threshold=0.5,
                        frame_onset_threshold=0.5)
    # The frame threshold ends the note at each dip; no dip is followed by a new note.
    np.testing.assert_allclose(notes[:, 0] * FPS, [10])
    frame[60:64, key] = 0.1  # four quiet frames, enough: a note restarts at the rise
    notes = decode_with(frame, onset, offset, velocity, frame_threshold=0.5,
                        frame_onset_threshold=0.5)
    np.testing.assert_allclose(notes[:, 0] * FPS, [10, 64])


def test_a_faint_onset_inside_a_sounding_note_does_not_split_it():
    """The onset head fires faintly in a sustained note's decay: a re-strike needs the
    restrike bar, a new note (the key quiet before) only the onset threshold."""
    frame, onset, offset, velocity = empty()
    key = 40
    onset[10:12, key] = 0.9
    frame[10:60, key] = 0.9
    onset[35:37, key] = [0.22, 0.25]  # above the onset threshold, below the restrike bar

    def starts(**options):
        return (decode_with(frame, onset, offset, velocity, onset_threshold=0.2, **options)
                [:, 0] * FPS).tolist()

    assert starts() == near([10, 35])
    assert starts(restrike_onset_threshold=0.3) == near([10])
    np.testing.assert_allclose(decode_with(frame, onset, offset, velocity, onset_threshold=0.2,
                                           restrike_onset_threshold=0.3)[0, 1] * FPS, falls(60))
    assert starts(restrike_onset_threshold=0.25) == near([10, 35])  # its peak reaches the bar
    onset[35:37, key] = [0.3, 0.5]  # struck again
    assert starts(restrike_onset_threshold=0.4) == near([10, 35])
    frame[30:35, key] = 0.1  # quiet before the faint onset: a new note, however faint
    onset[35:37, key] = [0.22, 0.25]
    assert starts(restrike_onset_threshold=0.3) == near([10, 35])


def test_a_faint_re_strike_that_adds_energy_is_a_note():
    """Given the input's key levels, a faint onset inside a sounding note is its decay only
    where the key's level at its first partial does not rise (a re-strike adds energy)."""
    frame, onset, offset, velocity = empty()
    key = 40
    onset[10:12, key] = 0.9
    frame[10:60, key] = 0.9
    onset[35:37, key] = [0.22, 0.25]  # faint
    level = np.full((100, C.N_KEYS * C.VELOCITY_LEVEL_PARTIALS), -80.0, np.float32)
    first_partial = key * C.VELOCITY_LEVEL_PARTIALS
    level[10:60, first_partial] = np.linspace(-20, -40, 50)  # the held note decays

    def starts():
        return (frames_to_notes(frame, onset, offset, velocity, DecodingOptions(
            onset_threshold=0.2, restrike_onset_threshold=0.4), level=level)[:, 0] * FPS
        ).tolist()

    assert starts() == near([10])  # the decay: no new note
    level[35:38, first_partial] = [-30, -25, -28]  # struck again, softly: the level rises
    assert starts() == near([10, 35])
    level[35:38, first_partial] = -31  # the level held, not risen
    assert starts() == near([10])
    # Another partial rising does not count: the first partial is the key's own.
    level[35:38, first_partial + 1] = -10
    assert starts() == near([10])


def test_a_faint_onset_where_the_key_rises_is_a_soft_note():
    """Below the onset threshold, a note starts where the onset head peaks above the soft
    bar and the key's level at its first partial rises by SOFT_RISE_DB or more."""
    frame, onset, offset, velocity = empty()
    key = 30
    onset[20:22, key] = [0.12, 0.15]  # below the onset threshold, above the soft bar
    frame[20:40, key] = 0.8
    level = np.full((100, C.N_KEYS * C.VELOCITY_LEVEL_PARTIALS), -60.0, np.float32)
    first_partial = key * C.VELOCITY_LEVEL_PARTIALS

    def starts(soft=0.1):
        return (frames_to_notes(frame, onset, offset, velocity, DecodingOptions(
            onset_threshold=0.2, soft_onset_threshold=soft), level=level)[:, 0] * FPS
        ).tolist()

    assert starts() == []  # the level does not rise: no note
    level[20:40, first_partial] = -60 + C.SOFT_RISE_DB + 0.5  # it does
    assert starts() == near([20])
    assert starts(soft=1.0) == []  # the rule off
    assert starts(soft=0.15) == []  # the onset does not reach the soft bar
    level[20:40, first_partial + 1] = 0  # another partial's rise alone does not count
    level[20:40, first_partial] = -60
    assert starts() == []


def test_a_stream_waits_for_a_re_strikes_rise_cut_by_a_chunk():
    """The level may rise frames after a faint onset: a chunk that ends before it must not
    decide the note before it as held through."""
    frame, onset, offset, velocity = empty(60)
    key = 40
    onset[10:12, key] = 0.9
    frame[10:36, key] = 0.9
    onset[35, key] = 0.25  # faint, inside the sounding note
    level = np.full((60, C.N_KEYS * C.VELOCITY_LEVEL_PARTIALS), -80.0, np.float32)
    level[10:40, key * C.VELOCITY_LEVEL_PARTIALS] = np.linspace(-20, -40, 30)
    level[37, key * C.VELOCITY_LEVEL_PARTIALS] = -10  # the re-strike's rise, two frames on
    starts = streamed_as_whole(frame, onset, offset, velocity, level, 37, DecodingOptions(
        onset_threshold=0.2, restrike_onset_threshold=0.4, min_note_ms=0))
    assert starts == [10, 35]


def streamed_as_whole(frame, onset, offset, velocity, level, cut, options):
    """The notes' starts (frames), after checking that a stream cut at ``cut`` decodes as
    the whole does."""
    whole = frames_to_notes(frame, onset, offset, velocity, options, level=level)
    stream = NoteStream(options)
    for lo, hi in ((0, cut), (cut, len(frame))):
        stream.push(frame[lo:hi], onset[lo:hi], offset[lo:hi], velocity[lo:hi], level=level[lo:hi])
    np.testing.assert_array_equal(stream.finish(), whole)
    return (whole[:, 0] * FPS).round().tolist()


@pytest.mark.parametrize("interval", C.PARTIAL_INTERVALS)
def test_a_faint_onset_on_a_sounding_keys_partial_starts_no_note(interval):
    frame, onset, offset, velocity = empty()
    low = 20
    onset[10:12, low] = 0.9
    frame[10:60, low] = 0.9
    high = low + interval
    onset[20:22, high] = 0.25
    frame[20:40, high] = 0.8

    def pitches(**options):
        return decode_with(frame, onset, offset, velocity, onset_threshold=0.2,
                           **options)[:, 2].astype(int).tolist()

    assert pitches() == [low + C.MIN_MIDI, high + C.MIN_MIDI]
    assert pitches(partial_onset_threshold=0.3) == [low + C.MIN_MIDI]
    onset[20:22, high] = 0.35  # struck
    assert pitches(partial_onset_threshold=0.3) == [low + C.MIN_MIDI, high + C.MIN_MIDI]
    onset[20:22, high] = 0.25
    frame[15:60, low] = 0.1  # the lower key stopped sounding first
    assert pitches(partial_onset_threshold=0.3) == [low + C.MIN_MIDI, high + C.MIN_MIDI]
    frame[15:60, low] = 0.9
    frame[10:60, low - 1] = 0.9  # a key sounding a semitone off has no partial there
    frame[10:60, low] = 0.0
    assert high + C.MIN_MIDI in pitches(partial_onset_threshold=0.3)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), min_note_ms=st.sampled_from([0.0, 40.0, 60.0, 100.0]),
       key_threshold=st.sampled_from([0.3, 0.7]))
def test_onsets_between_frames_keep_every_note_valid(seed, min_note_ms, key_threshold):
    """Posteriorgrams of continuous values (every onset peak lies between frames): the
    moved onsets keep each note, sounding or to its key's release, as long as
    ``min_note_ms`` (or half a frame), and no key overlapping itself."""
    rng = np.random.default_rng(seed)
    frame, onset, offset, velocity, key = (rng.random((80, C.N_KEYS), np.float32)
                                           for _ in range(5))
    onset **= 3  # mostly low, with peaks
    options = DecodingOptions(onset_threshold=0.3, frame_threshold=0.4, min_note_ms=min_note_ms,
                              key_threshold=key_threshold)
    notes, released = decode_notes(frame, onset, offset, velocity, options, key=key)
    assert len(notes) > 50 and np.any(notes[:, 0] * FPS % 1 > 0.01)  # moved off the frames
    shortest = max(min_note_ms / 1000, 0.5 / FPS)
    assert ((notes[:, 1] - notes[:, 0]) >= shortest - 1e-9).all()
    assert ((released[:, 1] - released[:, 0]) >= 0.5 / FPS - 1e-9).all()
    assert (released[:, 1] <= notes[:, 1]).all()
    for pitch in np.unique(notes[:, 2]):
        same = notes[notes[:, 2] == pitch]
        assert (same[1:, 0] >= same[:-1, 1] - 1e-9).all(), "a key overlaps itself"


def random_filter(seed: int) -> NoteFilter:
    """A note filter of random weights over features standardised to about unit size: it
    keeps some notes and drops others, for no reason a test could guess."""
    rng = np.random.default_rng(seed)
    n = len(FEATURES)
    return NoteFilter(section_of(np.zeros(n), np.full(n, 0.5), rng.normal(size=(6, n)),
                                 rng.normal(size=6), rng.normal(size=6), 0.0))


def random_velocity_model(seed: int) -> VelocityModel:
    """A velocity model of random weights: velocities a test could not guess."""
    rng = np.random.default_rng(seed)
    n = len(VELOCITY_FEATURES)
    return VelocityModel(section_of(np.zeros(n), np.full(n, 5.0), rng.normal(size=(6, n)),
                                    rng.normal(size=6), 10 * rng.normal(size=6), 0.0,
                                    features=VELOCITY_FEATURES))


@settings(max_examples=150, deadline=None)
@given(data=st.data(), n_frames=st.integers(0, 240), min_note_ms=st.sampled_from([0.0, 30.0, 100.0]),
       frame_onset_threshold=st.sampled_from([1.0, 0.5]),
       context_bars=st.sampled_from([0.0, 0.7]),
       filter_seed=st.sampled_from([None, 1, 2]))
def test_streamed_decoding_equals_decoding_the_whole(data, n_frames, min_note_ms,
                                                      frame_onset_threshold, context_bars,
                                                      filter_seed):
    # Posteriorgrams of a few keys that cross the thresholds often, cut into chunks
    # at random places (the edges of chunks are where a streaming decoder errs).  The
    # keys lie in octaves, whose lower notes read their levels at odd partials.
    keys = [0, 1, 12, 13, 24, 36]
    levels = st.sampled_from(np.array([0.05, 0.35, 0.55, 0.95], np.float16))

    def posteriorgram(width=1, elements=levels):
        drawn = np.zeros((n_frames, C.N_KEYS, width), np.float16)
        drawn[:, keys] = data.draw(arrays(np.float16, (n_frames, 6, width), elements=elements))
        return drawn.reshape(n_frames, C.N_KEYS * width)
    heads = [posteriorgram() for _ in range(4)]
    key = posteriorgram()  # a key-down head
    # The input's key levels, dB, at each key's first partials.
    level = posteriorgram(C.VELOCITY_LEVEL_PARTIALS, st.sampled_from(np.float16([10, 30, 50, 70])))
    cuts = sorted(data.draw(st.lists(st.integers(0, n_frames), max_size=8)))
    options = {"onset_threshold": 0.5, "frame_threshold": 0.3, "offset_threshold": 0.9,
               "min_note_ms": min_note_ms, "frame_onset_threshold": frame_onset_threshold,
               "key_threshold": 0.5, "velocity_level_weight": 1.5,
               # faint onsets (0.55) inside a sounding note or over an octave's lower key
               "restrike_onset_threshold": context_bars, "partial_onset_threshold": context_bars,
               # and faint ones (0.35) that start notes where the level rises
               "soft_onset_threshold": 0.3 if context_bars else 1.0}
    if filter_seed is not None:  # a note filter reads frames after each note's start
        options.update(note_filter=random_filter(filter_seed), note_filter_threshold=0.5)
        # and a velocity model weighs the recording's notes, all of them known
        options.update(velocity_model=random_velocity_model(filter_seed),
                       velocity_model_weight=0.75)
    stream = NoteStream(DecodingOptions(**options))
    for lo, hi in zip([0, *cuts], [*cuts, n_frames]):
        stream.push(*(head[lo:hi] for head in heads), key[lo:hi], level[lo:hi])
    whole, released = decode_notes(*heads, DecodingOptions(**options), level=level, key=key)
    np.testing.assert_array_equal(whole, frames_to_notes(*heads, DecodingOptions(**options),
                                                         level=level, key=key))
    np.testing.assert_array_equal(stream.finish(), whole)
    np.testing.assert_array_equal(stream.key_release_notes(), released)
    # What the end chooser reads of each note, from frames a stream may have let go.
    readings = decode_notes(*heads, DecodingOptions(**options), level=level, key=key,
                            readings=True)[2]
    np.testing.assert_array_equal(stream.end_readings(), readings)


def test_streamed_decoding_keeps_only_frames_of_sounding_notes():
    frame, onset, offset, velocity = empty(2000)
    for start in range(0, 2000, 50):  # 40 notes of 20 frames, one key at a time
        onset[start, start % 88] = frame[start:start + 20, start % 88] = 0.9
    stream = NoteStream()
    for lo in range(0, 2000, 100):
        stream.push(frame[lo:lo + 100], onset[lo:lo + 100], offset[lo:lo + 100],
                    velocity[lo:lo + 100])
        assert len(stream.buffer["frame"]) <= 100
    assert len(stream.finish()) == 40


def test_notes_end_at_their_key_release_never_after_they_stop_sounding():
    frame, onset, offset, velocity = empty()
    key = np.zeros((100, C.N_KEYS), np.float32)
    for pitch, end in ((60, 50), (64, 40), (67, 40), (72, 40)):
        onset[10, pitch - C.MIN_MIDI] = 0.9
        frame[10:end, pitch - C.MIN_MIDI] = 0.9
    key[10:30, 60 - C.MIN_MIDI] = 0.9  # C4 held 10..30, sounding to 50 (the pedal)
    key[10:80, 64 - C.MIN_MIDI] = 0.9  # E4 held past its sounding end
    key[10:12, 67 - C.MIN_MIDI] = 0.9  # G4 released at once
    # C5: the key never seen down
    notes, released = decode_notes(frame, onset, offset, velocity,
                                   DecodingOptions(key_threshold=0.5), key=key)
    np.testing.assert_allclose(notes[:, OFFSET_S] * FPS, [falls(50), falls(40), falls(40),
                                                          falls(40)])
    np.testing.assert_allclose(released[:, OFFSET_S] * FPS, [30, falls(40), 12, 11])
    np.testing.assert_array_equal(released[:, [0, 2, 3]], notes[:, [0, 2, 3]])
    assert decode_notes(frame, onset, offset, velocity)[1] is None  # no key-down head


def test_pedal_spans_bridge_flickers_and_drop_taps():
    down = np.zeros(200, np.float32)
    down[10:60] = 0.9
    down[61:90] = 0.9  # a one-frame dip: the same press
    down[120:121] = 0.9  # a one-frame tap: not a press
    down[150:200] = 0.8  # still down at the end
    spans = pedal_spans(down, 0.5, FPS, min_pedal_ms=60)
    np.testing.assert_allclose(spans * FPS, [[10, 90], [150, 200]])
    assert len(pedal_spans(np.zeros(10), 0.5, FPS)) == 0


def test_a_pedal_span_ends_at_the_release_peak_nearest_its_end():
    window = C.PEDAL_RELEASE_WINDOW_MS / 1000 * FPS
    down = np.zeros(300, np.float32)
    down[10:50] = down[100:150] = down[200:240] = 0.9
    released = np.zeros(300, np.float32)
    released[[44, 46]] = [0.2, 0.3]  # before the fall; the higher of two close peaks
    released[150 + int(window) + 5] = 0.9  # too far from the second span's end
    released[241] = C.PEDAL_RELEASE_PEAK / 2  # too weak
    spans = pedal_spans(down, 0.5, FPS, released=released)
    np.testing.assert_allclose(spans * FPS, [[10, 46], [100, 150], [200, 240]])
    # A peak past the next span's start never stretches a span over it.
    down[52:60] = 0.9
    released[:] = 0
    released[55] = 0.5
    spans = pedal_spans(down, 0.5, FPS, min_pedal_ms=0, released=released)
    assert (spans[1:, 0] >= spans[:-1, 1]).all()


def test_a_quick_re_pedal_splits_a_span_at_the_press_peak():
    """A pianist lifting the pedal for a few frames: the down column dips a little (not
    below its threshold), the pressed and released columns peak.  The span splits at the
    press, the first part ending at the release peak before it; a press peak where the
    down column does not dip is no re-pedal; without the rule (threshold 1) it stays one."""
    down = np.zeros(200, np.float32)
    down[10:150] = 0.9
    down[60:63] = 0.7  # the lift, above the down threshold
    down[26:33] = 0.8  # another
    pressed = np.zeros(200, np.float32)
    pressed[120] = 0.9  # a press peak without a dip: not split
    released = np.zeros(200, np.float32)
    pressed[10], released[150] = 0.8, 0.6
    released[59], pressed[63] = 0.4, 0.5  # the re-pedal
    pressed[100] = 0.2  # too weak to split at 0.3
    pressed[149] = 0.9  # too near the span's end to leave a part
    released[30], pressed[33] = 0.5, 0.6  # a release too far from the press: ends at 32
    released[25] = 0.9
    spans = pedal_spans(down, 0.5, FPS, released=released, pressed=pressed, split_threshold=0.3)
    window = int(round(C.PEDAL_SPLIT_WINDOW_MS / 1000 * FPS))
    assert 33 - 25 < window  # 25 lies within the window too: the higher release peak wins
    np.testing.assert_allclose(spans * FPS, [[10, 25], [33, 59], [63, 150]])
    whole = pedal_spans(down, 0.5, FPS, released=released, pressed=pressed)
    np.testing.assert_allclose(whole * FPS, [[10, 150]])
    # Without a release peak before the press, the part ends the frame before it.
    released[[25, 30, 59]] = 0
    spans = pedal_spans(down, 0.5, FPS, released=released, pressed=pressed, split_threshold=0.3)
    np.testing.assert_allclose(spans * FPS, [[10, 32], [33, 62], [63, 150]])


def test_notes_are_extended_through_the_pedal_only_while_it_is_down():
    notes = np.array([[0.0, 0.5, 60, 80],   # released while the pedal is down: held to 2.0
                      [0.2, 0.3, 64, 80],   # released before the pedal goes down: kept
                      [2.5, 3.0, 67, 80]])  # no pedal: kept
    spans = np.array([[0.4, 2.0]])
    out = extend_through_pedal(notes, spans)
    np.testing.assert_allclose(out[:, 1], [2.0, 0.3, 3.0])


def test_a_key_struck_again_under_the_pedal_ends_its_previous_note():
    notes = np.array([[0.0, 0.5, 60, 80],   # held by the pedal until the same key strikes again
                      [1.0, 1.3, 60, 80],   # held to the pedal's release
                      [0.1, 0.4, 62, 80]])  # another key: held to the release
    out = extend_through_pedal(notes, np.array([[0.2, 3.0]]))
    np.testing.assert_allclose(out[:, 1], [1.0, 3.0, 3.0])


def test_a_stream_waits_for_a_faint_onset_that_may_still_rise_past_the_threshold():
    """A run of faint onset frames still going at a chunk's end may reach the onset
    threshold later, and start its note there, not where it began."""
    frame, onset, offset, velocity = empty(60)
    key = 40
    onset[10:12, key] = 0.9
    frame[10:50, key] = 0.9
    onset[30:37, key] = 0.15  # faint, then struck at frame 37
    onset[37, key] = 0.6
    level = np.full((60, C.N_KEYS * C.VELOCITY_LEVEL_PARTIALS), -40.0, np.float32)
    level[30:, key * C.VELOCITY_LEVEL_PARTIALS] = -20.0  # it rises at the faint run
    starts = streamed_as_whole(frame, onset, offset, velocity, level, 37, DecodingOptions(
        onset_threshold=0.2, soft_onset_threshold=0.1, min_note_ms=0))
    assert starts == [10, 37]
