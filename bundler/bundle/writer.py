"""Write a bundle tar in one pass: every member's place is known before the first payload byte.

Sizes and digests come from the image manifests, so the whole tar (headers, bundle.json, offsets) is
laid out up front; parallel workers then write each payload straight to its offset. No payload is
written twice (no staging directory, no second `tar` step). The file is built under a temporary
name and renamed into place only when complete, so a failure leaves no partial bundle behind.
"""

from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

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
    """The output file while it is being written: positional writes from many threads, then commit."""

    def __init__(self, path: Path, layout: TarLayout) -> None:
        self.path = path
        self.layout = layout
        self.partial = path.with_name(f".{path.name}.partial")
        self.fd = os.open(self.partial, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.ftruncate(self.fd, layout.total_size)  # sparse; padding and the end blocks stay zero
            for name in layout.members:
                os.pwrite(self.fd, layout.header(name), layout.members[name].header_offset)
        except BaseException:
            self.abort()
            raise

    def write_at(self, name: str, offset: int, data: bytes) -> None:
        member = self.layout.members[name]
        if offset + len(data) > member.size:
            raise ValueError(f"write past the end of {name}")
        view = memoryview(data)
        position = member.data_offset + offset
        while view:
            written = os.pwrite(self.fd, view, position)
            view, position = view[written:], position + written

    def write_member(self, name: str, data: bytes) -> None:
        if len(data) != self.layout.members[name].size:
            raise ValueError(f"{name}: {len(data)} bytes, planned {self.layout.members[name].size}")
        self.write_at(name, 0, data)

    def copy_file(self, name: str, source: Path) -> None:
        """Copy a staged file into its member, in the kernel where it can (copy_file_range)."""
        member = self.layout.members[name]
        with open(source, "rb") as src:
            remaining, src_off, dst_off = member.size, 0, member.data_offset
            while remaining:
                n = os.copy_file_range(src.fileno(), self.fd, remaining, src_off, dst_off)
                if n == 0:
                    raise ValueError(f"{source} is shorter than the {member.size} bytes planned for {name}")
                remaining, src_off, dst_off = remaining - n, src_off + n, dst_off + n

    def commit(self) -> None:
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.partial.unlink(missing_ok=True)
