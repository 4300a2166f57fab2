"""Parity parts: Reed-Solomon across a split bundle's data parts, stripe by stripe (zfec's code,
Tahoe-LAFS's erasure code, computed by Intel's ISA-L where the system has it and by zfec where not:
the same bytes), so that up to M missing or damaged parts are rebuilt where the set is read.

The k data parts are read as k columns of blocks of `stripe` bytes (a shorter part counts as padded
with zeros); stripe s of the M parity parts is zfec's encoding of block s of every data part, so any
k of the k + M blocks of a stripe give back the others. Every parity part is as long as the longest
data part. The index lists the parity parts (file, size, sha256) beside the data parts; the data
parts are read as one file exactly as without parity, and what a rebuilt part yields is checked by
the same signed digests as every other byte of the bundle."""

from __future__ import annotations

import collections
import ctypes
import functools
import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import zfec

from bundler.errors import UsageError
from bundler.fsutil import OpenFiles

SCHEME = "reed-solomon/zfec"
STRIPE = 1 << 20  # bytes of each part in one stripe, at most
MIN_STRIPE = 64 << 10
STRIPE_BYTES = 32 << 20  # a stripe of every data part, at most (less memory than stripes of 1 MiB for many parts)
MAX_SHARES = 256  # data parts + parity parts: GF(2^8)
MAX_PARITY = 16
CACHED_STRIPES = 4  # stripes of the lost parts kept while they are read (each a block of every lost part)

ReadInto = Callable[[int, memoryview, int], int]  # (share, buffer, offset) -> bytes read into it
Buffer = bytes | bytearray | memoryview


def check_parity(parity: int, parts: int) -> None:
    """`--parity M` for a set of `parts` data parts (UsageError when it cannot be written)."""
    if not 0 <= parity <= MAX_PARITY:
        raise UsageError(f"--parity {parity}: give 1 to {MAX_PARITY} parity parts")
    if parity and parts + parity > MAX_SHARES:
        raise UsageError(f"--parity {parity} with {parts} parts: Reed-Solomon here spans at most {MAX_SHARES} "
                         "parts and parity parts", hint="give a larger --split-size")


def stripe_for(k: int) -> int:
    """The stripe of a set of k data parts: 1 MiB, smaller past 32 parts so that a stripe of all of
    them stays within 32 MiB (the build holds two, a rebuild one)."""
    return max(MIN_STRIPE, min(STRIPE, STRIPE_BYTES // k // MIN_STRIPE * MIN_STRIPE))


def check_stripe(stripe: int, k: int) -> int:
    """A stripe an index may name for k data parts: 4 KiB-aligned, no larger than this bundler writes."""
    if stripe < 4096 or stripe % 4096 or stripe > stripe_for(k):
        raise ValueError(f"a stripe of {stripe} bytes for {k} parts (this bundler reads 4 KiB multiples up to "
                         f"{stripe_for(k)})")
    return stripe


def parity_name(bundle_name: str, j: int) -> str:
    return f"{bundle_name}.parity-{j:03d}"


@dataclass(frozen=True)
class Shares:
    """k data parts of the given sizes and m parity parts, each `part_size` (the longest data part),
    read in stripes of `stripe` bytes a part."""
    sizes: tuple[int, ...]
    parity: int
    stripe: int

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

    def read_into(self, s: int, read: ReadInto, buffers: Sequence[bytearray],
                  shares: Sequence[int] | None = None) -> list[memoryview]:
        """Block s of each of `shares` (default: the data parts) into `buffers` (reused: no fresh pages
        a stripe), data parts zero-padded to the stripe's length."""
        size, offset = self.block_size(s), s * self.stripe
        views = []
        for share, buffer in zip(range(self.k) if shares is None else shares, buffers, strict=True):
            view = memoryview(buffer)[:size]
            length = max(0, min(size, self.sizes[share] - offset)) if share < self.k else size
            if length and read(share, view[:length], offset) != length:
                raise OSError(f"share {share} is shorter than its index says")
            view[length:] = bytes(size - length)
            views.append(view)
        return views


class Codec(Protocol):
    """Reed-Solomon over one stripe: k data blocks of one length give m parity blocks, and any k of
    the k + m give back the lost data blocks."""

    def encode_into(self, blocks: Sequence[Buffer], outputs: Sequence[memoryview]) -> None:
        """The m parity blocks of `blocks`, into `outputs` (each of the blocks' length)."""
        ...

    def rebuild(self, blocks: Sequence[Buffer], sources: Sequence[int], lost: Sequence[int]) -> list[bytes]:
        """The data blocks `lost`, from `blocks`: the shares `sources` (share i < k a data part)."""
        ...


class Zfec:
    """zfec's own encoder and decoder (C, table lookups: about 1 GB/s of data here)."""

    def __init__(self, k: int, m: int) -> None:
        self.k, self.m = k, m
        self.encoder, self.decoder = zfec.Encoder(k, k + m), zfec.Decoder(k, k + m)

    def encode_into(self, blocks: Sequence[Buffer], outputs: Sequence[memoryview]) -> None:
        for output, block in zip(outputs, self.encoder.encode(list(blocks), list(range(self.k, self.k + self.m))),
                                 strict=True):
            output[:] = block

    def rebuild(self, blocks: Sequence[Buffer], sources: Sequence[int], lost: Sequence[int]) -> list[bytes]:
        # zfec wants each data part it has at its own position, a parity part in a lost one's place
        order = iter(j for j in range(len(sources)) if sources[j] >= self.k)
        place = {i: (i if i in sources else sources[next(order)]) for i in range(self.k)}
        given = [blocks[sources.index(place[i])] for i in range(self.k)]
        decoded = self.decoder.decode(given, [place[i] for i in range(self.k)])
        return [bytes(decoded[i]) for i in lost]


@functools.cache
def _isal() -> ctypes.CDLL | None:
    """Intel's ISA-L (Debian's libisal2): its SIMD Galois-field kernels, when the system has them."""
    try:
        return ctypes.CDLL("libisal.so.2")
    except OSError:
        return None


class Isal:
    """The same code as zfec's (zfec's own parity coefficients, read by encoding unit vectors with it),
    computed by ISA-L's ec_encode_data (SIMD: several times zfec's speed); ISA-L's gf_invert_matrix
    gives the rebuild's coefficients. Blocks in, blocks out: the same bytes as Zfec."""

    def __init__(self, k: int, m: int, lib: ctypes.CDLL) -> None:
        self.k, self.m, self.lib = k, m, lib
        unit = zfec.Encoder(k, k + m)
        columns = [unit.encode([bytes([i == j]) for i in range(k)], list(range(k, k + m))) for j in range(k)]
        self.rows = [bytes([1 if i == j else 0 for j in range(k)]) for i in range(k)]
        self.rows += [bytes(columns[j][r][0] for j in range(k)) for r in range(m)]  # [I; P]: share = row x data
        self.parity = self._tables(self.rows[k:])
        self.rebuilds: dict[tuple[tuple[int, ...], tuple[int, ...]], ctypes.Array[ctypes.c_char]] = {}

    def _tables(self, rows: Sequence[bytes]) -> ctypes.Array[ctypes.c_char]:
        tables = ctypes.create_string_buffer(32 * self.k * len(rows))
        self.lib.ec_init_tables(self.k, len(rows), b"".join(rows), tables)
        return tables

    def _apply(self, tables: ctypes.Array[ctypes.c_char], blocks: Sequence[Buffer],
               outputs: Sequence[memoryview]) -> None:
        """ISA-L's ec_encode_data: outputs = tables' rows x blocks (it lets go of the interpreter)."""
        keep: list[object] = []  # what the addresses point into, alive until ISA-L is done
        inputs = (ctypes.c_void_p * self.k)(*(_address(b, keep) for b in blocks))
        outs = (ctypes.c_void_p * len(outputs))(*(_address(o, keep) for o in outputs))
        self.lib.ec_encode_data(len(blocks[0]), self.k, len(outputs), tables, inputs, outs)

    def encode_into(self, blocks: Sequence[Buffer], outputs: Sequence[memoryview]) -> None:
        self._apply(self.parity, blocks, outputs)

    def rebuild(self, blocks: Sequence[Buffer], sources: Sequence[int], lost: Sequence[int]) -> list[bytes]:
        key = (tuple(sources), tuple(lost))
        if key not in self.rebuilds:
            chosen = ctypes.create_string_buffer(b"".join(self.rows[i] for i in sources), self.k * self.k)
            inverse = ctypes.create_string_buffer(self.k * self.k)
            if self.lib.gf_invert_matrix(chosen, inverse, self.k) != 0:
                raise ValueError(f"shares {list(sources)} do not determine the data")
            self.rebuilds[key] = self._tables([inverse.raw[i * self.k:(i + 1) * self.k] for i in lost])
        outputs = [bytearray(len(blocks[0])) for _ in lost]
        self._apply(self.rebuilds[key], blocks, [memoryview(o) for o in outputs])
        return [bytes(o) for o in outputs]


def _address(buffer: Buffer, keep: list[object]) -> int | None:
    if isinstance(buffer, bytes):
        pointer = ctypes.c_char_p(buffer)
        keep.append(pointer)
        return ctypes.cast(pointer, ctypes.c_void_p).value
    view = ctypes.c_char.from_buffer(buffer)  # a writable buffer (a bytearray, or a view of one)
    keep.append(view)
    return ctypes.addressof(view)


def codec(k: int, m: int) -> Codec:
    """ISA-L where the system has it, else zfec: the same code, the same bytes."""
    lib = _isal()
    return Isal(k, m, lib) if lib is not None else Zfec(k, m)


def encode(shares: Shares, read: ReadInto, write: Callable[[int, memoryview, int], None]
           ) -> tuple[list[str], list[str]]:
    """Write the parity parts (`write(j, data, offset)`) in one read of the data parts, hashing them
    from the same buffers: (sha256 hex of each data part, of each parity part). The codec and hashlib
    let go of the interpreter: a stripe is encoded, and its data parts hashed (half of them on each of
    two threads, each part in order), while the next is read and the last one's parity written. Two
    sets of buffers, used in turn."""
    rs = codec(shares.k, shares.parity)
    data_hashes = [hashlib.sha256() for _ in range(shares.k)]
    parity_hashes = [hashlib.sha256() for _ in range(shares.parity)]
    size = min(shares.stripe, shares.part_size)
    inputs = [[bytearray(size) for _ in range(shares.k)] for _ in range(2)]
    outputs = [[bytearray(size) for _ in range(shares.parity)] for _ in range(2)]

    def hash_data(group: int, s: int, blocks: list[memoryview]) -> None:
        for i in range(group, shares.k, 2):
            data_hashes[i].update(blocks[i][:max(0, min(len(blocks[i]), shares.sizes[i] - s * shares.stripe))])

    def finish(s: int) -> None:
        for j, block in enumerate(outputs[s % 2]):
            view = memoryview(block)[:shares.block_size(s)]
            write(j, view, s * shares.stripe)
            parity_hashes[j].update(view)

    hashers = [ThreadPoolExecutor(1) for _ in range(2)]  # one per half of the parts: each part hashed in order
    hashing: dict[int, list[Future[None]]] = {}
    try:
        with ThreadPoolExecutor(1) as pool:
            pending: Future[None] | None = None
            for s in range(shares.stripes):
                for done in hashing.pop(s - 2, []):  # this set of buffers was hashed: read into it again
                    done.result()
                blocks = shares.read_into(s, read, inputs[s % 2])
                job = pool.submit(rs.encode_into, blocks, [memoryview(o)[:len(blocks[0])] for o in outputs[s % 2]])
                hashing[s] = [hasher.submit(hash_data, group, s, blocks) for group, hasher in enumerate(hashers)]
                if pending is not None:
                    pending.result()
                    finish(s - 1)
                pending = job
            if pending is not None:
                pending.result()
                finish(shares.stripes - 1)
            for jobs in hashing.values():
                for done in jobs:
                    done.result()
    finally:
        for hasher in hashers:
            hasher.shutdown(wait=True, cancel_futures=True)
    return [h.hexdigest() for h in data_hashes], [h.hexdigest() for h in parity_hashes]


class Rebuilder:
    """Reads blocks of lost data parts from the k good shares of their stripe: decoded once a stripe
    (the last few kept), under a lock (readers run in threads)."""

    def __init__(self, shares: Shares, lost: set[int], read: ReadInto) -> None:
        self.shares, self.read = shares, read
        self.buffers = [bytearray(min(shares.stripe, shares.part_size)) for _ in range(shares.k)]
        good = [i for i in range(shares.k + shares.parity) if i not in lost]
        self.sources = good[:shares.k]  # the data parts there, then parity parts for the lost ones
        self.lost = sorted(i for i in lost if i < shares.k)
        self.codec = codec(shares.k, shares.parity)
        self.cache: collections.OrderedDict[int, dict[int, bytes]] = collections.OrderedDict()
        self.lock = threading.Lock()

    def stripe(self, s: int) -> dict[int, bytes]:
        """Block s of each lost data part."""
        with self.lock:
            if s in self.cache:
                self.cache.move_to_end(s)
                return self.cache[s]
            blocks = self.shares.read_into(s, self.read, self.buffers, self.sources)
            rebuilt = dict(zip(self.lost, self.codec.rebuild(blocks, self.sources, self.lost), strict=True))
            self.cache[s] = rebuilt
            if len(self.cache) > CACHED_STRIPES:
                self.cache.popitem(last=False)
            return rebuilt

    def pread(self, part: int, size: int, offset: int) -> bytes:
        """`size` bytes of data part `part` at `offset` (fewer at its end)."""
        size = max(0, min(size, self.shares.sizes[part] - offset))
        out = bytearray()
        while len(out) < size:
            s, start = divmod(offset + len(out), self.shares.stripe)
            block = self.stripe(s)[part]
            out += block[start:start + size - len(out)]
        return bytes(out)


def files_reader_into(files: OpenFiles) -> ReadInto:
    """Reads of share i from file i of `files` into a buffer."""
    def read(share: int, buffer: memoryview, offset: int) -> int:
        done = 0
        with files.use(share) as fd:
            while done < len(buffer):
                n = os.preadv(fd, [buffer[done:]], offset + done)
                if n == 0:
                    break
                done += n
        return done
    return read
