"""Images from the local Docker engine (`docker-daemon:NAME:TAG`), via the `docker` package.

`docker save` gives uncompressed layers; we gzip each one (deterministically: mtime 0), check its
uncompressed digest against the image config's diff_ids, and describe the result with a Docker v2
schema 2 manifest: the same shape `docker push` would produce.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bundler.errors import BundlerError, IntegrityError, NotFoundError, UnreachableError
from bundler.names import digest_of, sha256_digest
from bundler.oci import media
from bundler.oci.reference import DaemonReference

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
CHUNK = 1 << 20
GZIP_LEVEL = 6  # what `docker push` uses


@dataclass(frozen=True)
class ExportedImage:
    """An image read from the Docker engine: its manifest, digest, platform and blobs."""
    manifest: bytes
    digest: str
    platform: str
    blobs: list[tuple[str, int, Path]]  # (digest, size, staged file): config first, then layers


class _HashingFile:
    """A write-only file that hashes and counts what passes through it."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _client() -> Any:
    import docker  # imported here: only docker-daemon sources need the engine

    try:
        client = docker.from_env(timeout=300)
        client.ping()
        return client
    except Exception as exc:  # docker raises several unrelated types for "no engine"
        raise UnreachableError(f"cannot reach the Docker engine: {exc}",
                               hint="start Docker (or set DOCKER_HOST) to collect docker-daemon: images") from None


def export_image(ref: DaemonReference, staging: Path) -> ExportedImage:
    import docker.errors

    client = _client()
    name = str(ref.image)
    try:
        image = client.images.get(name)
    except docker.errors.ImageNotFound:
        raise NotFoundError(f"image {name} is not in the local Docker engine",
                            hint="build or pull it first (`docker images` lists what is there)") from None
    with tempfile.TemporaryDirectory(dir=staging) as tmp:
        saved = Path(tmp) / "image.tar"
        with open(saved, "wb") as out:
            for chunk in image.save(chunk_size=CHUNK):
                out.write(chunk)
        return _convert(saved, staging, name)


def _convert(saved: Path, staging: Path, name: str) -> ExportedImage:
    with tarfile.open(saved, "r:") as tar:
        try:
            entry = json.loads(_read(tar, "manifest.json"))[0]
            config = _read(tar, entry["Config"])
            layer_names = entry["Layers"]
        except (KeyError, IndexError, ValueError) as exc:
            raise BundlerError(f"`docker save` of {name} gave an unexpected archive: {exc}") from None
        config_doc = json.loads(config)
        diff_ids = config_doc.get("rootfs", {}).get("diff_ids", [])
        if len(diff_ids) != len(layer_names):
            raise IntegrityError(f"{name}: config lists {len(diff_ids)} layers, the archive {len(layer_names)}")
        config_digest = sha256_digest(config)
        config_path = staging / config_digest.split(":")[1]
        config_path.write_bytes(config)
        blobs = [(config_digest, len(config), config_path)]
        layers = []
        for layer_name, diff_id in zip(layer_names, diff_ids, strict=True):
            digest, size, path = _compress_layer(tar, layer_name, diff_id, staging, name)
            blobs.append((digest, size, path))
            layers.append({"mediaType": DOCKER_LAYER_GZIP, "size": size, "digest": digest})
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": media.DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "size": len(config), "digest": config_digest},
        "layers": layers,
    }, indent=3).encode()
    platform = media.config_platform(config) or "linux/amd64"
    return ExportedImage(manifest, sha256_digest(manifest), platform, blobs)


def _read(tar: tarfile.TarFile, member: str) -> bytes:
    f = tar.extractfile(member)
    if f is None:
        raise KeyError(member)
    return f.read()


def _compress_layer(tar: tarfile.TarFile, member: str, diff_id: str, staging: Path,
                    name: str) -> tuple[str, int, Path]:
    source = tar.extractfile(member)
    if source is None:
        raise BundlerError(f"`docker save` of {name}: layer {member} is not a file")
    raw = hashlib.sha256()
    out = _HashingFile(staging / f"layer-{diff_id.split(':')[-1]}.partial")
    try:
        with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=GZIP_LEVEL, mtime=0) as gz:
            while chunk := source.read(CHUNK):
                raw.update(chunk)
                gz.write(chunk)
    finally:
        out.close()
    if digest_of(raw) != diff_id:
        raise IntegrityError(f"{name}: layer {member} does not match the config's diff_id {diff_id}")
    digest = digest_of(out.hash)
    path = staging / digest.split(":")[1]
    (staging / f"layer-{diff_id.split(':')[-1]}.partial").replace(path)
    return digest, out.size, path
