"""The site's update cache: payloads by digest, a catalog, approvals per target group, client
reports, and the repositories clients install from (WSUS-like, but served the way each client
already consumes updates).

    DIR/updates/blobs/<sha256>        every payload, once
    DIR/updates/catalog.json          what was imported (name, kind, version, arch, sha256, size, ...)
    DIR/updates/approvals.json        {group: {sha256: "approved" | "declined"}}
    DIR/updates/reports/<client>.json what each client said it has installed
    DIR/updates/published -> releases/<n>   the apt and rpm repositories, swapped atomically

The catalog and its approvals are read as one snapshot (catalog.py), the clients and their reports
are clients.py's; this module keeps the payloads, writes the catalog, and publishes.

Repositories are rebuilt in a new directory and the `published` link is replaced in one rename, so
a client never sees a half-written index. apt indexes and rpm repomd.xml are signed with the site's
OpenPGP key (made at `site init`; `updates/apt-key.gpg` is what clients name in `signed-by`).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import gzip
import hashlib
import json
import os
import shutil
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from bundler import debcontrol, names, tools
from bundler.bundle.manifest import BundleManifest
from bundler.bundle.reader import BundleReader
from bundler.bundle.verify import verified_chunks
from bundler.errors import BundlerError, UsageError
from bundler.fsutil import atomic_write, write_synced
from bundler.jsontypes import Doc
from bundler.kinds.updates.catalog import (
    APPROVALS_FILE,
    APPROVED,
    CATALOG_FILE,
    OWNERS_FILE,
    Catalog,
    CatalogEntry,
    ImportedBy,
)
from bundler.kinds.updates.clients import Clients
from bundler.kinds.updates.entry import UpdateEntry, updates_of
from bundler.kinds.updates.settings import check_group, update_settings
from bundler.site.config import SiteConfig
from bundler.site.journal import files_lock

UPDATES_DIR = "updates"
GNUPG_DIR = "gnupg"
APT_KEY = "apt-key.gpg"  # binary keyring, for apt's signed-by
ASC_KEY = "site-key.asc"  # armored, for dnf's gpgkey


KEEP_RELEASES = 2


_AGENTS: dict[Path, int] = {}  # gpg home -> sessions using its agent (the site's app signs in several threads)
_AGENTS_LOCK = threading.Lock()


@contextmanager
def gpg_session(site: SiteConfig) -> Iterator[None]:
    """One gpg agent for a batch of calls, stopped once at the end. Stopped after each call, the next
    call could meet the agent still going down ("can't connect to the agent: End of file", seen under
    load between the InRelease and Release.gpg signatures)."""
    home = site.directory / GNUPG_DIR
    with _AGENTS_LOCK:
        _AGENTS[home] = _AGENTS.get(home, 0) + 1
    try:
        yield
    finally:
        with _AGENTS_LOCK:
            _AGENTS[home] -= 1
            last = _AGENTS[home] == 0
            if last:
                del _AGENTS[home]
                tools.run([tools.find("gpgconf", "gnupg", "to stop gpg's agent"), "--homedir", home, "--kill",
                           "gpg-agent"])


def _gpg(site: SiteConfig, *args: str, input: bytes | None = None) -> bytes:
    home = site.directory / GNUPG_DIR
    gpg = tools.find("gpg", "gnupg", "to sign the site's update repositories")
    with gpg_session(site):
        proc = tools.run([gpg, "--homedir", home, "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase",
                          "", *args], input=input)
    if proc.returncode != 0:
        raise BundlerError(f"gpg {args[0]} failed: {tools.last_words(proc)}")
    return proc.stdout


def init_updates(site: SiteConfig) -> None:
    """The update cache's directories and the site's OpenPGP signing key (public parts exported)."""
    root = site.directory / UPDATES_DIR
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "reports").mkdir(exist_ok=True)
    home = site.directory / GNUPG_DIR
    home.mkdir(mode=0o700, exist_ok=True)
    with gpg_session(site):
        _gpg(site, "--quick-gen-key", f"bundler site {site.directory.resolve().name} <updates@site.invalid>",
             "ed25519", "sign", "never")
        (root / APT_KEY).write_bytes(_gpg(site, "--export"))
        (root / ASC_KEY).write_bytes(_gpg(site, "--armor", "--export"))
        publish(site)


class UpdateCache:
    """The update cache of a site: its payloads by digest, and the catalog and approvals it writes.
    `catalog` is one read of what is imported, approved and handed over, made when first asked for
    (a request, a command) and dropped when this cache writes; `clients` are its enrolled clients and
    their reports."""

    def __init__(self, site: SiteConfig) -> None:
        self.site = site
        self.root = site.directory / UPDATES_DIR
        self.groups = update_settings(site).groups
        self.clients = Clients(site.directory, self.root, self.groups)

    @cached_property
    def catalog(self) -> Catalog:
        return Catalog.load(self.root)

    def _write(self, catalog: list[CatalogEntry] | None, approvals: Mapping[str, Mapping[str, str]] | None) -> None:
        if catalog is not None:
            atomic_write(self.root / CATALOG_FILE, json.dumps([e.to_dict() for e in catalog], indent=2).encode())
        if approvals is not None:
            atomic_write(self.root / APPROVALS_FILE, json.dumps(approvals, indent=2, sort_keys=True).encode())
        self.__dict__.pop("catalog", None)  # the next question reads what was written

    def blob(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256

    # --- import ------------------------------------------------------------------------------------

    def store(self, reader: BundleReader, entry: UpdateEntry) -> bool:
        """Copy a payload into the cache, hashed on the way (a file nothing lists until the import
        publishes); IntegrityError when it does not match; False when already there."""
        target = self.blob(entry.sha256)
        if target.exists():
            return False
        partial = target.with_name(f".{entry.sha256}.partial")
        try:  # the only time these bytes are read: this is the check (the last chunk waits for it)
            with open(partial, "wb") as out:
                write_synced(out, verified_chunks(reader, entry.path, entry.sha256), entry.size)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, target)
        return True

    def add(self, manifest: BundleManifest) -> list[str]:
        """Catalog the bundle's updates and apply its pre-approvals where the site has not decided;
        return notes (pre-approvals for groups this site does not have). Call under files_lock."""
        fresh = Catalog.load(self.root)  # under the lock: what is on disk now
        catalog = {e.sha256: e for e in fresh.entries}
        approvals = {group: dict(decisions) for group, decisions in fresh.approvals.items()}
        notes = []
        for u in updates_of(manifest):
            catalog.setdefault(u.sha256, CatalogEntry(
                u.name, u.kind, u.file, u.sha256, u.size, u.metadata.get("version", ""), u.metadata.get("arch", ""),
                u.metadata, ImportedBy(manifest.name, manifest.version), names.format_time(), u.windows))
            for group in u.approve:
                if group not in self.groups:
                    notes.append(f"update {u.name}: pre-approved for group {group!r}, which this site does not have")
                    continue
                approvals.setdefault(group, {}).setdefault(u.sha256, APPROVED)
        self._write(sorted(catalog.values(), key=_order), approvals)
        return notes

    def forget(self, sha256s: set[str]) -> None:
        """Drop these payloads from the catalog and the approvals (their files are gone: a prune).
        Call under files_lock."""
        fresh = Catalog.load(self.root)
        self._write([e for e in fresh.entries if e.sha256 not in sha256s],
                    {group: {sha: d for sha, d in decisions.items() if sha not in sha256s}
                     for group, decisions in fresh.approvals.items()})

    # --- approvals -----------------------------------------------------------------------------------

    def decide(self, name: str, group: str, decision: str) -> list[CatalogEntry]:
        check_group(group, self.groups)
        with files_lock(self.site.directory):
            fresh = Catalog.load(self.root)
            entries = fresh.matching(name)
            approvals = {g: dict(decisions) for g, decisions in fresh.approvals.items()}
            for e in entries:
                approvals.setdefault(group, {})[e.sha256] = decision
            self._write(None, approvals)
            publish(self.site)
        return entries

    def hand_over(self, file_name: str, bundle_name: str) -> str:
        """Give the download by `file_name` to `bundle_name`; return the previous owner. Call under
        files_lock (pipeline/ownership.py records it in the site's state)."""
        fresh = Catalog.load(self.root)
        previous = fresh.owners.get(file_name)
        if previous is None:
            raise UsageError(f"no update has the file name {file_name!r} on this site",
                             hint="`bundler updates list` shows them")
        handed = {**fresh.handovers, file_name: bundle_name}
        atomic_write(self.root / OWNERS_FILE, json.dumps(handed, indent=2, sort_keys=True).encode())
        self.__dict__.pop("catalog", None)
        return previous


def _order(entry: CatalogEntry) -> tuple[str, str, str]:
    return entry.name, entry.version, entry.sha256


# --- publishing ------------------------------------------------------------------------------------


def publish(site: SiteConfig) -> Path:
    """Rebuild every group's apt and rpm repository in a new directory, then swap it in atomically."""
    cache = UpdateCache(site)
    releases = cache.root / "releases"
    releases.mkdir(exist_ok=True)
    target = releases / dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target.mkdir()
    with gpg_session(site):  # every group's signatures by one agent
        for group in update_settings(site).groups:
            approved = cache.catalog.approved(group)
            _publish_apt(site, target / "apt", group, [e for e in approved if e.kind == "deb"])
            _publish_rpm(site, cache, target / "rpm" / group, [e for e in approved if e.kind == "rpm"])
            atomic_write(dnf_repo_file(site, group), dnf_repo(site, group).encode())
    link = cache.root / "published"
    tmp_link = cache.root / f".published.{os.getpid()}"
    tmp_link.unlink(missing_ok=True)
    os.symlink(target.relative_to(cache.root), tmp_link)
    os.replace(tmp_link, link)
    for old in sorted(releases.iterdir())[:-KEEP_RELEASES]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def dnf_repo_file(site: SiteConfig, group: str) -> Path:
    """`DIR/updates/<group>.repo`, next to the apt key: copy it to a client's /etc/yum.repos.d/."""
    return site.directory / UPDATES_DIR / f"{group}.repo"


def dnf_repo(site: SiteConfig, group: str, key: str | None = None, ca: str | None = None,
             account: tuple[str, str] | None = None) -> str:
    """A dnf/yum repository file for a client of `group`: the site's signed rpm repository over HTTPS
    (the key and CA at the site's paths unless given; with an enrolled client's name and token)."""
    key = key or str((site.directory / UPDATES_DIR / ASC_KEY).resolve())
    login = f"username={account[0]}\npassword={account[1]}\n" if account else ""
    return (f"# The site's rpm updates approved for {group}. gpgkey checks the repository metadata\n"
            f"# (repo_gpgcheck); add your package vendors' keys to it for gpgcheck of the packages.\n"
            f"[bundler-site-{group}]\nname=bundler site updates for {group}\n"
            f"baseurl={site.http_url}/updates/rpm/{group}/\nenabled=1\ngpgcheck=1\nrepo_gpgcheck=1\n"
            f"gpgkey=file://{key}\nsslcacert={ca or site.ca_file.resolve()}\nmetadata_expire=5m\n{login}")


# where an enrolled client keeps the site's files (client_configuration names them)
CLIENT_CA = "/usr/local/share/ca-certificates/bundler-site.crt"
CLIENT_APT_KEYRING = "/etc/apt/keyrings/bundler-site.gpg"
CLIENT_RPM_KEY = "/etc/pki/rpm-gpg/RPM-GPG-KEY-bundler-site"


@dataclass(frozen=True)
class ClientConfiguration:
    """What an enrolled client needs to read its group's updates: the site's files to copy (site path
    -> client path) and each client's configuration (apt: sources and auth.conf; dnf: a .repo with
    the client's name and token; anything else: the token as a Bearer header)."""
    client: str
    group: str
    token: str
    copy: Mapping[str, str]
    apt_sources: str
    apt_auth_conf: str
    apt_ca_conf: str
    dnf_repo: str
    http_header: str
    http_approved: str
    http_report: str

    def to_dict(self) -> Doc:
        return {"client": self.client, "group": self.group, "token": self.token, "copy": self.copy,
                "apt": {"sources": self.apt_sources, "auth_conf": self.apt_auth_conf, "ca_conf": self.apt_ca_conf},
                "dnf": {"repo": self.dnf_repo},
                "http": {"header": self.http_header, "approved": self.http_approved, "report": self.http_report}}


def client_configuration(site: SiteConfig, client: str, group: str, token: str) -> ClientConfiguration:
    host = site.http_url.split("://", 1)[1]
    return ClientConfiguration(
        client, group, token,
        {str(site.ca_file.resolve()): CLIENT_CA,
         str((site.directory / UPDATES_DIR / APT_KEY).resolve()): CLIENT_APT_KEYRING,
         str((site.directory / UPDATES_DIR / ASC_KEY).resolve()): CLIENT_RPM_KEY},
        f"deb [signed-by={CLIENT_APT_KEYRING}] {site.http_url}/updates/apt {group} main",
        f"machine {host}/updates/ login {client} password {token}",
        f'Acquire::https::{host.rsplit(":", 1)[0]}::CaInfo "{CLIENT_CA}";',
        dnf_repo(site, group, CLIENT_RPM_KEY, CLIENT_CA, (client, token)),
        f"Authorization: Bearer {token}", f"{site.http_url}/updates/api/groups/{group}/approved",
        f"{site.http_url}/updates/api/report")


def pool_path(entry: CatalogEntry) -> str:
    return f"pool/{entry.sha256}/{entry.file}"


def _publish_apt(site: SiteConfig, apt: Path, group: str, debs: list[CatalogEntry]) -> None:
    dist = apt / "dists" / group
    arches = sorted({e.arch for e in debs if e.arch != "all"}) or ["amd64", "arm64"]
    listed = []
    for arch in arches:
        stanzas = [debcontrol.stanza(debcontrol.parse(e.metadata["control"]),
                                     [("Filename", pool_path(e)), ("Size", str(e.size)), ("SHA256", e.sha256)])
                   for e in sorted(debs, key=_order) if e.arch in (arch, "all")]
        packages = "\n".join(stanzas).encode()
        directory = dist / "main" / f"binary-{arch}"
        directory.mkdir(parents=True)
        for name, data in (("Packages", packages), ("Packages.gz", gzip.compress(packages, mtime=0))):
            (directory / name).write_bytes(data)
            listed.append((f"main/binary-{arch}/{name}", data))
    date = email.utils.format_datetime(dt.datetime.now(dt.UTC), usegmt=True)
    release = (f"Origin: bundler site\nLabel: bundler site {group}\nSuite: {group}\nCodename: {group}\n"
               f"Date: {date}\nArchitectures: {' '.join(arches)}\nComponents: main\n"
               f"Description: packages approved for {group}\nSHA256:\n"
               + "".join(f" {hashlib.sha256(d).hexdigest()} {len(d)} {n}\n" for n, d in listed))
    (dist / "Release").write_text(release)
    (dist / "InRelease").write_bytes(_gpg(site, "--clearsign", "--output", "-", input=release.encode()))
    (dist / "Release.gpg").write_bytes(_gpg(site, "--armor", "--detach-sign", "--output", "-",
                                            input=release.encode()))


def _publish_rpm(site: SiteConfig, cache: UpdateCache, directory: Path, rpms: list[CatalogEntry]) -> None:
    directory.mkdir(parents=True)
    for e in rpms:  # by digest: two rpms of one file name (a vendor's rebuild) are both served
        (directory / pool_path(e)).parent.mkdir(parents=True)
        os.link(cache.blob(e.sha256), directory / pool_path(e))  # same bytes, no copy
    createrepo = shutil.which("createrepo_c")
    if createrepo is None:
        if rpms:
            raise UsageError("createrepo_c is needed to publish .rpm updates", hint="apt-get install createrepo-c")
        return
    proc = tools.run([createrepo, "--quiet", "--simple-md-filenames", directory])
    if proc.returncode != 0:
        raise BundlerError(f"createrepo_c failed: {tools.last_words(proc)}")
    repomd = directory / "repodata" / "repomd.xml"
    (directory / "repodata" / "repomd.xml.asc").write_bytes(
        _gpg(site, "--armor", "--detach-sign", "--output", "-", input=repomd.read_bytes()))
