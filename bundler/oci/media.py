"""OCI and Docker media types, and reading the descriptors a manifest points to."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from bundler.jsontypes import Doc
from bundler.oci.reference import DIGEST_RE

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"  # an artifact's config: the two bytes {}
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)

INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
IMAGE_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
MANIFEST_TYPES = INDEX_TYPES + IMAGE_TYPES
ACCEPT = ", ".join(MANIFEST_TYPES)
MAX_MANIFEST_BYTES = 4 << 20  # the Distribution registry's own limit

REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"


class ManifestError(ValueError):
    """A manifest we cannot read: not JSON, unsupported type, malformed descriptors."""


@dataclass(frozen=True)
class Descriptor:
    """An OCI descriptor as read from a manifest or index (the raw object kept beside its fields)."""
    media_type: str
    digest: str
    size: int
    platform: str | None = None  # "os/arch[/variant]" for index entries
    raw: Doc | None = None

    @classmethod
    def from_dict(cls, d: object) -> Descriptor:
        if not isinstance(d, dict):
            raise ManifestError("descriptor is not an object")
        digest, size, media_type = d.get("digest"), d.get("size"), d.get("mediaType", "")
        if not isinstance(digest, str) or not DIGEST_RE.match(digest):
            raise ManifestError(f"descriptor digest {digest!r} is not a sha256 digest")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ManifestError(f"descriptor size {size!r} for {digest} is not a non-negative integer")
        platform = None
        p = d.get("platform")
        if isinstance(p, dict) and p.get("os") and p.get("architecture"):
            platform = f"{p['os']}/{p['architecture']}" + (f"/{p['variant']}" if p.get("variant") else "")
        return cls(str(media_type), digest, size, platform, d)


def media_type_of(data: bytes, header_type: str | None) -> str:
    """The manifest's own mediaType field wins over a Content-Type header; schema 1 is refused."""
    doc = parse_json(data)
    media_type = doc.get("mediaType") or header_type or ""
    if not media_type and "manifests" in doc:
        media_type = OCI_INDEX
    elif not media_type and "config" in doc:
        media_type = OCI_MANIFEST
    if media_type in DOCKER_SCHEMA1 or doc.get("schemaVersion") == 1:
        raise ManifestError("Docker schema 1 manifests are deprecated and not supported; re-push the image")
    if media_type not in MANIFEST_TYPES:
        raise ManifestError(f"unsupported manifest media type {media_type!r}")
    return str(media_type)


def parse_json(data: bytes) -> Doc:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(f"manifest is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ManifestError("manifest is not a JSON object")
    return doc


def index_children(data: bytes) -> list[Descriptor]:
    manifests = parse_json(data).get("manifests")
    if not isinstance(manifests, list):
        raise ManifestError("index has no 'manifests' list")
    return [Descriptor.from_dict(m) for m in manifests]


def image_blobs(data: bytes) -> list[Descriptor]:
    """Config first, then layers."""
    doc = parse_json(data)
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise ManifestError("image manifest has no 'layers' list")
    return [Descriptor.from_dict(doc.get("config")), *(Descriptor.from_dict(layer) for layer in layers)]


def config_platform(config: bytes) -> str | None:
    """`os/arch[/variant]` from an image config, or None when it does not say."""
    try:
        doc = parse_json(config)
    except ManifestError:
        return None
    if not doc.get("os") or not doc.get("architecture"):
        return None
    return f"{doc['os']}/{doc['architecture']}" + (f"/{doc['variant']}" if doc.get("variant") else "")


def platform_dict(platform: str) -> dict[str, str]:
    parts = platform.split("/")
    d = {"os": parts[0], "architecture": parts[1]}
    if len(parts) > 2:
        d["variant"] = parts[2]
    return d


@dataclass(frozen=True)
class ImageGraph:
    """Everything under one image: manifests children-first (push order), then the blobs they need."""

    manifests: tuple[tuple[str, str, bytes], ...]  # (digest, media type, bytes)
    blobs: tuple[Descriptor, ...]  # configs and layers, each once


def walk_image(read: Callable[[str], bytes], digest: str, declared_type: str) -> ImageGraph:
    """Walk an image (index or manifest) whose manifests `read(digest)` returns; ManifestError if malformed."""
    manifests: list[tuple[str, str, bytes]] = []
    blobs: dict[str, Descriptor] = {}

    def visit(digest: str, declared: str, depth: int) -> None:
        if depth > 4:
            raise ManifestError(f"indexes nested more than 4 deep at {digest}")
        data = read(digest)
        media_type = media_type_of(data, declared)
        if media_type in INDEX_TYPES:
            for child in index_children(data):
                visit(child.digest, child.media_type, depth + 1)
        else:
            for blob in image_blobs(data):
                blobs.setdefault(blob.digest, blob)
        manifests.append((digest, media_type, data))

    visit(digest, declared_type, 0)
    return ImageGraph(tuple(manifests), tuple(blobs.values()))
