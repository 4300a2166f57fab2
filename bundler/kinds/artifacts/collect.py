"""Collecting OCI artifacts: copied from a registry unchanged (manifest digest kept, like `oras copy`),
or packed from local files as `oras push` does: one layer per file with its title, the empty
config and `artifactType` (OCI image spec 1.1, "guidelines for artifact usage"); or packed as an
image the cluster mounts (image.py)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

from bundler.errors import BundlerError, IntegrityError, UsageError
from bundler.fsutil import file_sha256
from bundler.kinds.artifacts.entry import LAYER_TYPE, TITLE_ANNOTATION, ArtifactEntry, ArtifactFile, file_title
from bundler.kinds.artifacts.format import titled_files
from bundler.kinds.artifacts.image import image_config, image_index, image_manifest, plan_layers
from bundler.kinds.artifacts.scanner_db import stage_database
from bundler.kinds.artifacts.spec import ArtifactSpec
from bundler.names import sha256_digest
from bundler.oci import media
from bundler.oci.client import RegistryClient
from bundler.oci.content import BlobSource, OciContent, walk

EMPTY = b"{}"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_DESCRIPTOR = {"mediaType": EMPTY_TYPE, "digest": sha256_digest(EMPTY), "size": 2}
IMAGE_CONFIGS = (media.OCI_CONFIG, "application/vnd.docker.container.image.v1+json")
MAX_FILES = 10_000


def is_artifact(read: Callable[[str], bytes], digest: str, media_type: str) -> bool:
    """An artifact has an artifactType, or a config that is not a container image's."""
    for _, kind, data in media.walk_image(read, digest, media_type).manifests:
        if media.parse_json(data).get("artifactType"):
            return True
        if kind not in media.INDEX_TYPES and media.image_blobs(data)[0].media_type not in IMAGE_CONFIGS:
            return True
    return False


def copy_artifact(spec: ArtifactSpec, client: RegistryClient, oci: OciContent, staging: Path) -> ArtifactEntry:
    ref = spec.ref
    data, media_type, digest = client.get_manifest(ref.repository, ref.digest or ref.tag or "latest")
    origin = str(ref)
    walk(client, ref.repository, data, media_type, digest, oci)
    read = oci.small_blobs.__getitem__
    try:
        if not is_artifact(read, digest, media_type):
            raise UsageError(f"artifact {origin} is a container image (no artifactType, an image config)",
                             hint="list container images under spec.images")
        files = titled_files(read, digest, media_type, origin)
    except media.ManifestError as exc:
        raise BundlerError(f"{origin}@{digest}: {exc}") from None
    except ValueError as exc:
        raise IntegrityError(str(exc), hint="the artifact's file names are unsafe: do not carry it") from None
    artifact_type = str(media.parse_json(data).get("artifactType") or "")
    database = stage_database(client, ref.repository, data, oci, staging, origin, spec.max_age) \
        if media_type not in media.INDEX_TYPES else None
    if database is None and spec.max_age is not None:
        raise UsageError(f"artifact {origin}: maxAge is for a vulnerability database (Trivy's trivy-db), and it "
                         "carries none", hint="remove maxAge from this artifact")
    return ArtifactEntry(str(ref), digest, media_type, artifact_type, "registry", files,
                         database=database.kind if database else "", built=database.built if database else "")


def _local_files(root: Path, origin: str) -> list[tuple[str, Path]]:
    """(title, path) of a file, or of every file under a directory (titles relative to it)."""
    if root.is_file():
        return [(root.name, root)]
    if not root.is_dir():
        raise UsageError(f"artifact {origin}: no such file or directory ({root})")
    found = []
    for directory, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names) + [d for d in dirs if (Path(directory) / d).is_symlink()]:
            path = Path(directory) / name
            if path.is_symlink() or not path.is_file():
                raise UsageError(f"artifact {origin}: {path} is a link or a special file; "
                                 "only regular files are packed")
            found.append((path.relative_to(root).as_posix(), path))
        if len(found) > MAX_FILES:
            raise UsageError(f"artifact {origin}: more than {MAX_FILES} files; pack them into an archive first")
    if not found:
        raise UsageError(f"artifact {origin}: the directory {root} holds no file")
    return found


def _titled_local_files(spec: ArtifactSpec, base: Path) -> list[tuple[str, Path]]:
    assert spec.path is not None
    found = _local_files((base / spec.path).resolve(), spec.path)
    for title, _ in found:
        try:
            file_title(title)
        except ValueError as exc:
            raise UsageError(f"artifact {spec.path}: {exc}") from None
    return found


def pack_artifact(spec: ArtifactSpec, base: Path, oci: OciContent) -> ArtifactEntry:
    if spec.form == "image":
        return pack_image(spec, base, oci)
    layers, files = [], []
    for title, path in _titled_local_files(spec, base):
        hex_digest, size = file_sha256(path)
        digest = "sha256:" + hex_digest
        oci.add_blob(BlobSource(digest, size, str(path), path=path))
        layers.append({"mediaType": spec.layer_type, "digest": digest, "size": size,
                       "annotations": {TITLE_ANNOTATION: title}})
        files.append(ArtifactFile(title, digest, size, spec.layer_type))
    manifest = json.dumps({"schemaVersion": 2, "mediaType": media.OCI_MANIFEST, "artifactType": spec.artifact_type,
                           "config": EMPTY_DESCRIPTOR, "layers": layers}, indent=2).encode()
    digest = sha256_digest(manifest)
    oci.add_small_blob(str(EMPTY_DESCRIPTOR["digest"]), EMPTY)
    oci.add_small_blob(digest, manifest)
    return ArtifactEntry(str(spec.ref), digest, media.OCI_MANIFEST, spec.artifact_type, "path",
                         tuple(sorted(files, key=lambda f: f.title)))


def pack_image(spec: ArtifactSpec, base: Path, oci: OciContent) -> ArtifactEntry:
    """Files under `spec.directory` in tar layers, an image config for each of `spec.platforms` (an
    index over them when there are several): each layer's files read once here for its digest (and each
    file's), then copied into the bundle by the kernel."""
    directory = spec.directory.strip("/")
    found = _titled_local_files(spec, base)
    layers, files = [], []
    for layer in plan_layers(directory, found, str(spec.path)):
        digest, digests, seen = layer.digests()
        size = layer.size
        oci.add_blob(BlobSource(digest, size, f"{spec.path} (a layer of {len(layer.files)} files)",
                                pieces=partial(layer.pieces, seen)))
        layers.append((digest, size))
        files += [ArtifactFile(f.name[len(directory) + 1:], digests[f.name], f.size, LAYER_TYPE) for f in layer.files]
    manifests = []
    for platform in spec.platforms:  # the same layers, a config per platform
        config = image_config(platform, [digest for digest, _ in layers])
        manifest = image_manifest(config, layers)
        oci.add_small_blob(sha256_digest(config), config)
        oci.add_small_blob(sha256_digest(manifest), manifest)
        manifests.append((platform, manifest))
    top, media_type = (manifests[0][1], media.OCI_MANIFEST) if len(manifests) == 1 else (image_index(manifests),
                                                                                          media.OCI_INDEX)
    digest = sha256_digest(top)
    oci.add_small_blob(digest, top)
    return ArtifactEntry(str(spec.ref), digest, media_type, "", "path",
                         tuple(sorted(files, key=lambda f: f.title)), form="image", directory=spec.directory)
