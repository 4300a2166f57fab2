"""Every path inside a bundle is spelled here and nowhere else."""

from __future__ import annotations

SCHEMA = "bundler/bundle/v1"
MANIFEST = "bundle.json"
SIGNATURES = "signatures.json"
OCI_DIR = "oci"
OCI_LAYOUT = "oci/oci-layout"
OCI_INDEX = "oci/index.json"
OCI_BLOBS = "oci/blobs/sha256/"
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
