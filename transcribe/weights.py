"""Load the network from a weights file and the JSON config beside it, checksum first.

A weights file ``NAME.pt`` holds only a ``state_dict`` (loaded with
``weights_only=True``); ``NAME.json`` beside it holds the model config, the
file's SHA-256 and what the weights were measured to do.  As whisper does, the
checksum is verified before the file is unpickled.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import TranscribeError
from .features import Frontend
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
    card_path = weights.with_suffix(".json")
    if not card_path.exists():
        raise TranscribeError(f"{card_path}: the config that must sit beside {weights.name} "
                              "is missing")
    try:
        return json.loads(card_path.read_text())
    except json.JSONDecodeError as error:
        raise TranscribeError(f"{card_path}: not valid JSON ({error})") from None


def load_model(weights: str | Path | None = None, device: str | torch.device = "cpu") -> LoadedModel:
    """Build the network from ``weights`` (default: the shipped ones) on ``device``.

    Raises ``TranscribeError`` when no trained weights are installed, the config
    is missing, or the checksum does not match.
    """
    path = Path(weights) if weights is not None else default_weights_path()
    if not path.exists():
        if weights is None:
            raise TranscribeError("no trained weights are installed (expected "
                                  f"{path}); train them with `amt-train` or pass --weights PATH")
        raise TranscribeError(f"{path}: no such weights file")
    card = read_card(path)
    expected = card.get("sha256")
    if not expected:
        raise TranscribeError(f"{path.with_suffix('.json')}: records no sha256 for {path.name}")
    actual = sha256_of(path)
    if actual != expected:
        raise TranscribeError(f"{path}: SHA-256 {actual[:12]}... does not match the "
                              f"{expected[:12]}... recorded in {path.with_suffix('.json').name}; "
                              "the file is damaged or was replaced")
    try:
        config = ModelConfig.from_dict(card["model"])
    except (KeyError, TypeError, ValueError) as error:
        raise TranscribeError(f"{path.with_suffix('.json')}: bad model config ({error})") from None
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = UNetTranscriber(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise TranscribeError(f"{path}: weights do not fit the config beside them "
                              f"({str(error).splitlines()[0]})") from None
    frontend = Frontend(config.spectrogram, config.sample_rate, config.hop_length, config.n_bins)
    device = torch.device(device)
    model.to(device, memory_format=torch.channels_last).eval()
    frontend.to(device).eval()
    return LoadedModel(model, frontend, config, card, path)


def save_weights(model: UNetTranscriber, path: Path, card: dict | None = None) -> str:
    """Write ``model``'s state_dict to ``path`` and its card (config, SHA-256) beside it.

    Returns the SHA-256.  Used by training to export weights for inference.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".pt.tmp")
    state = {name: value.detach().cpu().clone() for name, value in model.state_dict().items()}
    torch.save(state, tmp)
    tmp.replace(path)
    digest = sha256_of(path)
    full = dict(card or {})
    full["model"] = json.loads(model.config.to_json())
    full["sha256"] = digest
    path.with_suffix(".json").write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    return digest
