"""Split bundles: one bundle written as parts (each at most --split-size, `fat32` = 4 GiB - 1) and
a small index naming every part with its size and sha256, bound to the signed bundle.json by its
digest. Readers take the index or any part and read the parts as one file."""

from __future__ import annotations

import bisect
import functools
import hashlib
import io
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from bundler import names
from bundler.errors import IntegrityError, UsageError
from bundler.fsutil import NotRegular, OpenFiles, atomic_write, not_regular, open_regular, read_regular
from bundler.oci.reference import check_digest
from bundler.untrusted import Malformed, Obj

INDEX_SUFFIX = ".parts.json"
SCHEMA = "bundler/parts/v1"
FAT32 = (4 << 30) - 1
CHUNK = 1 << 20
_PART_RE = re.compile(r"^(?P<base>.+)\.part-\d{3,}$")

MAX_INDEX_BYTES = 4 << 20  # an index of 4 MiB lists tens of thousands of parts
MAX_PARTS = 10_000  # 40 TB of FAT32 parts, or a 10 GB bundle in 1 MiB ones: more is not a bundle
PART_HINT = "copy that part from the source again (every .part-NNN file the index names); nothing was changed"


def parse_size(text: str) -> int:
    """`4G`, `500M`, `64K`, a number of bytes, or `fat32` (the largest file FAT32 holds)."""
    if text.lower() == "fat32":
        return FAT32
    match = re.fullmatch(r"(\d+)([KMG]?)", text.strip().upper())
    if match is None or int(match[1]) == 0:
        raise UsageError(f"--split-size {text!r} must be a size like 4G, 500M or fat32")
    return int(match[1]) << {"": 0, "K": 10, "M": 20, "G": 30}[match[2]]


def is_split(path: Path) -> bool:
    return path.name.endswith(INDEX_SUFFIX) or bool(_PART_RE.match(path.name))


def index_path(path: Path) -> Path:
    if path.name.endswith(INDEX_SUFFIX):
        return path
    match = _PART_RE.match(path.name)
    assert match is not None
    return path.with_name(match["base"] + INDEX_SUFFIX)


@dataclass(frozen=True)
class Part:
    """One part of a split bundle: its file, size, sha256 and where it starts in the whole."""
    file: str
    size: int
    sha256: str
    offset: int  # where it starts in the whole bundle


def index_document(bundle_name: str, parts: list[tuple[str, int, str]], split_size: int,
                   manifest_digest: str) -> bytes:
    """The parts index of bundle `bundle_name`: (file name, size, sha256 hex) of each part, in order."""
    doc = {"schema": SCHEMA, "bundle": bundle_name, "size": sum(size for _, size, _ in parts),
           "manifest_digest": manifest_digest, "split_size": split_size,
           "parts": [{"file": name, "size": size, "sha256": digest} for name, size, digest in parts]}
    return json.dumps(doc, indent=1).encode()


def write_index(bundle: Path, parts: list[tuple[str, int, str]], split_size: int, manifest_digest: str) -> Path:
    """The index of a bundle written as parts, next to them."""
    index = bundle.with_name(bundle.name + INDEX_SUFFIX)
    atomic_write(index, index_document(bundle.name, parts, split_size, manifest_digest))
    return index


def rewrite_tail(index: Path, offset: int, tail: bytes) -> None:
    """Replace the bytes of a split bundle from `offset` to its end by `tail` (a countersignature: a
    new signatures.json and the end-of-archive blocks). Only the part holding `offset` changes (read
    once, up to `offset`, to hash it again); parts after it held only end-of-archive bytes and go;
    a part never grows past the split size (the tail then gets a part of its own). The index is
    replaced last, atomically."""
    doc = json.loads(index.read_text())
    parts = [dict(p) for p in doc["parts"]]
    limit = int(doc.get("split_size") or (parts[0]["size"] if len(parts) > 1 else FAT32))
    start, i = 0, 0
    while i < len(parts) - 1 and start + int(parts[i]["size"]) <= offset:
        start += int(parts[i]["size"])
        i += 1
    local = offset - start
    path = index.with_name(str(parts[i]["file"]))
    digest = hashlib.sha256()
    with open(path, "r+b") as f:
        remaining = local
        while remaining:
            chunk = f.read(min(CHUNK, remaining))
            if not chunk:
                raise IntegrityError(f"part {path.name} is shorter than its index says")
            digest.update(chunk)
            remaining -= len(chunk)
        own_part = local + len(tail) > limit
        f.truncate(local)
        if not own_part:
            f.write(tail)
            digest.update(tail)
        f.flush()
        os.fsync(f.fileno())
    later = parts[i + 1:]
    parts = parts[:i + 1]
    parts[i].update(size=local + (0 if own_part else len(tail)), sha256=digest.hexdigest())
    if own_part:
        name = f"{doc['bundle']}.part-{i + 1:03d}"
        atomic_write(index.with_name(name), tail)
        parts.append({"file": name, "size": len(tail), "sha256": hashlib.sha256(tail).hexdigest()})
    for part in later:
        if part["file"] not in {p["file"] for p in parts}:
            index.with_name(str(part["file"])).unlink(missing_ok=True)
    doc.update(parts=parts, size=sum(int(p["size"]) for p in parts))
    atomic_write(index, json.dumps(doc, indent=1).encode())


class PartSet:
    """The parts of a split bundle, opened, read as one file with positional reads."""

    def __init__(self, path: Path) -> None:
        self.index = index_path(path)
        try:
            doc = Obj.load(read_regular(self.index, MAX_INDEX_BYTES), MAX_INDEX_BYTES)
            if doc.value.get("schema") != SCHEMA:
                raise Malformed(f"schema {str(doc.value.get('schema'))[:80]!r}")
            base = doc.string("bundle", names.file_name)
            offset, parts = 0, []
            for i, item in enumerate(doc.array("parts", required=True)):
                entry = item.obj()
                expected = f"{base}.part-{i:03d}"
                name = entry.string("file", functools.partial(_part_name, expected))
                size = entry.integer("size")
                parts.append(Part(name, size, entry.string("sha256", names.sha256_hex), offset))
                offset += size
            manifest_digest = doc.string("manifest_digest", check_digest, default="")
        except FileNotFoundError:
            raise IntegrityError(f"{self.index.name} (the index of this split bundle) is missing",
                                 hint="copy the whole set of files: the parts and the .parts.json index") from None
        except (Malformed, NotRegular, ValueError) as exc:
            raise IntegrityError(f"{self.index.name} is not a valid parts index: {exc}") from None
        if len(parts) > MAX_PARTS:
            raise IntegrityError(f"{self.index.name} lists {len(parts):,} parts; a bundle is split into at most "
                                 f"{MAX_PARTS:,}", hint="bundler did not write this index: ask for the bundle again")
        self.parts = parts
        self.size = offset
        self.manifest_digest = manifest_digest
        for part in parts:  # each one there, a regular file of its size; opened only when read
            path = self.index.with_name(part.file)
            try:
                st = os.stat(path)
            except FileNotFoundError:
                raise IntegrityError(f"part {part.file} of this split bundle is missing", hint=PART_HINT) from None
            if not stat.S_ISREG(st.st_mode):
                raise IntegrityError(f"part {part.file}: {not_regular(path, st.st_mode)}", hint=PART_HINT)
            if st.st_size != part.size:
                raise IntegrityError(f"part {part.file} is {st.st_size} bytes, the index says {part.size} "
                                     "(cut short?)", hint=PART_HINT)
        self.offsets = [part.offset for part in parts]
        self.files = OpenFiles([self.index.with_name(p.file) for p in parts], open_regular)

    def close(self) -> None:
        self.files.close()

    def pread(self, size: int, offset: int) -> bytes:
        out = bytearray()
        for i in range(max(0, bisect.bisect_right(self.offsets, offset) - 1), len(self.parts)):
            part = self.parts[i]
            start = offset - part.offset
            if size <= 0:
                break
            if start >= part.size:  # an empty part, or one before the offset
                continue
            with self.files.use(i) as fd:
                data = os.pread(fd, min(size, part.size - start), start)
            if not data:
                break
            out += data
            offset, size = offset + len(data), size - len(data)
        return bytes(out)

    def parts_between(self, start: int, end: int) -> list[Part]:
        return [p for p in self.parts if p.offset < end and start < p.offset + p.size]

    def part_digest(self, part: Part) -> str:
        digest = hashlib.sha256()
        position = 0
        with self.files.use(self.parts.index(part)) as fd:
            while position < part.size:
                chunk = os.pread(fd, min(CHUNK, part.size - position), position)
                if not chunk:
                    raise IntegrityError(f"part {part.file} is shorter than its index says", hint=PART_HINT)
                digest.update(chunk)
                position += len(chunk)
        return digest.hexdigest()


class PartsFile(io.RawIOBase):
    """A read-only, seekable file over a PartSet (what tarfile scans)."""

    def __init__(self, parts: PartSet) -> None:
        self.parts, self.position = parts, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.parts.size}[whence]
        self.position = base + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.parts.pread(len(buffer), self.position)
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


def _part_name(expected: str, value: str) -> str:
    if value != expected:
        raise ValueError(f"{value[:80]!r} is not the part name {expected!r}")
    return value
