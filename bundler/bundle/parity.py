"""Parity parts: Reed-Solomon across a split bundle's data parts, stripe by stripe (zfec, Tahoe-LAFS's
erasure code), so that up to M missing or damaged parts are rebuilt where the set is read.

The k data parts are read as k columns of blocks of `stripe` bytes (a shorter part counts as padded
with zeros); stripe s of the M parity parts is zfec's encoding of block s of every data part, so any
k of the k + M blocks of a stripe give back the others. Every parity part is as long as the longest
data part. The index lists the parity parts (file, size, sha256) beside the data parts; the data
parts are read as one file exactly as without parity, and what a rebuilt part yields is checked by
the same signed digests as every other byte of the bundle."""

from __future__ import annotations

import collections
import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import zfec

from bundler.errors import UsageError
from bundler.fsutil import OpenFiles

SCHEME = "reed-solomon/zfec"
STRIPE = 1 << 20  # bytes of each part in one stripe
MAX_SHARES = 256  # data parts + parity parts: GF(2^8)
MAX_PARITY = 16
CACHED_STRIPES = 4  # decoded stripes kept while a rebuilt part is read (each k x STRIPE bytes)

Read = Callable[[int, int, int], bytes]  # (share, size, offset) -> bytes (fewer at a part's end)


def check_parity(parity: int, parts: int) -> None:
    """`--parity M` for a set of `parts` data parts (UsageError when it cannot be written)."""
    if not 0 <= parity <= MAX_PARITY:
        raise UsageError(f"--parity {parity}: give 1 to {MAX_PARITY} parity parts")
    if parity and parts + parity > MAX_SHARES:
        raise UsageError(f"--parity {parity} with {parts} parts: Reed-Solomon here spans at most {MAX_SHARES} "
                         "parts and parity parts", hint="give a larger --split-size")


def parity_name(bundle_name: str, j: int) -> str:
    return f"{bundle_name}.parity-{j:03d}"


@dataclass(frozen=True)
class Shares:
    """k data parts of the given sizes and m parity parts, each `part_size` (the longest data part)."""
    sizes: tuple[int, ...]
    parity: int
    stripe: int = STRIPE

    @property
    def k(self) -> int:
        return len(self.sizes)

    @property
    def part_size(self) -> int:
        return max(self.sizes)

    @property
    def stripes(self) -> int:
        return -(-self.part_size // self.stripe)

    def block_size(self, s: int) -> int:
        return min(self.stripe, self.part_size - s * self.stripe)

    def blocks(self, s: int, read: Read, shares: Sequence[int]) -> list[bytes]:
        """Block s of each of `shares` (data parts padded with zeros to the stripe's length)."""
        size, offset = self.block_size(s), s * self.stripe
        out = []
        for share in shares:
            length = max(0, min(size, self.sizes[share] - offset)) if share < self.k else size
            data = read(share, length, offset) if length else b""
            if len(data) != length:
                raise OSError(f"share {share} is shorter than its index says")
            out.append(data + bytes(size - length))
        return out


def encode(shares: Shares, read: Read, write: Callable[[int, bytes, int], None]) -> tuple[list[str], list[str]]:
    """Write the parity parts (`write(j, data, offset)`) in one pass over the data parts, hashing each
    data part on the way: (sha256 hex of each data part, of each parity part). zfec and hashlib let go
    of the interpreter, so a stripe is encoded on one core while the next is read and hashed."""
    encoder = zfec.Encoder(shares.k, shares.k + shares.parity)
    data_hashes = [hashlib.sha256() for _ in range(shares.k)]
    parity_hashes = [hashlib.sha256() for _ in range(shares.parity)]
    wanted = list(range(shares.k, shares.k + shares.parity))

    def finish(s: int, encoded: list[bytes]) -> None:
        for j, block in enumerate(encoded):
            write(j, block, s * shares.stripe)
            parity_hashes[j].update(block)

    with ThreadPoolExecutor(1) as pool:
        pending = None
        for s in range(shares.stripes):
            blocks = shares.blocks(s, read, range(shares.k))
            job = pool.submit(encoder.encode, blocks, wanted)
            for i, block in enumerate(blocks):
                data_hashes[i].update(memoryview(block)[:max(0, min(len(block), shares.sizes[i] - s * shares.stripe))])
            if pending is not None:
                finish(pending[0], pending[1].result())
            pending = (s, job)
        if pending is not None:
            finish(pending[0], pending[1].result())
    return [h.hexdigest() for h in data_hashes], [h.hexdigest() for h in parity_hashes]


class Rebuilder:
    """Reads blocks of lost data parts from the k good shares of their stripe: decoded once a stripe
    (the last few kept), under a lock (readers run in threads)."""

    def __init__(self, shares: Shares, lost: set[int], read: Read) -> None:
        self.shares, self.read = shares, read
        good = [i for i in range(shares.k + shares.parity) if i not in lost]
        substitutes = iter(i for i in good if i >= shares.k)
        # zfec wants each data part it has at its own position, a parity part in a lost one's place
        self.sources = [i if i not in lost else next(substitutes) for i in range(shares.k)]
        self.decoder = zfec.Decoder(shares.k, shares.k + shares.parity)
        self.cache: collections.OrderedDict[int, list[bytes]] = collections.OrderedDict()
        self.lock = threading.Lock()

    def stripe(self, s: int) -> list[bytes]:
        with self.lock:
            if s in self.cache:
                self.cache.move_to_end(s)
                return self.cache[s]
            decoded: list[bytes] = self.decoder.decode(self.shares.blocks(s, self.read, self.sources), self.sources)
            self.cache[s] = decoded
            if len(self.cache) > CACHED_STRIPES:
                self.cache.popitem(last=False)
            return decoded

    def pread(self, part: int, size: int, offset: int) -> bytes:
        """`size` bytes of data part `part` at `offset` (fewer at its end)."""
        size = max(0, min(size, self.shares.sizes[part] - offset))
        out = bytearray()
        while len(out) < size:
            s, start = divmod(offset + len(out), self.shares.stripe)
            block = self.stripe(s)[part]
            out += block[start:start + size - len(out)]
        return bytes(out)


def files_reader(files: OpenFiles) -> Read:
    """Reads of share i from file i of `files` (the data parts, then the parity parts)."""
    def read(share: int, size: int, offset: int) -> bytes:
        with files.use(share) as fd:
            return os.pread(fd, size, offset)
    return read
