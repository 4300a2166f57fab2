"""`site status`: each service's health (asked now: two requests), where clients find what they
need (absolute paths: `signed-by=` wants one), what the site imported and handed over."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bundler.kinds.updates.cache import APT_KEY, ASC_KEY, UPDATES_DIR
from bundler.site.config import SiteState, load_site
from bundler.site.service import http_healthy, registry_healthy


def site_status(directory: Path) -> dict[str, Any]:
    """Each service's health, and absolute paths for what clients need (`signed-by=` wants one)."""
    site = load_site(directory)
    healthy = http_healthy(site)
    return {
        "healthy": healthy and registry_healthy(site),
        "services": {
            "registry": {"url": site.registry_url, "healthy": registry_healthy(site),
                         "embedded": site.embedded_registry},
            "git": {"url": f"{site.http_url}/git/", "healthy": healthy, "push": site.allow_push},
            "updates": {"url": f"{site.http_url}/updates/", "healthy": healthy,
                        "apt_url": f"{site.http_url}/updates/apt", "rpm_url": f"{site.http_url}/updates/rpm",
                        "apt_key_file": str((site.directory / UPDATES_DIR / APT_KEY).resolve()),
                        "rpm_key_url": f"{site.http_url}/updates/keys/{ASC_KEY}", "groups": list(site.groups)},
        },
        "ca_file": str(site.ca_file.resolve()), "credentials_file": str(site.credentials_file.resolve()),
        "bundles": SiteState.load(site.directory).bundles,
        "handovers": SiteState.load(site.directory).handovers,
    }
