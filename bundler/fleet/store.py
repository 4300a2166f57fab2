"""A fleet directory (`--fleet DIR`, default ./fleet): the site keys enrolled (`keys/<keyid>.pub`) and
the latest receipt of each site (`sites/<name>.json`), each checked against its site's key before it
is kept. A receipt is untrusted input until then: read by the bounded reader, refused (exit 3) when
its key is not enrolled, its signature does not match, or it is not a receipt."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bundler import names, signing
from bundler.bundle.parent import RECEIPT_KIND
from bundler.errors import RefusedError, UsageError
from bundler.fleet.rollout import Rollout, members, site_state
from bundler.fleet.rollout import parse as parse_rollout
from bundler.fsutil import atomic_write, read_regular
from bundler.keyfiles import load_trusted_key
from bundler.site import identity
from bundler.untrusted import Malformed, Obj
from bundler.versions import Version

MAX_RECEIPT_BYTES = 64 << 20
MAX_CLOCK_SKEW = dt.timedelta(minutes=10)  # a receipt dated later than now plus this is refused


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {type(value).__name__}")
    return value
KEYS_DIR, SITES_DIR, REPORTS_DIR, ROLLOUTS_DIR = "keys", "sites", "reports", "rollouts"
REPORT_KIND = "bundler/sync-report/v1"  # a site's signed word on its last sync from the hub
STALE_HOURS = 24.0  # a receipt older than this is a problem on the fleet's page
DISK_FULL_PERCENT = 90


@dataclass(frozen=True)
class Added:
    """A receipt taken into the fleet: for which site, made when, and whether it was kept."""
    site: str
    created: str
    kept: bool  # False when the fleet already holds a newer receipt of this site


class Fleet:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def enroll(self, pub: Path, name: str | None = None) -> str:
        """Accept receipts signed by this site key, for site `name` only (without one: the name of
        the first receipt it signs); returns its key id."""
        key = load_trusted_key(pub)
        if name is not None:
            try:
                names.site_name(name)
            except ValueError as exc:
                raise UsageError(f"--name: {exc}") from None
            bound = self.bound_name(key.keyid)
            if bound is not None and bound != name:
                raise UsageError(f"key {key.keyid[:12]} is enrolled for site {bound}, not {name}",
                                 hint="a site key speaks for one site; enroll each site's own DIR/site.pub")
        (self.directory / KEYS_DIR).mkdir(parents=True, exist_ok=True)
        atomic_write(self.directory / KEYS_DIR / f"{key.keyid}.pub", signing.public_pem(key.key))  # as parsed
        if name is not None:
            atomic_write(self.directory / KEYS_DIR / f"{key.keyid}.site", name.encode())
        return key.keyid

    def bound_name(self, keyid: str) -> str | None:
        """The site name this key speaks for (set at enrollment, or by the first receipt it signed)."""
        try:
            return (self.directory / KEYS_DIR / f"{keyid}.site").read_text().strip() or None
        except OSError:
            return None

    def _key(self, keyid: str) -> signing.TrustedKey | None:
        path = self.directory / KEYS_DIR / f"{keyid}.pub"
        return load_trusted_key(path) if names.SHA256_RE.match(keyid) and path.exists() else None

    def add(self, path: Path) -> Added:
        """Check a receipt (enrolled key, valid signature, a receipt's shape) and keep it unless the
        fleet holds a newer one of the same site."""
        try:
            data = read_regular(path, MAX_RECEIPT_BYTES)
        except (OSError, ValueError) as exc:
            raise RefusedError(f"receipt {path} is not a site receipt: {exc}") from None
        return self.take(data, str(path))

    def take(self, data: bytes, path: str) -> Added:
        """`add` for a receipt's bytes (from a file, or from the hub: `path` says where, in messages)."""
        try:
            doc = Obj.load(data, MAX_RECEIPT_BYTES)
            if doc.value.get("kind") != RECEIPT_KIND:
                raise Malformed(f"kind is not {RECEIPT_KIND!r}")
            site = doc.string("site", names.site_name)
            created = doc.string("created", names.timestamp)
            signature = doc.obj("signature")
            keyid = signature.string("keyid", names.sha256_hex)
            for item in doc.array("bundles"):
                release = item.obj()
                release.string("name", names.bundle_name)
                release.string("version", names.version)
            for item in doc.array("clients"):
                client = item.obj()
                client.string("client", names.text)
                list(client.array("lacking"))
                list(client.array("failed"))  # a Windows client's: steps that failed
                client.boolean("reboot_pending", default=None)
                client.string("aksee_version", names.text, default=None)
            if (disk := doc.obj("disk", None)) is not None:  # what status shows of it: whole numbers
                for field in ("total", "used", "free"):
                    disk.integer(field, default=None)
            if (services := doc.obj("services", None)) is not None:
                for _, healthy in services.entries():
                    healthy.checked(healthy.value, _boolean)
        except (OSError, ValueError) as exc:
            raise RefusedError(f"receipt {path} is not a site receipt: {exc}") from None
        bound = self.check_signed(doc.value, site, keyid, f"receipt {path}")
        if names.parse_time(created) > dt.datetime.now(dt.UTC) + MAX_CLOCK_SKEW:
            raise RefusedError(f"receipt {path} (site {site}) is dated {created}, in the future",
                               hint="check the site's clock (a receipt from the future would hide its later ones)")
        if bound is None:
            atomic_write(self.directory / KEYS_DIR / f"{keyid}.site", site.encode())  # its first receipt names it
        target = self.directory / SITES_DIR / f"{site}.json"
        held = self._read_one(target) if target.exists() else None  # this site's alone (not every receipt)
        if held is not None and names.parse_time(str(held["created"])) > names.parse_time(created):
            return Added(site, created, False)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, data)
        return Added(site, created, True)

    def check_signed(self, doc: dict[str, Any], site: str, keyid: str, what: str) -> str | None:
        """A document a site signed (a receipt, a sync report): by an enrolled key, over exactly its
        content, for the site that key speaks for; refused otherwise. The name the key is bound to."""
        key = self._key(keyid)
        if key is None:
            raise RefusedError(f"{what} (site {site}) is signed by key {keyid[:12]}, which this fleet "
                               "has not enrolled", hint=f"enroll the site's key first: bundler fleet enroll "
                                                       f"{site}.pub (the site's DIR/site.pub)")
        if not identity.signature_valid(doc, key.key):
            raise RefusedError(f"{what} (site {site}): its signature does not match its content "
                               "(edited after the site signed it)",
                               hint="ask the site for a fresh receipt: bundler site receipt DIR -o FILE")
        bound = self.bound_name(keyid)
        if bound is not None and bound != site:
            raise RefusedError(f"{what} claims to be site {site}'s, but is signed by the key of site {bound}",
                               hint="a site key speaks for its own site only: this receipt is forged or misfiled")
        return bound

    def keep_report(self, data: bytes, where: str) -> dict[str, Any]:
        """A site's sync report (from the hub): checked as a receipt is (its enrolled key, over exactly
        its content, for its own site), then kept as the site's latest."""
        try:
            doc = Obj.load(data, MAX_RECEIPT_BYTES)
            if doc.value.get("kind") != REPORT_KIND:
                raise Malformed(f"kind is not {REPORT_KIND!r}")
            site = doc.string("site", names.site_name)
            doc.string("created", names.timestamp)
            doc.string("state", names.text)
            doc.string("message", names.text)
            keyid = doc.obj("signature").string("keyid", names.sha256_hex)
        except ValueError as exc:
            raise RefusedError(f"{where} is not a sync report: {exc}") from None
        self.check_signed(doc.value, site, keyid, where)
        target = self.directory / REPORTS_DIR / f"{site}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, data)
        return dict(doc.value)

    def reports(self) -> dict[str, dict[str, Any]]:
        """The last sync report of each site (each checked when kept)."""
        return self._read_all(REPORTS_DIR)

    def save_rollout(self, name: str, data: bytes) -> None:
        (self.directory / ROLLOUTS_DIR).mkdir(parents=True, exist_ok=True)
        atomic_write(self.directory / ROLLOUTS_DIR / f"{name}.json", data)

    def rollout(self, name: str) -> Rollout | None:
        """The rollout this fleet published last under `name` (its own record, not read from the hub)."""
        path = self.directory / ROLLOUTS_DIR / f"{name}.json"
        try:
            return parse_rollout(Obj.load(read_regular(path, MAX_RECEIPT_BYTES), MAX_RECEIPT_BYTES).obj("rollout"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise UsageError(f"fleet file {path} is unreadable: {exc}") from None

    def rollouts(self) -> list[Rollout]:
        root = self.directory / ROLLOUTS_DIR
        found = [self.rollout(p.stem) for p in sorted(root.glob("*.json"))] if root.exists() else []
        return [r for r in found if r is not None]

    def _read_all(self, directory: str) -> dict[str, dict[str, Any]]:
        root = self.directory / directory
        return {path.stem: self._read_one(path) for path in sorted(root.glob("*.json"))} if root.exists() else {}

    @staticmethod
    def _read_one(path: Path) -> dict[str, Any]:
        try:
            return dict(Obj.load(read_regular(path, MAX_RECEIPT_BYTES), MAX_RECEIPT_BYTES).value)
        except (OSError, ValueError) as exc:
            raise UsageError(f"fleet file {path} is unreadable: {exc}") from None

    def site_names(self) -> list[str]:
        """Every site the fleet knows: bound to an enrolled key, or holding a receipt."""
        keys = self.directory / KEYS_DIR
        bound = {p.read_text().strip() for p in keys.glob("*.site")} if keys.exists() else set()
        return sorted(bound | set(self.receipt_paths()) - {""}, key=names.natural_key)

    def receipt_paths(self) -> dict[str, Path]:
        """Each site's kept receipt file (checked when added): a `build --since` parent."""
        root = self.directory / SITES_DIR
        return {path.stem: path for path in sorted(root.glob("*.json"))} if root.exists() else {}

    def receipts(self) -> dict[str, dict[str, Any]]:
        """The receipts the fleet keeps (each was checked when added), by site name."""
        return self._read_all(SITES_DIR)

    def status(self, now: dt.datetime | None = None) -> dict[str, Any]:
        """The fleet at a glance: how many sites run which version, each rollout's waves (done, failed,
        pending, bytes, rate), then every site, those with a problem first (a failed sync, a stale
        receipt, a service down, a disk nearly full, clients lacking updates or failing), the rest in
        natural order (store-2 before store-10)."""
        now = now or dt.datetime.now(dt.UTC)
        receipts, reports = self.receipts(), self.reports()
        sites = []
        for name in sorted(set(receipts) | set(reports), key=names.natural_key):
            doc, report = receipts.get(name) or {}, reports.get(name)
            running: dict[str, str] = {}
            for release in doc.get("bundles") or []:
                running[str(release["name"])] = str(release["version"])  # in import order: the last one runs
            clients = doc.get("clients") or []
            lacking = {str(c.get("client")): len(c.get("lacking") or []) for c in clients}
            age = now - names.parse_time(str(doc["created"])) if doc else None
            site: dict[str, Any] = {"site": name, "receipt_created": doc.get("created"),
                    "receipt_age_hours": round(age.total_seconds() / 3600, 1) if age is not None else None,
                    "running": running, "clients_lacking_updates": {c: n for c, n in lacking.items() if n},
                    "clients_waiting_restart": sorted(str(c["client"]) for c in clients
                                                      if c.get("reboot_pending") is True),
                    "clients_failed": {str(c["client"]): len(c["failed"]) for c in clients if c.get("failed")},
                    "aksee_versions": {str(c["client"]): str(c["aksee_version"]) for c in clients
                                       if isinstance(c.get("aksee_version"), str)},
                    "disk": doc.get("disk"), "services": doc.get("services"),
                    "sync": {k: report.get(k) for k in ("state", "created", "message", "bytes")} if report else None}
            site["problems"] = problems(site, report)
            sites.append(site)
        sites.sort(key=lambda s: not s["problems"])  # stable: problems first, each part in natural order
        bundles = sorted({b for s in sites for b in s["running"]})
        versions = {b: dict(sorted(Counter(s["running"][b] for s in sites if b in s["running"]).items(),
                                   key=lambda item: Version(item[0]), reverse=True)) for b in bundles}
        waves = [{"name": r.name, "version": r.version, "serial": r.serial, "state": r.state, "reason": r.reason,
                  "expires": r.expires, "waves": wave_figures(r, self.site_names(), receipts, reports)}
                 for r in self.rollouts()]
        return {"bundles": bundles, "summary": {"sites": len(sites), "versions": versions,
                                                "with_problems": sum(1 for s in sites if s["problems"])},
                "rollouts": waves, "sites": sites}


def used_percent(disk: dict[str, Any] | None) -> int | None:
    """How full a receipt's disk is, as the site's page counts it (total - free); None when not said."""
    disk = disk or {}
    if isinstance(disk.get("total"), int) and isinstance(disk.get("free"), int) and disk["total"] > 0:
        return round(100 * (int(disk["total"]) - int(disk["free"])) / int(disk["total"]))
    return None


def problems(site: dict[str, Any], report: dict[str, Any] | None) -> list[str]:
    """What an operator should look at, from a site's receipt and its last sync report."""
    out = []
    if report is not None and report.get("state") == "failed":
        out.append(f"sync failed: {report.get('message', '')}"[:300])
    if site["receipt_age_hours"] is None:
        out.append("no receipt yet")
    elif site["receipt_age_hours"] > STALE_HOURS:
        out.append(f"receipt {site['receipt_age_hours']:.0f} h old")
    down = [name for name, ok in (site["services"] or {}).items() if ok is False]
    if down:
        out.append(f"{', '.join(down)} not answering")
    used = used_percent(site["disk"])
    if used is not None and used >= DISK_FULL_PERCENT:
        out.append(f"disk {used}% full")
    if site["clients_failed"]:
        out.append(f"{len(site['clients_failed'])} update clients failing")
    if site["clients_lacking_updates"]:
        out.append(f"{len(site['clients_lacking_updates'])} update clients lacking updates")
    return out


def wave_figures(rollout: Rollout, known: list[str], receipts: dict[str, dict[str, Any]],
                 reports: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each wave of a rollout: open, sites done / failed / pending, bytes the done ones fetched and their
    mean rate (from their sync reports)."""
    out = []
    for number, sites in enumerate(members(rollout, known)):
        states = {site: site_state(rollout, site, receipts.get(site), reports.get(site)) for site in sites}
        done = [reports.get(s) or {} for s, (state, _) in states.items() if state == "done"]
        fetched = sum(int(r.get("bytes") or 0) for r in done)
        rates = [float(r["bytes_per_second"]) for r in done if isinstance(r.get("bytes_per_second"), int | float)]
        out.append({"name": rollout.waves[number].name, "open": number < rollout.open,
                    **{k: sum(1 for state, _ in states.values() if state == k) for k in ("done", "failed", "pending")},
                    "bytes": fetched, "bytes_per_second": int(sum(rates) / len(rates)) if rates else None,
                    "failed_sites": {s: why for s, (state, why) in states.items() if state == "failed"}})
    return out
