"""Write a bundle tar in one pass: every member's place is known before the first payload byte.

Sizes and digests come from the image manifests, so the whole tar (headers, bundle.json, offsets) is
laid out up front; parallel workers then write each payload straight to its offset. No payload is
written twice (no staging directory, no second `tar` step). The file is built under a temporary
name and renamed into place only when complete, so a failure leaves no partial bundle behind.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bundler.bundle import parity as rs
from bundler.bundle.parts import MAX_PARTS, Split, part_hashes, write_index, write_parity
from bundler.errors import UsageError
from bundler.fsutil import FileSpan, OpenFiles, pwrite_all

BLOCK = tarfile.BLOCKSIZE
END_OF_ARCHIVE = b"\0" * (2 * BLOCK)


def tar_header(name: str, size: int, mtime: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.type = size, mtime, 0o644, tarfile.REGTYPE
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def padding(size: int) -> int:
    return -size % BLOCK


@dataclass(frozen=True)
class PlacedMember:
    """A member as written: where its tar header and its data begin in the bundle."""
    name: str
    size: int
    header_offset: int
    data_offset: int


class TarLayout:
    """Members in order, each with the offset of its header and of its data."""

    def __init__(self, mtime: int) -> None:
        self.mtime = mtime
        self.members: dict[str, PlacedMember] = {}
        self._headers: dict[str, bytes] = {}
        self.size = 0

    def add(self, name: str, size: int) -> PlacedMember:
        header = tar_header(name, size, self.mtime)
        member = PlacedMember(name, size, self.size, self.size + len(header))
        self.members[name] = member
        self._headers[name] = header
        self.size = member.data_offset + size + padding(size)
        return member

    @property
    def total_size(self) -> int:
        return self.size + len(END_OF_ARCHIVE)

    def header(self, name: str) -> bytes:
        return self._headers[name]


class BundleFile:
    """The output while it is being written: positional writes from many threads, then commit. With
    `split` (and a bundle larger than its size, or parity parts asked for) the bytes go straight into
    parts of at most that size (`NAME.part-000`, ...) and commit writes the parity parts and the
    index (parts.py): the whole file is never written."""

    def __init__(self, path: Path, layout: TarLayout, split: Split | None = None) -> None:
        self.path = path
        self.layout = layout
        total = layout.total_size
        self.part_size = split.size if split is not None and total > split.size else max(total, 1)
        self.parity = split.parity if split is not None else 0
        count = -(-total // self.part_size)
        if count > MAX_PARTS:
            raise UsageError(f"--split-size {self.part_size:,} bytes would cut this {total:,} byte bundle into "
                             f"{count:,} parts; a bundle has at most {MAX_PARTS:,}", hint="give a larger --split-size")
        rs.check_parity(self.parity, count)
        whole = count == 1 and not self.parity
        self.names = [path.name] if whole else [f"{path.name}.part-{i:03d}" for i in range(count)]
        self.partials = [path.with_name(f".{name}.partial") for name in self.names]
        self.files = OpenFiles(self.partials, lambda partial: os.open(partial, os.O_RDWR))  # a bounded number open
        try:
            for i, partial in enumerate(self.partials):
                fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    os.ftruncate(fd, self._length(i))  # sparse; padding and the end blocks stay zero
                finally:
                    os.close(fd)
            for name in layout.members:
                self._pwrite(layout.header(name), layout.members[name].header_offset)
        except BaseException:
            self.abort()
            raise

    def _length(self, i: int) -> int:
        return min(self.part_size, self.layout.total_size - i * self.part_size)

    def _pieces(self, position: int, length: int) -> Iterator[tuple[int, int, int]]:
        """(file descriptor, offset in it, length) of the bytes [position, position + length); each
        descriptor open while its piece is used."""
        while length:
            i, local = divmod(position, self.part_size)
            n = min(length, self._length(i) - local)
            with self.files.use(i) as fd:
                yield fd, local, n
            position, length = position + n, length - n

    def _pwrite(self, data: bytes, position: int) -> None:
        view = memoryview(data)
        for fd, local, n in self._pieces(position, len(view)):
            pwrite_all(fd, view[:n], local)
            view = view[n:]

    def write_at(self, name: str, offset: int, data: bytes) -> None:
        member = self.layout.members[name]
        if offset + len(data) > member.size:
            raise ValueError(f"write past the end of {name}")
        self._pwrite(data, member.data_offset + offset)

    def write_member(self, name: str, data: bytes) -> None:
        if len(data) != self.layout.members[name].size:
            raise ValueError(f"{name}: {len(data)} bytes, planned {self.layout.members[name].size}")
        self.write_at(name, 0, data)

    def copy_file(self, name: str, source: Path) -> None:
        """Copy a staged file into its member, in the kernel (copy_file_range)."""
        self.copy_span(name, 0, source, 0, self.layout.members[name].size)

    def write_pieces(self, name: str, pieces: Iterable[bytes | FileSpan], progress: Callable[[int], None]) -> None:
        """Member `name` from its pieces in order: bytes written, file spans copied by the kernel."""
        offset = 0
        for piece in pieces:
            if isinstance(piece, FileSpan):
                self.copy_span(name, offset, piece.path, piece.offset, piece.length)
                length = piece.length
            else:
                self.write_at(name, offset, piece)
                length = len(piece)
            offset += length
            progress(length)
        if offset != self.layout.members[name].size:
            raise ValueError(f"{name}: {offset} bytes made, {self.layout.members[name].size} planned")

    def copy_span(self, name: str, offset: int, source: Path, source_offset: int, length: int) -> None:
        """Copy `length` bytes of `source` from `source_offset` to `offset` in member `name`, in the kernel."""
        member = self.layout.members[name]
        if offset + length > member.size:
            raise ValueError(f"write past the end of {name}")
        with open(source, "rb") as src:
            src_off = source_offset
            for fd, local, n in self._pieces(member.data_offset + offset, length):
                while n:
                    copied = os.copy_file_range(src.fileno(), fd, n, src_off, local)
                    if copied == 0:
                        raise ValueError(f"{source} is shorter than the {length} bytes planned for {name}")
                    n, src_off, local = n - copied, src_off + copied, local + copied

    @property
    def parts(self) -> int:
        """Files it writes: 1, or the number of parts (parity parts besides)."""
        return len(self.names)

    def commit(self, manifest_digest: str) -> Path:
        """The bundle in place: the file, or the parts and then their index (returned)."""
        for i in range(len(self.partials)):
            with self.files.use(i) as fd:
                os.fsync(fd)
        self.files.close()
        if self.names == [self.path.name]:
            os.replace(self.partials[0], self.path)
            return self.path
        parity_names = [rs.parity_name(self.path.name, j) for j in range(self.parity)]
        parity_partials = [self.path.with_name(f".{name}.partial") for name in parity_names]
        try:
            if self.parity:  # one pass: the data parts hashed as the parity parts are encoded from them
                hashes, parity_hashes = write_parity(self.partials, parity_partials)
            else:
                hashes, parity_hashes = part_hashes(self.partials), []
            for partial, name in zip(self.partials + parity_partials, self.names + parity_names, strict=True):
                os.replace(partial, self.path.with_name(name))
        except BaseException:
            for partial in parity_partials:
                partial.unlink(missing_ok=True)
            raise
        return write_index(self.path, [(name, self._length(i), digest) for i, (name, digest)
                                       in enumerate(zip(self.names, hashes, strict=True))],
                           self.part_size, manifest_digest,
                           [(name, self._length(0), digest) for name, digest in zip(parity_names, parity_hashes,
                                                                                     strict=True)])

    def abort(self) -> None:
        self.files.close()
        for partial in self.partials:
            partial.unlink(missing_ok=True)

