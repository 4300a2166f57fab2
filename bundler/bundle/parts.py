"""Split bundles: one bundle written as parts (each at most --split-size, `fat32` = 4 GiB - 1) and
a small index naming every part with its size and sha256, bound to the signed bundle.json by its
digest. Readers take the index or any part and read the parts as one file. With parity parts
(`--parity M`, parity.py) the index lists them too, and up to M missing or damaged parts are read
from the others."""

from __future__ import annotations

import bisect
import functools
import hashlib
import io
import json
import os
import re
import stat
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from bundler import names
from bundler.bundle import parity as rs
from bundler.errors import IntegrityError, UsageError
from bundler.fsutil import (
    NotRegular,
    OpenFiles,
    atomic_write,
    file_sha256,
    not_regular,
    open_regular,
    pwrite_all,
    read_regular,
)
from bundler.oci.reference import check_digest
from bundler.parallel import run_parallel
from bundler.untrusted import Malformed, Obj

INDEX_SUFFIX = ".parts.json"
SCHEMA = "bundler/parts/v1"
FAT32 = (4 << 30) - 1
CHUNK = 1 << 20
_PART_RE = re.compile(r"^(?P<base>.+)\.part-\d{3,}$")

MAX_INDEX_BYTES = 4 << 20  # an index of 4 MiB lists tens of thousands of parts
MAX_PARTS = 10_000  # 40 TB of FAT32 parts, or a 10 GB bundle in 1 MiB ones: more is not a bundle
PART_HINT = "copy that part from the source again (every .part-NNN file the index names); nothing was changed"
PARTS_HINT = ("copy those parts from the source again (every .part-NNN and .parity-NNN file the index names); "
              "nothing was changed")


@dataclass(frozen=True)
class Split:
    """How a bundle is written as parts: each at most `size` bytes, and `parity` parity parts."""
    size: int
    parity: int = 0


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
                   manifest_digest: str, parity: list[tuple[str, int, str]] | None = None) -> bytes:
    """The parts index of bundle `bundle_name`: (file name, size, sha256 hex) of each part, in order,
    and of each parity part."""
    doc = {"schema": SCHEMA, "bundle": bundle_name, "size": sum(size for _, size, _ in parts),
           "manifest_digest": manifest_digest, "split_size": split_size,
           "parts": [{"file": name, "size": size, "sha256": digest} for name, size, digest in parts],
           **({"parity": {"scheme": rs.SCHEME, "stripe": rs.stripe_for(len(parts)),
                          "parts": [{"file": name, "size": size, "sha256": digest} for name, size, digest in parity]}}
              if parity else {})}
    return json.dumps(doc, indent=1).encode()


def write_index(bundle: Path, parts: list[tuple[str, int, str]], split_size: int, manifest_digest: str,
                parity: list[tuple[str, int, str]] | None = None) -> Path:
    """The index of a bundle written as parts, next to them."""
    index = bundle.with_name(bundle.name + INDEX_SUFFIX)
    atomic_write(index, index_document(bundle.name, parts, split_size, manifest_digest, parity))
    return index


def part_hashes(parts: list[Path]) -> list[str]:
    """The sha256 hex of each part, read in parallel."""
    return run_parallel(lambda path: file_sha256(path)[0], parts, min(len(parts), 4))


def write_parity(data: list[Path], targets: list[Path]) -> tuple[list[str], list[str]]:
    """Parity parts `targets` (written, synced) for the data parts `data`, in one read of the data
    parts that also hashes them: (sha256 hex of each data part, of each parity part)."""
    sizes = tuple(path.stat().st_size for path in data)
    shares = rs.Shares(sizes, len(targets), rs.stripe_for(len(data)))
    files = OpenFiles(data, open_regular)
    outs = [os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644) for target in targets]
    try:
        hashes = rs.encode(shares, rs.files_reader_into(files),
                           lambda j, block, offset: pwrite_all(outs[j], block, offset))
        for fd in outs:
            os.fsync(fd)
        return hashes
    finally:
        files.close()
        for fd in outs:
            os.close(fd)


def rewrite_tail(index: Path, offset: int, tail: bytes) -> None:
    """Replace the bytes of a split bundle from `offset` to its end by `tail` (a countersignature: a
    new signatures.json and the end-of-archive blocks). Only the part holding `offset` changes (read
    once afterwards to hash it again, or, with parity parts, in the read that encodes them again);
    parts after it held only end-of-archive bytes and go; a part never grows past the split size (the
    tail then gets a part of its own). The index is replaced last, atomically."""
    doc = json.loads(index.read_text())
    parts = [dict(p) for p in doc["parts"]]
    limit = int(doc.get("split_size") or (parts[0]["size"] if len(parts) > 1 else FAT32))
    start, i = 0, 0
    while i < len(parts) - 1 and start + int(parts[i]["size"]) <= offset:
        start += int(parts[i]["size"])
        i += 1
    local = offset - start
    path = index.with_name(str(parts[i]["file"]))
    own_part = local + len(tail) > limit
    with open(path, "r+b") as f:
        if os.fstat(f.fileno()).st_size < local:
            raise IntegrityError(f"part {path.name} is shorter than its index says")
        f.truncate(local)
        if not own_part:
            f.seek(local)
            f.write(tail)
        f.flush()
        os.fsync(f.fileno())
    later = parts[i + 1:]
    parts = parts[:i + 1]
    parts[i]["size"] = local + (0 if own_part else len(tail))
    if own_part:
        name = f"{doc['bundle']}.part-{i + 1:03d}"
        atomic_write(index.with_name(name), tail)
        parts.append({"file": name, "size": len(tail), "sha256": hashlib.sha256(tail).hexdigest()})
    for part in later:
        if part["file"] not in {p["file"] for p in parts}:
            index.with_name(str(part["file"])).unlink(missing_ok=True)
    doc.update(parts=parts, size=sum(int(p["size"]) for p in parts))
    if "parity" not in doc:
        parts[i]["sha256"] = file_sha256(path)[0]
    else:  # the tail's stripes changed (and, with a part more or fewer, every stripe): encode again
        data = [index.with_name(str(p["file"])) for p in parts]
        count = len(doc["parity"]["parts"])
        rs.check_parity(count, len(parts))
        names_ = [rs.parity_name(str(doc["bundle"]), j) for j in range(count)]
        partials = [index.with_name(f".{name}.partial") for name in names_]
        data_hashes, hashes = write_parity(data, partials)
        parts[i]["sha256"] = data_hashes[i]
        for partial, name in zip(partials, names_, strict=True):
            os.replace(partial, index.with_name(name))
        size = max(int(p["size"]) for p in parts)
        doc["parity"]["stripe"] = rs.stripe_for(len(parts))
        doc["parity"]["parts"] = [{"file": name, "size": size, "sha256": digest}
                                  for name, digest in zip(names_, hashes, strict=True)]
    atomic_write(index, json.dumps(doc, indent=1).encode())


class PartSet:
    """The parts of a split bundle, opened, read as one file with positional reads. With parity parts,
    the data parts that are missing, cut short or named in `damaged` (found so by their sha256) are
    read from the others (`rebuilt` names them), up to as many as there are good parity parts; more,
    and IntegrityError names every bad part."""

    def __init__(self, path: Path, damaged: Collection[str] = ()) -> None:
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
            parity, stripe = _parity_parts(doc, base, [p.size for p in parts])
        except FileNotFoundError:
            raise IntegrityError(f"{self.index.name} (the index of this split bundle) is missing",
                                 hint="copy the whole set of files: the parts and the .parts.json index") from None
        except (Malformed, NotRegular, ValueError) as exc:
            raise IntegrityError(f"{self.index.name} is not a valid parts index: {exc}") from None
        if len(parts) > MAX_PARTS:
            raise IntegrityError(f"{self.index.name} lists {len(parts):,} parts; a bundle is split into at most "
                                 f"{MAX_PARTS:,}", hint="bundler did not write this index: ask for the bundle again")
        self.parts = parts
        self.parity = parity
        self.size = offset
        self.manifest_digest = manifest_digest
        shares = parts + parity
        bad = {i: why for i, part in enumerate(shares)  # each one there, a regular file of its size
               if (why := _unusable(self.index.with_name(part.file), part, damaged))}
        lost = {i for i in bad if i < len(parts)}
        if lost and len(bad) > len(parity):
            if len(bad) == 1:  # no parity parts
                (i, why), = bad.items()
                raise IntegrityError(f"part {parts[i].file} "
                                     + ("of this split bundle is missing" if why == "is missing" else why),
                                     hint=PART_HINT)
            shown = "; ".join(f"part {shares[i].file} {why}" for i, why in bad.items())
            can = f"its {len(parity)} parity parts rebuild at most {len(parity)}" if parity else "it has no parity"
            raise IntegrityError(f"{len(bad)} parts of this split bundle are bad ({can}): {shown}", hint=PARTS_HINT)
        self.rebuilt = [parts[i].file for i in sorted(lost)]
        self.unread = {shares[i].file for i in bad}  # read from the others (data parts), or not at all
        self._damaged: list[tuple[Part, str]] | None = None
        self.offsets = [part.offset for part in parts]
        self.files = OpenFiles([self.index.with_name(p.file) for p in shares], open_regular)  # opened when read
        self.rebuilder = rs.Rebuilder(rs.Shares(tuple(p.size for p in parts), len(parity), stripe), set(bad),
                                      rs.files_reader_into(self.files)) if lost else None

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
            if self.rebuilder is not None and part.file in self.rebuilt:
                data = self.rebuilder.pread(i, min(size, part.size - start), start)
            else:
                with self.files.use(i) as fd:
                    data = os.pread(fd, min(size, part.size - start), start)
            if not data:
                break
            out += data
            offset, size = offset + len(data), size - len(data)
        return bytes(out)

    def parts_between(self, start: int, end: int) -> list[Part]:
        return [p for p in self.parts if p.offset < end and start < p.offset + p.size]

    def damaged(self, jobs: int = 4) -> list[tuple[Part, str]]:
        """The parts (data and parity) read as they are whose sha256 differs from the index's, with
        the sha256 found: one read of each, in parallel, once (asked again, the same answer)."""
        if self._damaged is None:
            shares = [(i, part) for i, part in enumerate(self.parts + self.parity) if part.file not in self.unread]
            digests = run_parallel(lambda item: self._digest(*item), shares, jobs)
            self._damaged = [(part, digest) for (_, part), digest in zip(shares, digests, strict=True)
                             if digest != part.sha256]
        return self._damaged

    def _digest(self, share: int, part: Part) -> str:
        digest = hashlib.sha256()
        position = 0
        with self.files.use(share) as fd:
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


def _unusable(path: Path, part: Part, damaged: Collection[str]) -> str:
    """Why a part cannot be read as it is ('' when it can)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "is missing"
    if not stat.S_ISREG(st.st_mode):
        return not_regular(path, st.st_mode)
    if st.st_size != part.size:
        return f"is {st.st_size} bytes, the index says {part.size} (cut short?)"
    return "is damaged (its sha256 differs from the index's)" if part.file in damaged else ""


def _parity_parts(doc: Obj, base: str, sizes: list[int]) -> tuple[list[Part], int]:
    """The index's parity parts (none without a `parity` section), each as long as the longest part,
    and their stripe."""
    section = doc.obj("parity", default=None)
    if section is None:
        return [], 0
    if section.string("scheme") != rs.SCHEME:
        raise Malformed(f"parity {section.string('scheme')[:40]!r} (this bundler reads {rs.SCHEME})")
    stripe = rs.check_stripe(section.integer("stripe"), len(sizes))
    found = []
    for j, item in enumerate(section.array("parts", required=True)):
        entry = item.obj()
        name = entry.string("file", functools.partial(_part_name, rs.parity_name(base, j)))
        size = entry.integer("size")
        if size != max(sizes):
            raise Malformed(f"parity part {name} is {size} bytes; it is as long as the longest part, {max(sizes)}")
        found.append(Part(name, size, entry.string("sha256", names.sha256_hex), 0))
    if found and len(sizes) + len(found) > rs.MAX_SHARES:
        raise Malformed(f"{len(sizes)} parts and {len(found)} parity parts: more than {rs.MAX_SHARES}")
    return found, stripe


def _part_name(expected: str, value: str) -> str:
    if value != expected:
        raise ValueError(f"{value[:80]!r} is not the part name {expected!r}")
    return value
