"""Container images: resolve every image to its manifests and the blobs they need (into the
bundle's OCI layout, bundler/oci/content.py); a multi-arch index may be cut to some platforms.
Images from the local Docker engine are exported through it (docker_engine.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from bundler.errors import UsageError
from bundler.kinds.images import docker_engine
from bundler.kinds.images.entry import ImageEntry
from bundler.kinds.images.spec import ImageSpec
from bundler.names import sha256_digest
from bundler.oci import media
from bundler.oci.client import RegistryClient
from bundler.oci.content import BlobSource, OciContent, fetch_small_blob, walk
from bundler.oci.reference import DaemonReference, ImageReference
from bundler.parallel import run_parallel


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
            digest = sha256_digest(data)
    platforms = walk(client, ref.repository, data, media_type, digest, collection)
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


def collect_images(specs: Sequence[ImageSpec], collection: OciContent,
                   client_for: Callable[[str], RegistryClient], staging: Path, jobs: int) -> list[ImageEntry]:
    """Resolve every image (in parallel) into `collection`; blobs are described, not fetched yet."""

    def resolve(spec: ImageSpec) -> ImageEntry:
        if isinstance(spec.ref, DaemonReference):
            return _resolve_daemon_image(spec.ref, staging, collection)
        return _resolve_registry_image(spec, spec.ref, client_for(spec.ref.host), collection)

    return run_parallel(resolve, list(specs), jobs)
