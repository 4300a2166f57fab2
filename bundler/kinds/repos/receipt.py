"""Repositories in a site's receipt: each repository's refs (what a delta for this site builds on)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from bundler.jsontypes import Doc
from bundler.kinds.base import Receipt
from bundler.kinds.repos.site import current_refs, repositories

if TYPE_CHECKING:
    from bundler.site.config import SiteConfig
    from bundler.site.state import SiteState


class RepoReceipt(Receipt):
    titles: ClassVar[dict[str, str]] = {"repos": "Git repositories and their refs"}

    def receipt(self, site: SiteConfig, state: SiteState) -> Doc:
        return {"repos": {name: current_refs(site, name) for name in repositories(site)}}
