"""Repositories in a prune: history stays (refs only move forward); objects nothing reaches go."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bundler import git
from bundler.kinds.base import Prune, Pruning
from bundler.site.config import GIT_DIR

if TYPE_CHECKING:
    from bundler.bundle.manifest import BundleManifest
    from bundler.site.config import SiteConfig


class PrunedGit(Pruning):
    def __init__(self, site: SiteConfig) -> None:
        super().__init__()
        self.site = site

    def tidy(self) -> None:
        for repository in sorted((self.site.directory / GIT_DIR).glob("*.git")):
            git.run(["reflog", "expire", "--expire=now", "--all"], cwd=repository, check=False)
            git.run(["gc", "-q", "--prune=now"], cwd=repository, check=False)


class RepoPrune(Prune):
    def prune(self, site: SiteConfig, kept: Sequence[BundleManifest], leftovers: Sequence[str]) -> Pruning:
        return PrunedGit(site)
