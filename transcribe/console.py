"""Console-script entry points, kept free of heavy imports so Ctrl-C is caught from the start.

Two settings must precede the first import of torch: OpenMP threads that wait for
work sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``), so that two
transcriptions on one machine, or one beside a busy core, do not starve each other
(spinning threads made two concurrent runs 20x slower here).  A user's own value wins.
"""

import os
import sys


def amt_transcribe() -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        from .cli import run
    except KeyboardInterrupt:
        sys.stderr.write("amt-transcribe: interrupted\n")
        sys.exit(130)
    run()
