"""Container images: resolve every image of a profile to its manifests and the blobs they need.

Resolution fetches only manifests (small, kept in memory, digests checked). Blobs are described
(digest, size, where to get them) and fetched later, straight into the bundle, by `collect.build`.
A blob shared by several images is fetched once.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bundler.bundle.manifest import ChartEntry, ImageEntry
from bundler.collect import docker_engine
from bundler.errors import BundlerError, IntegrityError, UsageError
from bundler.oci import media
from bundler.oci.client import Credentials, RegistryClient
from bundler.oci.reference import DaemonReference, ImageReference
from bundler.parallel import run_parallel
from bundler.profile import ImageSpec, Profile

Writer = Callable[[int, bytes], None]
Progress = Callable[[int], None]


@dataclass(frozen=True)
class BlobSource:
    """Where a blob comes from: a registry (`fetch`) or a file staged on this machine (`path`)."""

    digest: str
    size: int
    origin: str
    fetch: Callable[[Writer, Progress], None] | None = None
    path: Path | None = None


@dataclass
class OciContent:
    """Everything bound for the bundle's OCI layout: images, charts, and the blobs they need."""

    images: list[ImageEntry] = field(default_factory=list)
    charts: list[ChartEntry] = field(default_factory=list)
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

    @property
    def blob_bytes(self) -> int:
        return sum(b.size for d, b in self.blobs.items() if d not in self.small_blobs)


def registry_clients(profile: Profile, jobs: int) -> Callable[[str], RegistryClient]:
    """One client per registry host, configured from spec.registries (credentials from env vars)."""
    clients: dict[str, RegistryClient] = {}
    lock = threading.Lock()

    def client_for(host: str) -> RegistryClient:
        with lock:
            if host not in clients:
                spec = profile.registry(host)
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


def select_platforms(index: bytes, wanted: tuple[str, ...], ref: ImageReference) -> bytes:
    """A new index holding only the wanted platforms (the original bytes when that is all of them)."""
    doc = media.parse_json(index)
    children = media.index_children(index)
    available = [c.platform for c in children if c.platform]

    def matches(platform: str | None, want: str) -> bool:
        return platform is not None and (platform == want or platform.startswith(want + "/"))

    for want in wanted:
        if not any(matches(p, want) for p in available):
            raise UsageError(f"image {ref} has no platform {want} (it has: {', '.join(sorted(set(available)))})",
                             hint="fix the platforms list of this image in the profile")
    kept = [c.raw for c in children if any(matches(c.platform, w) for w in wanted)]
    if len(kept) == len(children):
        return index
    doc["manifests"] = kept
    return json.dumps(doc, indent=2).encode()


def _fetcher(client: RegistryClient, repo: str, blob: media.Descriptor) -> Callable[[Writer, Progress], None]:
    def fetch(write: Writer, progress: Progress) -> None:
        client.fetch_blob(repo, blob.digest, blob.size, write, progress)

    return fetch


def _walk(client: RegistryClient, repo: str, data: bytes, media_type: str, digest: str,
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
                _walk(client, repo, child_data, child_type, child_digest, collection)
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


def _config_platform(client: RegistryClient, repo: str, manifest: bytes, collection: OciContent) -> str | None:
    """Fetch a single-arch image's config into memory (it is small) to learn its platform."""
    config = media.image_blobs(manifest)[0]
    if config.size > media.MAX_MANIFEST_BYTES:
        return None
    data = fetch_small_blob(client, repo, config)
    collection.add_small_blob(config.digest, data)
    return media.config_platform(data)


def _resolve_registry_image(spec: ImageSpec, ref: ImageReference, client: RegistryClient,
                            collection: OciContent) -> ImageEntry:
    data, media_type, digest = client.get_manifest(ref.repository, ref.digest or ref.tag or "latest")
    upstream = None
    if spec.platforms and media_type in media.INDEX_TYPES:
        selected = select_platforms(data, spec.platforms, ref)
        if selected is not data:
            upstream, data = digest, selected
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
    platforms = _walk(client, ref.repository, data, media_type, digest, collection)
    if media_type in media.IMAGE_TYPES:
        platform = _config_platform(client, ref.repository, data, collection)
        platforms = [platform] if platform else []
    return ImageEntry(str(ref), digest, media_type, tuple(platforms), "registry", upstream)


def _resolve_daemon_image(ref: DaemonReference, staging: Path, collection: OciContent) -> ImageEntry:
    exported = docker_engine.export_image(ref, staging)
    collection.add_small_blob(exported.digest, exported.manifest)
    for digest, size, path in exported.blobs:
        collection.add_blob(BlobSource(digest, size, str(ref), path=path))
    return ImageEntry(str(ref.image), exported.digest, media.DOCKER_MANIFEST, (exported.platform,), "docker-daemon")


def collect_images(specs: list[ImageSpec], collection: OciContent, client_for: Callable[[str], RegistryClient],
                   staging: Path, jobs: int) -> None:
    """Resolve every image (in parallel) into `collection`; blobs are described, not fetched yet."""

    def resolve(spec: ImageSpec) -> ImageEntry:
        if isinstance(spec.ref, DaemonReference):
            return _resolve_daemon_image(spec.ref, staging, collection)
        return _resolve_registry_image(spec, spec.ref, client_for(spec.ref.host), collection)

    collection.images = run_parallel(resolve, specs, jobs)
