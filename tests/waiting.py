"""Waiting, in tests, for what another process or a browser does."""

import time


def wait_until(condition, seconds: float, step: float = 0.05):
    """Call ``condition`` every ``step`` seconds until it returns something true or
    ``seconds`` have passed; returns its last value, for the caller to assert."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(step)
