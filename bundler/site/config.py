"""The site directory: `site.yaml` (configuration, edited by people) and `trust/` (the public keys it
trusts); `state.json` (what it imported) is site/state.py's, a new site site/create.py's. The core
sections (registry, http, trust, retention) are typed values that read and write themselves
(site/sections.py); each content kind that has one reads and writes its own section (its settings
role, registered here by bundler.kinds: `updates` and `images` below). Read here: the file, whole.

site.yaml:
    apiVersion: bundler/v1
    kind: Site
    registry:
      url: https://127.0.0.1:5443    # the registry images and charts are seeded into
      listen: 127.0.0.1:5443         # present when `site up` runs it (embedded); absent for --registry URL
      runtime: auto                  # binary (docker-registry), docker (registry:2 image), or auto
      chartPrefix: charts            # charts go to <registry>/charts/<name>:<version>
    http:
      listen: 127.0.0.1:8443         # the HTTPS service: Git server at /git/<name>.git
      push: false                    # Git clients may not push
    trust:
      threshold: 2                   # how many distinct trusted keys must have signed
      keys:
        - {name: release, file: trust/release.pub}
        - {name: security, file: trust/security.pub}
    images:                          # the images kind's (bundler/kinds/images/settings.py)
      scopes: ["ghcr.io/acme/*"]     # images the site's own cosign keys cover
      keys: [{name: image-cosign, file: trust/image-cosign.pub}]
    updates:                         # the updates kind's (bundler/kinds/updates/settings.py)
      groups: [line-1, line-2]       # target groups update approvals name
      anonymous: false               # true: anyone on the network reads every group's updates
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from bundler import names, yamltext
from bundler.errors import UsageError
from bundler.jsontypes import Doc
from bundler.keyfiles import load_trusted_key, read_operator_file
from bundler.oci.client import Credentials, RegistryClient
from bundler.oci.reference import site_path
from bundler.registered import Registered
from bundler.signing import TrustPolicy
from bundler.site.auth import CREDENTIALS_FILE, IMPORT_CREDENTIALS_FILE, load_credentials
from bundler.site.pki import CA_CERT, PKI_DIR
from bundler.site.sections import (
    HttpSection,
    RegistrySection,
    RetentionSection,
    TrustSection,
    client_host,
    mapping,
)
from bundler.site.tokens import QUARANTINE

SITE_FILE = "site.yaml"
TRUST_DIR = "trust"
RUN_DIR, LOG_DIR = "run", "logs"  # what `site up` started (pids), the import lock and journal; service logs
CLUSTER_DIR = "cluster"  # what the cluster needs: registries.yaml, certs.d, flux
FLUX_DIR = f"{CLUSTER_DIR}/flux"
GIT_DIR = "git"
REGISTRY_DIR = "registry"
REGISTRY_STORAGE = f"{REGISTRY_DIR}/storage"  # the embedded registry's filesystem storage


@dataclass(frozen=True)
class SiteConfig:
    """site.yaml: its core sections (registry, trust, http, retention: sections.py) and each content
    kind's own, by its key (parsed by the kind's settings role)."""
    directory: Path
    registry: RegistrySection
    trust: TrustSection
    http: HttpSection = field(default_factory=HttpSection)
    retention: RetentionSection = field(default_factory=RetentionSection)
    name: str = ""  # the site's name in receipts and the fleet (site init --name; default the host name)
    sections: Mapping[str, object] = field(default_factory=dict)  # each content kind's own section, by its key

    def section(self, key: str) -> object:
        """The kind `key`'s own section, as its settings role parsed it (its default when absent)."""
        return self.sections[key] if key in self.sections else _section_kind(key).settings.parse({}, self.directory)

    @property
    def site_name(self) -> str:
        """This site's name: site.yaml's `name`, or (a site made before names) its directory's."""
        return self.name or self.directory.resolve().name

    @property
    def http_url(self) -> str:
        host, _, port = self.http.listen.rpartition(":")
        return f"https://{client_host(host)}:{port}"

    def git_url(self, name: str) -> str:
        return f"{self.http_url}/git/{name}.git"

    @property
    def ca_file(self) -> Path:
        return self.directory / PKI_DIR / CA_CERT

    @property
    def credentials_file(self) -> Path:
        """The client account: pull and fetch only. What cluster nodes and Flux get."""
        return self.directory / CREDENTIALS_FILE

    @property
    def token_realm(self) -> str:
        """Where the embedded registry sends clients for a token: the site's HTTPS service."""
        return f"{self.http_url}/token"

    @property
    def embedded_registry(self) -> bool:
        return self.registry.listen is not None

    def host_path(self, host: str) -> str:
        """The path a source registry's images go under: its rewrite rule's, else its host name (a
        port as _PORT): `ghcr.io/acme/app` lands at `<host_path(ghcr.io)>/acme/app`."""
        return dict(self.registry.rewrites).get(host) or site_path(host, "").rstrip("/")

    def image_repository(self, host: str, repository: str) -> str:
        """Where an image (or artifact) of `host/repository` lives in the site's registry."""
        return self.repository(f"{self.host_path(host)}/{repository}")

    def repository(self, path: str) -> str:
        """Where `path` (`<source host>/<path>`, `charts/<name>`) lives in the site's registry: under
        the registry's prefix (a Harbor project, say) when it has one."""
        return f"{self.registry.prefix}/{path}" if self.registry.prefix else path

    def storage_driver(self) -> Doc | None:
        """The embedded registry's storage section when it is not the site's disk (Distribution's
        s3 driver, path-style requests to `s3_endpoint`)."""
        if not self.registry.storage:
            return None
        bucket, _, root = self.registry.storage.removeprefix("s3://").partition("/")
        keys = read_s3_credentials(self.directory / self.registry.s3_credentials)
        s3: Doc = {"bucket": bucket, "accesskey": keys["accessKey"], "secretkey": keys["secretKey"],
                                 "region": keys.get("region", "us-east-1"), "v4auth": True,
                                 "rootdirectory": f"/{root}" if root else "/"}
        if self.registry.s3_endpoint:
            s3["regionendpoint"] = self.registry.s3_endpoint
            s3["secure"] = self.registry.s3_endpoint.startswith("https://")
        return {"s3": s3}

    @property
    def quarantine(self) -> str:
        """The repository an import's blobs wait in until the whole bundle verified (under the prefix:
        a robot account pushes to its project only)."""
        return self.repository(QUARANTINE)

    @property
    def registry_ca_file(self) -> Path | None:
        """The CA clients check the site's registry with: the site's own for its embedded registry,
        the one given for another registry (None: the system's trust store)."""
        if self.embedded_registry:
            return self.ca_file
        return self.directory / self.registry.ca if self.registry.ca else None

    @property
    def registry_location(self) -> str:
        """host[:port]/prefix: where references to the site's registry start."""
        netloc = urlsplit(self.registry.url).netloc
        return f"{netloc}/{self.registry.prefix}" if self.registry.prefix else netloc

    def registry_client(self, jobs: int) -> RegistryClient:
        parts = urlsplit(self.registry.url)
        if self.embedded_registry:  # TLS from the site CA; the import account (it pushes)
            user, password = load_credentials(self.directory, IMPORT_CREDENTIALS_FILE)
            return RegistryClient(parts.netloc, plain_http=False, ca_file=str(self.ca_file),
                                  credentials=Credentials(user, password), pool_size=max(4, jobs), writer=True)
        account = read_registry_credentials(self.directory / self.registry.credentials) \
            if self.registry.credentials else None
        return RegistryClient(parts.netloc, plain_http=parts.scheme == "http", pool_size=max(4, jobs),
                              ca_file=str(self.directory / self.registry.ca) if self.registry.ca else None,
                              credentials=account if isinstance(account, Credentials) else None,
                              bearer=account if isinstance(account, str) else None, writer=account is not None)

    def policy(self) -> TrustPolicy:
        keys = tuple(load_trusted_key(self.directory / file, name) for name, file in self.trust.keys)
        try:
            return TrustPolicy(keys, self.trust.threshold)
        except ValueError as exc:
            raise UsageError(f"{self.directory / SITE_FILE}: trust: {exc}") from None

    @functools.cached_property
    def _key_names(self) -> dict[str, str]:  # the trust keys read once, whatever the number of bundles named
        return {key.keyid: key.name for key in self.policy().keys}

    def signer_names(self, keyids: Sequence[str]) -> list[str]:
        """The trust policy's name of each key id (a key no longer trusted: the first 12 hex of its id)."""
        return [self._key_names.get(keyid, keyid[:12]) for keyid in keyids]

    def to_yaml(self) -> bytes:
        doc: Doc = {"apiVersion": "bundler/v1", "kind": "Site", **({"name": self.name} if self.name else {}),
                    "registry": self.registry.to_dict(), "http": self.http.to_dict(), "trust": self.trust.to_dict()}
        if (retention := self.retention.to_dict()) is not None:
            doc["retention"] = retention
        for kind in section_kinds():  # each kind writes its own section (None: it leaves it out)
            if (section := kind.settings.dump(self.section(kind.key))) is not None:
                doc[kind.key] = section
        return yamltext.dump(doc).encode()


def checked_site_name(value: str) -> str:
    try:
        return names.site_name(value)
    except ValueError as exc:
        raise UsageError(f"site name {exc}", hint="give one with --name (letters, digits, . _ -)") from None


S3_CREDENTIALS_FILE = "s3-credentials.json"


def read_s3_credentials(path: Path) -> dict[str, str]:
    """{"accessKey": ..., "secretKey": ..., optional "region"}; UsageError naming the file otherwise."""
    try:
        doc = json.loads(read_operator_file(path, "an S3 credentials file"))
    except ValueError as exc:
        raise UsageError(f"{path}: not an S3 credentials file ({exc})",
                         hint='it is JSON: {"accessKey": "...", "secretKey": "..."}') from None
    if not isinstance(doc, dict) or not {"accessKey", "secretKey"} <= set(doc) <= {"accessKey", "secretKey", "region"} \
            or not all(isinstance(v, str) and v for v in doc.values()):
        raise UsageError(f"{path}: an S3 credentials file holds accessKey and secretKey (and optionally region)",
                         hint='{"accessKey": "...", "secretKey": "..."}')
    return {str(k): str(v) for k, v in doc.items()}


def private_file(path: Path, what: str) -> None:
    """A file holding a secret must not be readable by others (refused: UsageError with the fix)."""
    if path.stat().st_mode & 0o077:
        raise UsageError(f"{path} can be read by other users: it holds {what}",
                         hint=f"chmod 600 {path}, then run the same command again")


REGISTRY_CA_FILE = "pki/registry-ca.pem"
REGISTRY_CREDENTIALS_FILE = "registry-credentials.json"


def read_registry_credentials(path: Path) -> Credentials | str:
    """A registry account file: {"username": ..., "password": ...} (a Harbor robot account), or
    {"token": ...} (sent as a bearer token). UsageError naming the file otherwise."""
    try:
        doc = json.loads(read_operator_file(path, "a registry credentials file"))
    except ValueError as exc:
        raise UsageError(f"{path}: not a registry credentials file ({exc})",
                         hint='it is JSON: {"username": "...", "password": "..."} or {"token": "..."}') from None
    if isinstance(doc, dict) and set(doc) == {"token"} and isinstance(doc["token"], str) and doc["token"]:
        return str(doc["token"])
    if isinstance(doc, dict) and set(doc) == {"username", "password"} and \
            all(isinstance(doc[k], str) and doc[k] for k in ("username", "password")):
        return Credentials(doc["username"], doc["password"])
    raise UsageError(f"{path}: a registry credentials file holds username and password, or token",
                     hint='{"username": "robot$edge+import", "password": "..."} or {"token": "..."}')


def load_site(directory: Path) -> SiteConfig:
    site_file = directory / SITE_FILE
    try:
        doc = yamltext.load(site_file.read_text())
    except FileNotFoundError:
        bundles = directory.is_dir() and any(directory.glob("*.bundle.tar*"))
        hint = (("it holds bundles (a USB stick?): " if bundles else "")
                + "give the site's own directory, the one `bundler site init` made (such as /srv/site); "
                  "a new site: `bundler site init /srv/site --trust-key release.pub`")
        raise UsageError(f"{directory} is not a site (no {SITE_FILE})", hint=hint) from None
    except (OSError, yamltext.Error) as exc:
        raise UsageError(f"cannot read {site_file}: {exc}") from None
    except RecursionError:
        raise UsageError(f"cannot read {site_file}: nested too deeply") from None
    try:
        if not isinstance(doc, dict) or doc.get("kind") != "Site":
            raise ValueError("not a site configuration (kind: Site)")
        kinds = section_kinds()
        unknown = set(doc) - {"apiVersion", "kind", "name", "registry", "trust", "http", "retention",
                              *(kind.key for kind in kinds)}
        if unknown:
            raise ValueError(f"unknown keys {', '.join(sorted(map(str, unknown)))}")
        sections = {}
        for kind in kinds:  # each kind parses its own section (ValueError naming what is wrong)
            section = doc.get(kind.key) or {}
            if not isinstance(section, dict):
                raise ValueError(f"{kind.key} must be a mapping")
            sections[kind.key] = kind.settings.parse(section, directory)
        return SiteConfig(
            directory, RegistrySection.parse(mapping(doc, "registry", RegistrySection.KEYS)),
            TrustSection.parse(mapping(doc, "trust", {"threshold", "keys"})),
            HttpSection.parse(mapping(doc, "http", {"listen", "push"})),
            RetentionSection.parse(mapping(doc, "retention", {"keep", "warnPercent"})),
            names.site_name(str(doc["name"])) if doc.get("name") is not None else "", sections)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"{site_file}: {exc}") from None


class SectionSettings(Protocol):
    """A kind's settings role, as the site reads it (bundler.kinds.base.Settings implements it)."""

    def parse(self, section: Mapping[str, object], directory: Path) -> object: ...

    def dump(self, value: Any) -> Doc | None: ...


class SectionKind(Protocol):
    """A kind with a section of its own in site.yaml: its key names the section."""

    @property
    def key(self) -> str: ...

    @property
    def settings(self) -> SectionSettings: ...


_SECTIONS: Registered[SectionKind] = Registered("reading a site")
register_sections = _SECTIONS.set  # the kinds whose sections site.yaml holds
section_kinds = _SECTIONS.get


def _section_kind(key: str) -> SectionKind:
    found = next((kind for kind in section_kinds() if kind.key == key), None)
    if found is None:
        raise KeyError(f"no content kind {key!r} keeps a section in site.yaml")
    return found
