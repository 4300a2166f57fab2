"""Cluster configuration the site writes under DIR/cluster/ after every import, so the cluster pulls
images by their ORIGINAL names from the site registry, with the pull-only client account:

    cluster/registries.yaml                 K3s/RKE2: a mirror per source host, rewritten to its
                                            host-prefixed path, with the site CA and the client account
    cluster/certs.d/<host>/hosts.toml       containerd: the same, with override_path and the site CA
                                            (credentials come from the node's CRI config or
                                            imagePullSecrets: hosts.toml has no place for them)
    cluster/flux/                           Flux sources (HelmRepository, GitRepository) and the
                                            secrets they name, in one kustomization:
        site-registry-secret.yaml           kubernetes.io/dockerconfigjson (HelmRepository secretRef,
                                            also usable as an imagePullSecret)
        site-ca-secret.yaml                 ca.crt (HelmRepository certSecretRef)
        site-git-secret.yaml                username, password, ca.crt (GitRepository secretRef)
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from urllib.parse import urlsplit

from bundler import yamltext
from bundler.fsutil import atomic_write
from bundler.jsontypes import Doc
from bundler.oci.reference import DEFAULT_HOST, DOCKER_HUB_API_HOST, is_loopback
from bundler.site.auth import load_credentials
from bundler.site.config import CLUSTER_DIR, FLUX_DIR, SiteConfig
from bundler.site.state import SiteState

GIT_SECRET, REGISTRY_SECRET, CA_SECRET = "site-git", "site-registry", "site-ca"
FLUX_NAMESPACE = "flux-system"


def source_hosts(state: SiteState) -> list[str]:
    return sorted({host for b in state.bundles for host in b.sources})


def _private(path: Path, data: bytes) -> None:
    atomic_write(path, data, mode=0o600)


def write_cluster_config(site: SiteConfig, state: SiteState) -> Path:
    root = site.directory / CLUSTER_DIR
    (root / "certs.d").mkdir(parents=True, exist_ok=True)
    ca = site.registry_ca_file
    registries, hosts_tomls = node_files(site, state, str(ca.resolve()) if ca is not None else None)
    _private(root / "registries.yaml", registries)
    for host, text in hosts_tomls.items():
        directory = root / "certs.d" / host
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write(directory / "hosts.toml", text)
    write_flux_kustomization(site)
    return root


def node_files(site: SiteConfig, state: SiteState, ca: str | None) -> tuple[bytes, dict[str, bytes]]:
    """K3s's registries.yaml and containerd's hosts.toml per source host, for a node that keeps the
    registry's CA at `ca` (None: the node trusts it already)."""
    registry = urlsplit(site.registry.url)
    credentials = load_credentials(site.directory) if site.embedded_registry else None
    hosts = source_hosts(state)

    mirrors: Doc = {host: {"endpoint": [f"{registry.scheme}://{registry.netloc}"],
                      "rewrite": {"^(.*)$": site.repository(f"{site.host_path(host)}/$1")}} for host in hosts}
    config: Doc = {}
    if registry.scheme == "https" and ca is not None:
        config["tls"] = {"ca_file": ca}
    if credentials:
        config["auth"] = {"username": credentials[0], "password": credentials[1]}
    registries = yamltext.dump({"mirrors": mirrors, "configs": {registry.netloc: config}}).encode()
    tomls = {}
    for host in hosts:
        upstream = DOCKER_HUB_API_HOST if host == DEFAULT_HOST else host
        mirror = f"{registry.scheme}://{registry.netloc}/v2/{site.repository(site.host_path(host))}"
        lines = [f'server = "{"http" if is_loopback(host) else "https"}://{upstream}"', "",
                 f'[host."{mirror}"]', '  capabilities = ["pull", "resolve"]', "  override_path = true"]
        if registry.scheme == "https" and ca is not None:
            lines.append(f'  ca = "{ca}"')
        tomls[host] = ("\n".join(lines) + "\n").encode()
    return registries, tomls


def _secret(name: str, data: dict[str, str], kind: str = "Opaque") -> Doc:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": FLUX_NAMESPACE},
            "type": kind, "stringData": data}


def flux_secrets(site: SiteConfig) -> dict[str, Doc]:
    """file name -> Secret: what the Flux sources of this site name, with the keys Flux reads."""
    user, password = load_credentials(site.directory)
    ca = site.ca_file.read_text()
    secrets = {"site-git-secret.yaml": _secret(GIT_SECRET, {"username": user, "password": password, "ca.crt": ca})}
    if site.embedded_registry:
        netloc = urlsplit(site.registry.url).netloc
        auth = base64.b64encode(f"{user}:{password}".encode()).decode()
        config = {"auths": {netloc: {"username": user, "password": password, "auth": auth}}}
        secrets["site-registry-secret.yaml"] = _secret(
            REGISTRY_SECRET, {".dockerconfigjson": json.dumps(config)}, "kubernetes.io/dockerconfigjson")
        secrets["site-ca-secret.yaml"] = _secret(CA_SECRET, {"ca.crt": ca})
    return secrets


def write_flux_kustomization(site: SiteConfig) -> Path:
    flux = site.directory / FLUX_DIR
    flux.mkdir(parents=True, exist_ok=True)
    for name, secret in flux_secrets(site).items():
        _private(flux / name, yamltext.dump(secret).encode())
    resources = sorted(p.name for p in flux.glob("*.yaml") if p.name != "kustomization.yaml")
    kustomization = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                     "resources": resources}
    atomic_write(flux / "kustomization.yaml", yamltext.dump(kustomization).encode())
    os.chmod(flux, 0o700)
    return flux
