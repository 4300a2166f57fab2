"""`site init`: a new site directory from a SiteSpec (one object: each value by its name): its
site.yaml, the public keys it trusts under trust/, its CA and certificates, its accounts, its own
key, and what each content kind keeps (its section of site.yaml, its files, its directories)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bundler.errors import UsageError
from bundler.fsutil import atomic_write
from bundler.keyfiles import key_name, load_trusted_key, read_operator_file
from bundler.signing import TrustPolicy, public_pem
from bundler.site.auth import create_credentials
from bundler.site.config import (
    GIT_DIR,
    REGISTRY_CA_FILE,
    REGISTRY_CREDENTIALS_FILE,
    S3_CREDENTIALS_FILE,
    SITE_FILE,
    TRUST_DIR,
    SiteConfig,
    checked_site_name,
    private_file,
    read_registry_credentials,
    read_s3_credentials,
)
from bundler.site.identity import ensure_site_key
from bundler.site.pki import create_pki, ensure_token_signer
from bundler.site.sections import (
    DEFAULT_HTTP_LISTEN,
    DEFAULT_REGISTRY_LISTEN,
    S3_RE,
    HttpSection,
    RegistrySection,
    TrustSection,
    check_chart_prefix,
    check_listen,
    check_registry_url,
    check_rewrites,
    check_runtime,
    client_host,
    is_ip,
    split_registry_url,
)


@dataclass(frozen=True)
class SiteSpec:
    """What `site init` makes a site from: one object, each value by its name."""
    directory: Path
    trust_keys: Sequence[Path]
    threshold: int = 1
    registry_url: str | None = None  # None: the site runs its own (embedded) registry
    registry_listen: str = DEFAULT_REGISTRY_LISTEN
    registry_runtime: str = "auto"
    chart_prefix: str = "charts"
    http_listen: str = DEFAULT_HTTP_LISTEN
    hostnames: Sequence[str] = ()
    ips: Sequence[str] = ()
    name: str | None = None
    registry_ca: Path | None = None
    registry_credentials: Path | None = None
    registry_storage: str | None = None
    s3_endpoint: str | None = None
    s3_credentials: Path | None = None
    rewrites: Sequence[tuple[str, str]] = ()
    sections: Mapping[str, object] = field(default_factory=dict)  # each kind's section, as its settings role made it
    files: Mapping[str, bytes] = field(default_factory=dict)  # what the kinds keep in the site (their keys, by path)


def init_site(spec: SiteSpec, prepare: Sequence[Callable[[SiteConfig], None]] = ()) -> SiteConfig:
    """Create a site: its configuration, a copy of every trusted public key under trust/, and its
    own key (receipts are signed with it: `site.pub` is what the fleet enrolls)."""
    directory, trust_keys, threshold, registry_url = spec.directory, spec.trust_keys, spec.threshold, spec.registry_url
    registry_listen, http_listen, registry_runtime = spec.registry_listen, spec.http_listen, spec.registry_runtime
    registry_ca, registry_credentials = spec.registry_ca, spec.registry_credentials
    registry_storage, s3_endpoint, s3_credentials = spec.registry_storage, spec.s3_endpoint, spec.s3_credentials
    if not trust_keys:
        raise UsageError("site init needs at least one --trust-key PUB: a site imports only signed bundles",
                         hint="ask release engineering for their `.pub` file (made by `bundler keygen`)")
    site_file = directory / SITE_FILE
    if site_file.exists():
        raise UsageError(f"{site_file} exists: {directory} is already a site",
                         hint=f"it is set up already: go on with `bundler site up {directory}`, "
                              "or pick an empty directory")
    keys = [load_trusted_key(path) for path in trust_keys]  # kept as parsed: never the file as given
    names = [key_name(path) for path in trust_keys]
    if len(set(names)) != len(names) or len({k.keyid for k in keys}) != len(keys):
        raise UsageError("each --trust-key must be a different key with a different file name")
    try:
        TrustPolicy(tuple(keys), threshold)
    except ValueError as exc:
        raise UsageError(f"--threshold: {exc}") from None
    embedded = registry_url is None
    prefix = ""
    if embedded:
        if check_listen(registry_listen) == check_listen(http_listen):
            raise UsageError(f"--registry-listen and --http-listen are both {registry_listen}: the registry and "
                             "the HTTPS service each need an address of their own")
        host, _, port = check_listen(registry_listen).rpartition(":")
        registry_url = f"https://{client_host(host)}:{port}"
        if registry_ca or registry_credentials:
            raise UsageError("--registry-ca and --registry-credentials are for a registry given with --registry URL",
                             hint="the site's own registry uses the site's CA and accounts")
    else:
        assert registry_url is not None
        registry_url, prefix = split_registry_url(registry_url)
    if registry_credentials is not None:
        private_file(registry_credentials, "the registry's account")
        read_registry_credentials(registry_credentials)  # its shape, now
    if registry_storage is not None:
        if not embedded:
            raise UsageError("--registry-storage is for the site's own registry, not one given with --registry")
        if not S3_RE.match(registry_storage):
            raise UsageError(f"--registry-storage {registry_storage!r} is not s3://BUCKET[/PATH]")
        if s3_credentials is None:
            raise UsageError("--registry-storage needs --s3-credentials FILE (JSON: accessKey, secretKey)")
        if registry_runtime == "docker":
            raise UsageError("a registry on object storage runs as the registry binary, not in Docker",
                             hint="--registry-runtime binary (apt-get install docker-registry)")
        private_file(s3_credentials, "the object storage's keys")
        read_s3_credentials(s3_credentials)
        if s3_endpoint is not None:
            check_registry_url(s3_endpoint)  # http(s)://HOST[:PORT]
    elif s3_endpoint is not None or s3_credentials is not None:
        raise UsageError("--s3-endpoint and --s3-credentials go with --registry-storage s3://BUCKET")
    ca_pem = read_operator_file(registry_ca, "a CA certificate") if registry_ca is not None else None
    if ca_pem is not None and b"-----BEGIN CERTIFICATE-----" not in ca_pem:
        raise UsageError(f"{registry_ca} is not a PEM certificate", hint="give the registry's CA certificate (PEM)")
    assert registry_url is not None
    registry = RegistrySection(
        check_registry_url(registry_url), check_chart_prefix(spec.chart_prefix),
        registry_listen if embedded else None, check_runtime(registry_runtime), prefix,
        REGISTRY_CA_FILE if registry_ca else "", REGISTRY_CREDENTIALS_FILE if registry_credentials else "",
        registry_storage or "", s3_endpoint or "", S3_CREDENTIALS_FILE if s3_credentials else "",
        check_rewrites(spec.rewrites))
    config = SiteConfig(directory, registry, TrustSection(tuple((name, f"{TRUST_DIR}/{name}.pub") for name in names),
                                                          threshold),
                        HttpSection(check_listen(http_listen)),
                        name=checked_site_name(spec.name if spec.name is not None
                                               else socket.gethostname().split(".")[0]),
                        sections=dict(spec.sections))
    names, addresses = list(spec.hostnames), list(spec.ips)
    for ip in addresses:
        if not is_ip(ip):
            raise UsageError(f"--ip {ip!r} is not an IP address")
    for listen in (http_listen, *([registry_listen] if embedded else [])):
        listen_host = listen.rpartition(":")[0].strip("[]")
        if listen_host not in ("0.0.0.0", "::"):  # the certificate names where clients reach the services
            (addresses if is_ip(listen_host) else names).append(listen_host)
    (directory / TRUST_DIR).mkdir(parents=True, exist_ok=True)
    for key, (_, file) in zip(keys, config.trust.keys, strict=True):
        atomic_write(directory / file, public_pem(key.key))
    for path, data in spec.files.items():  # what the kinds keep (the image keys, under trust/)
        atomic_write(directory / path, data)

    create_pki(directory, directory.resolve().name, names, addresses)
    if ca_pem is not None:
        atomic_write(directory / REGISTRY_CA_FILE, ca_pem)
    if registry_credentials is not None:
        atomic_write(directory / REGISTRY_CREDENTIALS_FILE,
                     read_operator_file(registry_credentials, "a registry credentials file"), mode=0o600)
    if s3_credentials is not None:
        atomic_write(directory / S3_CREDENTIALS_FILE, read_operator_file(s3_credentials, "an S3 credentials file"),
                     mode=0o600)
    if embedded:
        ensure_token_signer(directory)
    create_credentials(directory)
    ensure_site_key(directory)
    (directory / GIT_DIR).mkdir(exist_ok=True)
    for step in prepare:  # what each content kind keeps on a site (the update cache's key, say)
        step(config)
    atomic_write(site_file, config.to_yaml())  # last: a site init that failed leaves no site
    return config
