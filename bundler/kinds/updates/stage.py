"""Updates in an import: each payload stored in the cache as it is read (hashed as it is copied: its
one read), cataloged and published per group once the import publishes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bundler.jsontypes import Doc
from bundler.kinds.base import Stage, Staged, StageOptions
from bundler.kinds.updates.cache import UpdateCache, publish
from bundler.kinds.updates.entry import UpdateEntry, updates_of
from bundler.parallel import run_parallel
from bundler.units import human

if TYPE_CHECKING:
    from bundler.bundle.manifest import BundleManifest
    from bundler.bundle.reader import BundleReader
    from bundler.site.config import SiteConfig


@dataclass(frozen=True)
class UpdatePlan:
    """What an import would add to the update cache: the updates it lacks, and their bytes."""
    added: tuple[str, ...]  # "name version"
    size: int

    def to_dict(self) -> Doc:
        return {"add_updates": self.added, "update_bytes": self.size}

    def lines(self) -> list[str]:
        return [f"  add {len(self.added)} updates ({human(self.size)})" + "".join(f"\n    {u}" for u in self.added)]


class StagedUpdates(Staged):
    def __init__(self, site: SiteConfig, manifest: BundleManifest, stored: list[bool]) -> None:
        self.site, self.manifest, self.stored = site, manifest, stored

    def publish(self) -> list[str]:
        if not updates_of(self.manifest):
            return []
        notes = UpdateCache(self.site).add(self.manifest)
        publish(self.site)
        return notes

    def counts(self) -> dict[str, tuple[int, int]]:
        return {"updates": (sum(self.stored), len(self.stored) - sum(self.stored))}


class UpdateStage(Stage):
    def present(self, site: SiteConfig, manifest: BundleManifest) -> bool:
        cache = UpdateCache(site)
        return all(cache.blob(u.sha256).exists() for u in updates_of(manifest))

    def streamed(self, manifest: BundleManifest) -> set[str]:
        return {u.path for u in updates_of(manifest)}

    def plan(self, site: SiteConfig, manifest: BundleManifest) -> tuple[UpdatePlan, int]:
        cache = UpdateCache(site)
        new = [u for u in updates_of(manifest) if not cache.blob(u.sha256).exists()]
        size = sum(u.size for u in {u.sha256: u for u in new}.values())
        return UpdatePlan(tuple(f"{u.name} {u.metadata.get('version', '')}".strip() for u in new), size), size

    def stage(self, site: SiteConfig, reader: BundleReader, manifest: BundleManifest, options: StageOptions,
              progress: Callable[[int], None]) -> Staged:
        cache = UpdateCache(site)

        def store(update: UpdateEntry) -> bool:
            added = cache.store(reader, update)  # hashed as it is copied: the one read of it
            progress(update.size)
            return added

        return StagedUpdates(site, manifest, run_parallel(store, list(updates_of(manifest)), options.jobs))

    def leftovers(self, site: SiteConfig, manifest: BundleManifest) -> list[str]:
        cache = UpdateCache(site)
        cataloged = cache.catalog.shas
        return [u.sha256 for u in updates_of(manifest) if u.sha256 not in cataloged and cache.blob(u.sha256).exists()]
