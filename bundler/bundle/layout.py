"""The format's own paths inside a bundle are spelled here; each content kind spells the paths of its
payloads outside the OCI layout (FormatKind.payload_pattern: `updates/<sha256>`, `git/<name>.bundle`)."""

from __future__ import annotations

import functools
import posixpath
import re

SCHEMA = "bundler/bundle/v1"
MANIFEST = "bundle.json"
SIGNATURES = "signatures.json"
OCI_DIR = "oci"
OCI_LAYOUT = "oci/oci-layout"
OCI_INDEX = "oci/index.json"
OCI_BLOBS = "oci/blobs/sha256/"
SBOM = "sbom.cdx.json"  # the bundle's CycloneDX SBOM (listed in bundle.json: signed like any payload)
MAX_SBOM_BYTES = 64 << 20
SUFFIX = ".bundle.tar"

OCI_LAYOUT_CONTENT = b'{"imageLayoutVersion":"1.0.0"}'
MAX_MANIFEST_BYTES = 64 << 20
MAX_SIGNATURES_BYTES = 1 << 20


def blob_path(digest: str) -> str:
    """`sha256:abc...` -> `oci/blobs/sha256/abc...`."""
    algorithm, _, hexdigest = digest.partition(":")
    if algorithm != "sha256" or len(hexdigest) != 64:
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return OCI_BLOBS + hexdigest


def bundle_filename(name: str, version: str) -> str:
    return f"{name}-{version}{SUFFIX}"


def unsafe_path_reason(name: str) -> str | None:
    if not name or name.startswith("/") or "\\" in name or "\0" in name:
        return "an absolute or malformed path"
    parts = name.rstrip("/").split("/")
    if ".." in parts:
        return "a path that climbs out of the bundle (..)"
    if posixpath.normpath(name.rstrip("/")) != name.rstrip("/"):
        return "a path that is not in normal form"
    return None


_BLOB_RE = re.compile(r"^oci/blobs/sha256/[a-f0-9]{64}$")


@functools.cache
def _kind_payloads(patterns: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{pattern})" for pattern in patterns) or "(?!)")


def payload_path(name: str, patterns: tuple[str, ...]) -> str:
    """A path bundle.json may list as a file: the OCI layout's two files, the SBOM, a blob, or a path
    a content kind keeps its payloads at (`patterns`: the kinds' `payload_pattern`). ValueError otherwise."""
    if name not in (OCI_LAYOUT, OCI_INDEX, SBOM) and not _BLOB_RE.match(name) \
            and not _kind_payloads(patterns).fullmatch(name):
        raise ValueError(f"{name[:120]!r} is not a path a bundle holds payloads at")
    return name
