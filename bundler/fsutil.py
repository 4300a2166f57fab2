"""Files written whole or not at all (a temporary name in the same directory, fsync, os.replace), and
files opened only when they are regular files."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import os
import queue
import stat
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write a whole file by rename: a reader sees the old bytes or the new, never a part, and after
    a power cut the name holds them all (on the disk before the rename: fsync)."""
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        atomic_write_at(directory, path.name, data, mode)
    finally:
        os.close(directory)


def atomic_write_at(directory: int, name: str, data: bytes, mode: int = 0o644) -> None:
    """atomic_write in an open directory: the temporary file is made there without following a link,
    synced, owned like the directory (as root), then renamed over `name`."""
    tmp = f".{name}.{os.getpid()}.{threading.get_ident()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), mode)  # whatever the umask
            own_like_directory(f.fileno(), directory)
        os.replace(tmp, name, src_dir_fd=directory, dst_dir_fd=directory)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=directory)
        raise


WRITEBACK_STEP = 4 << 20  # bytes handed to the disk at a time while a large file is written
_SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writeback of dirty pages in the range; do not wait


@functools.cache
def _start_writeback() -> Callable[[int, int, int], None] | None:
    """Linux's sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE) (through the C library: the
    os module has none), or None where there is none."""
    import ctypes  # here: only a large synced write loads it

    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError, TypeError):  # no such call (macOS), no process library (Windows)
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]

    def start(fd: int, offset: int, length: int) -> None:
        call(fd, offset, length, _SYNC_FILE_RANGE_WRITE)  # a failure here is the fsync's to report

    return start


PIPELINE_FROM = 64 << 20  # a file this large is written by a thread of its own (see write_synced)
PIPELINE_DEPTH = 8  # chunks taken ahead of that writer (8 MiB of 1 MiB chunks)


def write_synced(out: BinaryIO, chunks: Iterable[bytes], size: int) -> None:
    """Write chunks (`size` bytes in all) to a new file and have them on the disk at the end (fsync).

    The disk writes the file back behind the copy as it goes (WRITEBACK_STEP at a time, not waited
    for), so that the fsync waits for the last step rather than the whole file. A file of
    PIPELINE_FROM bytes or more is written by a second thread, as `cat | tee` is two processes: this
    one takes the chunks (a bundle's reader reads and hashes them), the other writes them, at most
    PIPELINE_DEPTH chunks behind; the kernel's work for the pages read and for the pages written
    (on a virtual machine, 2 to 3 s of system time per GiB written) would otherwise add up in one
    thread while the other core waits (smaller files are copied several at a time by the caller's
    threads already). When the chunks raise (a blob that is not its digest) the writer stops and
    that error is raised; when the writer fails (a full disk) no more chunks are taken and its
    error is raised."""
    if size < PIPELINE_FROM:
        _write_back(out, chunks)
    else:
        _write_behind(out, chunks)
    out.flush()
    os.fsync(out.fileno())


def _write_back(out: BinaryIO, chunks: Iterable[bytes]) -> None:
    """Write the chunks, each WRITEBACK_STEP handed to the disk as soon as it is written."""
    start, written, handed = _start_writeback(), 0, 0
    for chunk in chunks:
        out.write(chunk)
        written += len(chunk)
        if start is not None and written - handed >= WRITEBACK_STEP:
            out.flush()
            start(out.fileno(), handed, written - handed)
            handed = written


def _write_behind(out: BinaryIO, chunks: Iterable[bytes]) -> None:
    """_write_back in a thread of its own, fed the chunks through a queue of PIPELINE_DEPTH."""
    pipe: queue.Queue[bytes | None] = queue.Queue(PIPELINE_DEPTH)
    failed: list[BaseException] = []

    def write() -> None:
        try:
            _write_back(out, iter(pipe.get, None))
        except BaseException as exc:  # raised in the caller's thread, below
            failed.append(exc)
            while pipe.get() is not None:  # let the taker's puts through until it stops
                pass

    writer = threading.Thread(target=write, name="write-behind", daemon=True)
    writer.start()
    try:
        for chunk in chunks:
            if failed:
                break
            pipe.put(chunk)
    finally:
        pipe.put(None)
        writer.join()
    if failed:
        raise failed[0]


@dataclass(frozen=True)
class FileSpan:
    """`length` bytes of the file at `path` from `offset` (what a writer copies in the kernel, with
    copy_file_range, never through this process)."""
    path: Path
    offset: int
    length: int


def pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    """All of `data` at `offset` of `fd` (pwrite may write less than asked)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def file_sha256(path: Path) -> tuple[str, int]:
    """A file's sha256 (hex) and size, from one open: both of the same bytes (OpenSSL's hash, the
    interpreter's lock released while it reads)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest(), os.fstat(f.fileno()).st_size


def own_like_parent(path: Path, like: Path | None = None) -> None:
    """As root, give a new file or directory the owner of its directory (or of `like`): a site with
    its own user keeps reading what a technician's command wrote there, a 0600 file too."""
    if os.geteuid() == 0:
        parent = os.stat(like or path.parent)
        if parent.st_uid != 0:
            os.chown(path, parent.st_uid, parent.st_gid)


def own_like_directory(fd: int, directory: int) -> None:
    """own_like_parent for an open file or directory and its open directory."""
    if os.geteuid() == 0:
        parent = os.fstat(directory)
        if parent.st_uid != 0:
            os.fchown(fd, parent.st_uid, parent.st_gid)


def make_dirs(path: Path, mode: int = 0o755) -> Path:
    """mkdir -p, each directory it makes owned like its parent (see own_like_parent)."""
    missing, up = [], path
    while not up.exists():  # up to the first one there (not every ancestor up to /)
        missing.append(up)
        up = up.parent
    for directory in reversed(missing):
        directory.mkdir(mode=mode, exist_ok=True)
        own_like_parent(directory)
    return path


def tree_bytes(path: Path) -> int:
    """Bytes of the regular files under a directory (links not followed); 0 when it is not there."""
    total = 0
    for directory, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(directory, name))
                if stat.S_ISREG(st.st_mode):
                    total += st.st_size
    return total


class NotRegular(OSError):
    """A path that is a FIFO, a device, a directory or a socket where a file was expected."""


def not_regular(path: Path, mode: int) -> str:
    """What a path that is not a regular file is, said for an error message."""
    what = ("a FIFO" if stat.S_ISFIFO(mode) else "a directory" if stat.S_ISDIR(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket or a link")
    return f"{path} is {what}, not a regular file"


def open_regular(path: Path) -> int:
    """Open a file for reading, refusing anything but a regular file. The open itself never waits
    (a FIFO with no writer would block a plain open forever); NotRegular names what it is."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegular(errno.EINVAL, not_regular(path, mode))
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: Path, limit: int) -> bytes:
    """A whole regular file of at most `limit` bytes (ValueError when larger)."""
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path.name} is larger than the {limit} bytes allowed")
    return data


class OpenFiles:
    """Many files, at most `limit` of them open at once (the least recently used closed first), for
    positional reads and writes from several threads: a split bundle of thousands of parts never runs
    out of descriptors (Debian's default is 1,024 a process). A file in use is never closed under it."""

    def __init__(self, paths: Sequence[Path], opener: Callable[[Path], int], limit: int = 64) -> None:
        self.paths, self.opener, self.limit = list(paths), opener, limit
        self.fds: OrderedDict[int, int] = OrderedDict()  # index -> descriptor, least recently used first
        self.busy: Counter[int] = Counter()
        self.lock = threading.Lock()

    @contextlib.contextmanager
    def use(self, i: int) -> Iterator[int]:
        with self.lock:
            fd = self.fds.get(i)
            if fd is None:
                for victim in [j for j in self.fds if not self.busy[j]][:max(0, len(self.fds) + 1 - self.limit)]:
                    os.close(self.fds.pop(victim))
                fd = self.fds[i] = self.opener(self.paths[i])
            self.fds.move_to_end(i)
            self.busy[i] += 1
        try:
            yield fd
        finally:
            with self.lock:
                self.busy[i] -= 1

    def close(self) -> None:
        with self.lock:
            while self.fds:
                os.close(self.fds.popitem()[1])
