"""The notes service: `/notes/<name>` for the site's accounts, the file sent by the front."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from wsgiref.types import StartResponse, WSGIEnvironment

from bundler.kinds.base import Serve, ServiceInfo
from bundler.site.config import SiteConfig
from bundler.site.front import FrontRule
from bundler.site.http import Accounts, Route, accel, basic_challenge, text_response
from notes_kind import KEY, NAME_RE, SENT, Store
from notes_kind.settings import note_settings


class NoteServe(Serve):
    def init_site(self, site: SiteConfig) -> None:
        (site.directory / KEY / "blobs").mkdir(parents=True, exist_ok=True)

    def routes(self, site: SiteConfig, accounts: Accounts) -> list[Route]:
        settings = note_settings(site)
        public = settings.public

        def handle(environ: WSGIEnvironment, start_response: StartResponse, rest: str) -> Iterable[bytes]:
            if rest not in public and accounts.authorized(environ) is None:
                return basic_challenge(start_response)
            held = Store(site).index().get(rest) if NAME_RE.match(rest) else None
            if held is None:
                return text_response(start_response, "404 Not Found", "no such note\n")
            return accel(start_response, SENT + held["sha256"], [("Content-Type", settings.content_type)])

        return [Route(KEY, handle)]

    def front(self, site: SiteConfig) -> list[FrontRule]:
        return [FrontRule(SENT, files=Store(site).root / "blobs")]

    def services(self, site: SiteConfig) -> dict[str, ServiceInfo]:
        return {KEY: ServiceInfo(f"{site.http_url}/notes/")}

    def stored(self, site: SiteConfig) -> dict[str, Path]:
        return {KEY: Store(site).root}

    def watched(self, site: SiteConfig) -> list[Path]:
        return [Store(site).root / "index.json"]
