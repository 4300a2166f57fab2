"""Charts on the site: where `helm install oci://<site>/<prefix>/<name> --version <version>` finds
them, and the Flux HelmRepository that names that place."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bundler.kinds.base import Artifact, Publish
from bundler.kinds.charts.entry import ChartEntry
from bundler.kinds.charts.site import write_helm_repository

if TYPE_CHECKING:
    from bundler.bundle.manifest import BundleManifest
    from bundler.site.config import SiteConfig


class ChartPublish(Publish[ChartEntry]):
    def site_artifacts(self, entries: Sequence[ChartEntry], site: SiteConfig) -> list[Artifact]:
        return [Artifact(self.kind.key, f"{c.name} {c.version}", c.digest, c.media_type,
                         site.repository(f"{site.registry.chart_prefix}/{c.name}"),
                         c.version.replace("+", "_"))  # Helm's tag for a + in a version
                for c in entries]

    def published(self, site: SiteConfig, manifest: BundleManifest) -> None:
        if manifest.entries(self.kind.key):
            write_helm_repository(site)
