"""Images in the SBOM (with what their own SBOMs and attestations say), `inspect`, `diff`, and an
import's summary (what travels with them counted apart)."""

from __future__ import annotations

from collections.abc import Sequence

from bundler.bundle.sbom import SbomItem
from bundler.jsontypes import Doc
from bundler.kinds.base import Changes, Report, changes, oci_item
from bundler.kinds.images import EXTRAS
from bundler.kinds.images.entry import ImageEntry
from bundler.oci.reference import ImageReference
from bundler.units import printable as p

EXTRA_NAMES = {"sig": "signature", "att": "attestation", "sbom": "SBOM", "referrers": "referrers"}


class ImageReport(Report[ImageEntry]):
    def inspect_rows(self, entries: Sequence[ImageEntry]) -> list[Doc]:
        return [{"ref": i.ref, "digest": i.digest, "platforms": list(i.platforms), "source": i.source,
                 "upstream_digest": i.upstream_digest,
                 "extras": [{**e.to_dict(), "tag": e.tag} for e in i.extras]} for i in entries]

    def lines(self, entries: Sequence[ImageEntry]) -> list[str]:
        out = [f"images ({len(entries)}):"]
        for image in entries:
            platforms = f"  [{', '.join(p(x) for x in image.platforms)}]" if image.platforms else ""
            upstream = f"\n    filtered from {image.upstream_digest}" if image.upstream_digest else ""
            out.append(f"  {p(image.ref)}\n    {p(image.digest)}{platforms}{upstream}")
            for extra in image.extras:
                of = "" if extra.subject == image.digest else f" (of {extra.subject[:19]})"
                out.append(f"    + {EXTRA_NAMES[extra.kind]} {p(extra.tag)}{of}")
        if any(image.extras for image in entries):
            out.append("  (+ carried with the image: inspect checks none of them; build and import check the keyed "
                       "cosign signatures of the images an image policy covers)")
        return out

    def sbom(self, entries: Sequence[ImageEntry]) -> list[SbomItem]:
        items = []
        for image in entries:
            items.append(oci_item(image.ref, image.digest, "container", ("bundler:kind", "image")))
            parsed = ImageReference.parse(image.ref)
            items += [oci_item(f"{parsed.host}/{parsed.repository}:{e.tag}", e.digest, "data",
                               ("bundler:kind", f"image-{e.kind}"), ("bundler:subject", e.subject))
                      for e in image.extras if e.kind in ("sbom", "att")]  # what the image's own SBOMs say
        return items

    def import_summary(self, added: dict[str, int], unchanged: dict[str, int]) -> str:
        extras = (f"{added[EXTRAS]} signatures, attestations, SBOMs or referrers added, {unchanged[EXTRAS]} unchanged; "
                  if added.get(EXTRAS) or unchanged.get(EXTRAS) else "")
        return super().import_summary(added, unchanged) + extras

    def diff(self, old: Sequence[ImageEntry], new: Sequence[ImageEntry]) -> Changes:
        return changes(self.kind.noun, {i.ref: i.digest for i in old}, {i.ref: i.digest for i in new})
