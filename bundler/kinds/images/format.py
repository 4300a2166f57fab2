"""What the format reads of images: ref, digest and what travels with each are the release; each
image and each of its extras is an OCI top (extras named in index.json by their tag)."""

from __future__ import annotations

from collections.abc import Sequence

from bundler.jsontypes import Out
from bundler.kinds.base import Format
from bundler.kinds.images.entry import ImageEntry
from bundler.oci.layout import OciTop
from bundler.oci.reference import ImageReference


class ImageFormat(Format[ImageEntry]):
    def content(self, entries: Sequence[ImageEntry]) -> Sequence[Out]:
        """[ref, digest], and the digests of what travels with it (when something does)."""
        return sorted([i.ref, i.digest, *([sorted(e.digest for e in i.extras)] if i.extras else [])]
                      for i in entries)

    def oci_tops(self, entries: Sequence[ImageEntry]) -> list[OciTop]:
        tops = [OciTop(f"image {i.ref}", i.digest, i.media_type, i.ref, i.platforms[:1]) for i in entries]
        for image in entries:  # named in index.json by their tag in the image's repository
            parsed = ImageReference.parse(image.ref)
            name = f"{parsed.host}/{parsed.repository}"
            tops += [OciTop(f"{e.kind} {e.tag} of image {image.ref}", e.digest, e.media_type, f"{name}:{e.tag}")
                     for e in image.extras]
        return tops
