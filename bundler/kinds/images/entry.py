"""An image's entry in bundle.json, with the supply-chain artifacts that travel with it."""

from __future__ import annotations

from dataclasses import dataclass

from bundler import names
from bundler.jsontypes import Doc
from bundler.oci.reference import check_digest, checked_ref
from bundler.untrusted import Obj

EXTRA_KINDS = ("sig", "att", "sbom", "referrers")  # cosign's tag scheme, and the OCI 1.1 fallback tag


def extra_tag(kind: str, subject: str) -> str:
    """`sha256-<hex>.sig|.att|.sbom` (cosign), `sha256-<hex>` (the referrers fallback tag)."""
    return f"sha256-{subject.split(':', 1)[1]}" + ("" if kind == "referrers" else f".{kind}")


@dataclass(frozen=True)
class ImageExtra:
    """A signature, attestation, SBOM (cosign's tag scheme) or referrers index (the OCI 1.1 fallback
    tag) of one of the image's manifests (`subject`), carried with it and tagged the same on the site."""

    kind: str
    subject: str
    digest: str
    media_type: str

    @property
    def tag(self) -> str:
        return extra_tag(self.kind, self.subject)

    def to_dict(self) -> Doc:
        return {"kind": self.kind, "subject": self.subject, "digest": self.digest, "media_type": self.media_type}

    @classmethod
    def parse(cls, d: Obj) -> ImageExtra:
        return cls(d.string("kind", names.one_of(*EXTRA_KINDS)), d.string("subject", check_digest),
                   d.string("digest", check_digest), d.string("media_type", names.text, default=""))


@dataclass(frozen=True)
class ImageEntry:
    """One image: `ref` is its source name (tag and/or digest), `digest` what the bundle holds."""

    ref: str
    digest: str
    media_type: str
    platforms: tuple[str, ...] = ()
    source: str = "registry"
    upstream_digest: str | None = None  # set when a platform subset made a new index
    extras: tuple[ImageExtra, ...] = ()

    def to_dict(self) -> Doc:
        d: Doc = {"ref": self.ref, "digest": self.digest, "media_type": self.media_type,
                             "platforms": list(self.platforms), "source": self.source}
        if self.upstream_digest:
            d["upstream_digest"] = self.upstream_digest
        if self.extras:
            d["extras"] = [e.to_dict() for e in self.extras]
        return d

    @classmethod
    def parse(cls, d: Obj) -> ImageEntry:
        return cls(d.string("ref", checked_ref), d.string("digest", check_digest),
                   d.string("media_type", names.text, default=""), d.strings("platforms", names.platform),
                   d.string("source", names.text, default="registry"),
                   d.string("upstream_digest", check_digest, default=None),
                   tuple(ImageExtra.parse(e.obj()) for e in d.array("extras")))
