"""Artifacts on the site: under the images' naming rule (`<source host>/<path>`), with a Flux
OCIRepository each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from bundler.kinds.artifacts.entry import ArtifactEntry
from bundler.kinds.artifacts.site import write_oci_repositories
from bundler.kinds.base import Artifact, Publish
from bundler.oci.reference import ImageReference

if TYPE_CHECKING:
    from bundler.bundle.manifest import BundleManifest
    from bundler.site.config import SiteConfig


class ArtifactPublish(Publish[ArtifactEntry]):
    def sources(self, entries: Sequence[ArtifactEntry]) -> list[str]:
        return sorted({ImageReference.parse(e.ref).host for e in entries})

    def site_artifacts(self, entries: Sequence[ArtifactEntry], site: SiteConfig) -> list[Artifact]:
        out = []
        for entry in entries:
            ref = ImageReference.parse(entry.ref)
            out.append(Artifact(self.kind.key, entry.ref, entry.digest, entry.media_type,
                                site.image_repository(ref.host, ref.repository), ref.tag))
        return out

    def published(self, site: SiteConfig, manifest: BundleManifest) -> None:
        write_oci_repositories(site, cast("tuple[ArtifactEntry, ...]", manifest.entries(self.kind.key)))
