"""Progress of long work (build, verify, import, sign), counted from the bytes actually read: a tqdm
bar on stderr when stderr is a terminal (bytes, rate, time left); JSON lines on stderr when the
command runs with `--json` (scripts and fleet tools read them); nothing otherwise. Whatever is shown,
each phase's figures (bytes, seconds, rate) are kept for the command's result.

tqdm is imported only when a bar is shown: scripts and pipes (and re-imports measured in
milliseconds) do not pay for it.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Protocol

from bundler.jsontypes import Doc

JSON_INTERVAL = 1.0  # seconds between two progress lines
RATE_AFTER = 0.5  # seconds of reading before a rate and a time left are given


@dataclass(frozen=True)
class Phase:
    """What one phase of a command moved: bytes read (and hashed, written) and the time it took."""

    name: str
    bytes: int
    seconds: float

    def to_dict(self) -> Doc:
        return {"phase": self.name, "bytes": self.bytes, "seconds": round(self.seconds, 3),
                "bytes_per_second": int(self.bytes / self.seconds) if self.seconds > 0 else None}


class _Display(Protocol):
    def update(self, n: int) -> None: ...
    def set_description(self, name: str) -> None: ...


class _Nothing:
    def update(self, n: int) -> None:
        pass

    def set_description(self, name: str) -> None:
        pass


class ByteProgress:
    """A thread-safe byte counter (`advance` is passed to workers) with its display, and the phases'
    figures. The rate and the time left are the whole command's so far (bytes over elapsed time)."""

    def __init__(self, description: str, total: int) -> None:
        self.total, self.done = total, 0
        self.phases: list[Phase] = []
        self._lock = threading.Lock()
        self._display: _Display = _Nothing()
        self._start = self._phase_start = time.monotonic()
        self._phase, self._phase_from = description, 0

    def show(self, display: _Display) -> None:
        self._display = display

    def advance(self, n: int) -> None:
        with self._lock:
            self.done += n
            self._display.update(n)

    def phase(self, name: str) -> None:
        """One display for a command's phases: the count goes on, its label says where we are."""
        with self._lock:
            self._end_phase()
            self._phase, self._phase_from, self._phase_start = name, self.done, time.monotonic()
            self._display.set_description(name)

    def _end_phase(self) -> None:
        phase = Phase(self._phase, self.done - self._phase_from, time.monotonic() - self._phase_start)
        if phase.bytes or phase.seconds >= 0.001:
            self.phases.append(phase)

    def figures(self) -> Doc:
        """Bytes so far, the rate and the time left (None until RATE_AFTER seconds have passed: the
        first milliseconds, signatures and manifests, say nothing of the medium's speed)."""
        elapsed = time.monotonic() - self._start
        rate = self.done / elapsed if elapsed >= RATE_AFTER else None
        left = (self.total - self.done) / rate if rate else None
        return {"phase": self._phase, "bytes": self.done, "total": self.total, "elapsed": round(elapsed, 2),
                "bytes_per_second": int(rate) if rate is not None else None,
                "seconds_left": round(left, 1) if left is not None else None}

    def close(self) -> None:
        with self._lock:
            self._end_phase()


class _JsonLines:
    """`{"event": "progress", ...figures}` at most once a JSON_INTERVAL, `{"event": "phase", ...}` as
    each phase ends; one object a line on stderr."""

    def __init__(self, progress: ByteProgress) -> None:
        self._progress, self._last, self._ended = progress, 0.0, 0

    def _write(self, doc: Doc) -> None:
        sys.stderr.write(json.dumps(doc, sort_keys=True) + "\n")
        sys.stderr.flush()

    def update(self, n: int) -> None:
        now = time.monotonic()
        if now - self._last >= JSON_INTERVAL:
            self._last = now
            self._write({"event": "progress", **self._progress.figures()})

    def set_description(self, name: str) -> None:
        self.flush()

    def flush(self) -> None:
        for phase in self._progress.phases[self._ended:]:
            self._write({"event": "phase", **phase.to_dict()})
        self._ended = len(self._progress.phases)


_as_json = False


def report_as_json() -> None:
    """Progress as JSON lines on stderr from now on (a command run with --json)."""
    global _as_json
    _as_json = True


@contextmanager
def byte_progress(description: str, total: int) -> Iterator[ByteProgress]:
    progress = ByteProgress(description, total)
    with ExitStack() as stack:
        if _as_json:
            lines = _JsonLines(progress)
            progress.show(lines)
            stack.callback(lines.flush)  # after close: the last phase's line
        elif sys.stderr.isatty():
            from tqdm import tqdm

            # shown once RATE_AFTER has passed, the rate and time left as the command's average so far:
            # a first frame after a few kilobytes of signatures said "2:07:30 left"
            progress.show(stack.enter_context(tqdm(total=total, desc=description, unit="B", unit_scale=True,
                                                   unit_divisor=1024, file=sys.stderr, leave=False,
                                                   delay=RATE_AFTER, smoothing=0)))
        try:
            yield progress
        finally:
            progress.close()
