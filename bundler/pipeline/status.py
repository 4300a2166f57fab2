"""`site status`: each service's health (asked now: two requests), where clients find what they
need (absolute paths: `signed-by=` wants one), what the site imported and handed over, and its disk
(as the last import, prune or start measured it; measured now when nothing has)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from bundler.jsontypes import Doc, Out
from bundler.kinds import KINDS
from bundler.pipeline.disk import DiskReport, disk_report, kept_disk_report
from bundler.pipeline.hub import SyncResult, SyncState
from bundler.site.config import SiteConfig, load_site
from bundler.site.service import http_healthy, registry_healthy
from bundler.site.state import Handover, ImportedRelease, ReleaseStatus, SiteState
from bundler.units import printable


@dataclass(frozen=True)
class ServiceStatus:
    """One service: where it is, whether it answered, and what its clients need."""
    url: str
    healthy: bool
    fields: Mapping[str, Out] = field(default_factory=dict)

    def to_dict(self) -> Doc:
        return {"url": self.url, "healthy": self.healthy, **self.fields}


@dataclass(frozen=True)
class SiteStatus:
    """What `site status` reports (`to_dict()`: its --json, `lines()`: for people)."""
    healthy: bool  # the registry and the HTTPS service answered
    services: Mapping[str, ServiceStatus]  # the registry, then each kind's services
    ca_file: str
    credentials_file: str
    bundles: tuple[tuple[ImportedRelease, list[str]], ...]  # each import, with its signers' names
    handovers: tuple[Handover, ...]
    sync: SyncResult | None  # the last `site sync` from a hub, if any
    disk: DiskReport | None = None
    disk_age: str | None = None  # how old the disk figures are ("3 min ago"); None: measured now

    def to_dict(self) -> Doc:
        return {"healthy": self.healthy, "services": {name: s.to_dict() for name, s in self.services.items()},
                "ca_file": self.ca_file, "credentials_file": self.credentials_file,
                "bundles": [{**b.to_dict(), "signed_by": names} for b, names in self.bundles],
                "handovers": [h.to_dict() for h in self.handovers],
                "sync": dict(sorted(self.sync.to_dict().items())) if self.sync is not None else None,  # as kept
                **({"disk": self.disk.to_dict()} if self.disk is not None else {})}

    def lines(self) -> list[str]:
        out = [f"{name}: {s.url} ({'healthy' if s.healthy else 'NOT answering'})" for name, s in self.services.items()]
        out.append(f"CA: {self.ca_file}  credentials: {self.credentials_file}")
        for b, _ in self.bundles:
            publishing = " (still publishing: run the same import again to finish it)" \
                if b.status == ReleaseStatus.PUBLISHING else ""
            out.append(f"imported {b.name} {b.version} {b.manifest_digest} at {b.imported_at}{publishing}")
        if self.sync is not None:
            out.append(f"hub sync: {printable(self.sync.line())}")
        return out + (self.disk.lines(self.disk_age) if self.disk is not None else [])


def status_report(directory: Path) -> SiteStatus:
    """The site's status with its disk figures (the kept ones, else measured now)."""
    site = load_site(directory)
    status = site_status(site)
    kept = kept_disk_report(site)  # what the last import, prune or start measured: no walk
    if kept is not None:
        return replace(status, disk=kept[0], disk_age=kept[1])
    registry = status.services["registry"].healthy
    return replace(status, disk=disk_report(site, site.registry_client(2) if registry else None))


def site_status(site: SiteConfig) -> SiteStatus:
    """Each service's health: the registry, and each content kind's service (Kind.services,
    served by the site's HTTPS service), with absolute paths for what clients need."""
    healthy, registry = http_healthy(site), registry_healthy(site)
    state = SiteState.load(site.directory)
    return SiteStatus(
        healthy and registry,
        {"registry": ServiceStatus(site.registry.url, registry, {"embedded": site.embedded_registry}),
         **{name: ServiceStatus(service.url, healthy, service.fields)
            for kind in KINDS for name, service in kind.serve.services(site).items()}},
        str(site.ca_file.resolve()), str(site.credentials_file.resolve()),
        tuple((b, site.signer_names(b.signers)) for b in state.bundles), tuple(state.handovers),
        SyncState.load(site.directory).last)
