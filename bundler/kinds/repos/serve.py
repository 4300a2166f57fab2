"""The site's Git server: /git/<name>.git for clone and fetch (and push where the site allows it)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bundler.kinds.base import Serve, ServiceInfo
from bundler.kinds.repos.server import GIT_BODY, GitServer
from bundler.site.config import GIT_DIR
from bundler.site.front import FrontRule

if TYPE_CHECKING:
    from bundler.site.config import SiteConfig
    from bundler.site.http import Accounts, Route


class RepoServe(Serve):
    def routes(self, site: SiteConfig, accounts: Accounts) -> list[Route]:
        return [GitServer(site, accounts).route()]  # /git/<name>.git: clone and fetch

    def front(self, site: SiteConfig) -> list[FrontRule]:
        return [FrontRule("/git/", body="0" if site.http.push else GIT_BODY)]  # a push: no limit

    def services(self, site: SiteConfig) -> dict[str, ServiceInfo]:
        return {"git": ServiceInfo(f"{site.http_url}/git/", {"push": site.http.push})}

    def stored(self, site: SiteConfig) -> dict[str, Path]:
        return {"git": site.directory / GIT_DIR}

    def watched(self, site: SiteConfig) -> list[Path]:
        return [site.directory / GIT_DIR]
