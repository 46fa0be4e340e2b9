"""Console-script entry points, kept free of heavy imports so Ctrl-C is caught from the start.

Until the first output can be written (imports, planning, loading the weights), a
Ctrl-C ends the process at once with exit code 130: there is nothing to clean up,
and a KeyboardInterrupt raised inside torch's C++ start-up code would abort the
process (C++ ``terminate``) instead of unwinding.  The CLI hands SIGINT back to
Python's KeyboardInterrupt when the batch starts, where temporary files must be
removed on the way out (``cli.main``).

OpenMP threads that wait for work must sleep instead of spinning
(``OMP_WAIT_POLICY=PASSIVE``, read when torch loads), so that two transcriptions on
one machine, or one beside a busy core, do not starve each other: spinning threads
made two concurrent runs many times slower here.  A user's own value wins.
"""

import os
import signal


def _exit_at_once(signum, frame) -> None:
    os.write(2, b"amt-transcribe: interrupted before any output was written\n")
    os._exit(130)


def amt_transcribe() -> None:
    signal.signal(signal.SIGINT, _exit_at_once)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from .cli import run
    try:
        run()
    finally:
        # Done (its exit status decided): a Ctrl-C while the interpreter shuts down
        # would otherwise kill it by signal, without a word, after every output was
        # written.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
