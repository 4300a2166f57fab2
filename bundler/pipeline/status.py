"""`site status`: each service's health (asked now: two requests), where clients find what they
need (absolute paths: `signed-by=` wants one), what the site imported and handed over, and its disk
(as the last import, prune or start measured it; measured now when nothing has)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bundler.kinds import KINDS
from bundler.pipeline.disk import disk_report
from bundler.pipeline.hub import load_sync_state
from bundler.site import figures
from bundler.site.config import SiteConfig, load_site
from bundler.site.service import http_healthy, registry_healthy
from bundler.site.state import SiteState


@dataclass(frozen=True)
class StatusReport:
    doc: dict[str, Any]  # what `site status --json` prints
    disk_age: str | None  # how old the disk figures are ("3 minutes ago"); None: measured now

    @property
    def healthy(self) -> bool:
        return bool(self.doc["healthy"])


def status_report(directory: Path) -> StatusReport:
    """The site's status with its disk figures."""
    site = load_site(directory)
    doc = site_status(site)
    kept = figures.read(site, figures.DISK_FILE)  # what the last import, prune or start measured: no walk
    if kept is not None:
        doc["disk"] = {**kept.figures, "measured_at": kept.measured_at.isoformat().replace("+00:00", "Z")}
        return StatusReport(doc, kept.age)
    doc["disk"] = disk_report(site, site.registry_client(2) if doc["services"]["registry"]["healthy"] else None)
    return StatusReport(doc, None)


def site_status(site: SiteConfig) -> dict[str, Any]:
    """Each service's health: the registry, and each content kind's service (Kind.services,
    served by the site's HTTPS service), with absolute paths for what clients need."""
    healthy = http_healthy(site)
    registry = registry_healthy(site)
    state = SiteState.load(site.directory)
    return {
        "healthy": healthy and registry,
        "services": {
            "registry": {"url": site.registry_url, "healthy": registry, "embedded": site.embedded_registry},
            **{name: {"url": service["url"], "healthy": healthy, **service}
               for kind in KINDS for name, service in kind.serve.services(site).items()},
        },
        "ca_file": str(site.ca_file.resolve()), "credentials_file": str(site.credentials_file.resolve()),
        "bundles": [{**b.to_dict(), "signed_by": site.signer_names(b.signers)} for b in state.bundles],
        "handovers": [h.to_dict() for h in state.handovers],
        "sync": load_sync_state(site.directory).get("last"),  # the last `site sync` from a hub, if any
    }
