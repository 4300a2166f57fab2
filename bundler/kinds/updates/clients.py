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
from pathlib import Path
from typing import Any

from bundler import names
from bundler.errors import UsageError
from bundler.fsutil import atomic_write
from bundler.kinds.updates.catalog import Catalog, read_json
from bundler.kinds.updates.settings import check_group
from bundler.site.journal import files_lock

CLIENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
CLIENTS_FILE = "clients.json"
MAX_CLIENTS_PER_GROUP = 10_000
MAX_INSTALLED = 20_000  # entries in one client report
KEPT_RESULTS = 1_000  # a client's step results kept: the newest for each payload this site has, at most this many


class Clients:
    def __init__(self, site_dir: Path, root: Path, groups: tuple[str, ...]) -> None:
        self.site_dir, self.root, self.groups = site_dir, root, groups

    def _clients(self) -> dict[str, dict[str, str]]:
        loaded = read_json(self.root / CLIENTS_FILE, {})
        return loaded if isinstance(loaded, dict) else {}

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
            if hmac.compare_digest(str(entry.get("token_sha256", "")), digest):
                return client, str(entry.get("group", ""))
        return None

    def record_report(self, catalog: Catalog, client: str, group: str, installed: list[str],
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
        with files_lock(self.site_dir):
            earlier = self.report(client) or {}
            merged = kept_results(earlier.get("results") or {}, results or {}, catalog.shas)
            host = host or earlier.get("host")
            doc = {"client": client, "group": group, "installed": sorted(set(installed)),
                   "reported_at": names.format_time(),
                   **({"results": merged} if merged else {}), **({"host": host} if host else {})}
            atomic_write(self.root / "reports" / f"{client}.json", json.dumps(doc, indent=2).encode())

    def report(self, client: str) -> dict[str, Any] | None:
        """The client's last report (None: it never reported)."""
        try:
            doc = json.loads((self.root / "reports" / f"{client}.json").read_text())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def status(self, catalog: Catalog) -> list[dict[str, Any]]:
        """Per client that reported: what approved for its group it lacks; from a Windows client also
        the steps that failed (with their exit codes), a pending restart, its OS build and AKS EE version."""
        out = []
        for path in sorted((self.root / "reports").glob("*.json")):
            report = json.loads(path.read_text())
            have = installed_by(report, catalog)
            lacking = [{"name": e["name"], "version": e["version"], "sha256": e["sha256"], "kind": e["kind"]}
                       for e in catalog.approved(report["group"]) if e["sha256"] not in have]
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


def installed_by(report: Mapping[str, Any], catalog: Catalog) -> set[str]:
    """The sha256 of every payload a report says is on the client (listed, or a step that
    installed it, restart pending or not)."""
    results = report.get("results") or {}
    done = {sha for sha, r in results.items() if r.get("status") in ("installed", "reboot-pending")}
    have = set(report.get("installed") or ())
    return done | {e["sha256"] for e in catalog.entries
                   if {e["sha256"], e["name"] + "=" + e["version"], e["file"]} & have}


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
