"""Progress display: tqdm byte counters on stderr, shown only when stderr is a terminal.

tqdm is imported only when a bar is shown: scripts and pipes (and re-imports measured in
milliseconds) do not pay for it.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class ByteProgress:
    """A thread-safe byte counter with a tqdm bar; `advance` is passed to workers."""

    def __init__(self, bar: Any) -> None:
        self._bar = bar
        self._lock = threading.Lock()
        self.done = 0

    def advance(self, n: int) -> None:
        with self._lock:
            self.done += n
            self._bar.update(n)

    def phase(self, name: str) -> None:
        """One display for a command's phases: the bar keeps counting, its label says where we are."""
        self._bar.set_description(name)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def set_description(self, name: str) -> None:
        pass


@contextmanager
def byte_progress(description: str, total: int) -> Iterator[ByteProgress]:
    if not sys.stderr.isatty():
        yield ByteProgress(_NoBar())
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024,
              file=sys.stderr, leave=False) as bar:
        yield ByteProgress(bar)
