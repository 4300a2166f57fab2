"""The update cache's clients: enrollment (a token per client, kept hashed in clients.json) and their
reports (reports/<client>.json: what each has installed, a Windows client's step results and host),
and what each lacks of what its group approved."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bundler import names
from bundler.errors import BundlerError, UsageError
from bundler.fsutil import atomic_write
from bundler.jsontypes import Doc
from bundler.kinds.updates.catalog import Catalog, CatalogEntry, read_json
from bundler.kinds.updates.settings import check_group
from bundler.site.journal import files_lock
from bundler.units import printable
from bundler.untrusted import Malformed, Obj

CLIENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
CLIENTS_FILE = "clients.json"
MAX_CLIENTS_PER_GROUP = 10_000
MAX_INSTALLED = 20_000  # entries in one client report
KEPT_RESULTS = 1_000  # a client's step results kept: the newest for each payload this site has, at most this many
MAX_REPORT_FILE = 16 << 20


@dataclass(frozen=True)
class StepResult:
    """What a Windows client said of one payload's install step."""
    status: str  # installed, failed, reboot-pending
    exit_code: int | None
    at: str  # when the site recorded it

    def to_dict(self) -> Doc:
        return {"status": self.status, "exit_code": self.exit_code, "at": self.at}

    @classmethod
    def parse(cls, d: Obj) -> StepResult:
        return cls(d.string("status"), d.integer("exit_code", -(1 << 33), 1 << 33, default=None),
                   d.string("at", default=""))


@dataclass(frozen=True)
class Host:
    """What a Windows client said of its host; None: not said."""
    os_build: str | None = None
    aksee_version: str | None = None
    reboot_pending: bool | None = None

    def to_dict(self) -> Doc:
        return {key: value for key, value in (("os_build", self.os_build), ("aksee_version", self.aksee_version),
                                              ("reboot_pending", self.reboot_pending)) if value is not None}

    @classmethod
    def parse(cls, d: Obj) -> Host:
        return cls(d.string("os_build", default=None), d.string("aksee_version", default=None),
                   d.boolean("reboot_pending", default=None))

    def __bool__(self) -> bool:
        return bool(self.to_dict())


@dataclass(frozen=True)
class ClientReport:
    """A client's last report (reports/<client>.json)."""
    client: str
    group: str
    installed: tuple[str, ...]
    reported_at: str
    results: Mapping[str, StepResult] = field(default_factory=dict)  # by sha256
    host: Host = Host()

    def to_dict(self) -> Doc:
        return {"client": self.client, "group": self.group, "installed": self.installed,
                "reported_at": self.reported_at,
                **({"results": {sha: r.to_dict() for sha, r in self.results.items()}} if self.results else {}),
                **({"host": self.host.to_dict()} if self.host else {})}

    @classmethod
    def parse(cls, d: Obj) -> ClientReport:
        results = d.obj("results", default=None)
        host = d.obj("host", default=None)
        return cls(d.string("client"), d.string("group"), d.strings("installed"), d.string("reported_at", default=""),
                   {sha: StepResult.parse(r.obj()) for sha, r in results.entries()} if results is not None else {},
                   Host.parse(host) if host is not None else Host())

    @property
    def reboot_pending(self) -> bool:
        """It waits for a restart: as its host last said, else as a step's exit code said."""
        if self.host.reboot_pending is not None:
            return self.host.reboot_pending
        return any(r.status == "reboot-pending" for r in self.results.values())

    def installed_by(self, catalog: Catalog) -> set[str]:
        """The sha256 of every payload it says is on the client (listed, or a step that installed it,
        restart pending or not)."""
        done = {sha for sha, r in self.results.items() if r.status in ("installed", "reboot-pending")}
        have = set(self.installed)
        return done | {e.sha256 for e in catalog.entries if {e.sha256, f"{e.name}={e.version}", e.file} & have}


@dataclass(frozen=True)
class ClientStatus:
    """`updates status` of one client: what approved for its group it lacks; from a Windows client
    also the steps that failed (with their exit codes), a pending restart, its OS build and AKS EE version."""
    client: str
    group: str
    reported_at: str
    lacking: tuple[CatalogEntry, ...]
    windows: bool  # it reported step results or its host
    failed: tuple[tuple[str, int | None], ...] = ()  # (sha256, exit code)
    reboot_pending: bool = False
    host: Host = Host()

    def to_dict(self) -> Doc:
        return {"client": self.client, "group": self.group, "reported_at": self.reported_at,
                "lacking": [{"name": e.name, "version": e.version, "sha256": e.sha256, "kind": e.kind}
                            for e in self.lacking],
                **({"failed": [{"sha256": sha, "exit_code": code} for sha, code in self.failed],
                    "reboot_pending": self.reboot_pending,
                    **{k: v for k, v in (("os_build", self.host.os_build), ("aksee_version", self.host.aksee_version))
                       if v}}
                   if self.windows else {})}

    def line(self) -> str:
        lacking = ", ".join(f"{printable(u.name)} {printable(u.version)}" for u in self.lacking)
        more = [f"{len(self.failed)} failed"] if self.failed else []
        more += ["restart pending"] if self.reboot_pending else []
        more += [f"Windows {self.host.os_build}"] if self.host.os_build else []
        more += [f"AKS EE {self.host.aksee_version}"] if self.host.aksee_version else []
        return (f"{self.client} ({self.group}, reported {self.reported_at}): lacks {lacking or 'nothing'}"
                + (f"; {', '.join(more)}" if more else ""))


class Clients:
    def __init__(self, site_dir: Path, root: Path, groups: tuple[str, ...]) -> None:
        self.site_dir, self.root, self.groups = site_dir, root, groups

    def _clients(self) -> dict[str, dict[str, str]]:
        """clients.json: {client: {group, token_sha256, enrolled_at}}."""
        loaded = read_json(self.root / CLIENTS_FILE, CLIENTS_FILE)
        try:
            return {client: {key: value.string() for key, value in entry.obj().entries()}
                    for client, entry in loaded.obj().entries()} if loaded is not None else {}
        except Malformed as exc:
            raise BundlerError(f"{self.root / CLIENTS_FILE} is damaged: {exc}",
                               hint="restore it from a backup of the site, or enroll the clients again") from None

    def enroll(self, client: str, group: str) -> str:
        """Issue CLIENT's token for reports and downloads (a new one replaces the old); kept hashed."""
        if not CLIENT_RE.match(client):
            raise UsageError(f"client id {client!r} is not valid (letters, digits, . _ -; at most 128)")
        check_group(group, self.groups)
        token = secrets.token_urlsafe(32)
        with files_lock(self.site_dir):
            clients = self._clients()
            if client not in clients and sum(c.get("group") == group for c in clients.values()) >= \
                    MAX_CLIENTS_PER_GROUP:
                raise UsageError(f"group {group} has {MAX_CLIENTS_PER_GROUP} clients already")
            clients[client] = {"group": group, "token_sha256": hashlib.sha256(token.encode()).hexdigest(),
                               "enrolled_at": names.format_time()}
            atomic_write(self.root / CLIENTS_FILE, json.dumps(clients, indent=2, sort_keys=True).encode(),
                         mode=0o600)
        return token

    def client_for(self, token: str) -> tuple[str, str] | None:
        """(client, group) whose token this is, or None."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        for client, entry in self._clients().items():
            if hmac.compare_digest(entry.get("token_sha256", ""), digest):
                return client, entry.get("group", "")
        return None

    def record_report(self, catalog: Catalog, client: str, group: str, installed: list[str],
                      results: Mapping[str, StepResult] | None = None, host: Host | None = None) -> None:
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
        with files_lock(self.site_dir):
            earlier = self.report(client)
            merged = kept_results(earlier.results if earlier else {}, results or {}, catalog.shas)
            report = ClientReport(client, group, tuple(sorted(set(installed))), names.format_time(), merged,
                                  host or (earlier.host if earlier else Host()))
            atomic_write(self.root / "reports" / f"{client}.json", json.dumps(report.to_dict(), indent=2).encode())

    def report(self, client: str) -> ClientReport | None:
        """The client's last report (None: it never reported, or its file is not one)."""
        try:
            found = read_json(self.root / "reports" / f"{client}.json", f"reports/{client}.json")
            return ClientReport.parse(found.obj()) if found is not None else None
        except (BundlerError, Malformed, OSError):
            return None

    def status(self, catalog: Catalog) -> list[ClientStatus]:
        """Per client that reported: what approved for its group it lacks, and what a Windows client
        said of its steps and its host."""
        out = []
        for path in sorted((self.root / "reports").glob("*.json")):
            report = self.report(path.stem)
            if report is None:
                continue
            have = report.installed_by(catalog)
            out.append(ClientStatus(
                report.client, report.group, report.reported_at,
                tuple(e for e in catalog.approved(report.group) if e.sha256 not in have),
                bool(report.results or report.host),
                tuple((sha, r.exit_code) for sha, r in sorted(report.results.items()) if r.status == "failed"),
                report.reboot_pending, report.host))
        return out


def kept_results(earlier: Mapping[str, StepResult], new: Mapping[str, StepResult],
                 known: set[str]) -> dict[str, StepResult]:
    """The newest result for each payload in `known`, at most KEPT_RESULTS (the newest by time, a new
    report's before an earlier one's of the same second)."""
    merged = [(r.at, 0, sha, r) for sha, r in earlier.items() if sha in known and sha not in new]
    merged += [(r.at, 1, sha, r) for sha, r in new.items() if sha in known]
    newest = sorted(merged, key=lambda item: item[:2], reverse=True)[:KEPT_RESULTS]
    return {sha: result for _, _, sha, result in sorted(newest, key=lambda item: item[2])}
