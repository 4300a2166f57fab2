"""Read a bundle without trusting it: scan tar headers, refuse anything odd, stream members.

Nothing is extracted. The scan seeks from header to header (payloads are not read), records where
each member's bytes are, and notes every structural problem: unsafe paths, links, devices,
duplicates. Payloads are then read with positional reads, so many threads can stream at once.
"""

from __future__ import annotations

import io
import os
import tarfile
import threading
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

from bundler import names, problems
from bundler.bundle import layout
from bundler.bundle.layout import unsafe_path_reason
from bundler.bundle.manifest import BundleManifest, manifest_digest
from bundler.bundle.parts import INDEX_SUFFIX, PartSet, PartsFile, is_split
from bundler.errors import IntegrityError, RefusedError, UsageError
from bundler.fsutil import NotRegular, open_regular
from bundler.problems import Problem
from bundler.untrusted import Malformed, Obj

CHUNK = 1 << 20
MAX_HEADER = 1 << 20


@dataclass(frozen=True)
class Member:
    """A regular file in the bundle's tar: its name and where its data lies (offset, size)."""
    name: str
    offset: int
    size: int


class HeaderReads:
    """What tarfile reads through while scanning: it reads headers (and a PAX or GNU long-name
    header's data) and seeks over payloads, so any single read of more than MAX_HEADER bytes is a
    header claiming an absurd size: refused before a byte of it is read into memory."""

    def __init__(self, f: Any) -> None:
        self.f = f

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size > MAX_HEADER:
            raise tarfile.ReadError(f"a tar header claims {size} bytes (at most {MAX_HEADER} are read)")
        return bytes(self.f.read(size))

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self.f.seek(offset, whence))

    def tell(self) -> int:
        return int(self.f.tell())


def split_hint(path: Path) -> str:
    """What to give instead of a bundle file that is not there: its parts' index, when it is beside."""
    index = path.with_name(path.name + INDEX_SUFFIX)
    if index.exists():
        return f"this bundle was split into parts: give their index, {index}"
    return "check the path: a bundle is NAME.bundle.tar, or the NAME.bundle.tar.parts.json of its parts"


def _looks_like_tar(block: bytes) -> bool:
    """A POSIX tar's first header (ustar magic), or an empty archive's zero block."""
    return len(block) == 512 and (block[257:262] == b"ustar" or block == bytes(512))


def _what_it_is(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"{"):
        return "it is JSON (a bundle.json, a receipt or a parts index is not the bundle itself)"
    if head.startswith((b"\x1f\x8b", b"\xfd7zXZ", b"BZh", b"\x28\xb5\x2f\xfd")):
        return "it is compressed (bundles are plain tar: decompress it first)"
    if head.startswith(b"PK\x03\x04"):
        return "it is a zip archive (bundles are plain tar)"
    if not head:
        return "it is empty"
    return "it is not a tar file"


class BundleReader:
    """An opened bundle file: its members (by name), structural problems, and the manifest bytes.
    `damaged`: parts of a split bundle known to be damaged, read from its parity parts."""

    def __init__(self, path: str | Path, damaged: Collection[str] = ()) -> None:
        self.path = Path(path)
        self.fd = -1
        self.parts: PartSet | None = None
        if is_split(self.path):  # the index, or any part: read the parts as one file
            self.parts = PartSet(self.path, damaged)
            self.size = self.parts.size
        else:
            try:
                self.fd = open_regular(self.path)
            except NotRegular as exc:
                raise IntegrityError(f"cannot read bundle {exc}") from None
            except FileNotFoundError:
                raise UsageError(f"cannot open bundle {self.path}: there is no such file",
                                 hint=split_hint(self.path)) from None
            except OSError as exc:
                raise UsageError(f"cannot open bundle {self.path}: {exc.strerror}") from None
            self.size = os.fstat(self.fd).st_size
            if not _looks_like_tar(os.pread(self.fd, 512, 0)):
                os.close(self.fd)
                raise UsageError(f"{self.path} is not a bundle: {_what_it_is(self.path)}",
                                 hint="a bundle is NAME.bundle.tar, or the NAME.bundle.tar.parts.json of its parts")
        self.members: dict[str, Member] = {}
        self.problems: list[Problem] = []
        self.bytes_read = 0  # payload bytes read so far (member data; the header scan seeks past it)
        self._count_lock = threading.Lock()
        self.end_of_members = 0  # where the end-of-archive blocks start: a new member goes here
        try:
            self._scan()
        except BaseException:
            self.close()
            raise

    def pread(self, size: int, offset: int) -> bytes:
        """`size` bytes of the whole bundle (single or split) at `offset`: fewer only at its end."""
        return self._pread(size, offset)

    def _pread(self, size: int, offset: int) -> bytes:
        data = self.parts.pread(size, offset) if self.parts else os.pread(self.fd, size, offset)
        with self._count_lock:
            self.bytes_read += len(data)
        return data

    def _scan(self) -> None:
        raw: Any = PartsFile(self.parts) if self.parts else open(self.fd, "rb", closefd=False)  # noqa: SIM115
        with io.BufferedReader(raw) if self.parts else raw as f:
            try:
                with tarfile.open(fileobj=cast(Any, HeaderReads(f)), mode="r:") as tar:
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
            self.problems.append(Problem(problems.UNSAFE_PATH, name, f"{name!r}: {reason}"))
            return
        if info.isdir():  # bundler writes none; GNU tar would make one where a listed file goes
            self.problems.append(Problem(problems.NOT_A_FILE, name,
                                         f"{name}: a directory entry, not a file (bundles hold files only)"))
            return
        if not info.isreg():
            kind = "a link" if info.issym() or info.islnk() else "a device, fifo or special file"
            self.problems.append(Problem(problems.NOT_A_FILE, name, f"{name}: {kind}, not a regular file"))
            return
        if name in self.members and name != layout.SIGNATURES:  # a countersignature appends a new one
            self.problems.append(Problem(problems.DUPLICATE_MEMBER, name, f"{name}: appears twice in the tar"))
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

    def signatures(self) -> list[dict[str, str]]:
        """signatures.json's entries, each {keyid, algorithm, signature} as strings (what they claim is
        judged by signing.evaluate); a file of another shape is refused, naming the field."""
        if layout.SIGNATURES not in self.members:
            return []
        data = self.read_small(layout.SIGNATURES, layout.MAX_SIGNATURES_BYTES)
        try:
            doc = Obj.load(data, layout.MAX_SIGNATURES_BYTES)
            entries = []
            for item in doc.array("signatures", required=True):
                entry = item.obj()
                entries.append({key: entry.string(key, lambda v: names.text(v, 512))
                                for key in ("keyid", "algorithm", "signature") if entry.value.get(key) is not None})
            return entries
        except Malformed as exc:
            raise IntegrityError(f"{self.path}: {layout.SIGNATURES} is malformed: {exc}") from None


T = TypeVar("T")


@dataclass(frozen=True)
class Read(Generic[T]):
    """What `read_mending` returns: the attempt's result, and the parts it read from parity."""
    result: T
    rebuilt: list[str]


def rebuilt_note(rebuilt: list[str]) -> str:
    """What verify and import say of the parts they read from parity."""
    copy = "that part" if len(rebuilt) == 1 else "those parts"
    return (f"rebuilt from the parity parts: {', '.join(rebuilt)} (missing or damaged in this copy; what was "
            f"read of them is checked against the signed digests as always: copy {copy} again before the set "
            "travels on)")


def read_mending(path: Path, attempt: Callable[[BundleReader], T],
                 failed: Callable[[T], bool] = lambda _: False) -> Read[T]:
    """`attempt` on the bundle at `path`. A split bundle with parity parts reads its missing parts
    from parity as it opens; when the attempt is refused (or `failed` says its result failed), the
    parts are hashed, and those found damaged are read from parity in a new attempt (refused, naming
    every bad part, when there are more than parity mends). A clean read costs nothing more."""
    damaged: set[str] = set()
    while True:
        error: RefusedError | None = None
        found: set[str] | None = None
        try:
            with BundleReader(path, damaged) as reader:
                rebuilt = list(reader.parts.rebuilt) if reader.parts is not None else []
                try:
                    result = attempt(reader)
                except RefusedError:
                    found = _mendable(reader)  # hashed once: a refusal's naming of damaged parts did it
                    raise
                if not failed(result):
                    return Read(result, rebuilt)
                found = _mendable(reader)
        except RefusedError as exc:
            error = exc
        found = (_damaged_parts(path, damaged) if found is None else found) - damaged
        if not found:  # nothing parity mends
            if error is not None:
                raise error
            return Read(result, rebuilt)
        damaged |= found


def _mendable(reader: BundleReader) -> set[str]:
    parts = reader.parts
    return {part.file for part, _ in parts.damaged()} if parts is not None and parts.parity else set()


def _damaged_parts(path: Path, known: set[str]) -> set[str]:
    """Parts of a split bundle with parity whose bytes differ from the index (besides `known`)."""
    if not is_split(path):
        return set()
    parts = PartSet(path, known)
    try:
        return {part.file for part, _ in parts.damaged()} if parts.parity else set()
    finally:
        parts.close()
