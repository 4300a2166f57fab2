"""The site's update cache: payloads by digest, a catalog, approvals per target group, client
reports, and the repositories clients install from (WSUS-like, but served the way each client
already consumes updates).

    DIR/updates/blobs/<sha256>        every payload, once
    DIR/updates/catalog.json          what was imported (name, kind, version, arch, sha256, size, ...)
    DIR/updates/approvals.json        {group: {sha256: "approved" | "declined"}}
    DIR/updates/reports/<client>.json what each client said it has installed
    DIR/updates/published -> releases/<n>   the apt and rpm repositories, swapped atomically

Repositories are rebuilt in a new directory and the `published` link is replaced in one rename, so
a client never sees a half-written index. apt indexes and rpm repomd.xml are signed with the site's
OpenPGP key (made at `site init`; `updates/apt-key.gpg` is what clients name in `signed-by`).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import gzip
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bundler import debcontrol, names, tools
from bundler.bundle.manifest import BundleManifest
from bundler.bundle.reader import BundleReader
from bundler.bundle.verify import verified_chunks
from bundler.errors import BundlerError, UsageError
from bundler.fsutil import atomic_write, write_synced
from bundler.kinds.updates.entry import UpdateEntry, updates_of
from bundler.kinds.updates.settings import update_settings
from bundler.site.config import SiteConfig
from bundler.site.journal import files_lock
from bundler.versions import package_version_key

UPDATES_DIR = "updates"
GNUPG_DIR = "gnupg"
APT_KEY = "apt-key.gpg"  # binary keyring, for apt's signed-by
ASC_KEY = "site-key.asc"  # armored, for dnf's gpgkey
CLIENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_CLIENTS_PER_GROUP = 10_000
MAX_INSTALLED = 20_000  # entries in one client report
KEPT_RESULTS = 1_000  # a client's step results kept: the newest for each payload this site has, at most this many
OWNERS_FILE = "owners.json"  # downloads by file name handed over to another bundle name


KEEP_RELEASES = 2


def now() -> str:
    return names.format_time()


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
    def __init__(self, site: SiteConfig) -> None:
        self.site = site
        self.root = site.directory / UPDATES_DIR
        self.groups = update_settings(site).groups

    # --- state files ------------------------------------------------------------------------------

    def _load(self, name: str, default: Any) -> Any:
        try:
            return json.loads((self.root / name).read_text())
        except FileNotFoundError:
            return default

    def catalog(self) -> list[dict[str, Any]]:
        return list(self._load("catalog.json", []))

    def approvals(self) -> dict[str, dict[str, str]]:
        return dict(self._load("approvals.json", {}))

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
        catalog = {e["sha256"]: e for e in self.catalog()}
        approvals = self.approvals()
        notes = []
        for u in updates_of(manifest):
            catalog.setdefault(u.sha256, {
                "name": u.name, "kind": u.kind, "file": u.file, "sha256": u.sha256, "size": u.size,
                "version": u.metadata.get("version", ""), "arch": u.metadata.get("arch", ""),
                "metadata": u.metadata, "bundle": {"name": manifest.name, "version": manifest.version},
                "imported_at": now(), **({"windows": u.windows.to_dict()} if u.windows is not None else {})})
            for group in u.approve:
                if group not in self.groups:
                    notes.append(f"update {u.name}: pre-approved for group {group!r}, which this site does not have")
                    continue
                approvals.setdefault(group, {}).setdefault(u.sha256, "approved")
        atomic_write(self.root / "catalog.json", json.dumps(sorted(catalog.values(), key=_order), indent=2).encode())
        atomic_write(self.root / "approvals.json", json.dumps(approvals, indent=2, sort_keys=True).encode())
        return notes

    def forget(self, sha256s: set[str]) -> None:
        """Drop these payloads from the catalog and the approvals (their files are gone: a prune).
        Call under files_lock."""
        catalog = [e for e in self.catalog() if e["sha256"] not in sha256s]
        approvals = {group: {sha: d for sha, d in decisions.items() if sha not in sha256s}
                     for group, decisions in self.approvals().items()}
        atomic_write(self.root / "catalog.json", json.dumps(catalog, indent=2).encode())
        atomic_write(self.root / "approvals.json", json.dumps(approvals, indent=2, sort_keys=True).encode())

    # --- approvals -----------------------------------------------------------------------------------

    def matching(self, name: str) -> list[dict[str, Any]]:
        found = [e for e in self.catalog()
                 if name in (e["name"], e["file"], f"{e['name']}={e['version']}")
                 or (len(name) >= 12 and e["sha256"].startswith(name))]
        if not found:
            known = sorted({e["name"] for e in self.catalog()})
            raise UsageError(f"no update named {name!r} in this site's catalog",
                             hint=f"`bundler updates list` shows them: {', '.join(known[:15]) or 'none yet'}")
        return found

    def decide(self, name: str, group: str, decision: str) -> list[dict[str, Any]]:
        if group not in self.groups:
            raise UsageError(f"unknown group {group!r}; this site's groups: {', '.join(self.groups) or 'none'}",
                             hint="groups are declared in site.yaml (updates.groups) or with site init --group")
        with files_lock(self.site.directory):
            entries = self.matching(name)
            approvals = self.approvals()
            for e in entries:
                approvals.setdefault(group, {})[e["sha256"]] = decision
            atomic_write(self.root / "approvals.json", json.dumps(approvals, indent=2, sort_keys=True).encode())
            publish(self.site)
        return entries

    def approved(self, group: str) -> list[dict[str, Any]]:
        decided = self.approvals().get(group, {})
        return [e for e in self.catalog() if decided.get(e["sha256"]) == "approved"]

    def servable(self, sha256: str, group: str | None = None) -> bool:
        """A payload is served only when approved: for `group` (an enrolled client's), else for any."""
        return sha256 in self.servable_set(group)

    def servable_set(self, group: str | None = None) -> set[str]:
        decisions = self.approvals()
        groups = [group] if group is not None else list(decisions)
        return {sha for g in groups for sha, d in decisions.get(g, {}).items() if d == "approved"}

    def owners(self) -> dict[str, str]:
        """{file name: the bundle name its download by name belongs to}: the one that first brought that
        file name, unless the site handed it over (`site hand-over`, kept in owners.json)."""
        first: dict[str, tuple[str, str]] = {}
        for e in self.catalog():
            if isinstance(e.get("bundle"), dict):
                when = str(e.get("imported_at", ""))
                if e["file"] not in first or when < first[e["file"]][0]:
                    first[e["file"]] = (when, str(e["bundle"]["name"]))
        return {file: name for file, (_, name) in first.items()} | self.handovers()

    def owner(self, file_name: str) -> str | None:
        return self.owners().get(file_name)

    def handovers(self) -> dict[str, str]:
        """{file name: bundle name} the site handed over (`site hand-over`)."""
        handed = self._load(OWNERS_FILE, {})
        return {str(k): str(v) for k, v in handed.items()} if isinstance(handed, dict) else {}

    def hand_over(self, file_name: str, bundle_name: str) -> str:
        """Give the download by `file_name` to `bundle_name`; return the previous owner. Call under
        files_lock (pipeline/ownership.py records it in the site's state)."""
        previous = self.owner(file_name)
        if previous is None:
            raise UsageError(f"no update has the file name {file_name!r} on this site",
                             hint="`bundler updates list` shows them")
        handed = {**self.handovers(), file_name: bundle_name}
        atomic_write(self.root / OWNERS_FILE, json.dumps(handed, indent=2, sort_keys=True).encode())
        return previous

    def newest_approved(self, file_name: str, group: str | None = None) -> dict[str, Any] | None:
        """The newest approved update with this file name of its owner's, by package version order."""
        servable = self.servable_set(group)  # approvals.json read once, not per catalog entry
        owner = self.owner(file_name)
        found = [e for e in self.catalog() if e["file"] == file_name and e["sha256"] in servable
                 and (e.get("bundle") or {}).get("name") == owner]
        if not found:
            return None
        order = package_version_key(str(found[0].get("kind", "")))  # dpkg's order, rpm's for rpms
        return max(found, key=lambda e: order(str(e.get("version", ""))))

    # --- clients -----------------------------------------------------------------------------------

    def _clients(self) -> dict[str, dict[str, str]]:
        loaded = self._load("clients.json", {})
        return loaded if isinstance(loaded, dict) else {}

    def enroll(self, client: str, group: str) -> str:
        """Issue CLIENT's token for reports and downloads (a new one replaces the old); kept hashed."""
        if not CLIENT_RE.match(client):
            raise UsageError(f"client id {client!r} is not valid (letters, digits, . _ -; at most 128)")
        if group not in self.groups:
            raise UsageError(f"unknown group {group!r}; this site's groups: {', '.join(self.groups) or 'none'}",
                             hint="groups are declared in site.yaml (updates.groups) or with site init --group")
        token = secrets.token_urlsafe(32)
        with files_lock(self.site.directory):
            clients = self._clients()
            if client not in clients and sum(c.get("group") == group for c in clients.values()) >= \
                    MAX_CLIENTS_PER_GROUP:
                raise UsageError(f"group {group} has {MAX_CLIENTS_PER_GROUP} clients already")
            clients[client] = {"group": group, "token_sha256": hashlib.sha256(token.encode()).hexdigest(),
                               "enrolled_at": now()}
            atomic_write(self.root / "clients.json", json.dumps(clients, indent=2, sort_keys=True).encode(),
                         mode=0o600)
        return token

    def client_for(self, token: str) -> tuple[str, str] | None:
        """(client, group) whose token this is, or None."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        for client, entry in self._clients().items():
            if hmac.compare_digest(str(entry.get("token_sha256", "")), digest):
                return client, str(entry.get("group", ""))
        return None

    def record_report(self, client: str, group: str, installed: list[str],
                      results: dict[str, dict[str, Any]] | None = None, host: dict[str, Any] | None = None) -> None:
        """A client's report: what it has installed (a package list, replaced by each report), and
        from a Windows client each step's result by sha256 (installed, failed with its exit code,
        reboot-pending) and its host (OS build, AKS EE version, whether a restart is pending).
        Results are merged with earlier ones, the newest for each payload, kept only for payloads this
        site has and at most KEPT_RESULTS of them: the record, and every report, plan and status that
        reads it, cost the same after a client's thousandth report as after its first."""
        if not CLIENT_RE.match(client):
            raise UsageError(f"client id {client!r} is not valid (letters, digits, . _ -)")
        if group not in self.groups:
            raise UsageError(f"unknown group {group!r}")
        if len(installed) > MAX_INSTALLED or any(len(i) > 512 for i in installed):
            raise UsageError(f"a report lists at most {MAX_INSTALLED} installed packages, each at most 512 characters")
        with files_lock(self.site.directory):
            earlier = self.report(client) or {}
            merged = kept_results(earlier.get("results") or {}, results or {}, {e["sha256"] for e in self.catalog()})
            host = host or earlier.get("host")
            doc = {"client": client, "group": group, "installed": sorted(set(installed)), "reported_at": now(),
                   **({"results": merged} if merged else {}), **({"host": host} if host else {})}
            atomic_write(self.root / "reports" / f"{client}.json", json.dumps(doc, indent=2).encode())

    def report(self, client: str) -> dict[str, Any] | None:
        """The client's last report (None: it never reported)."""
        try:
            doc = json.loads((self.root / "reports" / f"{client}.json").read_text())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def installed_by(self, report: Mapping[str, Any]) -> set[str]:
        """The sha256 of every payload a report says is on the client (listed, or a step that
        installed it, restart pending or not)."""
        results = report.get("results") or {}
        done = {sha for sha, r in results.items() if r.get("status") in ("installed", "reboot-pending")}
        have = set(report.get("installed") or ())
        return done | {e["sha256"] for e in self.catalog()
                       if {e["sha256"], e["name"] + "=" + e["version"], e["file"]} & have}

    def status(self) -> list[dict[str, Any]]:
        """Per client that reported: what approved for its group it lacks; from a Windows client also
        the steps that failed (with their exit codes), a pending restart, its OS build and AKS EE version."""
        out = []
        for path in sorted((self.root / "reports").glob("*.json")):
            report = json.loads(path.read_text())
            have = self.installed_by(report)
            lacking = [{"name": e["name"], "version": e["version"], "sha256": e["sha256"], "kind": e["kind"]}
                       for e in self.approved(report["group"]) if e["sha256"] not in have]
            results = report.get("results") or {}
            host = report.get("host") or {}
            failed = [{"sha256": sha, "exit_code": r.get("exit_code")} for sha, r in sorted(results.items())
                      if r.get("status") == "failed"]
            pending = reboot_pending(report)
            out.append({"client": report["client"], "group": report["group"], "reported_at": report["reported_at"],
                        "lacking": lacking,
                        **({"failed": failed, "reboot_pending": pending,
                            **{k: host[k] for k in ("os_build", "aksee_version") if host.get(k)}}
                           if results or host else {})})
        return out


def kept_results(earlier: Mapping[str, dict[str, Any]], new: Mapping[str, dict[str, Any]],
                 known: set[str]) -> dict[str, dict[str, Any]]:
    """The newest result for each payload in `known`, at most KEPT_RESULTS (the newest by time, a new
    report's before an earlier one's of the same second)."""
    merged = [(str(r.get("at", "")), 0, sha, r) for sha, r in earlier.items() if sha in known and sha not in new]
    merged += [(str(r.get("at", "")), 1, sha, r) for sha, r in new.items() if sha in known]
    newest = sorted(merged, key=lambda item: item[:2], reverse=True)[:KEPT_RESULTS]
    return {sha: result for _, _, sha, result in sorted(newest, key=lambda item: item[2])}


def reboot_pending(report: Mapping[str, Any]) -> bool:
    """A Windows client waits for a restart: as its host last said, else as a step's exit code said."""
    host = report.get("host") or {}
    if "reboot_pending" in host:
        return bool(host["reboot_pending"])
    return any(r.get("status") == "reboot-pending" for r in (report.get("results") or {}).values())


def _order(entry: dict[str, Any]) -> tuple[str, str, str]:
    return entry["name"], entry["version"], entry["sha256"]


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
            approved = cache.approved(group)
            _publish_apt(site, target / "apt", group, [e for e in approved if e["kind"] == "deb"])
            _publish_rpm(site, cache, target / "rpm" / group, [e for e in approved if e["kind"] == "rpm"])
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


def client_configuration(site: SiteConfig, client: str, group: str, token: str) -> dict[str, Any]:
    """What an enrolled client needs to read its group's updates: the site's files to copy (site path
    -> client path) and each client's configuration (apt: sources and auth.conf; dnf: a .repo with
    the client's name and token; anything else: the token as a Bearer header)."""
    host = site.http_url.split("://", 1)[1]
    return {
        "client": client, "group": group, "token": token,
        "copy": {str(site.ca_file.resolve()): CLIENT_CA,
                 str((site.directory / UPDATES_DIR / APT_KEY).resolve()): CLIENT_APT_KEYRING,
                 str((site.directory / UPDATES_DIR / ASC_KEY).resolve()): CLIENT_RPM_KEY},
        "apt": {"sources": f"deb [signed-by={CLIENT_APT_KEYRING}] {site.http_url}/updates/apt {group} main",
                "auth_conf": f"machine {host}/updates/ login {client} password {token}",
                "ca_conf": f'Acquire::https::{host.rsplit(":", 1)[0]}::CaInfo "{CLIENT_CA}";'},
        "dnf": {"repo": dnf_repo(site, group, CLIENT_RPM_KEY, CLIENT_CA, (client, token))},
        "http": {"header": f"Authorization: Bearer {token}", "approved": f"{site.http_url}/updates/api/groups/"
                                                                          f"{group}/approved",
                 "report": f"{site.http_url}/updates/api/report"},
    }


def pool_path(entry: dict[str, Any]) -> str:
    return f"pool/{entry['sha256']}/{entry['file']}"


def _publish_apt(site: SiteConfig, apt: Path, group: str, debs: list[dict[str, Any]]) -> None:
    dist = apt / "dists" / group
    arches = sorted({e["arch"] for e in debs if e["arch"] != "all"}) or ["amd64", "arm64"]
    listed = []
    for arch in arches:
        stanzas = [debcontrol.stanza(debcontrol.parse(e["metadata"]["control"]),
                                     [("Filename", pool_path(e)), ("Size", str(e["size"])), ("SHA256", e["sha256"])])
                   for e in sorted(debs, key=_order) if e["arch"] in (arch, "all")]
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


def _publish_rpm(site: SiteConfig, cache: UpdateCache, directory: Path, rpms: list[dict[str, Any]]) -> None:
    directory.mkdir(parents=True)
    for e in rpms:  # by digest: two rpms of one file name (a vendor's rebuild) are both served
        (directory / pool_path(e)).parent.mkdir(parents=True)
        os.link(cache.blob(e["sha256"]), directory / pool_path(e))  # same bytes, no copy
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
