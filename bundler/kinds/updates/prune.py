"""Updates in a prune: payloads no kept release carries and no group approved, and what refused
imports left."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bundler.kinds.base import Prune, Pruning
from bundler.kinds.updates.cache import UpdateCache, publish
from bundler.kinds.updates.entry import updates_of

if TYPE_CHECKING:
    from bundler.bundle.manifest import BundleManifest
    from bundler.site.config import SiteConfig


class PrunedUpdates(Pruning):
    def __init__(self, site: SiteConfig, kept: Sequence[BundleManifest], leftovers: Sequence[str]) -> None:
        self.site, self.cache = site, UpdateCache(site)
        held = {u.sha256 for manifest in kept for u in updates_of(manifest)}
        approved = self.cache.catalog.servable_set()  # approved for some group
        self.going = [e for e in self.cache.catalog.entries if e.sha256 not in held and e.sha256 not in approved]
        self.leftovers = list(leftovers)
        super().__init__([f"{e.name} {e.version}".strip() for e in self.going], sum(e.size for e in self.going),
                         sum(self.cache.blob(sha).stat().st_size for sha in leftovers if self.cache.blob(sha).exists()))

    def delete(self) -> None:
        cataloged = self.cache.catalog.shas
        for sha in [e.sha256 for e in self.going] + [s for s in self.leftovers if s not in cataloged]:
            self.cache.blob(sha).unlink(missing_ok=True)

    def record(self) -> None:
        if self.going:
            self.cache.forget({e.sha256 for e in self.going})
            publish(self.site)


class UpdatePrune(Prune):
    def prune(self, site: SiteConfig, kept: Sequence[BundleManifest], leftovers: Sequence[str]) -> Pruning:
        return PrunedUpdates(site, kept, leftovers)
