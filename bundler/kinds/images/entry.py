"""An image's entry in bundle.json."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bundler import names
from bundler.oci.reference import check_digest, checked_ref
from bundler.untrusted import Obj


@dataclass(frozen=True)
class ImageEntry:
    """One image: `ref` is its source name (tag and/or digest), `digest` what the bundle holds."""

    ref: str
    digest: str
    media_type: str
    platforms: tuple[str, ...] = ()
    source: str = "registry"
    upstream_digest: str | None = None  # set when a platform subset made a new index

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"ref": self.ref, "digest": self.digest, "media_type": self.media_type,
                             "platforms": list(self.platforms), "source": self.source}
        if self.upstream_digest:
            d["upstream_digest"] = self.upstream_digest
        return d

    @classmethod
    def parse(cls, d: Obj) -> ImageEntry:
        return cls(d.string("ref", checked_ref), d.string("digest", check_digest),
                   d.string("media_type", names.text, default=""), d.strings("platforms", names.platform),
                   d.string("source", names.text, default="registry"),
                   d.string("upstream_digest", check_digest, default=None))
