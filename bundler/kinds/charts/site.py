"""The site's side of charts: a Flux `HelmRepository` (type oci) naming the charts' home on the site.

GitOps users apply it (or commit it) so Flux `HelmRelease`s install charts from the site registry.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from bundler import yamltext
from bundler.fsutil import atomic_write
from bundler.jsontypes import Doc
from bundler.site.cluster import CA_SECRET, FLUX_NAMESPACE, REGISTRY_SECRET
from bundler.site.config import FLUX_DIR, SiteConfig

HELM_REPOSITORY = "helm-repository.yaml"


def helm_repository(site: SiteConfig) -> Doc:
    parts = urlsplit(site.registry.url)
    spec: Doc = {"type": "oci", "interval": "10m",
                               "url": f"oci://{parts.netloc}/{site.repository(site.registry.chart_prefix)}"}
    if parts.scheme == "http":
        spec["insecure"] = True  # a plain-HTTP site registry (loopback or lab)
    if site.embedded_registry:  # the secrets cluster.flux_secrets writes: pull account, site CA
        spec["secretRef"] = {"name": REGISTRY_SECRET}
        spec["certSecretRef"] = {"name": CA_SECRET}
    return {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "HelmRepository",
            "metadata": {"name": "site-charts", "namespace": FLUX_NAMESPACE}, "spec": spec}


def write_helm_repository(site: SiteConfig) -> Path:
    path = site.directory / FLUX_DIR / HELM_REPOSITORY
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, yamltext.dump(helm_repository(site)).encode())
    return path
