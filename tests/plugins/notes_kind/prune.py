"""Notes no kept release carries and the index does not serve go."""

from __future__ import annotations

from collections.abc import Sequence

from bundler.bundle.manifest import BundleManifest
from bundler.kinds.base import Prune, Pruning
from bundler.site.config import SiteConfig
from notes_kind import Store, notes_of


class PrunedNotes(Pruning):
    def __init__(self, store: Store, kept: Sequence[BundleManifest]) -> None:
        held = {n.sha256 for m in kept for n in notes_of(m)} | {n["sha256"] for n in store.index().values()}
        self.going = [sha for sha in store.blobs() if sha not in held]
        self.store = store
        super().__init__([sha[:12] for sha in self.going], sum(store.blob(s).stat().st_size for s in self.going))

    def delete(self) -> None:
        for sha in self.going:
            self.store.blob(sha).unlink(missing_ok=True)


class NotePrune(Prune):
    def prune(self, site: SiteConfig, kept: Sequence[BundleManifest], leftovers: Sequence[str]) -> Pruning:
        return PrunedNotes(Store(site), kept)
