"""The peer transcriber the benchmarks compare against: basic-pitch 0.4.0 (ONNX backend).

It lives in its own virtualenv, built here on first use, so that neither TensorFlow nor
basic-pitch's pins reach the project's environment: basic-pitch with ``--no-deps``, then
the packages its ONNX path imports.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEFAULT_VENV = Path(__file__).resolve().parent.parent / "cache" / "bp-venv"
PACKAGES = ["onnxruntime", "librosa", "resampy<0.4.3", "mir_eval", "scikit-learn", "pretty_midi",
            "numpy<2.3", "scipy", "typing_extensions", "soundfile", "psutil"]


def basic_pitch(venv: Path = DEFAULT_VENV) -> Path:
    """Path of the ``basic-pitch`` command in ``venv``, creating the virtualenv if needed."""
    command = venv / "bin" / "basic-pitch"
    if command.exists():
        return command
    print(f"building basic-pitch 0.4.0's virtualenv in {venv} (once)", file=sys.stderr, flush=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([*pip, "--no-deps", "basic-pitch==0.4.0"], check=True)
    subprocess.run([*pip, *PACKAGES], check=True)
    return command
