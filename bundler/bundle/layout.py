"""Every path inside a bundle is spelled here and nowhere else."""

from __future__ import annotations

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


GIT_DIR = "git/"
UPDATES_DIR = "updates/"


def update_path(sha256: str) -> str:
    return f"{UPDATES_DIR}{sha256}"


def git_bundle_path(name: str) -> str:
    return f"{GIT_DIR}{name}.bundle"


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


_PAYLOAD_RE = re.compile(r"^(?:oci/blobs/sha256/[a-f0-9]{64}|updates/[a-f0-9]{64}"
                         r"|git/[A-Za-z0-9][A-Za-z0-9._-]{0,99}\.bundle)$")


def payload_path(name: str) -> str:
    """A path bundle.json may list as a file: the OCI layout's two files, a blob, an update payload or
    a Git bundle, each spelled as above. ValueError otherwise."""
    if name not in (OCI_LAYOUT, OCI_INDEX, SBOM) and not _PAYLOAD_RE.match(name):
        raise ValueError(f"{name[:120]!r} is not a path a bundle holds payloads at")
    return name
