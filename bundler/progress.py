"""Progress display: tqdm byte counters on stderr, shown only when stderr is a terminal."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tqdm import tqdm


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


@contextmanager
def byte_progress(description: str, total: int) -> Iterator[ByteProgress]:
    with tqdm(total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024,
              file=sys.stderr, disable=not sys.stderr.isatty(), leave=False) as bar:
        yield ByteProgress(bar)
