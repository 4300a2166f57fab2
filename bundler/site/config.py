"""The site directory: `site.yaml` (configuration, edited by people), `trust/` (the public keys it
trusts) and `state.json` (what it imported, for rollback protection and status).

site.yaml:
    apiVersion: bundler/v1
    kind: Site
    registry:
      url: http://127.0.0.1:5000     # the registry images and charts are seeded into
      chartPrefix: charts            # charts go to <registry>/charts/<name>:<version>
    trust:
      threshold: 2                   # how many distinct trusted keys must have signed
      keys:
        - {name: release, file: trust/release.pub}
        - {name: security, file: trust/security.pub}
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from bundler.errors import BundlerError, UsageError
from bundler.fsutil import atomic_write
from bundler.keyfiles import key_name, load_trusted_key
from bundler.oci.client import RegistryClient
from bundler.signing import TrustPolicy

SITE_FILE = "site.yaml"
STATE_FILE = "state.json"
TRUST_DIR = "trust"
PREFIX_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")


@dataclass(frozen=True)
class SiteConfig:
    directory: Path
    registry_url: str
    trust_keys: tuple[tuple[str, str], ...]  # (name, file relative to the site directory)
    threshold: int
    chart_prefix: str = "charts"  # charts go to <registry>/<chart_prefix>/<name>:<version>

    def registry_client(self, jobs: int) -> RegistryClient:
        parts = urlsplit(self.registry_url)
        return RegistryClient(parts.netloc, plain_http=parts.scheme == "http", pool_size=max(4, jobs))

    def policy(self) -> TrustPolicy:
        keys = tuple(load_trusted_key(self.directory / file, name) for name, file in self.trust_keys)
        try:
            return TrustPolicy(keys, self.threshold)
        except ValueError as exc:
            raise UsageError(f"{self.directory / SITE_FILE}: trust: {exc}") from None

    def to_yaml(self) -> bytes:
        doc = {"apiVersion": "bundler/v1", "kind": "Site",
               "registry": {"url": self.registry_url, "chartPrefix": self.chart_prefix},
               "trust": {"threshold": self.threshold,
                         "keys": [{"name": name, "file": file} for name, file in self.trust_keys]}}
        return yaml.safe_dump(doc, sort_keys=False).encode()


def check_registry_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/") or parts.query:
        raise UsageError(f"registry URL {url!r} must look like https://HOST[:PORT] (no path)")
    return f"{parts.scheme}://{parts.netloc}"


def check_chart_prefix(prefix: str) -> str:
    if not PREFIX_RE.match(prefix):
        raise UsageError(f"chart prefix {prefix!r} is not a repository path (lowercase letters, digits, . _ - /)")
    return prefix


def init_site(directory: Path, registry_url: str | None, trust_keys: Sequence[Path], threshold: int,
              chart_prefix: str = "charts") -> SiteConfig:
    """Create a site: its configuration and a copy of every trusted public key under trust/."""
    if registry_url is None:
        raise UsageError("site init needs --registry URL: the registry this site seeds images into",
                         hint="e.g. bundler site init ./site --registry http://127.0.0.1:5000 --trust-key release.pub")
    if not trust_keys:
        raise UsageError("site init needs at least one --trust-key PUB: a site imports only signed bundles",
                         hint="the release engineer's public key (made by `bundler keygen`)")
    site_file = directory / SITE_FILE
    if site_file.exists():
        raise UsageError(f"{site_file} exists: {directory} is already a site",
                         hint="edit site.yaml, or choose an empty directory")
    keys = [load_trusted_key(path) for path in trust_keys]
    names = [key_name(path) for path in trust_keys]
    if len(set(names)) != len(names) or len({k.keyid for k in keys}) != len(keys):
        raise UsageError("each --trust-key must be a different key with a different file name")
    try:
        TrustPolicy(tuple(keys), threshold)
    except ValueError as exc:
        raise UsageError(f"--threshold: {exc}") from None
    config = SiteConfig(directory, check_registry_url(registry_url),
                        tuple((name, f"{TRUST_DIR}/{name}.pub") for name in names), threshold,
                        check_chart_prefix(chart_prefix))
    (directory / TRUST_DIR).mkdir(parents=True, exist_ok=True)
    for path, (_, file) in zip(trust_keys, config.trust_keys, strict=True):
        shutil.copyfile(path, directory / file)
    atomic_write(site_file, config.to_yaml())
    return config


def load_site(directory: Path) -> SiteConfig:
    site_file = directory / SITE_FILE
    try:
        doc = yaml.safe_load(site_file.read_text())
    except FileNotFoundError:
        hint = f"create one with `bundler site init {directory} --registry URL --trust-key PUB`"
        raise UsageError(f"{directory} is not a site (no {SITE_FILE})", hint=hint) from None
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read {site_file}: {exc}") from None
    try:
        if not isinstance(doc, dict) or doc.get("kind") != "Site":
            raise ValueError("not a site configuration (kind: Site)")
        unknown = set(doc) - {"apiVersion", "kind", "registry", "trust"}
        if unknown:
            raise ValueError(f"unknown keys {', '.join(sorted(unknown))}")
        trust = doc.get("trust") or {}
        keys = tuple((str(k["name"]), str(k["file"])) for k in trust.get("keys") or [])
        threshold = trust.get("threshold", 1)
        if not keys or not isinstance(threshold, int):
            raise ValueError("trust needs keys (name, file) and an integer threshold")
        registry = doc["registry"]
        unknown = set(registry) - {"url", "chartPrefix"}
        if unknown:
            raise ValueError(f"unknown keys in registry: {', '.join(sorted(unknown))}")
        return SiteConfig(directory, check_registry_url(str(registry["url"])), keys, threshold,
                          check_chart_prefix(str(registry.get("chartPrefix", "charts"))))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"{site_file}: {exc}") from None


@dataclass
class SiteState:
    """What the site imported, in order; machine-written JSON, replaced atomically."""

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

    def latest(self, name: str) -> dict[str, Any] | None:
        """The last bundle of this name the site imported: what it runs now."""
        return next((b for b in reversed(self.bundles) if b.get("name") == name), None)

    def record(self, name: str, version: str, manifest_digest: str, signers: list[str]) -> None:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        self.bundles.append({"name": name, "version": version, "manifest_digest": manifest_digest,
                             "signers": signers, "imported_at": now})
        atomic_write(self.path, json.dumps({"bundles": self.bundles}, indent=2).encode())
