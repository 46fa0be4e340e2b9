"""amt-transcribe: piano audio in, MIDI out.

    from transcribe import transcribe, load_model
    model = load_model()                 # the shipped weights, checksum-verified
    result = transcribe("song.wav", model)
    result.to_midi().write("song.mid")

Heavy modules (torch, nnAudio) load on first use, so importing this package and
``amt-transcribe --help`` stay fast.
"""

from .version import __version__

__all__ = ["transcribe", "load_model", "load_posteriorgrams", "Transcription",
           "TranscribeError", "__version__"]


def __getattr__(name: str):
    if name in ("transcribe", "Transcription", "load_posteriorgrams"):
        from . import transcriber
        return getattr(transcriber, name)
    if name == "load_model":
        from .weights import load_model
        return load_model
    if name == "TranscribeError":
        from .errors import TranscribeError
        return TranscribeError
    raise AttributeError(f"module 'transcribe' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The lazy names too, which a notebook's completion offers (not loading them)."""
    return sorted(set(globals()) | set(__all__))
