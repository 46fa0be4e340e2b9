"""Wall time per pipeline stage, summed over calls: what ``--profile`` prints."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")


class StageTimes:
    """Seconds spent in each named stage, in the order stages were first seen.

    ``synchronize`` (e.g. ``torch.cuda.synchronize``) is called before each clock
    reading, so that asynchronous GPU work is charged to the stage that queued it.
    """

    def __init__(self, synchronize: Callable[[], None] | None = None):
        self.seconds: dict[str, float] = {}
        self.synchronize = synchronize

    def _now(self) -> float:
        if self.synchronize is not None:
            self.synchronize()
        return time.perf_counter()

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        started = self._now()
        try:
            yield
        finally:
            self.add(stage, self._now() - started)

    def iterate(self, items: Iterable[T], stage: str) -> Iterator[T]:
        """``items``, charging the time each item takes to produce to ``stage``."""
        iterator = iter(items)
        while True:
            started = self._now()
            try:
                item = next(iterator)
            except StopIteration:
                self.add(stage, self._now() - started)
                return
            self.add(stage, self._now() - started)
            yield item

    @property
    def total_s(self) -> float:
        return sum(self.seconds.values())
