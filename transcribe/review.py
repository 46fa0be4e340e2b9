"""``--html``: one self-contained review page per input, to check a transcription by ear.

The page holds everything it needs (no network, no external script or font): the
recording, compressed (MP3, mono, 22.05 kHz) and embedded as a data URI; the
notes and pedal as JSON; a small script that draws the piano roll (what is in sight, on a
canvas as wide as the view) under a playhead that follows the recording, seeks where it
is clicked, loops a passage dragged across (or between A and B, set at the playhead),
zooms in time, names the note under the pointer, slows down to 75 % or 50 %, and plays
the transcription through a WebAudio piano-like synth (decaying partials, each note put
on the synth's clock ahead of the recording), the recording, or both together.
Embedding makes one file to share or archive: about 0.5 MB a minute of audio.

MP3 because every browser plays it: Safari (macOS, and every browser on an iPad or
iPhone) plays no Ogg, so a page with Ogg Vorbis stood still there.  LAME's header
records its encoder delay, which decoders remove: the recording stays on the notes'
time (checked in Chromium to the millisecond).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf

from . import audio as audio_io
from . import constants as C
from .decode import OFF
from .files import readable, write_atomic
from .progress import plural
from .version import __version__

AUDIO_RATE = 22050
# The roll's height: 88 keys of 6 px, the sustain pedal's lane and the time ruler.
ROLL_PX = 88 * 6 + 2 + 8 + 2 + 16
# The notes' colours, for the page's script (``DATA.colours``) and its legend alike.  Against a
# reference: found, not in it, and its missed notes (an outline, filled at MISSED_FILL).
FOUND, EXTRA, MISSED_RGB, MISSED_FILL = "#2f66b3", "#f08c00", "215, 30, 30", 0.2
# Otherwise by velocity: (hue, saturation %, lightness %) at velocity 0 and at 127, between
# them in a straight line.
SOFT_HSL, LOUD_HSL = (50, 85, 70), (0, 85, 35)


def velocity_hsl(velocity: float) -> str:
    """The CSS colour of a note of ``velocity`` (as the page's script's ``colour()``)."""
    t = min(max(velocity / 127, 0.0), 1.0)
    (hue, saturation, light), (hue_loud, _, light_loud) = SOFT_HSL, LOUD_HSL
    # Math.round: halves up
    return (f"hsl({math.floor(hue + (hue_loud - hue) * t + 0.5)}, {saturation}%, "
            f"{math.floor(light + (light_loud - light) * t + 0.5)}%)")

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 12px; color: #222; }
#bar { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; margin-bottom: 8px; }
button { font: inherit; padding: 3px 10px; }
#roll-box { overflow-x: auto; border: 1px solid #bbb; }
#roll-track { position: relative; height: __ROLL_PX__px; }
#roll { position: absolute; top: 0; left: 0; }
#facts { color: #555; margin: 6px 0; }
#no-audio { color: #a00; margin: 6px 0; }
#warnings { color: __WARNING_COLOUR__; margin: 6px 0; }
label { margin-right: 6px; }
#legend { margin: 6px 0; }
#legend span.swatch { display: inline-block; width: 14px; height: 8px; margin: 0 4px 0 10px; }
</style></head><body>
<h2>__TITLE__</h2>
<div id="facts">__FACTS__</div>
__WARNINGS____LEGEND__<div id="no-audio" hidden></div>
<div id="bar">
  <button id="play">Play</button>
  <span id="clock">0:00.0</span>
  <span>Hear:
    <label><input type="radio" name="hear" value="recording"> recording</label>
    <label><input type="radio" name="hear" value="transcription"> transcription</label>
    <label><input type="radio" name="hear" value="both" checked> both</label>__HEAR_REFERENCE__</span>
  <label>Speed <select id="speed"><option value="0.5">50 %</option><option value="0.75">75 %</option>
    <option value="1" selected>100 %</option></select></label>
  <button id="zoom-out" title="zoom out">&minus;</button>
  <button id="zoom-in" title="zoom in">+</button>
  <button id="loop-a" title="loop from the playhead (key [)">A</button>
  <button id="loop-b" title="loop to the playhead (key ])">B</button>
  <span id="loop-box" hidden>loop <span id="loop"></span> <button id="loop-off">off</button></span>
  <a id="midi" download="__MIDI_NAME__" href="data:audio/midi;base64,__MIDI__">Download MIDI</a>
</div>
<div id="roll-box"><div id="roll-track"><canvas id="roll" height="__ROLL_PX__"></canvas></div></div>
<audio id="audio" preload="auto" src="data:__MIME__;base64,__AUDIO__"></audio>
<script>
"use strict";
const DATA = __DATA__;
const LOW = 21, HIGH = 108, KEY_PX = 6, BLACK = [1, 3, 6, 8, 10];
// Under the keys, a lane of its own for the sustain pedal (drawn on A0's row, it looked
// like a long A0 note and hid the real ones), then a ruler of the recording's time.
const KEYS_PX = (HIGH - LOW + 1) * KEY_PX, PEDAL_TOP = KEYS_PX + 2, PEDAL_PX = 8;
const RULER_TOP = PEDAL_TOP + PEDAL_PX + 2;
const TICKS_S = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];
const TICK_GAP_PX = 70;  // the least room between two labels
const audio = document.getElementById("audio");
const canvas = document.getElementById("roll");
const box = document.getElementById("roll-box");
const track = document.getElementById("roll-track");
const ctx = canvas.getContext("2d");
let pxPerSecond = 60, synth = null, mode = "both", loop = null;
const state = { drawnNotes: 0, drawnMissed: 0, playheadX: 0, played: 0, leads: [],
                voices: () => voices.size, ticks: [] };
// Against a reference (amt-evaluate --html): each note says whether it is in the reference
// (a fifth value, 1 or 0), and the reference's notes whether they were found.
const COMPARE = DATA.reference !== null;
const HIT = DATA.colours.found, EXTRA = DATA.colours.extra;
const MISSED = "rgb(" + DATA.colours.missed + ")";
const MISSED_FILL = "rgba(" + DATA.colours.missed + ", " + DATA.colours.missed_fill + ")";
window.reviewState = state;

function y(pitch) { return (HIGH - pitch) * KEY_PX; }
function colour(velocity) {  // from DATA.colours.soft at 0 to .loud at 127 (review.velocity_hsl)
  const t = Math.max(0, Math.min(1, velocity / 127));
  const [hue, saturation, light] = DATA.colours.soft, [hueLoud, , lightLoud] = DATA.colours.loud;
  return "hsl(" + Math.round(hue + (hueLoud - hue) * t) + ", " + saturation + "%, " +
         Math.round(light + (lightLoud - light) * t) + "%)";
}
// The roll is as wide as the recording (the track, which scrolls), but the canvas only as
// wide as the view: it moves with the scroll and draws what is in sight.  A canvas as
// wide as the recording stayed blank past about 9 minutes (browsers draw no canvas wider
// than 32,767 px, or larger than 16.7 M px on an iPad).
function sizeTrack() {  // the recording's length at this zoom, or the view if it is shorter
  track.style.width = Math.max(box.clientWidth, Math.ceil(DATA.duration_s * pxPerSecond) + 40) + "px";
}
function draw() {
  sizeTrack();
  const left = box.scrollLeft, width = box.clientWidth;
  if (canvas.width !== width) canvas.width = width;
  canvas.style.left = left + "px";
  under = null;
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, width, canvas.height);
  for (let p = LOW; p <= HIGH; p++) {
    if (BLACK.includes(p % 12)) { ctx.fillStyle = "#eee"; ctx.fillRect(0, y(p), width, KEY_PX); }
    if (p % 12 === 0) { ctx.fillStyle = "#999"; ctx.fillRect(0, y(p) + KEY_PX - 1, width, 1); }
  }
  const from = left / pxPerSecond, to = (left + width) / pxPerSecond;
  if (loop) {
    ctx.fillStyle = "rgba(60, 120, 255, 0.15)";
    ctx.fillRect(loop.start * pxPerSecond - left, 0, (loop.end - loop.start) * pxPerSecond, canvas.height);
  }
  ctx.fillStyle = "rgba(40, 160, 80, 0.6)";
  for (const [start, end] of DATA.pedal) {
    if (end < from || start > to) continue;
    ctx.fillRect(start * pxPerSecond - left, PEDAL_TOP, Math.max(1, (end - start) * pxPerSecond), PEDAL_PX);
  }
  let drawn = 0, missed = 0;
  for (const [onset, offset, pitch, velocity, hit] of DATA.notes) {
    if (offset < from || onset > to) continue;
    ctx.fillStyle = COMPARE ? (hit ? HIT : EXTRA) : colour(velocity);
    ctx.fillRect(onset * pxPerSecond - left, y(pitch), Math.max(1, (offset - onset) * pxPerSecond), KEY_PX - 1);
    drawn++;
  }
  if (COMPARE) {  // the reference's notes not found: an outline where each should be, on
    ctx.lineWidth = 1;  // top (a re-strike missed lies under the longer note transcribed)
    for (const [onset, offset, pitch, , found] of DATA.reference) {
      if (found || offset < from || onset > to) continue;
      const x = onset * pxPerSecond - left, w = Math.max(2, (offset - onset) * pxPerSecond);
      ctx.fillStyle = MISSED_FILL; ctx.fillRect(x, y(pitch), w, KEY_PX - 1);
      ctx.strokeStyle = MISSED; ctx.strokeRect(x + 0.5, y(pitch) + 0.5, w - 1, KEY_PX - 2);
      missed++;
    }
  }
  ctx.font = "10px sans-serif";
  // C labels on top of the notes, every 400 px along the roll so a scrolled view shows them.
  for (let x = Math.floor(left / 400) * 400; x < left + width; x += 400) {
    for (let p = LOW; p <= HIGH; p += 1) {
      if (p % 12 !== 0) continue;
      const top = Math.max(0, y(p) - 6);  // C8 is the top row: its label stays inside
      ctx.fillStyle = "rgba(255, 255, 255, 0.85)"; ctx.fillRect(x - left, top, 22, 11);
      ctx.fillStyle = "#333"; ctx.fillText("C" + (p / 12 - 1), x - left + 2, top + 9);
    }
    if (DATA.pedal_heard) {  // weights with a pedal head: an empty lane means none was heard
      ctx.fillStyle = "rgba(255, 255, 255, 0.85)"; ctx.fillRect(x - left, PEDAL_TOP - 1, 30, PEDAL_PX + 2);
      ctx.fillStyle = "#333"; ctx.fillText("pedal", x - left + 2, PEDAL_TOP + PEDAL_PX - 1);
    }
  }
  drawRuler(left, width);
  state.drawnNotes = drawn;  // the notes in sight
  state.drawnMissed = missed;  // and the reference's not found
  canvas.dataset.drawnNotes = String(drawn);
  drawPlayhead();
}
// The time under the roll, m:ss, at a round step that leaves room between the labels
// (tenths of a second zoomed in, minutes zoomed out): a passage heard is found by its time.
function tickStep() {
  return TICKS_S.find((step) => step * pxPerSecond >= TICK_GAP_PX) || TICKS_S[TICKS_S.length - 1];
}
function tickLabel(seconds, step) {
  const whole = Math.round(seconds * 10) / 10, minutes = Math.floor(whole / 60);
  const rest = whole - 60 * minutes;
  const text = step < 1 ? rest.toFixed(1).padStart(4, "0") : String(Math.round(rest)).padStart(2, "0");
  return minutes >= 60 ? Math.floor(minutes / 60) + ":" + String(minutes % 60).padStart(2, "0") + ":" + text
                       : minutes + ":" + text;
}
function drawRuler(left, width) {
  ctx.fillStyle = "#f6f6f6"; ctx.fillRect(0, RULER_TOP, width, canvas.height - RULER_TOP);
  ctx.fillStyle = "#999"; ctx.fillRect(0, RULER_TOP, width, 1);
  const step = tickStep(), ticks = [];
  for (let i = Math.floor(left / pxPerSecond / step); i * step * pxPerSecond < left + width; i++) {
    const seconds = i * step, x = Math.round(seconds * pxPerSecond - left);
    if (seconds > DATA.duration_s) break;
    ctx.fillStyle = "#999"; ctx.fillRect(x, RULER_TOP, 1, 5);
    const label = tickLabel(seconds, step);
    ctx.fillStyle = "#333"; ctx.fillText(label, x + 2, canvas.height - 3);
    ticks.push([label, x]);
  }
  state.ticks = ticks;  // the labels in sight, with where each stands on the canvas
}
let under = null;
function drawPlayhead() {
  if (under) ctx.putImageData(under.image, under.x, 0);
  const x = Math.round(audio.currentTime * pxPerSecond), inView = x - box.scrollLeft;
  under = { x: Math.max(0, inView - 1), image: ctx.getImageData(Math.max(0, inView - 1), 0, 3, canvas.height) };
  ctx.fillStyle = "#d00"; ctx.fillRect(inView - 1, 0, 2, canvas.height);
  state.playheadX = x;
  const seconds = audio.currentTime;
  document.getElementById("clock").textContent = clock(seconds);
  if (!audio.paused && (x < box.scrollLeft || x > box.scrollLeft + box.clientWidth - 20)) {
    box.scrollLeft = Math.max(0, x - 40);
  }
}
// The transcription is put on the synth's clock a little ahead of the recording, each
// note at its own time: struck when an animation frame noticed it, a note came up to a
// frame (17 ms) late, and none came at all in a tab out of sight (no frames are drawn there).
const AHEAD_S = 0.25, AHEAD_HIDDEN_S = 2.5;  // timers in a hidden tab run once a second
let scheduledTo = null;  // the recording's time up to which the notes are on the clock
const voices = new Set();  // oscillators on the clock, silenced on pause and seek
function strike(pitch, velocity, seconds, when) {
  const f = 440 * Math.pow(2, (pitch - 69) / 12);
  const level = 0.05 + 0.25 * (velocity / 127) ** 2, hold = Math.min(Math.max(seconds, 0.2), 4);
  [[1, 1], [2, 0.4], [3, 0.15]].forEach(([harmonic, share]) => {
    const osc = synth.createOscillator(), gain = synth.createGain();
    osc.type = "sine"; osc.frequency.value = f * harmonic;
    gain.gain.setValueAtTime(level * share, when);
    gain.gain.exponentialRampToValueAtTime(0.0001, when + hold + 0.3);
    osc.connect(gain).connect(synth.destination);
    osc.start(when); osc.stop(when + hold + 0.35);
    voices.add(osc); osc.onended = () => voices.delete(osc);
  });
  state.played++;
}
function schedule() {
  if (loop && !audio.paused && audio.currentTime >= loop.end) seek(loop.start);  // round again
  if (!synth || audio.paused || mode === "recording") return;
  const t = audio.currentTime;
  const until = Math.min(t + (document.hidden ? AHEAD_HIDDEN_S : AHEAD_S), loop ? loop.end : Infinity);
  if (scheduledTo === null || scheduledTo < t) scheduledTo = t;  // late: what passed is not played
  if (until <= scheduledTo) return;
  const now = synth.currentTime, rate = audio.playbackRate || 1;
  for (const [onset, offset, pitch, velocity] of mode === "reference" ? DATA.reference : DATA.notes) {
    if (onset >= scheduledTo && onset < until) {
      strike(pitch, velocity, (offset - onset) / rate, now + (onset - t) / rate);
      state.leads.push(onset - t);  // how far ahead of the recording it was put on the clock
    }
  }
  scheduledTo = until;
}
function silence() {  // the notes put on the clock ahead, and those sounding, stop
  for (const osc of voices) { try { osc.stop(); } catch (e) { /* not started */ } }
  voices.clear();
  scheduledTo = null;
}
function tick() {
  schedule();
  drawPlayhead();
  requestAnimationFrame(tick);
}
function setMode(value) {
  mode = value;
  audio.muted = mode === "transcription" || mode === "reference";
  silence();
}
document.getElementById("play").addEventListener("click", () => {
  if (!synth) {  // webkitAudioContext: Safari before 14.1
    try { synth = new (window.AudioContext || window.webkitAudioContext)(); } catch (e) { synth = null; }
  }
  if (synth && synth.state === "suspended") synth.resume();
  if (!audio.paused) { audio.pause(); silence(); return; }  // at once: no note more
  if (audio.error) {  // stopped by an error after it had loaded: load it again, from here
    const at = audio.currentTime;
    audio.load();
    audio.currentTime = at;
  }
  const started = audio.play();  // a promise, but in Safari before 10
  if (started) started.catch(() => { /* the error event says why */ });
});
let loaded = false;  // this browser decoded the recording's header: it can play the format
audio.addEventListener("loadedmetadata", () => { loaded = true; });
audio.addEventListener("error", () => {
  const line = document.getElementById("no-audio"), error = audio.error;
  line.hidden = false;
  if (!loaded || (error && error.code === 4)) {  // 4: MEDIA_ERR_SRC_NOT_SUPPORTED
    line.textContent = "This browser cannot play the recording embedded in this page (" +
      DATA.audio_format + "), so nothing plays: open the page in another browser. " +
      "The notes are drawn.";
    document.getElementById("play").disabled = true;
    return;
  }
  // The format plays here, but playing failed: Firefox says so of a sound output it cannot
  // open (none connected, or held by another program), "OnMediaSinkAudioError", and its
  // clock runs on without sound.  Play stays: it pauses, and tries again.
  line.textContent = "No sound: this browser could not play the recording (" +
    ((error && error.message) || "error " + (error ? error.code : "")) + "). Is a sound " +
    "output connected, and not held by another program? Press Play to try again.";
});
audio.addEventListener("playing", () => {
  if (loaded) document.getElementById("no-audio").hidden = true;  // playing again
});
audio.addEventListener("play", () => { document.getElementById("play").textContent = "Pause"; });
audio.addEventListener("pause", () => { document.getElementById("play").textContent = "Play"; silence(); });
audio.addEventListener("ended", () => {  // a loop to the recording's very end goes round too
  if (loop) { seek(loop.start); audio.play(); }
});
setInterval(schedule, 50);  // on, where frames are not drawn (a tab out of sight)
document.addEventListener("visibilitychange", schedule);  // hidden: the longer lead at once
function timeAt(clientX) {  // the recording's time under a point of the roll
  const rect = canvas.getBoundingClientRect();
  return Math.max(0, Math.min(DATA.duration_s, (clientX - rect.left + box.scrollLeft) / pxPerSecond));
}
function seek(seconds) {  // every seek is the page's own (the recording has no controls)
  audio.currentTime = seconds;
  silence();  // what was put on the clock was for the time before
}
function clock(seconds) {
  return Math.floor(seconds / 60) + ":" + (seconds % 60).toFixed(1).padStart(4, "0");
}
// Drag across the roll to loop a passage (playing it again and again to check it by ear);
// a click seeks, and clears the loop if it falls outside it.
let drag = null;
function setLoop(a, b) {
  loop = { start: Math.min(a, b), end: Math.max(a, b) };
  document.getElementById("loop").textContent = clock(loop.start) + "-" + clock(loop.end);
  document.getElementById("loop-box").hidden = false;
  draw();
}
function clearLoop() {
  loop = null;
  document.getElementById("loop-box").hidden = true;
  draw();
}
canvas.addEventListener("mousedown", (event) => {
  drag = { from: timeAt(event.clientX), x: event.clientX, moved: false };
});
window.addEventListener("mousemove", (event) => {
  if (!drag || (!drag.moved && Math.abs(event.clientX - drag.x) < 5)) return;
  drag.moved = true;
  setLoop(drag.from, timeAt(event.clientX));
});
window.addEventListener("mouseup", () => {
  if (drag && drag.moved) seek(loop.start);
  drag = drag && drag.moved ? { moved: true, done: true } : null;  // the click that follows
});
canvas.addEventListener("click", (event) => {
  if (drag && drag.done) { drag = null; return; }  // the end of a drag, not a click
  drag = null;
  const seconds = timeAt(event.clientX);
  if (loop && (seconds < loop.start || seconds > loop.end)) clearLoop();
  seek(seconds);
});
document.getElementById("loop-off").addEventListener("click", clearLoop);
// Or set its ends at the playhead, as practice players do: A where the passage begins, B
// where it ends (it goes round at once).  On a touch screen a drag scrolls the roll.
const SHORTEST_LOOP_S = 0.05;
function loopFrom() {
  const t = audio.currentTime, end = loop && t < loop.end ? loop.end : DATA.duration_s;
  if (end - t >= SHORTEST_LOOP_S) setLoop(t, end);
}
function loopTo() {
  const t = audio.currentTime, start = loop && t > loop.start ? loop.start : 0;
  if (t - start >= SHORTEST_LOOP_S) setLoop(start, t);
}
document.getElementById("loop-a").addEventListener("click", loopFrom);
document.getElementById("loop-b").addEventListener("click", loopTo);
// Hovering a note names it: a pianist checking a passage by ear needs to know which it is.
const NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];
function noteAt(clientX, clientY, notes = DATA.notes) {
  const seconds = timeAt(clientX);
  const pitch = HIGH - Math.floor((clientY - canvas.getBoundingClientRect().top) / KEY_PX);
  const slack = 2 / pxPerSecond;  // a short note is 1 px wide: a little room either side
  return notes.find(([onset, offset, p, , flag]) => (notes === DATA.notes || !flag) &&
    p === pitch && onset - slack <= seconds && seconds <= offset + slack) || null;
}
function named(note) {
  return NAMES[note[2] % 12] + (Math.floor(note[2] / 12) - 1) + " (" + note[2] + "), " +
    note[0].toFixed(2) + "-" + note[1].toFixed(2) + " s, velocity " + note[3];
}
function pedalAt(clientX, clientY) {  // the pedal span under the pointer, on the pedal's lane
  const down = clientY - canvas.getBoundingClientRect().top;
  if (down < PEDAL_TOP - 1 || down > PEDAL_TOP + PEDAL_PX + 1) return null;
  const seconds = timeAt(clientX), slack = 2 / pxPerSecond;
  return DATA.pedal.find(([start, end]) => start - slack <= seconds && seconds <= end + slack) || null;
}
canvas.addEventListener("mousemove", (event) => {
  const note = noteAt(event.clientX, event.clientY), pedal = pedalAt(event.clientX, event.clientY);
  const missed = COMPARE && !note ? noteAt(event.clientX, event.clientY, DATA.reference) : null;
  canvas.title = note ? named(note) + (COMPARE ? (note[4] ? ", in the reference" : ", not in the reference") : "")
    : missed ? "missed: " + named(missed) + " in the reference"
    : pedal ? "sustain pedal down, " + pedal[0].toFixed(2) + "-" + pedal[1].toFixed(2) + " s" : "";
});
// Space plays and pauses and the arrows seek 5 s, as in every player, and [ and ] set the
// loop's ends (on a button or a choice these keys are theirs).
document.addEventListener("keydown", (event) => {
  if (event.target.closest("button, input, select")) return;
  if (event.key === " ") {
    document.getElementById("play").click();
  } else if (event.key === "[" || event.key === "]") {
    (event.key === "[" ? loopFrom : loopTo)();
  } else if (event.key === "ArrowLeft" || event.key === "ArrowRight") {
    const step = event.key === "ArrowLeft" ? -5 : 5;
    seek(Math.max(0, Math.min(DATA.duration_s, audio.currentTime + step)));
  } else {
    return;
  }
  event.preventDefault();
});
// Slower, to check a fast passage by ear: the recording keeps its pitch (the browsers'
// default), and the transcription follows its clock.
document.getElementById("speed").addEventListener("change", (event) => {
  audio.playbackRate = Number(event.target.value);
  silence();  // what was put on the clock ahead was timed for the speed before
});
document.querySelectorAll("input[name=hear]").forEach((input) =>
  input.addEventListener("change", () => setMode(input.value)));
function zoom(factor) {  // the playhead stays where it is on the screen
  const x = audio.currentTime * pxPerSecond - box.scrollLeft;
  pxPerSecond *= factor;
  sizeTrack();  // before the scroll: the new position may lie past the old width
  box.scrollLeft = Math.max(0, audio.currentTime * pxPerSecond - x);
  draw();
}
document.getElementById("zoom-in").addEventListener("click", () => zoom(1.5));
document.getElementById("zoom-out").addEventListener("click", () => zoom(1 / 1.5));
box.addEventListener("scroll", draw);
window.addEventListener("resize", draw);
draw();
requestAnimationFrame(tick);
</script></body></html>
"""


class Comparison(NamedTuple):
    """A reference to show a transcription against (``amt-evaluate --html``), matched at
    mir_eval's note level by the caller: the reference's notes ``(n, 4)``, which of them
    were found, which of the transcription's notes are in it, and the reference's name;
    ``made_by``, where another transcriber wrote the notes, says whose they are (the page
    then gives no thresholds of ours)."""
    notes: np.ndarray
    found: np.ndarray  # bool per reference note
    hits: np.ndarray  # bool per transcribed note, in the order the page shows them
    name: str
    made_by: str | None = None


def _rows(notes: np.ndarray, flags: np.ndarray | None = None) -> list[list]:
    """Notes as the page's JSON has them: times to 0.1 ms, pitch and velocity whole, and a
    fifth value, 1 or 0, where ``flags`` are given."""
    rows = [[round(float(a), 4), round(float(b), 4), int(p), int(v)]
            for a, b, p, v in np.asarray(notes).reshape(-1, 4)]
    if flags is not None:
        for row, flag in zip(rows, flags):
            row.append(int(bool(flag)))
    return rows


def our_facts(result, spans: list, pedal: str) -> str:
    """The page's words on how our notes were made: thresholds, the pedal (``spans``, as
    the page draws them), the input's gain."""
    options = result.options

    def rule(threshold: float) -> str:  # 1 (decode.OFF) turns a rule off
        return "off" if threshold >= OFF else f"{threshold:g}"
    facts = (f"thresholds: onset {options.onset_threshold:g}, frame {options.frame_threshold:g}, offset "
             f"{rule(options.offset_threshold)}, frame onsets "
             f"{rule(options.frame_onset_threshold)}, "
             + "".join(f"{name} {value:g}, " for name, value in (
                 ("re-strikes", options.restrike_onset_threshold),
                 ("notes on partials of a lower key", options.partial_onset_threshold))
                 if value > options.onset_threshold)
             + (f"soft onsets {options.soft_onset_threshold:g} where the level rises, "
                if options.soft_onset_threshold < options.onset_threshold else "")
             + (f"note filter {options.note_filter_threshold:g}, "
                if options.note_filter is not None and options.note_filter_threshold > 0 else "")
             + f"shortest note {options.min_note_ms:g} ms, "
             + (f"note ends chosen (threshold {options.end_choice_threshold:g}); "
                if options.end_chooser is not None and options.end_choice_threshold < 1
                else "note ends as heard; ")
             + _velocity_fact(options))
    if result.pedal is not None:  # which notes the page shows depends on the pedal mode
        count = len(spans)
        split = (f", split at presses above {options.pedal_split_threshold:g}"
                 if options.pedal_split_threshold < OFF else "")
        facts += (f"{count} sustain-pedal span{'' if count == 1 else 's'} (threshold "
                  f"{options.pedal_threshold:g}{split}), notes as --pedal {pedal} writes them; ")
    gain_db = result.provenance.get("input_gain_db") or 0.0
    if abs(gain_db) >= 1:
        facts += (f"the recording {'raised' if gain_db > 0 else 'lowered'} by {abs(gain_db):.0f} dB "
                  f"to the level the weights were tuned at (and played so here); ")
    if result.provenance.get("dereverb"):
        facts += "the room's late reverberation suppressed first (--dereverb); "
    return facts


def _velocity_fact(options) -> str:
    """How the page's velocities were decided, for its facts line."""
    model = options.velocity_model is not None and options.velocity_model_weight > 0
    if model and options.velocity_model_weight >= 1:
        return "velocities from the velocity model; "
    blend = (f"velocities add {options.velocity_level_weight:g} steps a dB of onset level"
             if options.velocity_level_weight else "velocities from the velocity head alone")
    return blend + (f", the velocity model deciding {options.velocity_model_weight:g} of "
                    "each; " if model else "; ")


def page_html(result, recording: bytes, title: str, pedal: str = C.DEFAULT_PEDAL_MODE,
              midi_name: str = "transcription.mid", tempo_bpm: float = 120.0,
              comparison: Comparison | None = None) -> str:
    """The review page of a ``Transcription`` with ``recording`` (``encode_recording``'s)
    embedded, its notes as the pedal mode ``pedal`` writes them, and the MIDI file of them
    (as ``save`` writes it) to download as ``midi_name``: the page alone is enough to share.
    With a ``comparison``, the notes are drawn as found or not in the reference, the
    reference's notes not found as outlines, and the reference can be heard."""
    notes, _ = result.with_pedal(pedal)
    notes = np.asarray(notes).reshape(-1, 4)
    if comparison is not None and (len(comparison.hits) != len(notes)
                                   or len(comparison.found) != len(comparison.notes)):
        raise ValueError("the comparison's flags do not match its notes")
    spans = result.pedal if result.pedal is not None else np.zeros((0, 2))
    embedding = recording_format()
    data = {"duration_s": round(float(result.duration_s), 3), "audio_format": embedding.name,
            "pedal_heard": result.pedal is not None,
            "notes": _rows(notes, None if comparison is None else comparison.hits),
            "reference": None if comparison is None else _rows(comparison.notes,
                                                               comparison.found),
            "pedal": [[round(float(a), 4), round(float(b), 4)]
                      for a, b in np.asarray(spans).reshape(-1, 2)],
            "colours": {"found": FOUND, "extra": EXTRA, "missed": MISSED_RGB,
                        "missed_fill": MISSED_FILL, "soft": SOFT_HSL, "loud": LOUD_HSL}}
    facts = f"{plural(len(data['notes']), 'note')}, {result.duration_s:.1f} s" + (
        f": {comparison.made_by}. " if comparison is not None and comparison.made_by
        else "; " + our_facts(result, data["pedal"], pedal))  # another transcriber's, or ours
    facts += (f"amt-transcribe {__version__}. Click the roll to seek, drag across it to loop a "
              "passage (or set the loop's ends at the playhead with A and B), hover a note to "
              "name it; space plays and pauses, the arrows seek 5 s, [ and ] are A and B; "
              "slow down a fast passage with Speed.")
    # What the terminal warned of (a file cut short, clipping, clicks), where the page's
    # reader, who may never have seen that terminal, judges the notes.
    warnings = "".join(f"<div>Warning: {html.escape(warning)}</div>"
                       for warning in result.warnings)
    # Without a reference, a note's colour is its velocity (the script's colour()).
    gradient = ", ".join(velocity_hsl(velocity) for velocity in (0, 64, 127))
    legend = ('<div id="legend">Colour: velocity, 1 <span class="swatch" style="width: '
              f'120px; background: linear-gradient(to right, {gradient})"></span> 127</div>\n')
    hear_reference = ""
    if comparison is not None:
        found, hits = int(np.sum(comparison.found)), int(np.sum(comparison.hits))
        n_ref, n_est = len(comparison.notes), len(notes)
        recall, precision = found / max(n_ref, 1), hits / max(n_est, 1)
        f1 = 2 * recall * precision / (recall + precision) if recall + precision else 0.0
        legend = (
            '<div id="legend">Against ' + html.escape(readable(comparison.name)) +
            f" (notes matched as mir_eval's note level matches them: the same key, onsets "
            f"within 50 ms): {found} of its {n_ref} notes found (recall {100 * recall:.1f} %),"
            f" {n_est - hits} of the {n_est} transcribed not in it (precision "
            f"{100 * precision:.1f} %), note F1 {100 * f1:.1f}."
            f'<span class="swatch" style="background: {FOUND}"></span>found'
            f'<span class="swatch" style="background: {EXTRA}"></span>not in the reference'
            f'<span class="swatch" style="border: 1px solid rgb({MISSED_RGB}); '
            f'background: rgba({MISSED_RGB}, {MISSED_FILL})"></span>missed (in the reference, not '
            f"transcribed)</div>\n")
        hear_reference = ('\n    <label><input type="radio" name="hear" value="reference"> '
                          "the reference</label>")
    values = {"TITLE": html.escape(title), "ROLL_PX": str(ROLL_PX), "FACTS": html.escape(facts), "MIME": embedding.mime,
              "WARNING_COLOUR": C.WARNING_COLOUR,
              "WARNINGS": f'<div id="warnings">{warnings}</div>\n' if warnings else "",
              "LEGEND": legend, "HEAR_REFERENCE": hear_reference,
              "MIDI_NAME": html.escape(midi_name, quote=True),
              "MIDI": base64.b64encode(result.to_bytes("mid", tempo_bpm, pedal)).decode("ascii"),
              "AUDIO": base64.b64encode(recording).decode("ascii"),
              # "</" could end the script element early: JSON allows "<\/" instead.
              "DATA": json.dumps(data).replace("</", "<\\/")}
    # In one pass: a file named "__AUDIO__.wav" puts its name in the title, not the audio.
    return re.sub(r"__(TITLE|ROLL_PX|FACTS|WARNING_COLOUR|WARNINGS|LEGEND|HEAR_REFERENCE|MIME|"
                  r"MIDI_NAME|MIDI|AUDIO|DATA)__",
                  lambda match: values[match.group(1)], _PAGE)


ENCODE_BLOCK = AUDIO_RATE  # samples per write


class RecordingFormat(NamedTuple):
    format: str  # libsndfile's names
    subtype: str
    mime: str
    name: str  # as the page names it


MP3 = RecordingFormat("MP3", "MPEG_LAYER_III", "audio/mpeg", "MP3")
OGG_VORBIS = RecordingFormat("OGG", "VORBIS", "audio/ogg", "Ogg Vorbis")


def recording_format() -> RecordingFormat:
    """MP3, which every browser plays, where libsndfile encodes it (1.1 and newer, as
    soundfile's wheels bundle); else Ogg Vorbis, which Safari does not play."""
    return MP3 if sf.check_format(MP3.format, MP3.subtype) else OGG_VORBIS


def encode_recording(source: str | Path, gain: float = 1.0) -> bytes:
    """The recording times ``gain``, mono at ``AUDIO_RATE`` in ``recording_format()``,
    for embedding.

    Written a second at a time as it is decoded: libsndfile 1.2's Vorbis encoder
    crashes (segmentation fault) when handed minutes of audio in one write.
    """
    embedding = recording_format()
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", AUDIO_RATE, 1, format=embedding.format,
                      subtype=embedding.subtype) as encoder:
        written = 0
        for block in audio_io.stream(source, AUDIO_RATE):
            block = np.clip(block * np.float32(gain), -1, 1)
            for start in range(0, len(block), ENCODE_BLOCK):
                encoder.write(block[start:start + ENCODE_BLOCK])
            written += len(block)
        if not written:
            encoder.write(np.zeros(1, np.float32))
    return buffer.getvalue()


def write_review_page(result, source: str | Path, path: str | Path,
                      overwrite: bool = True, pedal: str = C.DEFAULT_PEDAL_MODE,
                      tempo_bpm: float = 120.0, comparison: Comparison | None = None) -> None:
    """Write ``path``: the review page of ``result``, transcribed from the file ``source``.

    The recording plays at the level the network heard it (``--normalize``'s gain): a
    quiet one is audible beside the transcription, a float file past full scale does
    not clip."""
    gain = 10 ** ((result.provenance.get("input_gain_db") or 0.0) / 20)
    title = f"{readable(Path(source).name)}: transcription" + (
        f" against {readable(comparison.name)}" if comparison is not None else "")
    page = page_html(result, encode_recording(source, gain), title, pedal,
                     readable(Path(path).with_suffix(".mid").name), tempo_bpm, comparison)
    write_atomic(Path(path), page.encode("utf-8"), overwrite)
