"""The site directory: `site.yaml` (configuration, edited by people) and `trust/` (the public keys it
trusts); `state.json` (what it imported) is site/state.py's, a new site site/create.py's. The core
sections are read here; each content kind that has one reads and writes its own section (its
settings role, registered here by bundler.kinds: `updates` and `images` below).

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
import ipaddress
import json
import re
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
from bundler.site.tokens import QUARANTINE

SITE_FILE = "site.yaml"
TRUST_DIR = "trust"
RUN_DIR, LOG_DIR = "run", "logs"  # what `site up` started (pids), the import lock and journal; service logs
CLUSTER_DIR = "cluster"  # what the cluster needs: registries.yaml, certs.d, flux
FLUX_DIR = f"{CLUSTER_DIR}/flux"
GIT_DIR = "git"
DEFAULT_HTTP_LISTEN = "127.0.0.1:8443"
DEFAULT_REGISTRY_LISTEN = "127.0.0.1:5443"
REGISTRY_DIR = "registry"
REGISTRY_STORAGE = f"{REGISTRY_DIR}/storage"  # the embedded registry's filesystem storage
PREFIX_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")


@dataclass(frozen=True)
class SiteConfig:
    """site.yaml: the site's registry, trust policy, services' addresses, groups and image policy."""
    directory: Path
    registry_url: str
    trust_keys: tuple[tuple[str, str], ...]  # (name, file relative to the site directory)
    threshold: int
    chart_prefix: str = "charts"  # charts go to <registry>/<chart_prefix>/<name>:<version>
    http_listen: str = DEFAULT_HTTP_LISTEN  # the site's HTTPS service (Git server)
    allow_push: bool = False  # whether Git clients may push
    registry_listen: str | None = None  # set when the site runs its own (embedded) registry
    registry_runtime: str = "auto"  # how `site up` runs it: the binary, a Docker container, or auto
    name: str = ""  # the site's name in receipts and the fleet (site init --name; default the host name)
    retention_keep: int = 3  # releases of each bundle name `site prune` keeps
    warn_percent: int = 85  # import warns when the disk would be fuller than this after it
    registry_prefix: str = ""  # a registry that is not the site's own: everything goes under this path (a project)
    registry_ca: str = ""  # its CA (a file in the site directory), when it is not in the system's trust store
    registry_credentials: str = ""  # its account (a 0600 JSON file in the site directory)
    registry_storage: str = ""  # the embedded registry on object storage: s3://BUCKET[/ROOT] ("": the site's disk)
    s3_endpoint: str = ""  # the S3 server's URL (MinIO, Ceph, moto; "": AWS)
    s3_credentials: str = ""  # its keys (a 0600 JSON file in the site directory)
    rewrites: tuple[tuple[str, str], ...] = ()  # (source registry host, the path its images go under)
    sections: Mapping[str, Any] = field(default_factory=dict)  # each content kind's own section, by its key

    def section(self, key: str) -> Any:
        """The kind `key`'s own section, as its settings role parsed it (its default when absent)."""
        return self.sections[key] if key in self.sections else _section_kind(key).settings.parse({}, self.directory)

    @property
    def site_name(self) -> str:
        """This site's name: site.yaml's `name`, or (a site made before names) its directory's."""
        return self.name or self.directory.resolve().name

    @property
    def http_url(self) -> str:
        host, _, port = self.http_listen.rpartition(":")
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
        return self.registry_listen is not None

    def host_path(self, host: str) -> str:
        """The path a source registry's images go under: its rewrite rule's, else its host name (a
        port as _PORT): `ghcr.io/acme/app` lands at `<host_path(ghcr.io)>/acme/app`."""
        return dict(self.rewrites).get(host) or site_path(host, "").rstrip("/")

    def image_repository(self, host: str, repository: str) -> str:
        """Where an image (or artifact) of `host/repository` lives in the site's registry."""
        return self.repository(f"{self.host_path(host)}/{repository}")

    def repository(self, path: str) -> str:
        """Where `path` (`<source host>/<path>`, `charts/<name>`) lives in the site's registry: under
        the registry's prefix (a Harbor project, say) when it has one."""
        return f"{self.registry_prefix}/{path}" if self.registry_prefix else path

    def storage_driver(self) -> dict[str, object] | None:
        """The embedded registry's storage section when it is not the site's disk (Distribution's
        s3 driver, path-style requests to `s3_endpoint`)."""
        if not self.registry_storage:
            return None
        bucket, _, root = self.registry_storage.removeprefix("s3://").partition("/")
        keys = read_s3_credentials(self.directory / self.s3_credentials)
        s3: dict[str, object] = {"bucket": bucket, "accesskey": keys["accessKey"], "secretkey": keys["secretKey"],
                                 "region": keys.get("region", "us-east-1"), "v4auth": True,
                                 "rootdirectory": f"/{root}" if root else "/"}
        if self.s3_endpoint:
            s3["regionendpoint"] = self.s3_endpoint
            s3["secure"] = self.s3_endpoint.startswith("https://")
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
        return self.directory / self.registry_ca if self.registry_ca else None

    @property
    def registry_location(self) -> str:
        """host[:port]/prefix: where references to the site's registry start."""
        netloc = urlsplit(self.registry_url).netloc
        return f"{netloc}/{self.registry_prefix}" if self.registry_prefix else netloc

    def registry_client(self, jobs: int) -> RegistryClient:
        parts = urlsplit(self.registry_url)
        if self.embedded_registry:  # TLS from the site CA; the import account (it pushes)
            user, password = load_credentials(self.directory, IMPORT_CREDENTIALS_FILE)
            return RegistryClient(parts.netloc, plain_http=False, ca_file=str(self.ca_file),
                                  credentials=Credentials(user, password), pool_size=max(4, jobs), writer=True)
        account = read_registry_credentials(self.directory / self.registry_credentials) \
            if self.registry_credentials else None
        return RegistryClient(parts.netloc, plain_http=parts.scheme == "http", pool_size=max(4, jobs),
                              ca_file=str(self.directory / self.registry_ca) if self.registry_ca else None,
                              credentials=account if isinstance(account, Credentials) else None,
                              bearer=account if isinstance(account, str) else None, writer=account is not None)

    def policy(self) -> TrustPolicy:
        keys = tuple(load_trusted_key(self.directory / file, name) for name, file in self.trust_keys)
        try:
            return TrustPolicy(keys, self.threshold)
        except ValueError as exc:
            raise UsageError(f"{self.directory / SITE_FILE}: trust: {exc}") from None

    @functools.cached_property
    def _key_names(self) -> dict[str, str]:  # the trust keys read once, whatever the number of bundles named
        return {key.keyid: key.name for key in self.policy().keys}

    def signer_names(self, keyids: Sequence[str]) -> list[str]:
        """The trust policy's name of each key id (a key no longer trusted: the first 12 hex of its id)."""
        return [self._key_names.get(keyid, keyid[:12]) for keyid in keyids]

    def to_yaml(self) -> bytes:
        doc = {"apiVersion": "bundler/v1", "kind": "Site", **({"name": self.name} if self.name else {}),
               "registry": {"url": self.registry_url, "chartPrefix": self.chart_prefix,
                            **({"listen": self.registry_listen, "runtime": self.registry_runtime}
                               if self.registry_listen else {}),
                            **({"prefix": self.registry_prefix} if self.registry_prefix else {}),
                            **({"ca": self.registry_ca} if self.registry_ca else {}),
                            **({"credentials": self.registry_credentials} if self.registry_credentials else {}),
                            **({"storage": {"url": self.registry_storage, "credentials": self.s3_credentials,
                                            **({"endpoint": self.s3_endpoint} if self.s3_endpoint else {})}}
                               if self.registry_storage else {}),
                            **({"rewrite": [{"from": f"{h}/*", "to": f"{t}/*"} for h, t in self.rewrites]}
                               if self.rewrites else {})},
               "http": {"listen": self.http_listen, "push": self.allow_push},
               "trust": {"threshold": self.threshold,
                         "keys": [{"name": name, "file": file} for name, file in self.trust_keys]}}
        if (self.retention_keep, self.warn_percent) != (3, 85):
            doc["retention"] = {"keep": self.retention_keep, "warnPercent": self.warn_percent}
        for kind in section_kinds():  # each kind writes its own section (None: it leaves it out)
            if (section := kind.settings.dump(self.section(kind.key))) is not None:
                doc[kind.key] = section
        return yamltext.dump(doc).encode()


def checked_site_name(value: str) -> str:
    try:
        return names.site_name(value)
    except ValueError as exc:
        raise UsageError(f"site name {exc}", hint="give one with --name (letters, digits, . _ -)") from None


def check_registry_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/") or parts.query:
        raise UsageError(f"registry URL {url!r} must look like https://HOST[:PORT] (no path)")
    return f"{parts.scheme}://{parts.netloc}"


def split_registry_url(url: str) -> tuple[str, str]:
    """`https://HOST[:PORT][/PREFIX]` -> (the registry's URL, the prefix everything goes under)."""
    parts = urlsplit(url)
    prefix = parts.path.strip("/")
    if prefix and not PREFIX_RE.match(prefix):
        raise UsageError(f"registry URL {url!r}: the path {prefix!r} is not a repository prefix "
                         "(lowercase letters, digits, . _ - and /)", hint="e.g. https://harbor.example/edge")
    return check_registry_url(f"{parts.scheme}://{parts.netloc}" if parts.netloc else url), prefix


HOST_RE = re.compile(r"^[a-z0-9.-]{1,253}(?::[0-9]{1,5})?$")  # a registry host[:port], lowercase


def check_rewrites(rules: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """Rewrite rules `HOST/*` -> `PATH/*`: each source registry host once, each target path for one
    host only (two registries on one path would overwrite each other's images: refused, naming both)."""
    targets: dict[str, str] = {}
    hosts: set[str] = set()
    for source, target in rules:
        host, path = source.removesuffix("/*"), target.removesuffix("/*")
        if not source.endswith("/*") or not target.endswith("/*") or not HOST_RE.match(host) \
                or not PREFIX_RE.match(path):
            raise UsageError(f"rewrite {source}={target}: write a source registry and a path, each ending in /*",
                             hint="e.g. --rewrite 'docker.io/*=hub/*' (a whole registry under one path)")
        if host in hosts:
            raise UsageError(f"rewrite: {host} is rewritten twice")
        if path in targets:
            raise UsageError(f"rewrite: {targets[path]}/* and {host}/* both go to {path}/*: their images would "
                             "overwrite each other", hint="give each source registry a path of its own")
        targets[path] = host
        hosts.add(host)
    return tuple((source.removesuffix("/*"), target.removesuffix("/*")) for source, target in rules)


S3_RE = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](?:/[A-Za-z0-9._/-]{1,200})?$")
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


def check_chart_prefix(prefix: str) -> str:
    if not PREFIX_RE.match(prefix):
        raise UsageError(f"chart prefix {prefix!r} is not a repository path (lowercase letters, digits, . _ - /)")
    return prefix


def check_runtime(value: str) -> str:
    if value not in ("auto", "binary", "docker"):
        raise UsageError(f"registry runtime {value!r} must be auto, binary or docker")
    return value


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def client_host(listen_host: str) -> str:
    """Where clients on this machine reach a service listening on `listen_host`."""
    host = listen_host.strip("[]")
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def check_listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"listen address {value!r} must be HOST:PORT, e.g. 127.0.0.1:8443")
    return value


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
            raise ValueError(f"unknown keys {', '.join(sorted(unknown))}")
        trust = doc.get("trust") or {}
        keys = tuple((str(k["name"]), str(k["file"])) for k in trust.get("keys") or [])
        threshold = trust.get("threshold", 1)
        if not keys or not isinstance(threshold, int):
            raise ValueError("trust needs keys (name, file) and an integer threshold")
        registry, http = doc["registry"], doc.get("http") or {}
        storage = registry.get("storage") or {}
        unknown = (set(registry) - {"url", "chartPrefix", "listen", "runtime", "prefix", "ca", "credentials",
                                    "storage", "rewrite"}
                   | set(storage) - {"url", "endpoint", "credentials"}
                   | set(http) - {"listen", "push"})
        if unknown:
            raise ValueError(f"unknown keys: {', '.join(sorted(unknown))}")
        if not isinstance(http.get("push", False), bool):
            raise ValueError("http.push must be true or false")
        sections = {}
        for kind in kinds:  # each kind parses its own section (ValueError naming what is wrong)
            section = doc.get(kind.key) or {}
            if not isinstance(section, dict):
                raise ValueError(f"{kind.key} must be a mapping")
            sections[kind.key] = kind.settings.parse(section, directory)
        retention = doc.get("retention") or {}
        if extra := set(retention) - {"keep", "warnPercent"}:
            raise ValueError(f"unknown keys in retention: {', '.join(sorted(extra))}")
        keep, warn = retention.get("keep", 3), retention.get("warnPercent", 85)
        if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
            raise ValueError("retention.keep must be a whole number of releases, at least 1")
        if not isinstance(warn, int) or isinstance(warn, bool) or not 1 <= warn <= 100:
            raise ValueError("retention.warnPercent must be a whole number from 1 to 100")
        listen = registry.get("listen")
        return SiteConfig(
            directory, check_registry_url(str(registry["url"])), keys, threshold,
            chart_prefix=check_chart_prefix(str(registry.get("chartPrefix", "charts"))),
            http_listen=check_listen(str(http.get("listen", DEFAULT_HTTP_LISTEN))),
            allow_push=bool(http.get("push", False)),
            registry_listen=check_listen(str(listen)) if listen else None,
            registry_runtime=check_runtime(str(registry.get("runtime", "auto"))),
            name=names.site_name(str(doc["name"])) if doc.get("name") is not None else "",
            retention_keep=keep, warn_percent=warn,
            registry_prefix=check_chart_prefix(str(registry["prefix"])) if registry.get("prefix") else "",
            registry_ca=str(registry.get("ca") or ""), registry_credentials=str(registry.get("credentials") or ""),
            registry_storage=str(storage.get("url") or ""), s3_endpoint=str(storage.get("endpoint") or ""),
            s3_credentials=str(storage.get("credentials") or ""),
            rewrites=check_rewrites([(str(r["from"]), str(r["to"])) for r in registry.get("rewrite") or []]),
            sections=sections)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"{site_file}: {exc}") from None


def listed(section: Mapping[str, object], key: str, where: str) -> list[object]:
    """A list field of a site.yaml section (absent: empty); ValueError naming it otherwise."""
    value = section.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{where}.{key} must be a list")
    return value


def text(item: object, key: str, where: str) -> str:
    """A string field of a mapping in site.yaml; ValueError naming it otherwise."""
    value = item.get(key) if isinstance(item, dict) else None
    if not isinstance(value, str):
        raise ValueError(f"{where} needs {key} (text)")
    return value


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
