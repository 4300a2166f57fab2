"""`site status`: each service's health (asked now: two requests), where clients find what they
need (absolute paths: `signed-by=` wants one), what the site imported and handed over."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bundler.kinds import KINDS
from bundler.pipeline.hub import load_sync_state
from bundler.site.config import load_site
from bundler.site.service import http_healthy, registry_healthy
from bundler.site.state import SiteState


def site_status(directory: Path) -> dict[str, Any]:
    """Each service's health: the registry, and each content kind's service (Kind.services,
    served by the site's HTTPS service), with absolute paths for what clients need."""
    site = load_site(directory)
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
