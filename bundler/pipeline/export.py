"""`bundler site export DIR --k3s OUT`: what K3s and RKE2 nodes preload from their agent images
directory (`/var/lib/rancher/k3s/agent/images/`, `/var/lib/rancher/rke2/agent/images/`), for nodes
that must start before the site's registry answers: per running release, one OCI image layout
archive (`<name>-<version>.tar`, each image named by its ORIGINAL name in the
`io.containerd.image.name` annotation, as `ctr images import` and K3s read it) and its image list
(`<name>-<version>.txt`, one original reference a line). Read from the site's registry: every
blob hashed on the way (RegistryClient.fetch_blob), every image with its digest.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from bundler.bundle.manifest import BundleManifest
from bundler.errors import UsageError
from bundler.fsutil import atomic_write
from bundler.kinds.base import Artifact
from bundler.oci import media
from bundler.oci.client import RegistryClient
from bundler.oci.reference import ImageReference
from bundler.pipeline.registry import site_artifacts
from bundler.site.config import SiteConfig, load_site
from bundler.site.state import SiteState, kept_manifest

IMAGE_NAME = "io.containerd.image.name"
REF_NAME = "org.opencontainers.image.ref.name"


def export_k3s(directory: Path, out: Path, jobs: int = 4) -> list[Path]:
    """Write an archive and an image list per release the site runs; return the archives."""
    site = load_site(directory)
    state = SiteState.load(site.directory)
    client = site.registry_client(jobs)
    client.ping()
    written = []
    out.mkdir(parents=True, exist_ok=True)
    for latest in state.running():
        manifest = kept_manifest(site, latest.manifest_digest)
        if manifest is None:
            continue
        images = [a for a in site_artifacts(manifest, site) if a.node_image]
        if images:
            written.append(write_archive(site, client, manifest, images, out))
    if not written:
        raise UsageError(f"the site {site.directory} runs no release with images: nothing to export")
    return written


def original_name(artifact: Artifact) -> str:
    """docker.io/library/nginx:1.25 for nginx:1.25: the name a node's pod spec asks containerd for."""
    ref = ImageReference.parse(artifact.ref)
    return f"{ref.host}/{ref.repository}:{ref.tag}" if ref.tag else f"{ref.host}/{ref.repository}@{artifact.digest}"


def write_archive(site: SiteConfig, client: RegistryClient, manifest: BundleManifest, images: list[Artifact],
                  out: Path) -> Path:
    base = f"{manifest.name}-{manifest.version}"
    archive = out / f"{base}.tar"
    partial = out / f".{base}.tar.partial"
    entries: list[dict[str, object]] = []
    added: set[str] = set()
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar, \
            tempfile.TemporaryDirectory(dir=out) as scratch:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))

        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        for artifact in images:
            def read(digest: str, repo: str = artifact.repo) -> bytes:
                return client.get_manifest(repo, digest)[0]

            graph = media.walk_image(read, artifact.digest, artifact.media_type)
            for digest, _, data in graph.manifests:
                if digest not in added:
                    added.add(digest)
                    add(f"blobs/sha256/{digest[7:]}", data)
            for blob in graph.blobs:
                if blob.digest in added:
                    continue
                added.add(blob.digest)
                staged = Path(scratch) / blob.digest[7:]
                with open(staged, "wb") as f:
                    client.fetch_blob(artifact.repo, blob.digest, blob.size, _at(f))  # hashed on the way
                tar.add(staged, f"blobs/sha256/{blob.digest[7:]}")
                staged.unlink()
            top = next(data for digest, _, data in graph.manifests if digest == artifact.digest)
            name = original_name(artifact)
            entries.append({
                "mediaType": media.media_type_of(top, artifact.media_type), "digest": artifact.digest, "size": len(top),
                "annotations": {IMAGE_NAME: name, **({REF_NAME: artifact.tag} if artifact.tag else {})}})
        index = {"schemaVersion": 2, "mediaType": media.OCI_INDEX, "manifests": entries}
        add("index.json", json.dumps(index, indent=1).encode())
    partial.replace(archive)
    atomic_write(out / f"{base}.txt", "".join(f"{original_name(a)}\n" for a in images).encode())
    return archive


def _at(file: BinaryIO) -> Callable[[int, bytes], None]:
    """fetch_blob's writer: each chunk at its offset (a resumed download starts over where it stopped)."""
    def write(offset: int, chunk: bytes) -> None:
        file.seek(offset)
        file.write(chunk)
    return write
