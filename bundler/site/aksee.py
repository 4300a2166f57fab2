"""`bundler site client aksee-trust`: a PowerShell script for an AKS Edge Essentials host that puts the
site into its Linux node: the site CA into the node's trust store (Azure Linux: update-ca-trust), the
containerd mirror (`hosts.toml` per source host) and K3s's `registries.yaml` the site writes for its
cluster (cluster.py), with the CA at the node's own path; then containerd (or K3s) restarted, and the
Flux sources and their secrets applied with the host's kubectl. Each node command runs through AKS
EE's `Invoke-AksEdgeNodeCommand`. `-Check` reports what is missing or different and changes nothing.

What goes into the node travels as base64 inside the script (a base64 text has no character a shell
or PowerShell reads specially); the paths are the project's own, and a source host name is checked
against a host's characters before it becomes one. The script holds the site's pull credentials
(the Flux secrets): it is written with mode 0600.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from bundler.errors import BundlerError
from bundler.fsutil import atomic_write
from bundler.site.cluster import node_files
from bundler.site.config import FLUX_DIR, SiteConfig
from bundler.site.state import SiteState

SCRIPT = "bundler-aksee-trust.ps1"
NODE_CA = "/etc/pki/ca-trust/source/anchors/bundler-site.crt"  # Azure Linux's anchors (update-ca-trust)
NODE_CERTS_D = "/etc/containerd/certs.d"
NODE_K3S_REGISTRIES = "/etc/rancher/k3s/registries.yaml"
HOST_RE = re.compile(r"^[A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?$")  # a registry host[:port]


def node_placements(site: SiteConfig, state: SiteState) -> list[tuple[str, bytes]]:
    """(path in the node, content): the CA, containerd's hosts.toml per source host, K3s's registries.yaml."""
    ca = site.registry_ca_file
    registries, tomls = node_files(site, state, NODE_CA if ca is not None else None)
    placed = [(NODE_CA, ca.read_bytes())] if ca is not None else []
    for host, text in sorted(tomls.items()):
        if not HOST_RE.match(host):
            raise BundlerError(f"source host {host[:80]!r} is not a host name: not written into a node script")
        placed.append((f"{NODE_CERTS_D}/{host}/hosts.toml", text))  # containerd's directory per host[:port]
    placed.append((NODE_K3S_REGISTRIES, registries))
    return placed


def flux_files(site: SiteConfig) -> list[tuple[str, bytes]]:
    flux = site.directory / FLUX_DIR
    return [(p.name, p.read_bytes()) for p in sorted(flux.glob("*.yaml"))] if flux.exists() else []


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def script_text(site: SiteConfig, state: SiteState) -> str:
    placements = "\n".join(f"    @{{ Path = '{path}'; Sha256 = '{hashlib.sha256(data).hexdigest()}'; "
                           f"Data = '{_b64(data)}' }}" for path, data in node_placements(site, state))
    flux = "\n".join(f"    @{{ Name = '{name}'; Data = '{_b64(data)}' }}" for name, data in flux_files(site))
    template = (Path(__file__).parent / "aksee-trust.ps1.in").read_text()
    return template.replace("@@PLACEMENTS@@", placements).replace("@@FLUX@@", flux)


def write_script(site: SiteConfig, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / SCRIPT
    atomic_write(path, script_text(site, SiteState.load(site.directory)).encode(), mode=0o600)
    return path
