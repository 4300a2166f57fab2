"""Models as the cluster mounts them (`as: image`): local files under a directory (`/models` unless the
profile says otherwise) packed into uncompressed tar layers with an image config and a platform, the
form Kubernetes image volumes and KServe modelcars mount. A large file has a layer of its own (a
release that keeps it shares the layer), the small ones go together in the first.

The tar is written here, deterministic (names sorted, owner 0, time 0, modes 0644 and 0755) in the
POSIX pax format: a file past ustar's 8 GiB size field carries its size in a pax header, as Go's
archive/tar (containerd) reads it. A layer is never staged on disk: its files are read once here, for
its digest and theirs, and then copied into the bundle by the kernel (copy_file_range, beside the
headers made here), as long as each file is the one read (device, inode, size, modification and change
times, checked before and after its copy: a file that changed in between is refused)."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import tarfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bundler.errors import IntegrityError, UsageError
from bundler.fsutil import FileSpan
from bundler.kinds.artifacts.entry import LAYER_TYPE
from bundler.names import digest_of, sha256_digest
from bundler.oci import media

LAYER_ALONE = 64 << 20  # a file at least this large has a layer of its own
MAX_LAYERS = 100  # overlayfs stacks about 128 lower layers; a model needs far fewer
CHUNK = 1 << 20
BLOCK = 512
END = b"\0" * (2 * BLOCK)  # end of archive


def _padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


def _header(name: str, size: int | None) -> bytes:
    """A tar header for a file (`size`) or a directory (None), pax where ustar cannot say it."""
    info = tarfile.TarInfo(name if size is not None else name + "/")
    info.type = tarfile.REGTYPE if size is not None else tarfile.DIRTYPE
    info.mode = 0o644 if size is not None else 0o755
    info.size = size or 0
    info.mtime = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "strict")


Identity = tuple[int, int, int, int, int]  # device, inode, size, mtime_ns, ctime_ns: a file as read


def _identity(st: os.stat_result) -> Identity:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _changed(path: Path) -> IntegrityError:
    return IntegrityError(f"{path} changed while the bundle was built", hint="build again once the file is final")


@dataclass(frozen=True)
class LayerFile:
    """A file going into a model image's tar layer: its name under the image's directory, where it is,
    its size."""
    name: str  # inside the image: `models/encoder/weights.bin`
    path: Path
    size: int


@dataclass(frozen=True)
class TarLayer:
    """One layer: its files, with the directories above them first."""

    directories: tuple[str, ...]
    files: tuple[LayerFile, ...]

    @property
    def size(self) -> int:
        return (sum(len(_header(d, None)) for d in self.directories)
                + sum(len(_header(f.name, f.size)) + f.size + len(_padding(f.size)) for f in self.files) + len(END))

    def stream(self, file_digests: dict[str, str] | None = None, seen: dict[str, Identity] | None = None
               ) -> Iterator[bytes]:
        """The layer's bytes; `file_digests` receives each file's sha256 (by name) as it is read, and
        `seen` each file's identity. A file whose size or identity changed as it was read: IntegrityError."""
        for directory in self.directories:
            yield _header(directory, None)
        for f in self.files:
            yield _header(f.name, f.size)
            hasher, read = hashlib.sha256() if file_digests is not None else None, 0  # asked for: once
            with open(f.path, "rb") as source:
                before = _identity(os.fstat(source.fileno()))
                while chunk := source.read(min(CHUNK, f.size - read)):
                    if hasher is not None:
                        hasher.update(chunk)
                    read += len(chunk)
                    yield chunk
                if read != f.size or source.read(1) or _identity(os.fstat(source.fileno())) != before:
                    raise _changed(f.path)
            if seen is not None:
                seen[f.name] = before
            if file_digests is not None and hasher is not None:
                file_digests[f.name] = digest_of(hasher)
            yield _padding(f.size)
        yield END

    def pieces(self, seen: dict[str, Identity]) -> Iterator[bytes | FileSpan]:
        """The layer as the bundle takes it: headers and padding made here, each file a span the kernel
        copies, each checked to be the file `digests` read (`seen`), before its copy and after it."""
        for directory in self.directories:
            yield _header(directory, None)
        for f in self.files:
            yield _header(f.name, f.size)
            self._unchanged(f, seen)
            yield FileSpan(f.path, 0, f.size)
            self._unchanged(f, seen)
            yield _padding(f.size)
        yield END

    @staticmethod
    def _unchanged(f: LayerFile, seen: dict[str, Identity]) -> None:
        try:
            now = _identity(os.stat(f.path))
        except FileNotFoundError:
            raise _changed(f.path) from None
        if now != seen.get(f.name):
            raise _changed(f.path)

    def digests(self) -> tuple[str, dict[str, str], dict[str, Identity]]:
        """The layer's sha256 and each file's (by name), and each file's identity as read, from one
        read of the files: the layer is hashed in a second thread as the files are read and hashed here
        (hashlib drops the GIL: two cores)."""
        files: dict[str, str] = {}
        seen: dict[str, Identity] = {}
        layer = hashlib.sha256()
        chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=8)

        def hash_layer() -> None:
            while (chunk := chunks.get()) is not None:
                layer.update(chunk)

        worker = threading.Thread(target=hash_layer, name="layer-digest", daemon=True)
        worker.start()
        try:
            for chunk in self.stream(files, seen):
                chunks.put(chunk)
        finally:
            chunks.put(None)
            worker.join()
        return digest_of(layer), files, seen


def plan_layers(directory: str, files: Sequence[tuple[str, Path]], origin: str) -> list[TarLayer]:
    """Files (title relative to the packed directory, path) into layers under `directory` (no `/`
    around it): each large file alone, the small ones together first."""
    placed = [LayerFile(f"{directory}/{title}", path, path.stat().st_size) for title, path in files]
    small = tuple(f for f in placed if f.size < LAYER_ALONE)
    groups = ([small] if small else []) + [(f,) for f in placed if f.size >= LAYER_ALONE]
    if len(groups) > MAX_LAYERS:
        raise UsageError(f"artifact {origin}: {len(groups)} layers (a file of {LAYER_ALONE >> 20} MiB or more has "
                         f"one of its own); an image mounts at most {MAX_LAYERS}", hint="pack fewer, larger files")
    return [TarLayer(_parents(group), group) for group in groups]


def _parents(files: Sequence[LayerFile]) -> tuple[str, ...]:
    found: dict[str, None] = {}
    for f in files:
        parts = f.name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            found.setdefault("/".join(parts[:i]))
    return tuple(found)


def image_config(platform: str, diff_ids: Sequence[str]) -> bytes:
    """The image's config: its platform and its layers' (uncompressed: their own) digests."""
    doc = {**media.platform_dict(platform), "config": {}, "rootfs": {"type": "layers", "diff_ids": list(diff_ids)}}
    return json.dumps(doc, indent=2).encode()


def image_index(manifests: Sequence[tuple[str, bytes]]) -> bytes:
    """An index over the image's manifest for each platform (the runtime picks its node's)."""
    return json.dumps({"schemaVersion": 2, "mediaType": media.OCI_INDEX, "manifests": [
        {"mediaType": media.OCI_MANIFEST, "digest": sha256_digest(data), "size": len(data),
         "platform": media.platform_dict(platform)} for platform, data in manifests]}, indent=2).encode()


def image_manifest(config: bytes, layers: Sequence[tuple[str, int]]) -> bytes:
    return json.dumps({
        "schemaVersion": 2, "mediaType": media.OCI_MANIFEST,
        "config": {"mediaType": media.OCI_CONFIG, "digest": sha256_digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": LAYER_TYPE, "digest": digest, "size": size} for digest, size in layers],
    }, indent=2).encode()
