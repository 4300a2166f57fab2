"""Read a bundle without trusting it: scan tar headers, refuse anything odd, stream members.

Nothing is extracted. The scan seeks from header to header (payloads are not read), records where
each member's bytes are, and notes every structural problem: unsafe paths, links, devices,
duplicates. Payloads are then read with positional reads, so many threads can stream at once.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bundler.bundle import layout
from bundler.bundle.manifest import BundleManifest, manifest_digest
from bundler.bundle.parts import PartSet, PartsFile, is_split
from bundler.errors import IntegrityError, UsageError

CHUNK = 1 << 20


@dataclass(frozen=True)
class Member:
    name: str
    offset: int
    size: int


def unsafe_path_reason(name: str) -> str | None:
    if not name or name.startswith("/") or "\\" in name or "\0" in name:
        return "an absolute or malformed path"
    parts = name.rstrip("/").split("/")
    if ".." in parts:
        return "a path that climbs out of the bundle (..)"
    if posixpath.normpath(name.rstrip("/")) != name.rstrip("/"):
        return "a path that is not in normal form"
    return None


class BundleReader:
    """An opened bundle file: its members (by name), structural problems, and the manifest bytes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.fd = -1
        self.parts: PartSet | None = None
        if is_split(self.path):  # the index, or any part: read the parts as one file
            self.parts = PartSet(self.path)
            self.size = self.parts.size
        else:
            try:
                self.fd = os.open(self.path, os.O_RDONLY)
            except OSError as exc:
                raise UsageError(f"cannot open bundle {self.path}: {exc.strerror}") from None
            self.size = os.fstat(self.fd).st_size
        self.members: dict[str, Member] = {}
        self.problems: list[str] = []
        self.end_of_members = 0  # where the end-of-archive blocks start: a new member goes here
        try:
            self._scan()
        except BaseException:
            self.close()
            raise

    def _pread(self, size: int, offset: int) -> bytes:
        return self.parts.pread(size, offset) if self.parts else os.pread(self.fd, size, offset)

    def _scan(self) -> None:
        raw: Any = PartsFile(self.parts) if self.parts else open(self.fd, "rb", closefd=False)  # noqa: SIM115
        with io.BufferedReader(raw) if self.parts else raw as f:
            try:
                with tarfile.open(fileobj=f, mode="r:") as tar:
                    while (info := tar.next()) is not None:
                        self._check(info)
                        tar.members.clear()  # type: ignore[attr-defined]  # flat memory on huge bundles
                    self.end_of_members = tar.offset
            except tarfile.TarError as exc:
                raise IntegrityError(f"{self.path} is not a readable bundle (tar): {exc}",
                                     hint="the file is truncated or not a bundle; copy it again") from None

    def _check(self, info: tarfile.TarInfo) -> None:
        name = info.name
        if (reason := unsafe_path_reason(name)) is not None:
            self.problems.append(f"{name!r}: {reason}")
            return
        if info.isdir():
            return
        if not info.isreg():
            kind = "a link" if info.issym() or info.islnk() else "a device, fifo or special file"
            self.problems.append(f"{name}: {kind}, not a regular file")
            return
        if name in self.members and name != layout.SIGNATURES:  # a countersignature appends a new one
            self.problems.append(f"{name}: appears twice in the tar")
            return
        self.members[name] = Member(name, info.offset_data, info.size)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.parts is not None:
            self.parts.close()

    def __enter__(self) -> BundleReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reading --------------------------------------------------------------------------------

    def read_small(self, name: str, limit: int) -> bytes:
        member = self.members.get(name)
        if member is None:
            raise IntegrityError(f"{self.path}: {name} is missing", hint="this is not a complete bundle")
        if member.size > limit:
            raise IntegrityError(f"{self.path}: {name} is {member.size} bytes, more than the {limit} allowed")
        return b"".join(self.iter_member(name))

    def iter_member(self, name: str, chunk: int = CHUNK) -> Iterator[bytes]:
        member = self.members[name]
        position, end = member.offset, member.offset + member.size
        while position < end:
            data = self._pread(min(chunk, end - position), position)
            if not data:
                raise IntegrityError(f"{self.path}: {name} is cut short (file truncated?)")
            position += len(data)
            yield data

    def manifest_bytes(self) -> bytes:
        return self.read_small(layout.MANIFEST, layout.MAX_MANIFEST_BYTES)

    def manifest(self) -> tuple[BundleManifest, bytes, str]:
        data = self.manifest_bytes()
        return BundleManifest.from_bytes(data), data, manifest_digest(data)

    def signatures(self) -> list[dict[str, Any]]:
        if layout.SIGNATURES not in self.members:
            return []
        try:
            doc = json.loads(self.read_small(layout.SIGNATURES, layout.MAX_SIGNATURES_BYTES))
            sigs = doc["signatures"]
            if not isinstance(sigs, list):
                raise ValueError
            return [s for s in sigs if isinstance(s, dict)]
        except (ValueError, KeyError, TypeError):
            raise IntegrityError(f"{self.path}: {layout.SIGNATURES} is malformed") from None
