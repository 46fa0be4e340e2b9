"""The --html review page in real browsers, in the three engines: Debian's chromium, driven
by Selenium; Firefox ESR, driven through Marionette; WebKitGTK (Safari's engine), driven
by its WebDriver on a virtual display."""

import colorsys
import contextlib
import io
import os
import re
import shutil
import signal
import time
import warnings
from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from test_cli import invoke
from waiting import wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
needs_browser = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                   reason="apt-get install chromium chromium-driver")


@pytest.mark.parametrize("embedding", ["MP3", "OGG_VORBIS"])
def test_minutes_of_audio_embed_at_the_same_length(tmp_path, monkeypatch, embedding):
    # One write of minutes of audio crashed libsndfile's Vorbis encoder (a 10-minute file
    # killed amt-transcribe --html with a segmentation fault).  Ogg Vorbis is what a
    # libsndfile without MP3 (older than 1.1) embeds.
    import numpy as np
    import soundfile as sf

    from transcribe import constants as C
    from transcribe import review
    from transcribe.review import AUDIO_RATE, encode_recording
    chosen = getattr(review, embedding)
    monkeypatch.setattr(review, "recording_format", lambda: chosen)
    wav = tmp_path / "long.wav"
    seconds = 4 * 60
    t = np.arange(seconds * C.SAMPLE_RATE) / C.SAMPLE_RATE
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), C.SAMPLE_RATE)
    embedded = tmp_path / "long.audio"
    embedded.write_bytes(encode_recording(wav))
    info = sf.info(embedded)
    assert info.format == chosen.format
    assert info.samplerate == AUDIO_RATE and info.duration == pytest.approx(seconds, abs=0.1)


def test_the_page_embeds_the_recording_as_mp3_which_safari_plays_too():
    """Ogg Vorbis, embedded until session 29, plays in no Safari (macOS, and every browser
    on an iPad or iPhone): there the page stood still, neither recording nor notes."""
    import soundfile as sf

    from transcribe.review import MP3, recording_format
    assert sf.check_format("MP3", "MPEG_LAYER_III"), "soundfile's wheels bundle libsndfile 1.2"
    assert recording_format() == MP3


@pytest.mark.parametrize("peak_dbfs", [-60.0, 20.0])
def test_the_page_plays_the_recording_at_the_level_the_network_heard(tmp_path, peak_dbfs):
    """A recording made at -60 dBFS was inaudible beside the transcription; a float file
    at +20 dBFS was clipped to a square wave.  Both play at the normalized level."""
    import soundfile as sf

    from transcribe import constants as C
    from transcribe.decode import DecodingOptions
    from transcribe.review import write_review_page
    from transcribe.transcriber import Transcription
    wav = tmp_path / "level.wav"
    t = np.arange(3 * C.SAMPLE_RATE) / C.SAMPLE_RATE
    sf.write(wav, (10 ** (peak_dbfs / 20) * np.sin(2 * np.pi * 220 * t)).astype(np.float32),
             C.SAMPLE_RATE, subtype="FLOAT")
    gain_db = 20 * np.log10(C.INPUT_PEAK) - peak_dbfs
    result = Transcription(np.zeros((0, 4)), None, 3.0, DecodingOptions().resolve(),
                           provenance={"input_gain_db": gain_db})
    write_review_page(result, wav, tmp_path / "level.html")
    import base64
    import re
    embedded = re.search(r'<audio [^>]*base64,([A-Za-z0-9+/=]+)',
                         (tmp_path / "level.html").read_text())
    recording = tmp_path / "embedded.audio"
    recording.write_bytes(base64.b64decode(embedded.group(1)))
    played, _ = sf.read(recording, dtype="float32")
    middle = played[len(played) // 4: 3 * len(played) // 4]
    assert np.abs(middle).max() == pytest.approx(C.INPUT_PEAK, rel=0.05)
    assert np.sqrt(np.mean(middle ** 2)) == pytest.approx(C.INPUT_PEAK / np.sqrt(2), rel=0.05)


def test_the_page_says_which_pedal_mode_its_notes_follow():
    from transcribe.decode import DecodingOptions
    from transcribe.review import page_html
    from transcribe.transcriber import Transcription
    notes = np.array([[0.5, 0.8, 60, 70], [1.0, 1.2, 64, 70]])
    pedal = np.array([[0.6, 2.0]])
    result = Transcription(notes, None, 3.0, DecodingOptions(pedal_threshold=0.6).resolve(),
                           pedal=pedal)
    page = page_html(result, b"", "t", pedal="extend")
    assert "1 sustain-pedal span (threshold 0.6), notes as --pedal extend writes them" in page
    split = Transcription(notes, None, 3.0, DecodingOptions(
        pedal_threshold=0.3, pedal_split_threshold=0.2).resolve(), pedal=pedal)
    assert "1 sustain-pedal span (threshold 0.3, split at presses above 0.2), notes as " \
        "--pedal none writes them" in page_html(split, b"", "t")
    # A threshold of 1 turns its rule off, and the page says "off", not "1".
    unused = Transcription(notes, None, 3.0, DecodingOptions(
        offset_threshold=1.0, frame_onset_threshold=0.6).resolve())
    assert "offset off, frame onsets 0.6, shortest" in page_html(unused, b"", "t")
    # The bars of re-strikes and of notes on a lower key's partials, where they are on.
    assert "frame onsets 0.6, re-strikes 0.3, notes on partials of a lower key 0.35, shortest " \
        "note 30 ms" in page_html(Transcription(notes, None, 3.0, DecodingOptions(
            onset_threshold=0.15, frame_onset_threshold=0.6, min_note_ms=30,
            restrike_onset_threshold=0.3, partial_onset_threshold=0.35).resolve()), b"", "t")
    # How the velocities were made (--velocity-level-weight).
    assert "velocities add 2 steps a dB of onset level;" in page_html(Transcription(
        notes, None, 3.0, DecodingOptions(velocity_level_weight=2).resolve()), b"", "t")
    assert "velocities from the velocity head alone;" in page_html(unused, b"", "t")
    # ... and the velocity model (--velocity-model-weight), all of each or part of it.
    from test_notevelocity import constant_model
    for weight, said in ((1.0, "velocities from the velocity model;"),
                         (0.5, "velocities add 2 steps a dB of onset level, the velocity model "
                               "deciding 0.5 of each;")):
        assert said in page_html(Transcription(notes, None, 3.0, DecodingOptions(
            velocity_level_weight=2, velocity_model_weight=weight,
            velocity_model=constant_model(0.0)).resolve()), b"", "t")
    assert "offset 0.5," in page_html(Transcription(notes, None, 3.0, DecodingOptions(
        offset_threshold=0.5).resolve()), b"", "t")
    assert "(--dereverb)" not in page_html(unused, b"", "t")
    assert "reverberation suppressed first (--dereverb)" in page_html(Transcription(
        notes, None, 3.0, DecodingOptions().resolve(), provenance={"dereverb": True}), b"", "t")
    # A quiet recording's gain (--normalize) is said; a gain under a dB is not.
    assert "the recording raised by 43 dB to the level the weights were tuned at (and played " \
        "so here);" in page_html(
        Transcription(notes, None, 3.0, DecodingOptions().resolve(),
                      provenance={"input_gain_db": 43.2}), b"", "t")
    assert "to the level the weights" not in page_html(Transcription(
        notes, None, 3.0, DecodingOptions().resolve(), provenance={"input_gain_db": 0.4}), b"", "t")
    # extend lengthened both notes to the pedal's release, in the page's data too
    assert "[0.5, 2.0, 60, 70]" in page and "[1.0, 2.0, 64, 70]" in page
    without = page_html(Transcription(notes, None, 3.0), b"", "t")
    assert "pedal" not in without.split('<div id="facts">')[1].split("</div>")[0]


@pytest.fixture()
def browser(tmp_path):
    pytest.importorskip("selenium", reason="pip install selenium (the test extra)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-background-networking", "--disable-sync",
                 "--disable-component-update", "--autoplay-policy=no-user-gesture-required",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,800"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def hover(browser, seconds, pitch):
    """The roll's tooltip with the pointer over ``pitch`` at ``seconds`` (60 px a second)."""
    return browser.execute_script("""
        const canvas = document.getElementById("roll"), r = canvas.getBoundingClientRect();
        canvas.dispatchEvent(new MouseEvent("mousemove", {clientX: r.left + arguments[0] * 60,
                                                          clientY: r.top + (108 - arguments[1]) * 6 + 3}));
        return canvas.title;""", seconds, pitch)


def open_tone_page(tmp_path, browser, notes, seconds):
    """A review page of ``notes`` over a ``seconds``-long tone, opened in ``browser``."""
    browser.get(tone_page(tmp_path, notes, seconds).as_uri())


def tone_page(tmp_path, notes, seconds):
    """The review page of ``notes`` over a ``seconds``-long tone."""
    import soundfile as sf

    from transcribe.decode import DecodingOptions
    from transcribe.review import write_review_page
    from transcribe.transcriber import Transcription
    rate = 22050
    t = np.arange(int(seconds * rate)) / rate
    sf.write(tmp_path / "tone.wav", (0.3 * np.sin(2 * np.pi * 261.6 * t)).astype(np.float32), rate)
    write_review_page(Transcription(np.array(notes, float), None, float(seconds),
                                    DecodingOptions().resolve()),
                      tmp_path / "tone.wav", tmp_path / "tone.html")
    return tmp_path / "tone.html"


@needs_browser
def test_the_review_page_plays_draws_every_note_and_needs_no_network(tmp_path, piano_wav,
                                                                      tiny_weights, browser):
    from selenium.webdriver.common.by import By
    out = tmp_path / "scale.mid"
    result = invoke(piano_wav, "-o", out, "--html", "--weights", tiny_weights, "-q",
                    "--onset-threshold", "0.3", "--frame-threshold", "0.3")
    assert result.exit_code == 0, result.output
    page = tmp_path / "scale.html"
    text = page.read_text()
    assert "http://" not in text and "https://" not in text  # nothing fetched from anywhere
    browser.get(page.as_uri())
    midi_notes = sum(len(i.notes) for i in pretty_midi.PrettyMIDI(str(out)).instruments)
    assert browser.execute_script("return window.reviewState.drawnNotes") == midi_notes
    assert browser.find_element(By.ID, "roll").get_attribute("data-drawn-notes") == str(midi_notes)
    browser.find_element(By.ID, "play").click()
    assert wait_until(lambda: browser.execute_script(
        "return window.reviewState.playheadX >= 10"), 20), \
        "the playhead did not move while the recording played"
    assert browser.execute_script("return document.getElementById('audio').currentTime") > 0
    # Click to seek: the playhead jumps to where the roll was clicked.
    browser.find_element(By.ID, "play").click()  # pause
    browser.execute_script(
        "const c = document.getElementById('roll'); const r = c.getBoundingClientRect();"
        "c.dispatchEvent(new MouseEvent('click', {clientX: r.left + 180, clientY: r.top + 50}));")
    assert browser.execute_script("return document.getElementById('audio').currentTime") \
        == pytest.approx(3.0, abs=0.05)  # 180 px at 60 px a second
    browser.save_screenshot(str(tmp_path / "review.png"))
    assert (tmp_path / "review.png").stat().st_size > 1000
    # The MIDI file is in the page too, to download from it alone.
    link = browser.find_element(By.ID, "midi")
    assert link.get_attribute("download") == "scale.mid"
    import base64
    assert base64.b64decode(link.get_attribute("href").split(",", 1)[1]) == out.read_bytes()


def test_the_page_holds_the_midi_file_the_options_write(tmp_path, piano_wav, tiny_weights):
    """The page alone is enough to share: its MIDI is the one the job's options write (pedal
    mode, tempo), whatever format the notes themselves were written in."""
    import base64
    import re
    common = ("--weights", tiny_weights, "-q", "--pedal", "cc64", "--tempo", "90",
              "--onset-threshold", "0.3", "--frame-threshold", "0.3")
    assert invoke(piano_wav, "-o", tmp_path / "notes.csv", "--html", *common).exit_code == 0
    assert invoke(piano_wav, "-o", tmp_path / "alone.mid", *common).exit_code == 0
    page = (tmp_path / "notes.html").read_text()
    link = re.search(r'<a id="midi" download="([^"]*)" href="data:audio/midi;base64,([^"]*)"', page)
    assert link.group(1) == "notes.mid"
    embedded = base64.b64decode(link.group(2))
    assert embedded == (tmp_path / "alone.mid").read_bytes()
    assert pretty_midi.PrettyMIDI(io.BytesIO(embedded)).get_tempo_changes()[1][0] == \
        pytest.approx(90)


# The page's recording decoded by the browser: where its loudest sample lies in 0.5-2.5 s
# and in 2.5-4.9 s (the clicks of ``clicks_page``).
FIND_CLICKS = """
    const done = arguments[arguments.length - 1], audio = document.getElementById("audio");
    fetch(audio.src).then((r) => r.arrayBuffer())
      .then((bytes) => new OfflineAudioContext(1, 1, 22050).decodeAudioData(bytes))
      .then((decoded) => {
        const samples = decoded.getChannelData(0), peaks = [];
        for (const [from, to] of [[0.5, 2.5], [2.5, 4.9]]) {
          let best = 0, at = 0;
          for (let i = Math.round(from * decoded.sampleRate); i < to * decoded.sampleRate; i++) {
            if (Math.abs(samples[i]) > best) { best = Math.abs(samples[i]); at = i; }
          }
          peaks.push(at / decoded.sampleRate);
        }
        done({mime: audio.src.slice(5, 15), duration: decoded.duration, peaks: peaks});
      }).catch((error) => done({error: String(error)}));"""


def clicks_page(tmp_path, seconds=5.0):
    """The review page of clicks at 1 s and 4 s."""
    import soundfile as sf

    from transcribe.decode import DecodingOptions
    from transcribe.review import write_review_page
    from transcribe.transcriber import Transcription
    rate = 44100
    clicks = np.zeros(int(rate * seconds), np.float32)
    for at in (1.0, 4.0):
        clicks[int(at * rate):int(at * rate) + 20] = 0.8
    sf.write(tmp_path / "clicks.wav", clicks, rate)
    result = Transcription(np.array([[1.0, 1.5, 60, 80]]), None, seconds,
                           DecodingOptions().resolve())
    write_review_page(result, tmp_path / "clicks.wav", tmp_path / "clicks.html")
    return tmp_path / "clicks.html"


@needs_browser
def test_the_recording_in_the_page_keeps_the_notes_time(tmp_path, browser):
    """MP3 encoders delay the audio (LAME: 1,105 samples, 50 ms at 22.05 kHz); the delay
    their header records must be taken off, or the playhead and the transcription's synth
    run 50 ms ahead of the recording.  Clicks at 1 s and 4 s, decoded by the browser."""
    seconds = 5.0
    browser.get(clicks_page(tmp_path, seconds).as_uri())
    found = browser.execute_async_script(FIND_CLICKS)
    assert "error" not in found, found
    assert found["mime"] == "audio/mpeg"
    assert found["duration"] == pytest.approx(seconds, abs=0.01)
    assert found["peaks"] == pytest.approx([1.0, 4.0], abs=0.002)
    wait_until(lambda: browser.execute_script(
        "return document.getElementById('audio').readyState >= 1"), 10)
    assert browser.execute_script("return document.getElementById('audio').duration") == \
        pytest.approx(seconds, abs=0.01)


@needs_browser
def test_a_page_whose_recording_cannot_play_says_so(tmp_path, browser):
    """A browser that cannot decode the embedded recording (a format it lacks) left a page
    whose Play button did nothing, without a word."""
    from selenium.webdriver.common.by import By

    from transcribe.decode import DecodingOptions
    from transcribe.review import page_html
    from transcribe.transcriber import Transcription
    result = Transcription(np.array([[0.5, 1.0, 60, 80], [1.0, 2.0, 64, 60]]), None, 3.0,
                           DecodingOptions().resolve())
    page = tmp_path / "broken.html"
    page.write_text(page_html(result, b"not audio at all" * 64, "broken"))
    browser.get(page.as_uri())
    line = browser.find_element(By.ID, "no-audio")
    assert wait_until(line.is_displayed, 10)
    # where it is read: above the roll, not under it, out of sight
    assert browser.execute_script(
        "return arguments[0].getBoundingClientRect().bottom <= "
        "document.getElementById('roll-box').getBoundingClientRect().top", line)
    assert line.text.startswith("This browser cannot play the recording embedded in this "
                                "page (MP3), so nothing plays")
    assert not browser.find_element(By.ID, "play").is_enabled()
    assert browser.execute_script("return window.reviewState.drawnNotes") == 2
    assert "2 notes, 3.0 s;" in browser.find_element(By.ID, "facts").text
    one = Transcription(np.array([[0.5, 1.0, 60, 80]]), None, 3.0, DecodingOptions().resolve())
    assert "1 note, 3.0 s;" in page_html(one, b"", "one")


@needs_browser
def test_the_page_shows_what_the_terminal_warned_of(tmp_path, browser):
    """A page shared with a pianist who never saw the terminal said nothing of a recording
    cut short or clipped, by which its notes are to be judged."""
    from selenium.webdriver.common.by import By

    from transcribe.decode import DecodingOptions
    from transcribe.review import page_html
    from transcribe.transcriber import Transcription
    warned = ["6.0 % of its samples are clipped (held at full scale): the distortion may add "
              "notes that were not played", "read to 2.9 s of 3.0 s: <the file ends early>"]
    result = Transcription(np.array([[0.5, 1.0, 60, 80]]), None, 3.0,
                           DecodingOptions().resolve(), warnings=warned)
    page = tmp_path / "warned.html"
    page.write_text(page_html(result, b"", "warned"))
    browser.get(page.as_uri())
    box = browser.find_element(By.ID, "warnings")
    assert box.is_displayed()
    assert box.text.splitlines() == [f"Warning: {line}" for line in warned]  # escaped, whole
    # In the figures' colour (constants.WARNING_COLOUR, #8a4b00), set apart from the facts.
    assert box.value_of_css_property("color") in ("rgb(138, 75, 0)", "rgba(138, 75, 0, 1)")
    assert browser.execute_script(  # above the roll, where it is read
        "return arguments[0].getBoundingClientRect().bottom <= "
        "document.getElementById('roll-box').getBoundingClientRect().top", box)
    quiet = Transcription(result.notes, None, 3.0, DecodingOptions().resolve())
    assert 'id="warnings"' not in page_html(quiet, b"", "quiet")


def test_a_long_recording_is_drawn_and_sought_to_its_end(tmp_path, browser):
    """The roll was one canvas as wide as the recording (60 px a second): past about 9
    minutes (32,767 px, browsers' limit) it stayed blank, everywhere along it."""
    import soundfile as sf
    from selenium.webdriver.common.by import By

    from transcribe.decode import DecodingOptions
    from transcribe.review import write_review_page
    from transcribe.transcriber import Transcription
    seconds, rate = 12 * 60, 8000
    sf.write(tmp_path / "long.wav", np.zeros(seconds * rate, np.float32), rate)
    notes = np.array([[at, at + 0.5, 60 + int(at) % 12, 100] for at in range(5, seconds - 5, 10)],
                     float)
    result = Transcription(notes, None, float(seconds), DecodingOptions().resolve())
    write_review_page(result, tmp_path / "long.wav", tmp_path / "long.html")
    browser.get((tmp_path / "long.html").as_uri())
    wait_until(lambda: browser.execute_script(
        "return document.getElementById('audio').readyState >= 1"), 10)

    def pixel(at, pitch, per_second=60):  # the colour drawn where ``pitch`` sounds at ``at`` s
        return browser.execute_script("""
            const box = document.getElementById("roll-box"), canvas = document.getElementById("roll");
            const x = Math.round(arguments[0] * arguments[2]) - box.scrollLeft + 10;
            const y = (108 - arguments[1]) * 6 + 2;
            return Array.from(canvas.getContext("2d").getImageData(x, y, 1, 1).data);""",
            at, pitch, per_second)

    def coloured(rgba):  # a note's colour; the rows are white and grey, outside transparent
        return rgba[3] == 255 and len(set(rgba[:3])) > 1

    assert coloured(pixel(5, 65))  # the first note, before any scrolling
    last = notes[-3]  # 685 s, 2 minutes past where the old canvas ended (32,767 px)
    browser.execute_script("document.getElementById('roll-box').scrollLeft = arguments[0]",
                           last[0] * 60 - 200)
    time.sleep(0.3)
    assert coloured(pixel(last[0], int(last[2]))), "the roll is blank near the end"
    between = pixel(last[0] - 2, int(last[2]))  # in sight, between two notes
    assert between[3] == 255 and not coloured(between)
    assert 1 <= browser.execute_script("return window.reviewState.drawnNotes") <= 3
    # A click on the scrolled roll seeks to the time under it.
    canvas = browser.find_element(By.ID, "roll")
    browser.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "arguments[0].dispatchEvent(new MouseEvent('click', {clientX: r.left + 260, clientY: r.top + 50}));",
        canvas)
    assert browser.execute_script("return document.getElementById('audio').currentTime") == \
        pytest.approx(last[0] + 1.0, abs=0.05)  # 200 px before the note, clicked 260 px in
    # Zooming in keeps the playhead where it was on the screen (once a frame has drawn it).
    wait_until(lambda: browser.execute_script(
        "return window.reviewState.playheadX === Math.round(audio.currentTime * 60)"), 5)
    before = browser.execute_script(
        "return window.reviewState.playheadX - document.getElementById('roll-box').scrollLeft")
    browser.find_element(By.ID, "zoom-in").click()
    time.sleep(0.3)
    after = browser.execute_script(
        "return window.reviewState.playheadX - document.getElementById('roll-box').scrollLeft")
    assert after == pytest.approx(before, abs=2)
    assert coloured(pixel(last[0], int(last[2]), 90))  # drawn at the new scale, 90 px a second


@needs_browser
def test_hovering_a_note_names_it_and_space_plays(tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    notes = np.array([[1.0, 1.5, 60, 80], [2.0, 2.01, 73, 30]])  # C4; C#5, 10 ms (1 px)
    open_tone_page(tmp_path, browser, notes, 5)

    assert hover(browser, 1.2, 60) == "C4 (60), 1.00-1.50 s, velocity 80"
    assert hover(browser, 2.02, 73) == "C#5 (73), 2.00-2.01 s, velocity 30"  # 1 px wide, still found
    assert hover(browser, 1.2, 61) == ""  # the key above: no note there
    assert hover(browser, 1.7, 60) == ""  # after the note
    # Space plays and pauses; on the Play button it is the button's (one press, not two).
    browser.set_window_size(1200, 500)  # a page taller than the window: space would scroll it
    assert browser.execute_script("return document.documentElement.scrollHeight > innerHeight")
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.SPACE)
    assert wait_until(lambda: browser.execute_script("return !audio.paused"), 10)
    assert browser.execute_script("return window.scrollY") == 0  # the page did not scroll
    body.send_keys(Keys.SPACE)
    assert browser.execute_script("return audio.paused")
    play = browser.find_element(By.ID, "play")
    play.send_keys(Keys.SPACE)
    time.sleep(0.3)
    assert not browser.execute_script("return audio.paused")
    # The arrows seek 5 s, within the recording.
    play.click()  # pause
    browser.execute_script("audio.currentTime = 1.0")
    body.send_keys(Keys.ARROW_RIGHT)
    assert browser.execute_script("return audio.currentTime") == pytest.approx(5.0, abs=0.01)
    body.send_keys(Keys.ARROW_LEFT)
    body.send_keys(Keys.ARROW_LEFT)
    assert browser.execute_script("return audio.currentTime") == pytest.approx(0.0, abs=0.01)


@needs_browser
def test_the_roll_has_a_time_ruler_and_a_lane_of_its_own_for_the_pedal(tmp_path, browser):
    """A pianist finds a passage heard by its time; the pedal was drawn on A0's row, where
    it looked like a long A0 note and covered the real ones."""
    import soundfile as sf
    from selenium.webdriver.common.by import By

    from transcribe.decode import DecodingOptions
    from transcribe.review import velocity_hsl, write_review_page
    from transcribe.transcriber import Transcription
    rate = 22050
    sf.write(tmp_path / "tone.wav", np.zeros(8 * rate, np.float32), rate)
    notes = np.array([[0.5, 1.0, 60, 80], [3.0, 4.0, 21, 80]])  # C4; A0 under the pedal
    result = Transcription(notes, None, 8.0, DecodingOptions().resolve(),
                           pedal=np.array([[2.0, 5.0]]))
    write_review_page(result, tmp_path / "tone.wav", tmp_path / "tone.html")
    browser.get((tmp_path / "tone.html").as_uri())
    wait_until(lambda: browser.execute_script("return window.reviewState.ticks.length > 0"), 10)

    def pixel(seconds, y):
        return browser.execute_script("""
            const canvas = document.getElementById("roll");
            return Array.from(canvas.getContext("2d").getImageData(
                Math.round(arguments[0] * 60), arguments[1], 1, 1).data);""", seconds, y)

    def green(rgba):
        return rgba[1] > rgba[0] + 40 and rgba[1] > rgba[2] + 20

    a0_row = (108 - 21) * 6 + 2
    assert browser.find_element(By.ID, "legend").text == "Colour: velocity, 1 127"
    assert not green(pixel(2.5, a0_row)), "the pedal is drawn over A0's row"
    assert not green(pixel(4.5, a0_row))
    a0 = pixel(3.5, a0_row)  # the A0 note, drawn whole
    assert a0[0] > a0[1] + 40
    # In the colour the legend gives its velocity (80): one source for the script and it.
    hue, saturation, light = (float(v) for v in re.findall(r"[\d.]+", velocity_hsl(80)))
    red, green_, blue = colorsys.hls_to_rgb(hue / 360, light / 100, saturation / 100)
    assert np.allclose(a0[:3], [255 * red, 255 * green_, 255 * blue], atol=2), a0
    lane = 88 * 6 + 6  # under the keys
    assert green(pixel(2.5, lane)) and green(pixel(4.5, lane))
    assert not green(pixel(1.5, lane)) and not green(pixel(5.5, lane))
    # Hovering the lane says when the pedal was down.
    assert browser.execute_script("""
        const canvas = document.getElementById("roll"), r = canvas.getBoundingClientRect();
        canvas.dispatchEvent(new MouseEvent("mousemove", {clientX: r.left + 3 * 60,
                                                          clientY: r.top + arguments[0]}));
        return canvas.title;""", lane) == "sustain pedal down, 2.00-5.00 s"
    # The ruler: every 2 s at 60 px a second (1 s would crowd the labels), each label
    # where its time is on the roll, up to the recording's end.
    ticks = browser.execute_script("return window.reviewState.ticks")
    assert ticks == [["0:00", 0], ["0:02", 120], ["0:04", 240], ["0:06", 360], ["0:08", 480]]
    for _ in range(3):  # zoomed in to 202.5 px a second: every half second
        browser.find_element(By.ID, "zoom-in").click()
    ticks = browser.execute_script("return window.reviewState.ticks")
    assert [label for label, _ in ticks[:4]] == ["0:00.0", "0:00.5", "0:01.0", "0:01.5"]
    assert ticks[3][1] == round(1.5 * 60 * 1.5 ** 3)
    for _ in range(6):  # zoomed out to 17.8 px a second: every 5 s
        browser.find_element(By.ID, "zoom-out").click()
    ticks = browser.execute_script("return window.reviewState.ticks")
    assert [label for label, _ in ticks] == ["0:00", "0:05"]


@needs_browser
def test_a_page_against_a_reference_shows_what_was_found_missed_and_added(tmp_path, browser):
    """amt-evaluate --html: where the notes missed and added are, to hear them."""
    import soundfile as sf
    from selenium.webdriver.common.by import By

    from transcribe.decode import DecodingOptions
    from transcribe.review import Comparison, write_review_page
    from transcribe.transcriber import Transcription
    rate = 22050
    sf.write(tmp_path / "tone.wav", np.zeros(3 * rate, np.float32), rate)
    notes = np.array([[0.5, 1.0, 60, 80], [1.5, 2.0, 64, 80]])  # found; not in the reference
    reference = np.array([[0.51, 1.0, 60, 70], [1.0, 1.4, 67, 30], [1.2, 1.3, 72, 40]])
    comparison = Comparison(reference, np.array([True, False, False]), np.array([True, False]),
                            "tone.mid")
    write_review_page(Transcription(notes, None, 3.0, DecodingOptions().resolve()),
                      tmp_path / "tone.wav", tmp_path / "tone.html", comparison=comparison)
    browser.get((tmp_path / "tone.html").as_uri())
    wait_until(lambda: browser.execute_script("return window.reviewState.ticks.length > 0"), 10)
    legend = browser.find_element(By.ID, "legend").text
    assert "Against tone.mid" in legend
    assert "1 of its 3 notes found (recall 33.3 %), 1 of the 2 transcribed not in it " \
        "(precision 50.0 %), note F1 40.0." in legend
    assert browser.find_element(By.TAG_NAME, "h2").text == "tone.wav: transcription against tone.mid"
    assert browser.execute_script("return window.reviewState.drawnMissed") == 2

    def pixel(seconds, pitch):
        return browser.execute_script("""
            const canvas = document.getElementById("roll");
            return Array.from(canvas.getContext("2d").getImageData(
                Math.round(arguments[0] * 60), (108 - arguments[1]) * 6 + 2, 1, 1).data);""",
            seconds, pitch)

    found, added, missed = pixel(0.75, 60), pixel(1.75, 64), pixel(1.2, 67)
    assert found[2] > found[0] + 80  # blue
    assert added[0] > added[2] + 150  # orange
    assert missed[0] > missed[1] + 20 and missed[0] > missed[2] + 20  # red, faint
    assert pixel(1.2, 66)[:3] in ([255, 255, 255], [238, 238, 238])  # nothing on the key below

    assert hover(browser, 0.75, 60) == "C4 (60), 0.50-1.00 s, velocity 80, in the reference"
    assert hover(browser, 1.75, 64) == "E4 (64), 1.50-2.00 s, velocity 80, not in the reference"
    assert hover(browser, 1.2, 67) == "missed: G4 (67), 1.00-1.40 s, velocity 30 in the reference"
    assert hover(browser, 0.75, 67) == ""
    # The reference is heard through the synth, the recording muted: its three notes.
    browser.find_element(By.CSS_SELECTOR, "input[value=reference]").click()
    assert browser.execute_script("return audio.muted")
    browser.find_element(By.ID, "play").click()
    assert wait_until(lambda: browser.execute_script("return audio.currentTime > 1.6"), 10)
    browser.find_element(By.ID, "play").click()
    assert browser.execute_script("return window.reviewState.played") == 3


@needs_browser
def test_the_transcription_is_played_on_time_once_and_stops_with_the_recording(tmp_path,
                                                                               browser):
    """Notes were struck when an animation frame noticed their onset had passed: up to a
    frame late, and never in a tab out of sight.  They are put on the synth's clock ahead."""
    from selenium.webdriver.common.by import By

    notes = np.array([[1.5, 2.0, 60, 80], [1.6, 2.0, 64, 80], [3.0, 3.5, 67, 80]])
    open_tone_page(tmp_path, browser, notes, 5)
    browser.find_element(By.ID, "play").click()

    def wait_for(seconds):
        wait_until(lambda: browser.execute_script("return audio.currentTime") >= seconds, 20)

    wait_for(3.2)
    assert browser.execute_script("return window.reviewState.played") == 3  # each once
    leads = browser.execute_script("return window.reviewState.leads")
    assert all(0 < lead <= 0.25 for lead in leads), leads  # every one ahead of its onset
    # Sought back while playing: the notes from there on are played again.
    browser.execute_script(
        "const c = document.getElementById('roll'), r = c.getBoundingClientRect();"
        "c.dispatchEvent(new MouseEvent('click', {clientX: r.left + 1.2 * 60, clientY: r.top + 9}));")
    wait_for(1.8)
    assert browser.execute_script("return window.reviewState.played") == 5
    # Paused: nothing put on the clock ahead goes on sounding.
    browser.find_element(By.ID, "play").click()
    assert browser.execute_script("return audio.paused")
    assert browser.execute_script("return window.reviewState.voices()") == 0
    played = browser.execute_script("return window.reviewState.played")
    time.sleep(0.5)
    assert browser.execute_script("return window.reviewState.played") == played


@needs_browser
def test_the_transcription_goes_on_playing_in_a_tab_out_of_sight(tmp_path, browser):
    """A user listens while reading the score in another tab: the synth fell silent there
    (notes were struck from animation frames, which a hidden tab does not draw)."""
    from selenium.webdriver.common.by import By

    notes = np.array([[at, at + 0.3, 60, 80] for at in np.arange(1.0, 7.5, 0.25)])
    open_tone_page(tmp_path, browser, notes, 8)
    page = browser.current_window_handle
    browser.find_element(By.ID, "play").click()
    browser.switch_to.new_window("tab")
    time.sleep(4)
    browser.switch_to.window(page)
    now, played = browser.execute_script("return [audio.currentTime, window.reviewState.played]")
    assert now > 3.5
    assert played >= int((notes[:, 0] < now).sum()), (now, played)


@needs_browser
def test_a_fast_passage_plays_slower_with_the_transcription_on_its_time(tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    notes = np.array([[0.6, 0.8, 60, 80], [0.8, 1.0, 62, 80], [1.0, 1.2, 64, 80]])
    open_tone_page(tmp_path, browser, notes, 6)
    Select(browser.find_element(By.ID, "speed")).select_by_visible_text("50 %")
    assert browser.execute_script("return audio.playbackRate") == 0.5
    browser.find_element(By.ID, "play").click()
    wait_until(lambda: browser.execute_script("return audio.currentTime") >= 0.1, 10, 0.02)
    started, position = time.monotonic(), browser.execute_script("return audio.currentTime")
    time.sleep(2)
    moved = browser.execute_script("return audio.currentTime") - position
    elapsed = time.monotonic() - started
    assert moved == pytest.approx(elapsed / 2, abs=0.25)  # half as fast as the wall clock
    assert browser.execute_script("return window.reviewState.played") == 3
    # each put on the synth's clock ahead of its onset (at most 0.25 s of the recording)
    leads = browser.execute_script("return window.reviewState.leads")
    assert all(0 < lead <= 0.25 for lead in leads), leads


@needs_browser
def test_a_passage_dragged_across_plays_in_a_loop(tmp_path, browser):
    from selenium.webdriver.common.by import By

    notes = np.array([[0.5, 0.7, 60, 80], [1.2, 1.4, 62, 80], [1.6, 1.8, 64, 80],
                      [3.0, 3.2, 65, 80]])
    open_tone_page(tmp_path, browser, notes, 8)

    def mouse(kind, seconds, target="canvas"):
        browser.execute_script(f"""
            const c = document.getElementById("roll"), r = c.getBoundingClientRect();
            {target}.dispatchEvent(new MouseEvent(arguments[0], {{bubbles: true,
                clientX: r.left + arguments[1] * 60, clientY: r.top + 50}}));""", kind, seconds)

    mouse("mousedown", 1.0)
    mouse("mousemove", 1.5, "window")
    mouse("mousemove", 2.0, "window")
    mouse("mouseup", 2.0, "window")
    mouse("click", 2.0)  # the click that ends a drag does not seek
    assert browser.find_element(By.ID, "loop").text == "0:01.0-0:02.0"
    assert browser.execute_script("return audio.currentTime") == pytest.approx(1.0, abs=0.02)
    browser.find_element(By.ID, "play").click()
    time.sleep(3)  # three times round the loop's second
    now = browser.execute_script("return audio.currentTime")
    assert 1.0 <= now <= 2.05, now
    played = browser.execute_script("return window.reviewState.played")
    assert played >= 4, played  # the loop's two notes, twice at least; never 0.5 s or 3 s
    leads = browser.execute_script("return window.reviewState.leads")
    assert all(0 < lead <= 0.25 for lead in leads), leads
    # A click outside the loop clears it and seeks there.
    mouse("mousedown", 4.0)
    mouse("mouseup", 4.0, "window")
    mouse("click", 4.0)
    assert not browser.find_element(By.ID, "loop-box").is_displayed()
    time.sleep(1.5)
    assert browser.execute_script("return audio.currentTime") > 4.5
    # A loop to the recording's very end goes round too (the recording ends, and starts again).
    mouse("mousedown", 7.0)
    mouse("mousemove", 8.5, "window")  # past the end: the end
    mouse("mouseup", 8.5, "window")
    assert browser.find_element(By.ID, "loop").text == "0:07.0-0:08.0"
    time.sleep(2.5)
    assert not browser.execute_script("return audio.paused")
    assert 7.0 <= browser.execute_script("return audio.currentTime") <= 8.0


def test_a_name_like_the_pages_placeholders_is_shown_as_it_is():
    """The page was filled in by successive replacements: a file named "__AUDIO__.wav" had
    the recording's base64 put in its title, and "__MIDI__.mid" the MIDI in its name."""
    from transcribe.decode import DecodingOptions
    from transcribe.review import page_html
    from transcribe.transcriber import Transcription
    result = Transcription(np.array([[0.5, 1.0, 60, 80]]), None, 3.0, DecodingOptions().resolve())
    page = page_html(result, b"recording", "__AUDIO__ __DATA__.wav: transcription",
                     midi_name="__MIDI__.mid")
    assert "<title>__AUDIO__ __DATA__.wav: transcription</title>" in page
    assert 'download="__MIDI__.mid"' in page
    assert page.count("cmVjb3JkaW5n") == 1  # base64 of b"recording": once, in the audio


# The other engines: Firefox's (Gecko) and Safari's (WebKit, as WebKitGTK: its media go
# through GStreamer, not Apple's).  Debian has no geckodriver, so Firefox is driven through
# Marionette, its own remote protocol, with Mozilla's marionette_driver; WebKitGTK has a
# WebDriver of its own, and needs an X display (Xvfb).  Both play through a sound server.
FIREFOX = shutil.which("firefox-esr") or shutil.which("firefox")
WEBKIT_DRIVER = shutil.which("WebKitWebDriver")
XVFB = shutil.which("Xvfb")
PULSEAUDIO = shutil.which("pulseaudio")


@pytest.fixture()
def sound_output():
    """A sound output of its own for Firefox and WebKit: a PulseAudio server with a null
    sink (they play through the system's sound server; with none, playing fails)."""
    import subprocess
    import tempfile
    if not PULSEAUDIO:
        pytest.skip("apt-get install pulseaudio")
    # short: a socket's path holds at most 107 bytes
    runtime = Path(tempfile.mkdtemp(prefix="pulse-"))
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "HOME": str(runtime)}
    server = subprocess.Popen(
        [PULSEAUDIO, "--daemonize=no", "--exit-idle-time=-1", "-n", "--use-pid-file=no",
         "--load=module-null-sink", "--load=module-native-protocol-unix"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    socket = runtime / "pulse" / "native"
    wait_until(lambda: socket.exists() or server.poll() is not None, 20)
    assert socket.exists(), "pulseaudio did not start"
    yield {"PULSE_SERVER": f"unix:{socket}"}
    server.kill()
    server.wait()
    shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture()
def no_sound_output(tmp_path):
    """Neither a sound server nor a sound card that Firefox can open."""
    alsa = tmp_path / "alsa.conf"
    alsa.write_text("pcm.!default { type hw card 99 }\n")
    return {"PULSE_SERVER": f"unix:{tmp_path / 'no-server'}", "ALSA_CONFIG_PATH": str(alsa),
            "JACK_NO_START_SERVER": "1"}


@contextlib.contextmanager
def launched_firefox(tmp_path, sound):
    """Firefox, headless, with a fresh profile and ``sound`` in its environment."""
    import subprocess
    if not FIREFOX:
        pytest.skip("apt-get install firefox-esr")
    pytest.importorskip("marionette_driver", reason="pip install marionette-driver (the test "
                                                    "extra)")
    from marionette_driver.marionette import Marionette
    profile = tmp_path / "firefox-profile"
    profile.mkdir()
    (profile / "user.js").write_text(
        'user_pref("marionette.port", 0);\n'  # any free port, written to MarionetteActivePort
        'user_pref("media.autoplay.default", 0);\n'
        'user_pref("media.autoplay.blocking_policy", 0);\n')
    process = subprocess.Popen(
        [FIREFOX, "--marionette", "--headless", "--no-remote", "-profile", str(profile)],
        env={**os.environ, "MOZ_HEADLESS": "1", **sound}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    port_file = profile / "MarionetteActivePort"

    def port():
        return port_file.read_text().strip() if port_file.exists() else ""

    wait_until(lambda: port().isdigit() or process.poll() is not None, 60, 0.1)
    try:
        assert port().isdigit(), "Firefox did not start"
        client = Marionette(host="127.0.0.1", port=int(port()))
        client.start_session()
        client.set_window_rect(width=1200, height=800)
        yield Firefox(client)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class Page:
    """What the tests ask of the page, in a browser driven one way or another."""

    def __init__(self, client):
        self.client = client

    def wait_for(self, condition, seconds=15):
        return wait_until(lambda: self.js("return " + condition), seconds)


class Firefox(Page):
    def open(self, page):
        self.client.navigate(page.as_uri())

    def js(self, script, *args):  # in the page's own scope (the page's globals, not a sandbox)
        return self.client.execute_script(script, script_args=list(args), sandbox=None)

    def js_async(self, script):
        return self.client.execute_async_script(script, sandbox=None, script_timeout=30000)

    def click(self, element_id):
        from marionette_driver.by import By
        self.client.find_element(By.ID, element_id).click()


class Selenium(Page):
    def open(self, page):
        self.client.get(page.as_uri())

    def js(self, script, *args):
        return self.client.execute_script(script, *args)

    def js_async(self, script):
        return self.client.execute_async_script(script)

    def click(self, element_id):
        from selenium.webdriver.common.by import By
        self.client.find_element(By.ID, element_id).click()


@pytest.fixture()
def display():
    """A virtual X display, for WebKitGTK (it has no headless mode)."""
    import subprocess
    read, write = os.pipe()
    server = subprocess.Popen([XVFB, "-displayfd", str(write), "-screen", "0", "1280x1024x24",
                               "-nolisten", "tcp"], pass_fds=(write,),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        number = pipe.readline().strip()  # written once it takes clients; nothing if it failed
    assert number.isdigit(), "Xvfb did not start"
    yield f":{number.decode()}"
    server.kill()
    server.wait()


@pytest.fixture(params=["firefox", "webkit"])
def engine(request, tmp_path, sound_output):
    """The page in Firefox, then in WebKit, each with a sound output."""
    if request.param == "firefox":
        with launched_firefox(tmp_path, sound_output) as page:
            yield page
        return
    if not (WEBKIT_DRIVER and XVFB):
        pytest.skip("apt-get install webkit2gtk-driver xvfb gstreamer1.0-plugins-good")
    pytest.importorskip("selenium", reason="pip install selenium (the test extra)")
    from selenium import webdriver
    from selenium.webdriver.webkitgtk.service import Service
    env = {**os.environ, "DISPLAY": request.getfixturevalue("display"), **sound_output}
    with warnings.catch_warnings():  # Selenium's own use of an API it deprecated
        warnings.filterwarnings("ignore", "setting remote_server_addr", DeprecationWarning)
        driver = webdriver.WebKitGTK(options=webdriver.WebKitGTKOptions(),
                                     service=Service(executable_path=WEBKIT_DRIVER, env=env))
    try:
        driver.set_window_size(1200, 800)
        yield Selenium(driver)
    finally:
        driver.quit()


@pytest.fixture()
def firefox_without_sound(tmp_path, no_sound_output):
    with launched_firefox(tmp_path, no_sound_output) as page:
        yield page


def test_the_review_page_plays_in_firefox_and_webkit_too(tmp_path, engine):
    page = engine
    notes = np.array([[0.6, 0.8, 60, 80], [0.8, 1.0, 62, 80], [1.0, 1.2, 64, 80],
                      [4.0, 4.2, 65, 80]])
    page.open(tone_page(tmp_path, notes, 8))
    assert page.wait_for("audio.readyState >= 1")
    assert page.js("return audio.duration") == pytest.approx(8, abs=0.01)
    assert page.js("return window.reviewState.drawnNotes") == 4
    page.click("play")
    assert page.wait_for("audio.currentTime >= 1.5")
    assert page.js("return document.getElementById('no-audio').hidden")
    assert page.js("return window.reviewState.played") == 3  # each once
    leads = page.js("return window.reviewState.leads")
    assert all(0 < lead <= 0.25 for lead in leads), leads  # put on the clock ahead of each
    # The playhead follows on the next frame drawn (CI saw 88 px, 1.47 s, one frame behind)
    assert page.wait_for(f"window.reviewState.playheadX >= {1.5 * 60}")
    page.click("play")  # pause: nothing put on the clock goes on sounding
    assert page.js("return [audio.paused, window.reviewState.voices()]") == [True, 0]
    # Slower: the recording's clock runs at half the wall clock's, at its own pitch.
    page.js("const s = document.getElementById('speed'); s.value = '0.5';"
               "s.dispatchEvent(new Event('change'));")
    assert page.js("return [audio.playbackRate, audio.preservesPitch]") == [0.5, True]
    page.click("play")
    assert page.wait_for("!audio.paused && audio.currentTime > 1.7")
    started, position = time.monotonic(), page.js("return audio.currentTime")
    time.sleep(2)
    moved = page.js("return audio.currentTime") - position
    assert moved == pytest.approx((time.monotonic() - started) / 2, abs=0.3)


def test_the_recording_keeps_the_notes_time_in_firefox_and_webkit_too(tmp_path, engine):
    engine.open(clicks_page(tmp_path))
    found = engine.js_async(FIND_CLICKS)
    assert "error" not in found, found
    assert found["mime"] == "audio/mpeg"
    assert found["peaks"] == pytest.approx([1.0, 4.0], abs=0.002)  # LAME's delay taken off


def test_firefox_without_a_sound_output_says_so_and_still_pauses(tmp_path,
                                                                 firefox_without_sound):
    """Firefox reports a sound output it cannot open (none connected, or one another program
    holds) as a decoding error of the recording, and its clock runs on.  The page said
    "This browser cannot play the recording ... open the page in another browser" and
    disabled Play: the recording could not be paused any more."""
    page = firefox_without_sound
    notes = np.array([[0.6, 0.8, 60, 80], [4.0, 4.2, 65, 80]])
    page.open(tone_page(tmp_path, notes, 20))
    assert page.wait_for("audio.readyState >= 1")
    page.click("play")
    assert page.wait_for("!document.getElementById('no-audio').hidden")
    line = page.js("return document.getElementById('no-audio').textContent")
    assert line.startswith("No sound: this browser could not play the recording ("), line
    assert line.endswith("). Is a sound output connected, and not held by another program? "
                         "Press Play to try again."), line
    assert not page.js("return document.getElementById('play').disabled")
    assert page.js("return window.reviewState.drawnNotes") == 2
    page.wait_for("audio.currentTime > 0.5", 5)
    if not page.js("return audio.paused"):  # Firefox's clock ran on without sound: it stops
        page.click("play")
        assert page.js("return audio.paused")
    at = page.js("return audio.currentTime")
    page.js("window.failed = 0; audio.addEventListener('error', () => window.failed++)")
    page.click("play")  # tries again, from where it stopped
    assert page.wait_for("window.failed > 0")
    assert page.js("return document.getElementById('no-audio').hidden") is False
    assert page.js("return audio.currentTime") >= at - 0.01


@needs_browser
def test_a_loop_is_set_at_the_playhead_with_a_and_b_as_on_a_touch_screen(tmp_path, browser):
    """On a touch screen a drag scrolls the roll: an iPad could not loop a passage.  A and B
    (keys [ and ]) set the loop's ends where the playhead is."""
    from selenium.webdriver.common.by import By

    notes = np.array([[0.5, 0.7, 60, 80], [1.2, 1.4, 62, 80], [1.6, 1.8, 64, 80],
                      [3.0, 3.2, 65, 80]])
    open_tone_page(tmp_path, browser, notes, 8)
    loop = browser.find_element(By.ID, "loop")
    browser.execute_script("audio.currentTime = 1.0")
    browser.find_element(By.ID, "loop-a").click()
    assert loop.text == "0:01.0-0:08.0"  # from A to the end, until B is set
    browser.execute_script("audio.currentTime = 2.0")
    browser.find_element(By.ID, "loop-b").click()
    assert loop.text == "0:01.0-0:02.0"
    browser.find_element(By.ID, "play").click()
    time.sleep(3)  # round the loop's second three times
    now = browser.execute_script("return audio.currentTime")
    assert 1.0 <= now <= 2.05, now
    assert browser.execute_script("return window.reviewState.played") >= 4  # 1.2 s, 1.6 s
    browser.find_element(By.ID, "play").click()
    browser.find_element(By.ID, "loop-off").click()
    body = browser.find_element(By.TAG_NAME, "body")
    # The keys, at the playhead: ] at 4 s (B before A: from the start), then [ at 3 s; A
    # past B loops from there to the end; A at the very end sets nothing.
    for at, key, looped in ((4.0, "]", "0:00.0-0:04.0"), (3.0, "[", "0:03.0-0:04.0"),
                            (5.0, "[", "0:05.0-0:08.0"), (8.0, "[", "0:05.0-0:08.0")):
        browser.execute_script("audio.currentTime = arguments[0]", at)
        body.send_keys(key)
        assert loop.text == looped, (at, key)
