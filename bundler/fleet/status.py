"""`bundler fleet status`: the fleet at a glance, from the receipts and sync reports it keeps (each
checked when kept) and its own record of its rollouts. How many sites run which version, each
rollout's waves (done, failed, pending, bytes, rate), then every site, those with a problem first
(a failed sync, a stale receipt, a service down, a disk nearly full, clients lacking updates or
failing), the rest in natural order (store-2 before store-10)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass

from bundler import names
from bundler.fleet.documents import SiteReceipt, SyncReport
from bundler.fleet.rollout import Rollout, members, site_state
from bundler.fleet.store import Fleet
from bundler.jsontypes import Doc, Json
from bundler.units import human
from bundler.versions import Version

STALE_HOURS = 24.0  # a receipt older than this is a problem on the fleet's page
DISK_FULL_PERCENT = 90


@dataclass(frozen=True)
class SiteRow:
    """One site: what it runs, how old its receipt is, its update clients, disk, services, last sync."""
    site: str
    receipt: SiteReceipt | None
    report: SyncReport | None
    receipt_age_hours: float | None
    problems: tuple[str, ...]

    @property
    def running(self) -> dict[str, str]:
        return self.receipt.running if self.receipt else {}

    @property
    def used_percent(self) -> int | None:
        return self.receipt.used_percent if self.receipt else None

    def to_dict(self) -> Doc:
        clients = self.receipt.clients if self.receipt else ()
        disk: Json = self.receipt.disk if self.receipt else None
        services: Json = self.receipt.services if self.receipt else None
        r = self.report
        return {"site": self.site, "receipt_created": self.receipt.created if self.receipt else None,
                "receipt_age_hours": self.receipt_age_hours, "running": self.running,
                "clients_lacking_updates": {c.client: c.lacking for c in clients if c.lacking},
                "clients_waiting_restart": sorted(c.client for c in clients if c.reboot_pending),
                "clients_failed": {c.client: c.failed for c in clients if c.failed},
                "aksee_versions": {c.client: c.aksee_version for c in clients if c.aksee_version is not None},
                "disk": disk, "services": services,
                "sync": {"state": r.state, "created": r.created, "message": r.message, "bytes": r.bytes} if r else None,
                "problems": self.problems,
                **({"image_verdicts": self.receipt.image_verdicts} if self.receipt and self.receipt.image_verdicts
                   else {}),
                **({"scanner_databases": self.receipt.scanner_databases}
                   if self.receipt and self.receipt.scanner_databases else {})}

    def client_lines(self) -> list[str]:
        """Per update client with something to say: approved updates it lacks, failed steps, a restart
        it waits for, its AKS EE version."""
        clients = self.receipt.clients if self.receipt else ()
        by_name = {c.client: c for c in clients}
        out = []
        for name in dict.fromkeys([*(c.client for c in clients if c.lacking), *(c.client for c in clients if c.failed),
                                   *sorted(c.client for c in clients if c.reboot_pending),
                                   *(c.client for c in clients if c.aksee_version is not None)]):
            c = by_name[name]
            said = [f"{c.lacking} lacking"] if c.lacking else []
            said += [f"{c.failed} failed"] if c.failed else []
            said += ["restart pending"] if c.reboot_pending else []
            said += [f"AKS EE {c.aksee_version}"] if c.aksee_version else []
            out.append(f"{name}: {', '.join(said)}")
        return out


@dataclass(frozen=True)
class WaveFigures:
    """A rollout's wave: open, its sites done / failed / pending, bytes the done ones fetched and their
    mean rate (from their sync reports)."""
    name: str
    open: bool
    done: int
    failed: int
    pending: int
    bytes: int
    bytes_per_second: int | None
    failed_sites: dict[str, str]  # site -> why

    def to_dict(self) -> Doc:
        return {"name": self.name, "open": self.open, "done": self.done, "failed": self.failed,
                "pending": self.pending, "bytes": self.bytes, "bytes_per_second": self.bytes_per_second,
                "failed_sites": self.failed_sites}

    def line(self) -> str:
        rate = f" at {human(self.bytes_per_second)}/s" if self.bytes_per_second else ""
        return (f"  wave {self.name} ({'open' if self.open else 'not open'}): {self.done} done, {self.failed} "
                f"failed, {self.pending} pending; {human(self.bytes)} fetched{rate}")


@dataclass(frozen=True)
class RolloutFigures:
    rollout: Rollout
    waves: tuple[WaveFigures, ...]

    def to_dict(self) -> Doc:
        r = self.rollout
        return {"name": r.name, "version": r.version, "serial": r.serial, "state": r.state, "reason": r.reason,
                "expires": r.expires, "waves": [w.to_dict() for w in self.waves]}

    def lines(self) -> list[str]:
        r = self.rollout
        state = r.state + (f" ({r.reason})" if r.reason else "")
        return [f"rollout {r.name} {r.version} (serial {r.serial}, expires {r.expires}): {state}",
                *(w.line() for w in self.waves)]


@dataclass(frozen=True)
class FleetStatus:
    bundles: list[str]  # every bundle name a site runs
    versions: dict[str, dict[str, int]]  # bundle name -> version -> sites running it (newest first)
    rollouts: tuple[RolloutFigures, ...]
    sites: tuple[SiteRow, ...]  # problems first

    @property
    def with_problems(self) -> int:
        return sum(1 for s in self.sites if s.problems)

    def to_dict(self) -> Doc:
        return {"bundles": self.bundles, "summary": {"sites": len(self.sites), "versions": self.versions,
                                                     "with_problems": self.with_problems},
                "rollouts": [r.to_dict() for r in self.rollouts], "sites": [s.to_dict() for s in self.sites]}

    def versions_line(self) -> str:
        """`190 sites; store: 1.5.0 on 180, 1.4.0 on 10; 12 with a problem`."""
        parts = [f"{len(self.sites)} sites"]
        for bundle, counts in self.versions.items():
            parts.append(f"{bundle}: " + ", ".join(f"{version} on {n}" for version, n in counts.items()))
        parts.append(f"{self.with_problems} with a problem")
        return "; ".join(parts)


def status_of(fleet: Fleet, now: dt.datetime | None = None) -> FleetStatus:
    now = now or dt.datetime.now(dt.UTC)
    receipts, reports = fleet.receipts(), fleet.reports()
    sites = []
    for name in sorted(set(receipts) | set(reports), key=names.natural_key):
        receipt, report = receipts.get(name), reports.get(name)
        age = round((now - names.parse_time(receipt.created)).total_seconds() / 3600, 1) if receipt else None
        sites.append(SiteRow(name, receipt, report, age, tuple(problems(receipt, age, report))))
    sites.sort(key=lambda s: not s.problems)  # stable: problems first, each part in natural order
    bundles = sorted({b for s in sites for b in s.running})
    versions = {b: dict(sorted(Counter(s.running[b] for s in sites if b in s.running).items(),
                               key=lambda item: Version(item[0]), reverse=True)) for b in bundles}
    rollouts = tuple(RolloutFigures(r, wave_figures(r, fleet.site_names(), receipts, reports))
                     for r in fleet.rollouts())
    return FleetStatus(bundles, versions, rollouts, tuple(sites))


def problems(receipt: SiteReceipt | None, age_hours: float | None, report: SyncReport | None) -> list[str]:
    """What an operator should look at, from a site's receipt and its last sync report."""
    out = []
    if report is not None and report.state == "failed":
        out.append(f"sync failed: {report.message}"[:300])
    if receipt is None or age_hours is None:
        out.append("no receipt yet")
    elif age_hours > STALE_HOURS:
        out.append(f"receipt {age_hours:.0f} h old")
    if receipt is None:
        return out
    if down := receipt.down:
        out.append(f"{', '.join(down)} not answering")
    used = receipt.used_percent
    if used is not None and used >= DISK_FULL_PERCENT:
        out.append(f"disk {used}% full")
    if failing := [c for c in receipt.clients if c.failed]:
        out.append(f"{len(failing)} update clients failing")
    if lacking := [c for c in receipt.clients if c.lacking]:
        out.append(f"{len(lacking)} update clients lacking updates")
    return out


def wave_figures(rollout: Rollout, known: list[str], receipts: dict[str, SiteReceipt],
                 reports: dict[str, SyncReport]) -> tuple[WaveFigures, ...]:
    out = []
    for number, sites in enumerate(members(rollout, known)):
        states = {site: site_state(rollout, site, receipts.get(site), reports.get(site)) for site in sites}
        done = [r for s, (state, _) in states.items() if state == "done" and (r := reports.get(s)) is not None]
        rates = [r.bytes_per_second for r in done if r.bytes_per_second is not None]
        counts = Counter(state for state, _ in states.values())
        out.append(WaveFigures(rollout.waves[number].name, number < rollout.open, counts["done"], counts["failed"],
                               counts["pending"], sum(r.bytes for r in done),
                               int(sum(rates) / len(rates)) if rates else None,
                               {s: why for s, (state, why) in states.items() if state == "failed"}))
    return tuple(out)
