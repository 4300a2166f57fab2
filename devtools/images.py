"""Make small real images (gzip layers, configs, manifests, indexes) and push them to a registry.

The demo, the tests and the benchmark use these; the registry is a real one, and what is pushed is
read back by skopeo and docker independently.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bundler.oci import media
from bundler.oci.client import RegistryClient

if TYPE_CHECKING:
    from bundler.pipeline.build import Contents

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Layer:
    data: bytes  # gzip bytes, as pushed
    diff_id: str  # sha256 of the uncompressed tar

    @property
    def digest(self) -> str:
        return sha(self.data)


def layer(files: dict[str, tuple[bytes, int]], level: int = 6) -> Layer:
    """A gzip'd tar layer holding `files` (path -> (content, mode)), deterministic."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for path, (content, mode) in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(content), mode
            tar.addfile(info, io.BytesIO(content))
    tar_bytes = raw.getvalue()
    return Layer(gzip.compress(tar_bytes, compresslevel=level, mtime=0), sha(tar_bytes))


def random_layer(size: int, seed: int) -> Layer:
    """A layer of about `size` bytes of incompressible data (stored, not compressed: fast to make)."""
    content = random.Random(seed).randbytes(size)
    return layer({f"data/blob-{seed}.bin": (content, 0o644)}, level=0)


def config(layers: list[Layer], arch: str = "amd64", entrypoint: list[str] | None = None) -> bytes:
    doc = {
        "architecture": arch, "os": "linux", "created": "2026-01-01T00:00:00Z",
        "config": {"Entrypoint": entrypoint} if entrypoint else {},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
    }
    return json.dumps(doc, sort_keys=True).encode()


def push_image(client: RegistryClient, repo: str, tag: str | None, layers: list[Layer],
               arch: str = "amd64", entrypoint: list[str] | None = None, oci: bool = False) -> tuple[str, bytes]:
    """Push blobs then the manifest; return (digest, manifest bytes)."""
    cfg = config(layers, arch, entrypoint)
    for blob in [cfg, *(layer.data for layer in layers)]:
        if not client.blob_exists(repo, sha(blob)):
            client.push_blob(repo, sha(blob), len(blob), lambda b=blob: iter([b]))
    manifest_type = media.OCI_MANIFEST if oci else media.DOCKER_MANIFEST
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": manifest_type,
        "config": {"mediaType": media.OCI_CONFIG if oci else DOCKER_CONFIG, "size": len(cfg), "digest": sha(cfg)},
        "layers": [{"mediaType": media.OCI_LAYER_GZIP if oci else DOCKER_LAYER, "size": len(layer.data),
                    "digest": layer.digest} for layer in layers],
    }, indent=2).encode()
    client.put_manifest(repo, tag or sha(manifest), manifest, manifest_type)
    return sha(manifest), manifest


def push_index(client: RegistryClient, repo: str, tag: str, images: dict[str, list[Layer]]) -> str:
    """A multi-arch OCI index: `images` maps architecture -> layers."""
    entries = []
    for arch, layers in images.items():
        digest, manifest = push_image(client, repo, None, layers, arch=arch, oci=True)
        entries.append({"mediaType": media.OCI_MANIFEST, "digest": digest, "size": len(manifest),
                        "platform": {"os": "linux", "architecture": arch}})
    index = json.dumps({"schemaVersion": 2, "mediaType": media.OCI_INDEX, "manifests": entries}, indent=2).encode()
    client.put_manifest(repo, tag, index, media.OCI_INDEX)
    return sha(index)


def busybox_layer(message: str) -> tuple[Layer, list[str]]:
    """A runnable layer: static busybox plus the entrypoint that prints `message`."""
    with open("/bin/busybox", "rb") as f:
        busybox = f.read()
    return layer({"bin/busybox": (busybox, 0o755)}), ["/bin/busybox", "echo", message]


def oci_manifest(cfg: bytes, layers: list[tuple[str, int]]) -> bytes:
    """An OCI image manifest for a config and (digest, size) layers."""
    return json.dumps({"schemaVersion": 2, "mediaType": media.OCI_MANIFEST,
                       "config": {"mediaType": media.OCI_CONFIG, "digest": sha(cfg), "size": len(cfg)},
                       "layers": [{"mediaType": media.OCI_LAYER_GZIP, "digest": d, "size": s} for d, s in layers]
                       }).encode()


def memory_image(ref: str, lay: Layer) -> Contents:
    """A one-image bundle's contents held in memory, ready for `write_bundle` (tests and assets, no registry)."""
    from bundler.kinds.base import Part
    from bundler.kinds.images.entry import ImageEntry
    from bundler.oci.content import OciContent
    from bundler.pipeline.build import Contents

    cfg = config([lay])
    manifest = oci_manifest(cfg, [(lay.digest, len(lay.data))])
    content = Contents(OciContent(), {"images": Part((ImageEntry(ref, sha(manifest), media.OCI_MANIFEST,
                                                                  ("linux/amd64",)),))})
    for blob in (manifest, cfg, lay.data):
        content.oci.add_small_blob(sha(blob), blob)
    return content
