"""Images on the site: under their source name (`<source host>/<path>`, docker-daemon ones their
engine name), with what travels with them named as it was (a site's cosign, Kyverno, Flux find them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bundler.kinds.base import Artifact, Publish
from bundler.kinds.images import EXTRAS
from bundler.kinds.images.entry import ImageEntry
from bundler.oci.reference import ImageReference

if TYPE_CHECKING:
    from bundler.site.config import SiteConfig


class ImagePublish(Publish[ImageEntry]):
    def site_artifacts(self, entries: Sequence[ImageEntry], site: SiteConfig) -> list[Artifact]:
        out = []
        for entry in entries:
            ref = ImageReference.parse(entry.ref)
            repo = site.image_repository(ref.host, ref.repository)
            out.append(Artifact(self.kind.key, entry.ref, entry.digest, entry.media_type, repo, ref.tag,
                                node_image=True))
            out += [Artifact(EXTRAS, f"{e.tag} of {entry.ref}", e.digest, e.media_type, repo, e.tag,
                             release_tag=False)  # named after their subject (owned: derived_tag_problems)
                    for e in entry.extras]
        return out

    def sources(self, entries: Sequence[ImageEntry]) -> list[str]:
        return sorted({ImageReference.parse(i.ref).host for i in entries})
