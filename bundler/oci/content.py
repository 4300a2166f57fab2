"""What a build keeps for the bundle's OCI layout (images, charts, artifacts share it), and how it is
fetched from source registries.

Resolution fetches only manifests (small, kept in memory, digests checked). Blobs are described
(digest, size, where to get them) and fetched later, straight into the bundle, by bundler/pipeline/build.py.
A blob shared by several manifests is fetched once.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bundler.errors import BundlerError, IntegrityError, UsageError
from bundler.fsutil import FileSpan
from bundler.oci import media
from bundler.oci.client import Credentials, RegistryClient

if TYPE_CHECKING:
    from bundler.profile import RegistrySpec

Writer = Callable[[int, bytes], None]
Progress = Callable[[int], None]


@dataclass(frozen=True)
class BlobSource:
    """Where a blob comes from: a registry (`fetch`), a file staged on this machine (`path`), or
    `pieces`: bytes made here and spans of local files, in order (a tar layer of a model's files)."""

    digest: str
    size: int
    origin: str
    fetch: Callable[[Writer, Progress], None] | None = None
    path: Path | None = None
    pieces: Callable[[], Iterator[bytes | FileSpan]] | None = None


@dataclass
class OciContent:
    """Everything bound for the bundle's OCI layout: the manifests, configs and small blobs (in
    memory), and the blobs fetched later."""

    small_blobs: dict[str, bytes] = field(default_factory=dict)  # digest -> manifest, index or config bytes
    blobs: dict[str, BlobSource] = field(default_factory=dict)  # digest -> what is fetched later
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_small_blob(self, digest: str, data: bytes) -> None:
        with self._lock:
            self.small_blobs[digest] = data

    def add_blob(self, source: BlobSource) -> None:
        with self._lock:
            known = self.blobs.get(source.digest)
            if known is not None and known.size != source.size:
                raise IntegrityError(f"blob {source.digest} has size {known.size} in {known.origin} "
                                     f"but {source.size} in {source.origin}")
            self.blobs.setdefault(source.digest, source)

    def prefer(self, source: BlobSource) -> None:
        """A copy of a blob already on this machine (downloaded once to be read, its digest checked as
        it came): the bundle is written from it instead of fetching the blob again."""
        with self._lock:
            known = self.blobs.get(source.digest)
            if known is not None and known.size != source.size:
                raise IntegrityError(f"blob {source.digest} has size {known.size} in {known.origin} "
                                     f"but {source.size} in {source.origin}")
            self.blobs[source.digest] = source

    @property
    def blob_bytes(self) -> int:
        return sum(b.size for d, b in self.blobs.items() if d not in self.small_blobs)


def registry_clients(registries: Sequence[RegistrySpec], jobs: int) -> Callable[[str], RegistryClient]:
    """One client per registry host, configured from spec.registries (credentials from env vars)."""
    clients: dict[str, RegistryClient] = {}
    lock = threading.Lock()

    def client_for(host: str) -> RegistryClient:
        with lock:
            if host not in clients:
                spec = next((r for r in registries if r.host == host), None)
                credentials = None
                if spec and spec.username_env and spec.password_env:
                    missing = [v for v in (spec.username_env, spec.password_env) if not os.environ.get(v)]
                    if missing:
                        raise UsageError(f"registry {host}: environment variable {missing[0]} is not set",
                                         hint=f"export {missing[0]}=... (named in the profile's spec.registries)")
                    credentials = Credentials(os.environ[spec.username_env], os.environ[spec.password_env])
                clients[host] = RegistryClient(
                    host, credentials=credentials, plain_http=spec.plain_http if spec else None,
                    ca_file=spec.ca_file if spec else None, pool_size=max(4, jobs),
                )
            return clients[host]

    return client_for


def _fetcher(client: RegistryClient, repo: str, blob: media.Descriptor) -> Callable[[Writer, Progress], None]:
    def fetch(write: Writer, progress: Progress) -> None:
        client.fetch_blob(repo, blob.digest, blob.size, write, progress)

    return fetch


def walk(client: RegistryClient, repo: str, data: bytes, media_type: str, digest: str,
         collection: OciContent) -> list[str]:
    """Record a manifest and everything under it; return the platforms it covers."""
    collection.add_small_blob(digest, data)
    origin = f"{client.host}/{repo}"
    try:
        if media_type in media.INDEX_TYPES:
            platforms = []
            for child in media.index_children(data):
                child_data, child_type, child_digest = client.get_manifest(repo, child.digest)
                if len(child_data) != child.size:
                    raise IntegrityError(f"manifest {child.digest} of {origin}: {len(child_data)} bytes, "
                                         f"its index says {child.size}")
                walk(client, repo, child_data, child_type, child_digest, collection)
                if child.platform:
                    platforms.append(child.platform)
            return platforms
        for blob in media.image_blobs(data):
            collection.add_blob(BlobSource(blob.digest, blob.size, origin, fetch=_fetcher(client, repo, blob)))
        return []
    except media.ManifestError as exc:
        raise BundlerError(f"{origin}@{digest}: {exc}") from None


def fetch_small_blob(client: RegistryClient, repo: str, blob: media.Descriptor) -> bytes:
    """A small blob (a config, a chart) fetched into memory, its digest checked like any other."""
    buffer = bytearray(blob.size)

    def write(offset: int, chunk: bytes) -> None:
        buffer[offset : offset + len(chunk)] = chunk

    client.fetch_blob(repo, blob.digest, blob.size, write)
    return bytes(buffer)
