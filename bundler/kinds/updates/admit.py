"""What a site refuses of updates: a download by file name another bundle name brought, and a
delta's update the site lacks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bundler import names, problems
from bundler.kinds.base import Admit, subject_name
from bundler.kinds.updates.cache import UpdateCache
from bundler.kinds.updates.entry import updates_of
from bundler.problems import Problem

FILES = "files/"  # a download by name as refusals and `site hand-over` name it

if TYPE_CHECKING:
    from bundler.bundle.manifest import BundleManifest
    from bundler.bundle.reader import BundleReader
    from bundler.site.config import SiteConfig


class UpdateAdmit(Admit):
    def admission(self, site: SiteConfig, reader: BundleReader, manifest: BundleManifest) -> list[Problem]:
        """A download by file name (`files/<name>`) belongs to the bundle name that first brought it:
        another product's bundle may not take it over (only a deliberate `site hand-over`)."""
        owners = UpdateCache(site).catalog.owners  # the catalog read once, not per update
        return [problems.name_owned(f"{FILES}{u.file}", f"{FILES}{u.file}", owner, manifest.name, manifest.version,
                                    "take over its download by name", "two products ship one file name: ask "
                                    "release engineering", site.directory)
                for u in updates_of(manifest) if (owner := owners.get(u.file)) not in (None, manifest.name)]

    def hand_over(self, site: SiteConfig, subject: str, to: str) -> str | None:
        if not subject.startswith(FILES):
            return None
        return UpdateCache(site).hand_over(subject_name(names.file_name, subject.removeprefix(FILES)), to)

    def missing(self, site: SiteConfig, manifest: BundleManifest) -> list[str]:
        cache = UpdateCache(site)
        return [f"update {u.name} {u.metadata.get('version', '')}".rstrip() for u in updates_of(manifest)
                if u.path in manifest.requires and not cache.blob(u.sha256).exists()]
