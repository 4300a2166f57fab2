"""`bundler site status`: the site's services and what it imported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bundler.errors import BundlerError
from bundler.site.config import SiteState, load_site


def site_status(directory: Path) -> dict[str, Any]:
    config = load_site(directory)
    try:
        config.registry_client(jobs=1).ping()
        healthy = True
    except BundlerError:
        healthy = False
    return {
        "services": {"registry": {"url": config.registry_url, "healthy": healthy}},
        "ca_file": None, "credentials_file": None,
        "bundles": SiteState.load(directory).bundles,
    }
