"""Load the network from a weights file and the JSON config beside it, checksum first.

A weights file ``NAME.pt`` holds only a ``state_dict`` (loaded with
``weights_only=True``); ``NAME.json`` beside it holds the model config, the
file's SHA-256 and what the weights were measured to do.  As whisper does, the
checksum is verified before the file is unpickled.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import TranscribeError
from .features import Frontend
from .files import named_path, write_atomic
from .model import ModelConfig, UNetTranscriber

DEFAULT_NAME = "amt-unet"


def default_weights_path() -> Path:
    """The shipped weights: ``weights/`` of a source checkout, else the installed copy."""
    checkout = Path(__file__).resolve().parent.parent / "weights" / f"{DEFAULT_NAME}.pt"
    if checkout.exists():
        return checkout
    try:
        from importlib import resources
        installed = Path(str(resources.files("transcribe.pretrained"))) / f"{DEFAULT_NAME}.pt"
    except (ModuleNotFoundError, TypeError):
        return checkout
    return installed if installed.exists() else checkout


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class LoadedModel:
    """The network, its front end and the card of the weights, on one device."""

    model: UNetTranscriber
    frontend: Frontend
    config: ModelConfig
    card: dict = field(default_factory=dict)  # the JSON beside the weights
    path: Path | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def read_card(weights: Path) -> dict:
    """The JSON card beside ``weights``; ``TranscribeError`` if missing or not a JSON object."""
    card_path = weights.with_suffix(".json")
    if not card_path.exists():
        raise TranscribeError(f"{card_path}: the config that must sit beside {weights.name} "
                              "is missing")
    try:
        card = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise TranscribeError(f"{card_path}: not valid JSON ({error})") from None
    if not isinstance(card, dict):
        raise TranscribeError(f"{card_path}: must hold a JSON object, not a {type(card).__name__}")
    for section in ("model", "decoding"):
        if section in card and not isinstance(card[section], dict):
            raise TranscribeError(f"{card_path}: '{section}' must be a JSON object")
    if "sha256" in card and not isinstance(card["sha256"], str):
        raise TranscribeError(f"{card_path}: 'sha256' must be a string")
    return card


def _read_state_dict(data: bytes, path: Path) -> dict:
    """The tensors in ``data`` (read from ``path``): a plain ``state_dict``, else
    ``TranscribeError`` (never a traceback)."""
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling reports bad files through many exception types
        reason = str(error).strip().splitlines()[0][:120] if str(error).strip() else \
            type(error).__name__
        raise TranscribeError(f"{path}: not a weights file (a state_dict saved by torch): "
                              f"{reason}") from None
    if not isinstance(state, dict) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise TranscribeError(f"{path}: holds a {type(state).__name__}, not a state_dict of "
                              "named tensors")
    return state


@dataclass(frozen=True)
class WeightsFile:
    """A weights file's bytes and its card, read once: what a cluster ships to its workers."""

    data: bytes
    card: dict
    path: Path


def read_weights(weights: str | Path | None = None) -> WeightsFile:
    """The bytes and card of ``weights`` (default: the shipped ones), checksum verified.

    ``TranscribeError`` when no trained weights are installed, the card is missing or
    malformed, or the checksum does not match.
    """
    path = named_path(weights, "weights") if weights is not None else default_weights_path()
    if not path.is_file():
        if weights is None:
            raise TranscribeError("no trained weights are installed (expected "
                                  f"{path}); train them with `amt-train` or pass --weights PATH")
        raise TranscribeError(f"{path}: no such weights file")
    card = read_card(path)
    data = path.read_bytes()
    _verify_checksum(data, card, path)
    return WeightsFile(data, card, path)


def _verify_checksum(data: bytes, card: dict, path: Path) -> None:
    expected = card.get("sha256")
    if not expected:
        raise TranscribeError(f"{path.with_suffix('.json')}: records no sha256 for {path.name}")
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise TranscribeError(f"{path}: SHA-256 {actual[:12]}... does not match the "
                              f"{expected[:12]}... recorded in {path.with_suffix('.json').name}; "
                              "the file is damaged or was replaced")


def load_model(weights: str | Path | WeightsFile | None = None,
               device: str | torch.device = "cpu") -> LoadedModel:
    """Build the network from ``weights`` (default: the shipped ones) on ``device``.

    ``weights`` is a path or a ``WeightsFile`` already read (whose checksum is
    verified again: it may have travelled).  Raises ``TranscribeError`` when no
    trained weights are installed, the card is missing or malformed, the checksum
    does not match, the file is not a plain ``state_dict`` or does not fit the
    card, or ``device`` is not on this machine.
    """
    from .decode import DecodingOptions
    from .inference import pick_device
    device = pick_device(device)
    if isinstance(weights, WeightsFile):
        _verify_checksum(weights.data, weights.card, weights.path)
    else:
        weights = read_weights(weights)
    card, path = weights.card, weights.path
    try:
        config = ModelConfig.from_dict(card["model"])
    except (KeyError, TypeError, ValueError) as error:
        raise TranscribeError(f"{path.with_suffix('.json')}: bad model config ({error})") from None
    try:
        DecodingOptions(**card.get("decoding", {}))
    except (TypeError, TranscribeError) as error:
        raise TranscribeError(f"{path.with_suffix('.json')}: bad decoding section ({error})") \
            from None
    state = _read_state_dict(weights.data, path)
    model = UNetTranscriber(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise TranscribeError(f"{path}: weights do not fit the config beside them "
                              f"({str(error).splitlines()[0]})") from None
    frontend = Frontend(config.spectrogram, config.sample_rate, config.hop_length, config.n_bins)
    model.to(device, memory_format=torch.channels_last).eval()
    if device.type == "cpu":
        from .inference import threaded_recurrence
        threaded_recurrence(model)
    frontend.to(device).eval()
    return LoadedModel(model, frontend, config, card, path)


def save_weights(model: UNetTranscriber, path: Path, card: dict | None = None) -> str:
    """Write ``model``'s state_dict to ``path`` and its card (config, SHA-256) beside it.

    Returns the SHA-256.  Used by training to export weights for inference.
    """
    state = {name: value.detach().cpu().clone() for name, value in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    full = dict(card or {})
    full["model"] = json.loads(model.config.to_json())
    full["sha256"] = digest
    write_atomic(path, data)
    write_atomic(path.with_suffix(".json"), (json.dumps(full, indent=2, sort_keys=True) + "\n").encode())
    return digest
