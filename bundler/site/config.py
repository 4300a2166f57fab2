"""The site directory: `site.yaml` (configuration, edited by people) and `state.json` (what was imported).

site.yaml:
    apiVersion: bundler/v1
    kind: Site
    registry:
      url: http://127.0.0.1:5000     # the registry images are seeded into
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from bundler.errors import BundlerError, UsageError
from bundler.fsutil import atomic_write
from bundler.oci.client import RegistryClient

SITE_FILE = "site.yaml"
STATE_FILE = "state.json"


@dataclass(frozen=True)
class SiteConfig:
    directory: Path
    registry_url: str

    def registry_client(self, jobs: int) -> RegistryClient:
        parts = urlsplit(self.registry_url)
        return RegistryClient(parts.netloc, plain_http=parts.scheme == "http", pool_size=max(4, jobs))

    @property
    def registry_host(self) -> str:
        return urlsplit(self.registry_url).netloc


def check_registry_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/") or parts.query:
        raise UsageError(f"registry URL {url!r} must look like https://HOST[:PORT] (no path)")
    return f"{parts.scheme}://{parts.netloc}"


def init_site(directory: Path, registry_url: str | None) -> SiteConfig:
    if registry_url is None:
        raise UsageError("site init needs --registry URL: the registry this site seeds images into",
                         hint="e.g. bundler site init ./site --registry http://127.0.0.1:5000")
    config = SiteConfig(directory, check_registry_url(registry_url))
    site_file = directory / SITE_FILE
    if site_file.exists():
        raise UsageError(f"{site_file} exists: {directory} is already a site",
                         hint="edit site.yaml, or choose an empty directory")
    directory.mkdir(parents=True, exist_ok=True)
    doc = {"apiVersion": "bundler/v1", "kind": "Site", "registry": {"url": config.registry_url}}
    atomic_write(site_file, yaml.safe_dump(doc, sort_keys=False).encode())
    return config


def load_site(directory: Path) -> SiteConfig:
    site_file = directory / SITE_FILE
    try:
        doc = yaml.safe_load(site_file.read_text())
    except FileNotFoundError:
        raise UsageError(f"{directory} is not a site (no {SITE_FILE})",
                         hint=f"create one with `bundler site init {directory} --registry URL`") from None
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read {site_file}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("kind") != "Site" or not isinstance(doc.get("registry"), dict):
        raise UsageError(f"{site_file} is not a site configuration (kind: Site with a registry)")
    unknown = set(doc) - {"apiVersion", "kind", "registry"} | set(doc["registry"]) - {"url"}
    if unknown:
        raise UsageError(f"{site_file}: unknown keys {', '.join(sorted(unknown))}")
    return SiteConfig(directory, check_registry_url(str(doc["registry"].get("url", ""))))


@dataclass
class SiteState:
    """What the site imported, per bundle; machine-written JSON, replaced atomically."""

    path: Path
    bundles: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, directory: Path) -> SiteState:
        path = directory / STATE_FILE
        try:
            doc = json.loads(path.read_bytes())
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError) as exc:
            raise BundlerError(f"site state {path} is unreadable: {exc}",
                               hint="restore it from a backup; it records what this site imported") from None
        return cls(path, list(doc.get("bundles", [])))

    def imported(self, manifest_digest: str) -> dict[str, Any] | None:
        return next((b for b in self.bundles if b.get("manifest_digest") == manifest_digest), None)

    def record(self, name: str, version: str, manifest_digest: str, signers: list[str]) -> None:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        self.bundles.append({"name": name, "version": version, "manifest_digest": manifest_digest,
                             "signers": signers, "imported_at": now})
        atomic_write(self.path, json.dumps({"bundles": self.bundles}, indent=2).encode())
