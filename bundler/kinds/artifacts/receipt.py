"""Artifacts in a site's receipt: the vulnerability databases the releases it runs carry for the
cluster's scanners, when each was built and how old it is (the page shows it; `fleet status` reads
the receipt)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from bundler.jsontypes import Doc, Out
from bundler.kinds.artifacts.entry import ArtifactEntry
from bundler.kinds.artifacts.scanner_db import Database
from bundler.kinds.base import Receipt
from bundler.site.state import kept_manifest
from bundler.units import age_text

if TYPE_CHECKING:
    from bundler.site.config import SiteConfig
    from bundler.site.state import SiteState


class ArtifactReceipt(Receipt):
    titles: ClassVar[dict[str, str]] = {"scanner_databases": "Vulnerability databases for the cluster's scanners"}

    def receipt(self, site: SiteConfig, state: SiteState) -> Doc:
        held: list[Out] = []
        for release in state.running():
            manifest = kept_manifest(site, release.manifest_digest)
            for entry in cast("tuple[ArtifactEntry, ...]", manifest.entries(self.kind.key) if manifest else ()):
                if entry.database:
                    age = Database(entry.database, entry.built).age()
                    held.append({"release": f"{release.name} {release.version}", "ref": entry.ref,
                                 "database": entry.database, "built": entry.built, "age": age_text(age),
                                 "age_hours": round(age.total_seconds() / 3600, 1)})
        return {"scanner_databases": held} if held else {}
