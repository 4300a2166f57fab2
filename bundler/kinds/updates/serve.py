"""The site's update server: /updates/ (apt and dnf repositories per group, payloads, the API,
client reports), its directories on a new site and what changes its part of the status page."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bundler.kinds.base import Serve, ServiceInfo
from bundler.kinds.updates.cache import APT_KEY, ASC_KEY, UPDATES_DIR, UpdateCache, init_updates
from bundler.kinds.updates.server import UpdateServer, front_rules
from bundler.kinds.updates.settings import update_settings

if TYPE_CHECKING:
    from bundler.site.config import SiteConfig
    from bundler.site.front import FrontRule
    from bundler.site.http import Accounts, Route


class UpdateServe(Serve):
    def init_site(self, site: SiteConfig) -> None:
        init_updates(site)  # the cache's directories and the site's OpenPGP key

    def routes(self, site: SiteConfig, accounts: Accounts) -> list[Route]:
        return [UpdateServer(site).route()]  # /updates/...: repositories, payloads, the API, reports

    def front(self, site: SiteConfig) -> list[FrontRule]:
        return front_rules(site)

    def services(self, site: SiteConfig) -> dict[str, ServiceInfo]:
        return {"updates": ServiceInfo(f"{site.http_url}/updates/", {
            "apt_url": f"{site.http_url}/updates/apt", "rpm_url": f"{site.http_url}/updates/rpm",
            "apt_key_file": str((site.directory / UPDATES_DIR / APT_KEY).resolve()),
            "rpm_key_url": f"{site.http_url}/updates/keys/{ASC_KEY}", "groups": update_settings(site).groups})}

    def stored(self, site: SiteConfig) -> dict[str, Path]:
        return {"updates": UpdateCache(site).root}

    def watched(self, site: SiteConfig) -> list[Path]:
        root = UpdateCache(site).root
        return [root / "catalog.json", root / "approvals.json", root / "reports"]
