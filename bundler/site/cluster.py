"""Cluster configuration the site writes under DIR/cluster/ after every import, so the cluster pulls
images by their ORIGINAL names from the site registry:

    cluster/registries.yaml                 K3s/RKE2: a mirror per source host, rewritten to its
                                            host-prefixed path, with the site CA and credentials
    cluster/certs.d/<host>/hosts.toml       containerd: the same, with override_path
    cluster/flux/kustomization.yaml         Flux sources (HelmRepository, GitRepository) and the
                                            secret they use, in one kustomization
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from bundler.fsutil import atomic_write
from bundler.oci.reference import DEFAULT_HOST, DOCKER_HUB_API_HOST, is_loopback, site_path
from bundler.site.auth import load_credentials
from bundler.site.config import CLUSTER_DIR, FLUX_DIR, SiteConfig, SiteState


def source_hosts(state: SiteState) -> list[str]:
    return sorted({host for b in state.bundles for host in b.get("sources", [])})


def _private(path: Path, data: bytes) -> None:
    atomic_write(path, data, mode=0o600)


def write_cluster_config(site: SiteConfig, state: SiteState) -> Path:
    root = site.directory / CLUSTER_DIR
    (root / "certs.d").mkdir(parents=True, exist_ok=True)
    registry = urlsplit(site.registry_url)
    ca = str(site.ca_file.resolve())
    credentials = load_credentials(site.directory) if site.embedded_registry else None
    hosts = source_hosts(state)

    mirrors = {host: {"endpoint": [f"{registry.scheme}://{registry.netloc}"],
                      "rewrite": {"^(.*)$": site_path(host, "$1")}} for host in hosts}
    config: dict[str, object] = {}
    if registry.scheme == "https":
        config["tls"] = {"ca_file": ca}
    if credentials:
        config["auth"] = {"username": credentials[0], "password": credentials[1]}
    _private(root / "registries.yaml",
             yaml.safe_dump({"mirrors": mirrors, "configs": {registry.netloc: config}}, sort_keys=False).encode())

    for host in hosts:
        upstream = DOCKER_HUB_API_HOST if host == DEFAULT_HOST else host
        mirror = f"{registry.scheme}://{registry.netloc}/v2/{site_path(host, '').rstrip('/')}"
        lines = [f'server = "{"http" if is_loopback(host) else "https"}://{upstream}"', "",
                 f'[host."{mirror}"]', '  capabilities = ["pull", "resolve"]', "  override_path = true"]
        if registry.scheme == "https":
            lines.append(f'  ca = "{ca}"')
        if credentials:
            token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
            lines += [f'  [host."{mirror}".header]', f'    Authorization = ["Basic {token}"]']
        directory = root / "certs.d" / host
        directory.mkdir(parents=True, exist_ok=True)
        _private(directory / "hosts.toml", ("\n".join(lines) + "\n").encode())
    write_flux_kustomization(site)
    return root


def write_flux_kustomization(site: SiteConfig) -> Path:
    flux = site.directory / FLUX_DIR
    flux.mkdir(parents=True, exist_ok=True)
    user, password = load_credentials(site.directory)
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "site-git", "namespace": "flux-system"},
              "type": "Opaque",
              "stringData": {"username": user, "password": password, "caFile": site.ca_file.read_text()}}
    _private(flux / "site-git-secret.yaml", yaml.safe_dump(secret, sort_keys=False).encode())
    resources = sorted(p.name for p in flux.glob("*.yaml") if p.name != "kustomization.yaml")
    kustomization = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                     "resources": resources}
    atomic_write(flux / "kustomization.yaml", yaml.safe_dump(kustomization, sort_keys=False).encode())
    os.chmod(flux, 0o700)
    return flux
