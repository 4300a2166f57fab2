"""site.yaml's core sections, each a typed value that reads and writes itself: `registry` (where
images and charts go, and how the embedded one runs), `http` (the HTTPS service), `trust` (the keys
and the threshold) and `retention` (what a prune keeps, when import warns). Each kind's own section is
its settings role's (bundler/kinds/*/settings.py). `parse` takes the section as YAML gave it and
raises ValueError naming the field; `to_dict` writes it back."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from urllib.parse import urlsplit

from bundler.errors import UsageError
from bundler.jsontypes import Doc

DEFAULT_HTTP_LISTEN = "127.0.0.1:8443"
DEFAULT_REGISTRY_LISTEN = "127.0.0.1:5443"
PREFIX_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
S3_RE = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](?:/[A-Za-z0-9._/-]{1,200})?$")


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


def mapping(doc: Mapping[str, object], key: str, allowed: AbstractSet[str]) -> Mapping[str, object]:
    """A section (absent: empty), its keys checked; ValueError naming what is wrong."""
    value = doc.get(key) or {}
    if not isinstance(value, dict):
        raise ValueError(f"{key} must be a mapping")
    if unknown := set(value) - allowed:
        raise ValueError(f"unknown keys in {key}: {', '.join(sorted(map(str, unknown)))}")
    return value


def _optional(section: Mapping[str, object], key: str) -> str:
    value = section.get(key)
    return "" if value is None else str(value)


@dataclass(frozen=True)
class RegistrySection:
    """`registry:` where images and charts go: a registry given by URL (under `prefix`, with its CA and
    account files), or the site's own (`listen` set: `site up` runs it, with `runtime`, on the site's
    disk or on object storage)."""
    url: str
    chart_prefix: str = "charts"  # charts go to <registry>/<chart_prefix>/<name>:<version>
    listen: str | None = None  # set when the site runs its own (embedded) registry
    runtime: str = "auto"  # how `site up` runs it: the binary, a Docker container, or auto
    prefix: str = ""  # a registry that is not the site's own: everything goes under this path (a project)
    ca: str = ""  # its CA (a file in the site directory), when it is not in the system's trust store
    credentials: str = ""  # its account (a 0600 JSON file in the site directory)
    storage: str = ""  # the embedded registry on object storage: s3://BUCKET[/ROOT] ("": the site's disk)
    s3_endpoint: str = ""  # the S3 server's URL (MinIO, Ceph, moto; "": AWS)
    s3_credentials: str = ""  # its keys (a 0600 JSON file in the site directory)
    rewrites: tuple[tuple[str, str], ...] = ()  # (source registry host, the path its images go under)

    KEYS = frozenset({"url", "chartPrefix", "listen", "runtime", "prefix", "ca", "credentials", "storage", "rewrite"})

    @classmethod
    def parse(cls, section: Mapping[str, object]) -> RegistrySection:
        storage = mapping(section, "storage", {"url", "endpoint", "credentials"})
        if "url" not in section:
            raise ValueError("registry needs url")
        listen = section.get("listen")
        return cls(check_registry_url(str(section["url"])),
                   check_chart_prefix(str(section.get("chartPrefix", "charts"))),
                   check_listen(str(listen)) if listen else None, check_runtime(str(section.get("runtime", "auto"))),
                   check_chart_prefix(str(section["prefix"])) if section.get("prefix") else "",
                   _optional(section, "ca"), _optional(section, "credentials"), _optional(storage, "url"),
                   _optional(storage, "endpoint"), _optional(storage, "credentials"),
                   check_rewrites([(text(r, "from", "registry.rewrite[]"), text(r, "to", "registry.rewrite[]"))
                                   for r in listed(section, "rewrite", "registry")]))

    def to_dict(self) -> Doc:
        return {"url": self.url, "chartPrefix": self.chart_prefix,
                **({"listen": self.listen, "runtime": self.runtime} if self.listen else {}),
                **({"prefix": self.prefix} if self.prefix else {}), **({"ca": self.ca} if self.ca else {}),
                **({"credentials": self.credentials} if self.credentials else {}),
                **({"storage": {"url": self.storage, "credentials": self.s3_credentials,
                                **({"endpoint": self.s3_endpoint} if self.s3_endpoint else {})}}
                   if self.storage else {}),
                **({"rewrite": [{"from": f"{h}/*", "to": f"{t}/*"} for h, t in self.rewrites]}
                   if self.rewrites else {})}


@dataclass(frozen=True)
class HttpSection:
    """`http:` the site's HTTPS service (the Git server, the update cache, the status page)."""
    listen: str = DEFAULT_HTTP_LISTEN
    push: bool = False  # whether Git clients may push

    @classmethod
    def parse(cls, section: Mapping[str, object]) -> HttpSection:
        push = section.get("push", False)
        if not isinstance(push, bool):
            raise ValueError("http.push must be true or false")
        return cls(check_listen(str(section.get("listen", DEFAULT_HTTP_LISTEN))), push)

    def to_dict(self) -> Doc:
        return {"listen": self.listen, "push": self.push}


@dataclass(frozen=True)
class TrustSection:
    """`trust:` the release keys (name, file relative to the site directory) and how many must sign."""
    keys: tuple[tuple[str, str], ...]
    threshold: int = 1

    @classmethod
    def parse(cls, section: Mapping[str, object]) -> TrustSection:
        keys = tuple((text(k, "name", "trust.keys[]"), text(k, "file", "trust.keys[]"))
                     for k in listed(section, "keys", "trust"))
        threshold = section.get("threshold", 1)
        if not keys or not isinstance(threshold, int) or isinstance(threshold, bool):
            raise ValueError("trust needs keys (name, file) and an integer threshold")
        return cls(keys, threshold)

    def to_dict(self) -> Doc:
        return {"threshold": self.threshold, "keys": [{"name": name, "file": file} for name, file in self.keys]}


@dataclass(frozen=True)
class RetentionSection:
    """`retention:` releases of each bundle name `site prune` keeps; how full the disk may be before
    an import warns."""
    keep: int = 3
    warn_percent: int = 85

    @classmethod
    def parse(cls, section: Mapping[str, object]) -> RetentionSection:
        keep, warn = section.get("keep", 3), section.get("warnPercent", 85)
        if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
            raise ValueError("retention.keep must be a whole number of releases, at least 1")
        if not isinstance(warn, int) or isinstance(warn, bool) or not 1 <= warn <= 100:
            raise ValueError("retention.warnPercent must be a whole number from 1 to 100")
        return cls(keep, warn)

    def to_dict(self) -> Doc | None:
        """None: the defaults (left out of site.yaml)."""
        return None if self == RetentionSection() else {"keep": self.keep, "warnPercent": self.warn_percent}


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


