"""A chart's entry in bundle.json."""

from __future__ import annotations

from dataclasses import dataclass

from bundler import names
from bundler.jsontypes import Doc
from bundler.oci.reference import check_digest, checked_ref, optional_digest
from bundler.untrusted import Obj


@dataclass(frozen=True)
class ChartEntry:
    """One Helm chart, stored as the OCI artifact Helm pushes; `digest` is that manifest's."""

    name: str
    version: str
    source: str  # the repository URL or oci:// reference it came from
    digest: str
    tgz_digest: str  # sha256 of the chart archive (.tgz) exactly as published
    media_type: str = "application/vnd.oci.image.manifest.v1+json"
    images: tuple[str, ...] = ()  # images the chart declares (collected with `images: auto`)
    requested: str = ""  # what the profile asked for (a range, or a dependency's constraint)

    def to_dict(self) -> Doc:
        return {"name": self.name, "version": self.version, "source": self.source, "digest": self.digest,
                "tgz_digest": self.tgz_digest, "media_type": self.media_type, "images": list(self.images),
                "requested": self.requested}

    @classmethod
    def parse(cls, d: Obj) -> ChartEntry:
        return cls(d.string("name", names.chart_name), d.string("version", names.chart_version),
                   d.string("source", names.text, default=""), d.string("digest", check_digest),
                   d.string("tgz_digest", optional_digest, default=""),
                   d.string("media_type", names.text, default="application/vnd.oci.image.manifest.v1+json"),
                   d.strings("images", checked_ref), d.string("requested", names.text, default=""))
