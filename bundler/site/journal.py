"""Import bookkeeping under DIR/run: the lock (one import at a time) and the journal (which import
is under way, and how far it got)."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bundler.errors import BundlerError
from bundler.fsutil import atomic_write
from bundler.jsontypes import Doc
from bundler.site.config import RUN_DIR, SiteConfig


@contextmanager
def files_lock(directory: Path) -> Iterator[None]:
    """The site files more than one command changes (the update catalog and approvals, state.json,
    the published update repositories) are read, changed and replaced while holding this lock, so
    an import and `updates approve` at the same time lose no decision. Held for moments: it waits."""
    run = directory / RUN_DIR
    run.mkdir(exist_ok=True)
    fd = os.open(run / "files.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextmanager
def import_lock(site: SiteConfig, bundle: Path) -> Iterator[None]:
    """One import at a time per site; a second one is refused, naming who holds the lock."""
    run = site.directory / RUN_DIR
    run.mkdir(exist_ok=True)
    fd = os.open(run / "import.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            raise BundlerError(f"another import is running on this site ({holder})",
                               hint="wait for the other import to finish, then run the same command again") from None
        started = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
        try:  # who holds it, for the refusal's message (a full disk may not take it: a prune frees space)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}, importing {bundle.name}, since {started}".encode(), 0)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # closing releases the lock, also when this process dies


class Journal:
    """DIR/run/import.journal: which import is under way and how far it got. What arrived is recorded
    by the content itself (blobs by digest in the registry, objects under hidden Git refs, payloads by
    digest), so a re-run skips it; the journal tells the technician that it is resuming."""

    def __init__(self, site: SiteConfig) -> None:
        self.path = site.directory / RUN_DIR / "import.journal"
        self.phase: str | None = None  # this import's step, the last one it began

    def unfinished(self) -> Doc | None:
        try:
            return dict(json.loads(self.path.read_text()))
        except (FileNotFoundError, ValueError):
            return None

    def step(self, bundle: Path, digest: str, phase: str) -> None:
        self.phase = phase
        earlier = self.unfinished() or {}
        started = (earlier.get("started") if earlier.get("manifest_digest") == digest else None) or \
            dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
        atomic_write(self.path, json.dumps({"bundle": str(bundle), "manifest_digest": digest, "phase": phase,
                                            "started": started}).encode())

    def done(self) -> None:
        self.path.unlink(missing_ok=True)
