"""The site's side of artifacts: a Flux `OCIRepository` per artifact under cluster/flux/, naming it in
the site registry with the secrets cluster.flux_secrets writes (the pull account, the site CA)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from bundler import yamltext
from bundler.fsutil import atomic_write
from bundler.jsontypes import Doc
from bundler.kinds.artifacts.entry import ArtifactEntry
from bundler.oci.reference import ImageReference
from bundler.site.cluster import CA_SECRET, FLUX_NAMESPACE, REGISTRY_SECRET
from bundler.site.config import FLUX_DIR, SiteConfig

PREFIX = "oci-"  # cluster/flux/oci-<name>.yaml


def resource_name(repository: str) -> str:
    """A Kubernetes name (DNS-1123 label) for an artifact's repository, unique by a short hash."""
    base = re.sub(r"[^a-z0-9]+", "-", repository.lower()).strip("-")[:44].strip("-")
    return f"{base}-{hashlib.sha256(repository.encode()).hexdigest()[:8]}"


def oci_repository(site: SiteConfig, entry: ArtifactEntry) -> tuple[str, Doc]:
    """The Flux OCIRepository that names the artifact's home on the site: (its name, the resource)."""
    ref = ImageReference.parse(entry.ref)
    parts = urlsplit(site.registry.url)
    home = site.image_repository(ref.host, ref.repository)
    spec: Doc = {"interval": "10m", "url": f"oci://{parts.netloc}/{home}",
                            "ref": {"tag": ref.tag} if ref.tag else {"digest": entry.digest}}
    if entry.files:  # files, not a tarball of manifests: Flux takes the first file's layer as it is
        spec["layerSelector"] = {"mediaType": entry.files[0].media_type, "operation": "copy"}
    if parts.scheme == "http":
        spec["insecure"] = True
    if site.embedded_registry:
        spec["secretRef"] = {"name": REGISTRY_SECRET}
        spec["certSecretRef"] = {"name": CA_SECRET}
    name = resource_name(ref.site_repository)
    return name, {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "OCIRepository",
                  "metadata": {"name": name, "namespace": FLUX_NAMESPACE}, "spec": spec}


def write_oci_repositories(site: SiteConfig, entries: Sequence[ArtifactEntry]) -> list[Path]:
    directory = site.directory / FLUX_DIR
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for entry in entries:
        if entry.form == "image":  # mounted by a node's container runtime (an image volume), not fetched by Flux
            continue
        name, doc = oci_repository(site, entry)
        path = directory / f"{PREFIX}{name}.yaml"
        atomic_write(path, yamltext.dump(doc).encode())
        written.append(path)
    return written
