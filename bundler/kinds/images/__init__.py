"""Container images: `spec.images`, carried with their digests into the bundle's OCI layout, and
pushed to the site registry under `<source host>/<path>` with their tags."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bundler.kinds.base import Artifact, CollectContext, ContentKind, OciTop, Part, changes
from bundler.kinds.images.entry import ImageEntry
from bundler.kinds.images.spec import ImageSpec, check_images, parse_image
from bundler.oci.reference import ImageReference
from bundler.units import printable as p

if TYPE_CHECKING:
    from bundler.profile import Checker
    from bundler.site.config import SiteConfig


class Images(ContentKind):
    key, title, noun, entry_type = "images", "images", "image", ImageEntry
    in_v1 = always_reported = True

    def parse_spec(self, check: Checker, item: Any, line: int, where: str) -> ImageSpec | None:
        return parse_image(check, item, line, where)

    def check_specs(self, check: Checker, specs: Sequence[tuple[Any, int]], line: int) -> None:
        check_images(check, list(specs))

    def content(self, entries: Sequence[ImageEntry]) -> list[Any]:
        return sorted([i.ref, i.digest] for i in entries)

    def collect(self, context: CollectContext, specs: Sequence[ImageSpec]) -> Part:
        from bundler.kinds.images.collect import collect_images

        wanted = list(specs)
        known = {spec.text for spec in wanted}
        for text in context.requests.get(self.key, []):  # images other kinds declare (charts' `images: auto`)
            spec = ImageSpec(ImageReference.parse(text))
            if spec.text not in known:
                known.add(spec.text)
                wanted.append(spec)
        return Part(tuple(collect_images(wanted, context.oci, context.client_for, context.staging, context.jobs)))

    def oci_tops(self, entries: Sequence[ImageEntry]) -> list[OciTop]:
        return [OciTop(f"image {i.ref}", i.digest, i.media_type, i.ref, i.platforms[:1]) for i in entries]

    def site_artifacts(self, entries: Sequence[ImageEntry], site: SiteConfig) -> list[Artifact]:
        """Images keep their source name: `<source host>/<path>`, docker-daemon ones their engine name."""
        out = []
        for entry in entries:
            ref = ImageReference.parse(entry.ref)
            out.append(Artifact(self.key, entry.ref, entry.digest, entry.media_type, ref.site_repository, ref.tag))
        return out

    def sources(self, entries: Sequence[ImageEntry]) -> list[str]:
        return sorted({ImageReference.parse(i.ref).host for i in entries})

    def inspect_rows(self, entries: Sequence[ImageEntry]) -> list[dict[str, Any]]:
        return [{"ref": i.ref, "digest": i.digest, "platforms": list(i.platforms), "source": i.source,
                 "upstream_digest": i.upstream_digest} for i in entries]

    def inspect_lines(self, rows: list[dict[str, Any]]) -> list[str]:
        out = [f"images ({len(rows)}):"]
        for image in rows:
            platforms = f"  [{', '.join(p(x) for x in image['platforms'])}]" if image["platforms"] else ""
            upstream = f"\n    filtered from {image['upstream_digest']}" if image["upstream_digest"] else ""
            out.append(f"  {p(image['ref'])}\n    {p(image['digest'])}{platforms}{upstream}")
        return out

    def diff(self, old: Sequence[ImageEntry], new: Sequence[ImageEntry]) -> dict[str, Any]:
        return changes({i.ref: i.digest for i in old}, {i.ref: i.digest for i in new})


KIND = Images()
