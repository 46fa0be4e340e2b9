"""Decode audio files, downmix to mono and resample to the model rate, in blocks.

soundfile (libsndfile) reads WAV, FLAC, OGG/Vorbis/Opus and MP3; soxr resamples with
a proper anti-aliasing filter, as a stream, so a file of any length is read a block
at a time and never sits in memory whole.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import stat
import struct
import sys
import tempfile
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np
import soundfile as sf
import soxr

from . import constants as C
from .errors import TranscribeError
from .files import named_path

AUDIO_EXTENSIONS = (".wav", ".bwf", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".mp2", ".aif",
                    ".aiff", ".aifc", ".w64", ".rf64", ".caf")
# Phone recordings, videos and the lossless formats of archives (WavPack, Monkey's Audio,
# TTA): decoded by ffmpeg when it is installed.
FFMPEG_EXTENSIONS = (".m4a", ".m4b", ".aac", ".ac3", ".mp4", ".m4v", ".mov", ".webm", ".mkv",
                     ".mka", ".avi", ".wmv", ".wma", ".flv", ".mpg", ".mpeg", ".mts", ".m2ts",
                     ".ogv", ".3gp", ".amr", ".wv", ".ape", ".tta", ".alac")
UNSUPPORTED_EXTENSIONS = FFMPEG_EXTENSIONS  # without ffmpeg
BLOCK_S = 30.0
READ_S = 1.0  # a read that fails loses at most this much of a damaged file


# libsndfile's subtypes of lossy codecs, and ffprobe's names of lossless ones (besides pcm_*).
LOSSY_SUBTYPES = frozenset({"MPEG_LAYER_I", "MPEG_LAYER_II", "MPEG_LAYER_III", "VORBIS",
                            "OPUS"})
LOSSLESS_CODECS = frozenset({"flac", "alac", "wavpack", "ape", "tta", "tak", "mlp", "truehd",
                             "shorten", "mp4als"})


@dataclass(frozen=True)
class AudioInfo:
    path: Path
    sample_rate: int
    channels: int
    frames: int  # at the file's own rate
    promised_frames: int | None = None  # what the header declares, where it says more
    decoder: str = "libsndfile"  # or "ffmpeg"
    format: str = ""  # libsndfile's container ("WAV", "FLAC", "MP3"...); "" through ffmpeg
    raw_data: RawData | None = None  # a WAV whose data size does not say where its samples
    # end, read as raw samples (``_WavLayout.raw_data``)
    open_ended: bool = False  # a FLAC whose header gives no length (written to a pipe):
    # ``frames`` were counted
    codec: str = ""  # libsndfile's subtype ("PCM_16", "MPEG_LAYER_III", "VORBIS"...), or
    # ffprobe's codec name ("aac", "alac"...)

    @property
    def lossy(self) -> bool:
        """Whether the samples were coded lossily (MP3, AAC, Vorbis, Opus...): a wave
        clipped before it was coded is no longer held flat (``level.Peaks.near_full``)."""
        if self.decoder == "ffmpeg":
            return bool(self.codec) and not self.codec.startswith("pcm_") \
                and self.codec not in LOSSLESS_CODECS
        return self.codec in LOSSY_SUBTYPES

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0

    @property
    def promised_s(self) -> float:
        return max(self.frames, self.promised_frames or 0) / self.sample_rate


def probe(path: str | Path) -> AudioInfo:
    """Check that ``path`` is a readable audio file and return its format.

    Raises ``TranscribeError`` with a one-line reason otherwise.
    """
    path = named_path(path, "audio")
    try:
        mode = path.stat().st_mode
    except OSError as error:
        raise TranscribeError(_stat_message(path, error)) from None
    if stat.S_ISDIR(mode):
        raise TranscribeError(f"{path}: is a folder, not an audio file")
    if not stat.S_ISREG(mode):
        raise TranscribeError(f"{path}: not a regular file (a pipe, socket or device); "
                              "save the audio to a file first")
    if path.stat().st_size == 0:
        raise TranscribeError(f"{path}: the file is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise TranscribeError(f"{path}: permission denied (the file is not readable)")
    if path.suffix.lower() in FFMPEG_EXTENSIONS:
        return _probe_with_ffmpeg(path)
    # libsndfile takes any file named .mp3 for one: libmpg123 then prints its struggles with
    # what is not MP3 (an AAC saved as .mp3) and decodes nothing of it.
    named_mp3 = path.suffix.lower() in (".mp3", ".mp2")
    with tempfile.TemporaryFile() if named_mp3 else contextlib.nullcontext() as scratch:
        try:
            with _stderr_into(scratch) if named_mp3 else contextlib.nullcontext():
                with sf.SoundFile(_sf_name(path)) as info:  # its format, rate, channels, frames
                    decodes = info.format != "MP3" or _first_second_decodes(info)
        except (sf.LibsndfileError, RuntimeError) as error:
            misnamed = _misnamed(path)
            if misnamed is not None:
                return misnamed
            if is_midi(path):
                raise TranscribeError(midi_given(path)) from None
            raise TranscribeError(f"{path}: not a readable audio file ({_reason(error)}); "
                                  "supported: WAV, FLAC, OGG, MP3, AIFF") from None
        if not decodes:  # what libmpg123 printed was its struggle with it: dropped
            misnamed = _misnamed(path)
            if misnamed is not None:
                return misnamed
        elif named_mp3:
            _pass_on(scratch)  # what was not libmpg123's
    if info.samplerate <= 0 or info.channels <= 0:
        raise TranscribeError(f"{path}: the file declares no samples")
    if info.frames >= UNKNOWN_FRAMES:  # a FLAC written to a pipe: the header gives no length
        open_ended = AudioInfo(path, int(info.samplerate), int(info.channels), 0,
                               format=info.format, open_ended=True, codec=info.subtype)
        return replace(open_ended, frames=_count_frames(open_ended))
    layout = _wav_layout(path) if info.format in ("WAV", "WAVEX") else None
    raw = layout.raw_data(path) if layout is not None else None
    if raw is not None and raw.size > info.frames * layout.block_align:
        return AudioInfo(path, layout.rate, layout.channels, raw.size // layout.block_align,
                         format="RAW", raw_data=raw, codec=info.subtype)
    # ffmpeg writes "data: 0xFFFFFFFF bytes" (length unknown: read to the end) to a pipe, and
    # until it finishes a file: a promise of 13.5 hours at 44.1 kHz that no read could keep.
    promised = (layout.data_size // layout.block_align if layout and layout.block_align
                and layout.data_size != UNKNOWN_WAV_SIZE else None)
    return AudioInfo(path, int(info.samplerate), int(info.channels), int(info.frames),
                     promised if promised and promised > info.frames else None,
                     format=info.format, codec=info.subtype)


UNKNOWN_FRAMES = 1 << 62  # libsndfile's length of a stream whose header gives none
UNKNOWN_WAV_SIZE = 0xFFFFFFFF  # a WAV data size that means "to the end of the file"


def _count_frames(info: AudioInfo) -> int:
    """The frames of a file whose header does not say, counted by decoding it (as far as it
    decodes)."""
    read_frames = max(1, int(READ_S * info.sample_rate))
    count = 0
    with Reader(info) as reader:
        while True:
            try:
                got = len(reader.read(read_frames))
            except (sf.LibsndfileError, RuntimeError):
                return count
            count += got
            if got < read_frames:
                return count


def _ffmpeg_tools() -> tuple[str, str] | None:
    import shutil
    ffmpeg, ffprobe = shutil.which("ffmpeg"), shutil.which("ffprobe")
    return (ffmpeg, ffprobe) if ffmpeg and ffprobe else None


def _misnamed(path: Path) -> AudioInfo | None:
    """A file that libsndfile cannot read as its name says, as ffmpeg reads it, where ffmpeg
    is installed and can: an AAC or an MP4 saved as ".mp3" or ".wav" (web downloads, phone
    apps).  None otherwise."""
    if _ffmpeg_tools() is None:
        return None
    try:
        return _probe_with_ffmpeg(path)
    except TranscribeError:
        return None


def is_midi(path: Path) -> bool:
    """Whether ``path`` holds a MIDI file (a standard MIDI file, or one wrapped in RIFF)."""
    try:
        with open(path, "rb") as file:
            start = file.read(12)
    except OSError:
        return False
    return start[:4] == b"MThd" or (start[:4] == b"RIFF" and start[8:12] == b"RMID")


def midi_given(path: Path) -> str:
    """The error for a MIDI file given to be transcribed."""
    return (f"{path}: a MIDI file, not a recording: amt-transcribe turns recordings (WAV, "
            "FLAC, OGG, MP3, AIFF...) into MIDI")


def _sf_name(path: Path) -> str | bytes:
    """``path`` as soundfile opens it: as bytes on POSIX, where soundfile encoded a str
    strictly, so names that are not UTF-8 (an old archive's Latin-1 ones) failed to open."""
    return str(path) if os.name == "nt" else os.fsencode(path)


def _first_second_decodes(handle: sf.SoundFile) -> bool:
    """Whether libsndfile decodes the first second of the file open in ``handle``."""
    try:
        handle.read(max(1, handle.samplerate), dtype="float32")
    except (sf.LibsndfileError, RuntimeError):
        return False
    return True


def _probe_with_ffmpeg(path: Path) -> AudioInfo:
    """The first audio stream of a phone recording or video, as ffprobe reports it."""
    import json
    import subprocess
    tools = _ffmpeg_tools()
    if tools is None:
        raise TranscribeError(f"{path}: {path.suffix} files are read with ffmpeg, which is not "
                              "installed (apt-get install ffmpeg, brew install ffmpeg); or "
                              f"convert it: `ffmpeg -i '{path.name}' '{path.stem}.flac'`")
    command = [tools[1], "-v", "error", "-select_streams", "a:0", "-show_entries",
               "stream=sample_rate,channels,duration,codec_name:format=duration", "-of", "json",
               str(path)]
    try:
        # errors="replace": ffprobe's messages hold the file's name, which may not be UTF-8.
        result = subprocess.run(command, capture_output=True, text=True, errors="replace",
                                timeout=60)
        about = json.loads(result.stdout or "{}")
    except (subprocess.TimeoutExpired, json.JSONDecodeError, OSError) as error:
        raise TranscribeError(f"{path}: ffprobe could not read it ({error})") from None
    streams = about.get("streams") or []
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["unreadable"])[-1][:160]
        raise TranscribeError(f"{path}: not a readable audio or video file ({reason})")
    if not streams:
        raise TranscribeError(f"{path}: has no audio track")
    stream = streams[0]
    rate = int(stream.get("sample_rate") or 0)
    duration = float(stream.get("duration") or about.get("format", {}).get("duration") or 0)
    if rate <= 0:
        raise TranscribeError(f"{path}: its audio track declares no sample rate")
    return AudioInfo(path, rate, int(stream.get("channels") or 1), int(duration * rate),
                     decoder="ffmpeg", codec=str(stream.get("codec_name") or ""))


def ffmpeg_blocks(info: AudioInfo, block_s: float, stats: StreamStats) -> Iterator[np.ndarray]:
    """``(samples, channels)`` float32 blocks of a file ffmpeg decodes, at the file's own rate
    and channel count, read from ffmpeg's output as it goes: mixed and resampled here as
    libsndfile's are, so a recording is heard the same from any container (ffmpeg's own
    downmix raises a stereo mix 3 dB)."""
    import subprocess
    ffmpeg = _ffmpeg_tools()[0]
    channels = max(1, info.channels)
    command = [ffmpeg, "-v", "error", "-nostdin", "-i", str(info.path), "-map", "0:a:0",
               "-vn", "-ac", str(channels), "-ar", str(info.sample_rate), "-f", "f32le", "-"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    frame_bytes = 4 * channels
    block_bytes = max(1, int(block_s * info.sample_rate)) * frame_bytes
    read = 0  # frames at the file's rate
    try:
        pending = b""
        while True:
            chunk = process.stdout.read(block_bytes)
            if not chunk:
                break
            pending += chunk
            usable = len(pending) // frame_bytes * frame_bytes
            block = np.frombuffer(pending[:usable], np.float32).reshape(-1, channels).copy()
            pending = pending[usable:]
            read += len(block)
            if len(block):
                yield block
        error = process.stderr.read().decode(errors="replace").strip()
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reason = (error.splitlines() or [""])[-1][:160]
    if process.returncode != 0 and read == 0:
        raise TranscribeError(f"{info.path}: ffmpeg could not decode it ({reason})")
    promised = info.frames / info.sample_rate
    if read == 0:
        raise TranscribeError(_no_audio(info.path, promised))
    read_s = read / info.sample_rate
    if process.returncode != 0 or (promised and read_s < promised - 0.5):
        stats.shortfall = _shortfall(read_s, promised, reason)


def _stream_with_ffmpeg(info: AudioInfo, target_rate: int, block_s: float,
                        stats: StreamStats, declip=None) -> Iterator[np.ndarray]:
    """Mono float32 blocks at ``target_rate`` of a file ffmpeg decodes (``ffmpeg_blocks``)."""
    resample = Resampler(info.sample_rate, target_rate)
    blocks = ffmpeg_blocks(info, block_s, stats)
    try:
        block = next(blocks, None)  # raises for a file of which nothing decodes
        while block is not None:
            following = next(blocks, None)  # one ahead: the resampler is told the last block
            out = _to_target(block, resample, stats, following is None, declip)
            if len(out):
                yield out
            block = following
    finally:
        blocks.close()  # stops ffmpeg when the reader stops early


def _shortfall(read_s: float, promised_s: float, reason: str | None) -> str:
    """What a damaged file's warning says, whichever decoder read it."""
    why = f" ({reason})" if reason else ""
    return (f"truncated or damaged: read {read_s:.1f} s of the {promised_s:.1f} s the header "
            f"promises{why}")


def _no_audio(path: Path, promised_s: float) -> str:
    """The error for a file that holds no samples at all: nothing to transcribe."""
    if promised_s > 0:
        return (f"{path}: truncated: the header promises {promised_s:.1f} s of audio but the "
                "file holds none")
    return f"{path}: holds no audio (0 samples)"


def _stat_message(path: Path, error: OSError) -> str:
    import errno
    if error.errno == errno.ELOOP:
        return f"{path}: a symbolic link that loops back on itself"
    if error.errno == errno.ENOENT:
        if path.is_symlink():
            return f"{path}: a symbolic link to a file that does not exist"
        if str(path) == "-":  # a Unix habit: the whole file is read twice, so not a pipe
            return "-: audio is not read from standard input; save it to a file first"
        name = str(path)
        if name.startswith("~"):  # quoted, so the shell left it
            return (f"{path}: no such file (nothing made ~ the home folder: a shell does "
                    "outside quotes, Python with os.path.expanduser)")
        if "*" in name or "?" in name:  # a pattern that matched nothing is passed on as it is
            return f"{path}: no such file (no file matched this pattern)"
        return f"{path}: no such file"
    if error.errno == errno.EACCES:
        return f"{path}: permission denied"
    return f"{path}: {error.strerror or error}"


class _WavLayout(NamedTuple):
    """What a RIFF WAVE header says of its samples."""

    tag: int  # 1 PCM, 3 float (the sub-format's, for WAVE_FORMAT_EXTENSIBLE)
    channels: int
    rate: int
    block_align: int
    bits: int
    data_offset: int
    data_size: int  # as declared

    @property
    def subtype(self) -> str | None:
        """libsndfile's name for the samples, if they are plain PCM or float."""
        return {(1, 8): "PCM_U8", (1, 16): "PCM_16", (1, 24): "PCM_24", (1, 32): "PCM_32",
                (3, 32): "FLOAT", (3, 64): "DOUBLE"}.get((self.tag, self.bits))

    def raw_data(self, path: Path) -> RawData | None:
        """Where the samples are, when the data size does not say (libsndfile reads by it):

        - 0, with whole frames of samples after it (not chunks: an empty recording may be
          followed by a LIST or bext chunk): a recorder that stopped before it wrote its
          header's sizes (power lost, a crash).  libsndfile read none of them.
        - 0xFFFFFFFF, "to the end": ffmpeg's, to a pipe, until it finishes a file, and for
          good in a file over 4 GB ("output file will be broken").  libsndfile read 4 GB of
          such a file: 2,796 s of a 2,900 s one.
        - at least 4 GB less than follows: the size of a file over 4 GB that is not RF64,
          wrapped past 2**32 by its writer.  libsndfile read the remainder: 104 s of the
          2,900 s.
        """
        if (self.subtype is None or self.rate <= 0 or self.channels <= 0
                or self.block_align != self.channels * self.bits // 8):
            return None
        follow = path.stat().st_size - self.data_offset
        if self.data_size == 0:
            if follow < self.block_align or _only_chunks(path, self.data_offset):
                return None
            size, kind = follow, "unfinished"
        elif self.data_size == UNKNOWN_WAV_SIZE:
            size, kind = follow, None
        elif follow - self.data_size >= 1 << 32:
            size = self.data_size + (follow - self.data_size) // (1 << 32) * (1 << 32)
            kind = "wrapped"
        else:
            return None
        return RawData(self.data_offset, size // self.block_align * self.block_align,
                       self.subtype, kind)


class RawData(NamedTuple):
    """A WAV's samples read as raw ones, where its header's data size cannot be trusted."""

    offset: int  # of the first sample, in bytes
    size: int  # bytes of whole frames
    subtype: str  # libsndfile's
    kind: str | None  # "unfinished", "wrapped" (a warning says so), or None


def raw_data_warning(info: AudioInfo) -> str | None:
    """What the user is told of a WAV read as raw samples (``AudioInfo.raw_data``)."""
    kind = info.raw_data.kind if info.raw_data is not None else None
    if kind == "unfinished":
        return ("its header was never finished (a recording cut off?): read as the "
                f"{info.duration_s:.1f} s of samples that follow it")
    if kind == "wrapped":
        return ("its header's sizes wrapped past 4 GB (a WAV over 4 GB that is not RF64): read "
                f"whole, {info.duration_s:.1f} s")
    return None


def _only_chunks(path: Path, offset: int) -> bool:
    """The bytes of ``path`` from ``offset`` on are whole RIFF chunks (four ASCII letters and
    a size) up to its end."""
    end = path.stat().st_size
    with open(path, "rb") as handle:
        handle.seek(offset)
        while offset < end:
            header = handle.read(8)
            if len(header) < 8 or not all(32 <= c < 127 for c in header[:4]):
                return False
            offset += 8 + (size := struct.unpack("<I", header[4:])[0]) + (size & 1)
            handle.seek(offset)
    return offset == end


def _wav_layout(path: Path) -> _WavLayout | None:
    """The ``fmt `` and ``data`` chunks of a RIFF WAVE file (libsndfile reports what it
    reads, not what the header declares); None for anything else."""
    try:
        with open(path, "rb") as handle:
            if handle.read(4) != b"RIFF":
                return None
            handle.read(4)
            if handle.read(4) != b"WAVE":
                return None
            fmt = None
            while True:
                header = handle.read(8)
                if len(header) < 8:
                    return None
                chunk, size = header[:4], struct.unpack("<I", header[4:])[0]
                if chunk == b"fmt ":
                    fmt = handle.read(size + (size & 1))
                elif chunk == b"data":
                    if fmt is None or len(fmt) < 16:
                        return None
                    tag, channels, rate, _, align, bits = struct.unpack("<HHIIHH", fmt[:16])
                    if tag == 0xFFFE and len(fmt) >= 26:  # WAVE_FORMAT_EXTENSIBLE
                        tag = struct.unpack("<H", fmt[24:26])[0]
                    return _WavLayout(tag, channels, rate, align, bits, handle.tell(), size)
                else:
                    handle.seek(size + (size & 1), 1)
    except (OSError, struct.error):
        return None


def _reason(error: Exception) -> str:
    """libsndfile's reason, as a clause: "Format not recognised." reads "format not
    recognised"."""
    text = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
    text = text.split(": ", 1)[-1][:160].rstrip(".")
    if text.startswith("File does not exist or is not a regular file"):
        # What libsndfile says of bytes its MP3 reader cannot parse, in a file that exists.
        return "not a format libsndfile reads"
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


class Resampler:
    """Streaming mono resampler to ``target_rate`` (soxr, high quality)."""

    def __init__(self, source_rate: float, target_rate: int = C.SAMPLE_RATE):
        self.stream = None if source_rate == target_rate else \
            soxr.ResampleStream(source_rate, target_rate, 1, dtype="float32", quality="HQ")

    def __call__(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        block = np.ascontiguousarray(block, dtype=np.float32)
        if self.stream is None:
            return block
        return self.stream.resample_chunk(block, last=last)


@dataclass
class StreamStats:
    """Filled in while a stream is read."""

    samples: int = 0  # at the target rate
    nonfinite: int = 0  # NaN or Inf input samples, replaced by silence
    shortfall: str | None = None  # how much of the promised audio could not be read, and why


def to_mono(block: np.ndarray) -> np.ndarray:
    """``(samples, channels)`` or ``(samples,)`` -> ``(samples,)`` by averaging channels.

    Column by column: numpy's ``mean(axis=1)`` over a few channels is about 20 times
    slower (0.56 s for ten minutes of 44.1 kHz stereo) and gives the same float32 values
    (up to six channels; with more, numpy sums in another order: the last bit may differ).
    """
    if block.ndim == 1:
        return block.astype(np.float32)
    mix = block[:, 0].astype(np.float32)  # a copy
    for channel in range(1, block.shape[1]):
        mix += block[:, channel]
    if block.shape[1] > 1:
        mix /= np.float32(block.shape[1])
    return mix


def sanitize(block: np.ndarray, stats: StreamStats) -> np.ndarray:
    finite = np.isfinite(block)
    if not finite.all():
        stats.nonfinite += int((~finite).sum())
        block = np.where(finite, block, 0.0).astype(np.float32)
    return block


def _to_target(block: np.ndarray, resample: Resampler, stats: StreamStats,
               last: bool, declip=None) -> np.ndarray:
    """A block as the network's samples, as every reader hands them on: its clipped crests
    redrawn (``declip``, a ``declip.Declipper``, if given), mixed to mono, NaN/Inf made
    silence, resampled (``last``: the stream ends with it), counted in ``stats``."""
    if declip is not None:
        block = declip(block, last=last)
    out = resample(sanitize(to_mono(block), stats), last=last)
    stats.samples += len(out)
    return out


class _DataWindow(io.RawIOBase):
    """``size`` bytes of a file from ``offset`` on, as a file of their own (for libsndfile
    to read a WAV's samples as raw ones, ``RawData``)."""

    def __init__(self, path: Path, offset: int, size: int):
        super().__init__()
        self.file = open(path, "rb")
        self.offset, self.size, self.position = offset, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        self.file.seek(self.offset + self.position)
        got = self.file.readinto(memoryview(buffer)[:max(0, self.size - self.position)])
        self.position += got
        return got

    def seek(self, position: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + position)
        return self.position

    def tell(self) -> int:
        return self.position

    def close(self) -> None:
        self.file.close()
        super().close()


class Reader:
    """A probed file opened by libsndfile (``TranscribeError`` if that fails now), read as
    float32 ``(frames, channels)``.

    libmpg123, which decodes MP3 inside libsndfile, prints to the process's stderr about
    frames that it then decodes anyway: every MP3 that ffmpeg encodes gets "error:
    part2_3_length (800) too large for available bit count (760)" at its end, and the
    samples equal ffmpeg's own decoding.  So around each read of an MP3 the C-level stderr
    goes to a scratch file, and whatever else was written there is passed on."""

    def __init__(self, info: AudioInfo):
        self.window = None
        self.scratch = tempfile.TemporaryFile() \
            if info.format == "MP3" and not info.raw_data else None
        try:
            if info.raw_data:
                raw = info.raw_data
                self.window = _DataWindow(info.path, raw.offset, raw.size)
                self.handle = sf.SoundFile(self.window, format="RAW",
                                           samplerate=info.sample_rate, channels=info.channels,
                                           subtype=raw.subtype, endian="LITTLE")
            else:
                # Opening a damaged MP3 makes libmpg123 print too ("Warning: Xing stream
                # size off..."), once for each of a file's reads, across a batch's progress.
                with self._quiet():
                    self.handle = sf.SoundFile(_sf_name(info.path))
        except (sf.LibsndfileError, RuntimeError, OSError) as failure:
            if self.scratch is not None:
                self.scratch.close()
            raise TranscribeError(f"{info.path}: cannot be read any more "
                                  f"({_reason(failure)})") from None
        self.open_ended, self.ended = info.open_ended, False

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc) -> None:
        self.handle.close()
        if self.window is not None:
            self.window.close()
        if self.scratch is not None:
            self.scratch.close()

    def seek(self, frame: int) -> None:
        self.handle.seek(frame)

    def read(self, frames: int) -> np.ndarray:
        with self._quiet():
            return self._read(frames)

    @contextlib.contextmanager
    def _quiet(self) -> Iterator[None]:
        """libmpg123's lines (an MP3's) kept from the process's stderr in the block; what
        else was written there is passed on."""
        if self.scratch is None:
            yield
            return
        try:
            with _stderr_into(self.scratch):
                yield
        finally:
            _pass_on(self.scratch)

    def _read(self, frames: int) -> np.ndarray:
        if not self.open_ended:
            return self.handle.read(frames, dtype="float32", always_2d=True)
        # A stream of unknown length: libsndfile fails the read that reaches its end (it
        # tries to seek there) after decoding what was left into ``out``.  Its samples are
        # integers, never NaN, so the NaN left unwritten marks where they end.
        if self.ended:
            return np.zeros((0, self.handle.channels), np.float32)
        out = np.full((frames, self.handle.channels), np.nan, np.float32)
        try:
            return self.handle.read(frames, dtype="float32", always_2d=True, out=out)
        except (sf.LibsndfileError, RuntimeError):
            written = int(np.argmax(np.isnan(out[:, 0])))
            if not written:
                raise
            self.ended = True
            return out[:written]


def _pass_on(scratch) -> None:
    """What was written to ``scratch`` (``_stderr_into``), less libmpg123's lines, to the
    real stderr; ``scratch`` is emptied."""
    handle = scratch.fileno()
    size = os.lseek(handle, 0, os.SEEK_CUR)
    if not size:
        return
    os.lseek(handle, 0, os.SEEK_SET)
    written = b"".join(iter(lambda: os.read(handle, 1 << 16), b""))
    os.lseek(handle, 0, os.SEEK_SET)
    os.ftruncate(handle, 0)
    kept = _MPG123_LINE.sub(b"", written)
    if kept:
        os.write(2, kept)


_STDERR = threading.Lock()  # the process has one stderr


@contextlib.contextmanager
def _stderr_into(scratch) -> Iterator[None]:
    """The process's C-level stderr (file descriptor 2) goes to ``scratch``, a file, in the
    block: where libraries write their noise."""
    with _STDERR:
        if sys.stderr is not None:  # None under pythonw
            sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all: nothing to keep clean
            saved = None
        if saved is not None:
            os.dup2(scratch.fileno(), 2)
        try:
            yield
        finally:
            if saved is not None:
                os.dup2(saved, 2)
                os.close(saved)


# libmpg123's lines: "[src/libmpg123/layer3.c:...] error: ...", and the notes it prints
# without its name on damaged files ("Note: Illegal Audio-MPEG-Header ...", "Note: Trying to
# resync...", "Warning: Xing stream size off by more than 1%...", "Giving up resync after ...").
_MPG123_LINE = re.compile(rb"^(?:\[[^\]\n]*libmpg123[^\]\n]*\]|Note: |Warning: |Giving up resync)"
                          rb"[^\n]*(\n|$)", re.MULTILINE)


def stream(path: str | Path, target_rate: int = C.SAMPLE_RATE, block_s: float = BLOCK_S,
           stats: StreamStats | None = None, info: AudioInfo | None = None,
           declip=None) -> Iterator[np.ndarray]:
    """Yield mono float32 blocks of ``path`` at ``target_rate``.

    Memory stays at one block whatever the file's length.  NaN/Inf samples become
    silence (counted in ``stats``).  A damaged file yields what decodes (read a
    second at a time, so at most a second before the damage is lost) and says in
    ``stats.shortfall`` how much was read of how much the header promised; a file
    of which nothing decodes, or that holds no samples, raises ``TranscribeError``.
    ``info`` is the file's ``probe``, if already made; ``declip`` a ``declip.Declipper``
    that redraws its clipped crests, if given.
    """
    info = info or probe(path)
    stats = stats if stats is not None else StreamStats()
    if info.decoder == "ffmpeg":
        yield from _stream_with_ffmpeg(info, target_rate, block_s, stats, declip)
        return
    resample = Resampler(info.sample_rate, target_rate)
    read_frames = max(1, int(READ_S * info.sample_rate))
    per_block = max(1, int(round(block_s / READ_S)))
    read = 0  # frames at the file's rate
    error = None
    with Reader(info) as reader:
        last = False
        while not last:
            pieces = []
            while len(pieces) < per_block:
                try:
                    piece = reader.read(read_frames)
                except (sf.LibsndfileError, RuntimeError) as failure:
                    error, last = _reason(failure), True
                    break
                pieces.append(piece)
                read += len(piece)
                if len(piece) < read_frames:
                    last = True
                    break
            block = np.concatenate(pieces) if pieces else np.zeros((0, info.channels), np.float32)
            out = _to_target(block, resample, stats, last, declip)
            if len(out):
                yield out
    promised = max(info.frames, info.promised_frames or 0)
    if read == 0 and error:
        raise TranscribeError(f"{info.path}: the audio is corrupt; nothing decodes ({error})")
    if read == 0:
        raise TranscribeError(_no_audio(info.path, promised / info.sample_rate))
    if error or read < promised - info.sample_rate // 100:
        stats.shortfall = _shortfall(read / info.sample_rate, promised / info.sample_rate, error)


MAX_CHANNELS = 64


def as_samples_first(audio) -> np.ndarray:
    """An audio array as float32 ``(samples,)`` or ``(samples, channels)``, integer PCM scaled.

    Two-dimensional input may be ``(samples, channels)`` or ``(channels, samples)``:
    the shorter axis, if it has at most ``MAX_CHANNELS`` entries, is the channels.
    Raises ``TranscribeError`` for anything that is not such an array.
    """
    if isinstance(audio, (bytes, bytearray, memoryview, str)) or hasattr(audio, "read"):
        # A file object (open(), BytesIO, a web framework's upload) read as an array of one
        # object, and the error said "dtype object".
        what = "a file object" if hasattr(audio, "read") else type(audio).__name__
        raise TranscribeError(f"audio must be a file path or a numpy array of samples, not "
                              f"{what} (give its path, or decode it first: samples, rate = "
                              "soundfile.read(...))")
    try:
        array = np.asarray(audio)
    except (TypeError, ValueError) as error:
        raise TranscribeError(f"audio is not an array of samples ({error})") from None
    if array.dtype.kind in "iu":
        info = np.iinfo(array.dtype)
        middle = (int(info.max) + 1 + int(info.min)) / 2
        array = ((array.astype(np.float64) - middle) / (int(info.max) + 1 - middle)).astype(np.float32)
    elif array.dtype.kind != "f":
        raise TranscribeError(f"audio samples must be floats or integer PCM, got dtype {array.dtype}")
    if array.ndim == 2:
        if array.shape[0] < array.shape[1] and array.shape[0] <= MAX_CHANNELS:
            array = array.T
        elif array.shape[1] > MAX_CHANNELS:
            raise TranscribeError(f"audio of shape {array.shape}: neither axis looks like "
                                  f"channels (at most {MAX_CHANNELS})")
    elif array.ndim != 1:
        raise TranscribeError(f"audio must be (samples,), (samples, channels) or "
                              f"(channels, samples), got shape {array.shape}")
    if array.size == 0:
        raise TranscribeError("the audio array holds no samples")
    return array


def check_sample_rate(sample_rate) -> float:
    """``sample_rate`` as a positive finite number of Hz, else ``TranscribeError``."""
    if sample_rate is None:
        raise TranscribeError("an audio array needs its sample_rate (Hz)")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float, np.integer,
                                                                      np.floating)):
        raise TranscribeError(f"sample_rate must be a number of Hz, got {sample_rate!r}")
    if not np.isfinite(sample_rate) or sample_rate < 1:
        raise TranscribeError(f"sample_rate must be a positive number of Hz, got {sample_rate}")
    return float(sample_rate)


def stream_array(audio: np.ndarray, sample_rate: int, target_rate: int = C.SAMPLE_RATE,
                 block_s: float = BLOCK_S, stats: StreamStats | None = None,
                 declip=None) -> Iterator[np.ndarray]:
    """Like ``stream`` for an in-memory array (layouts and scaling as ``as_samples_first``)."""
    audio = as_samples_first(audio)
    sample_rate = check_sample_rate(sample_rate)
    stats = stats if stats is not None else StreamStats()
    resample = Resampler(sample_rate, target_rate)
    step = max(1, int(block_s * sample_rate))
    starts = range(0, max(len(audio), 1), step)
    for start in starts:
        out = _to_target(audio[start:start + step], resample, stats,
                         start + step >= len(audio), declip)
        if len(out):
            yield out


def load(path: str | Path, target_rate: int = C.SAMPLE_RATE) -> np.ndarray:
    """The whole file as mono float32 at ``target_rate`` (for short files and tests)."""
    blocks = list(stream(path, target_rate))
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)

