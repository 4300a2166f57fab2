"""An OCI artifact's entry in bundle.json, and the rule for the file titles it carries."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bundler import names
from bundler.jsontypes import Doc
from bundler.oci.reference import check_digest, checked_ref
from bundler.untrusted import Obj

LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"  # an image-packed artifact's layers: uncompressed tar
TITLE_ANNOTATION = "org.opencontainers.image.title"  # the file name `oras pull` writes a layer to
_TITLE_RE = re.compile(r"^[A-Za-z0-9._@+=,~-][A-Za-z0-9._@+=,~ /-]{0,254}$")
MEDIA_TYPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$")
media_type = names.rule(MEDIA_TYPE_RE, "a media type (type/subtype)")
source = names.one_of("registry", "path")  # copied unchanged, or packed from local files
form = names.one_of("artifact", "image")  # files as titled layers, or under a directory in tar layers


def file_title(value: str) -> str:
    """A file name inside the artifact: a relative path that stays inside the directory a client
    pulls into (no `/` first, no `.` or `..` part, no empty part); ValueError otherwise."""
    parts = value.split("/")
    if not _TITLE_RE.match(value) or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"{names.shown(value)} is not a relative file name inside the artifact")
    return value


def image_directory(value: str) -> str:
    """Where an image-packed artifact's files are: an absolute path whose parts are file names."""
    if not value.startswith("/") or value == "/":
        raise ValueError(f"{names.shown(value)} is not an absolute directory")
    file_title(value[1:])
    return value


@dataclass(frozen=True)
class ArtifactFile:
    """One file of an artifact: its title (the file name a client writes), digest, size and media type."""
    title: str
    digest: str
    size: int
    media_type: str  # its layer's

    def to_dict(self) -> Doc:
        return {"title": self.title, "digest": self.digest, "size": self.size, "media_type": self.media_type}

    @classmethod
    def parse(cls, d: Obj) -> ArtifactFile:
        return cls(d.string("title", file_title), d.string("digest", check_digest), d.integer("size"),
                   d.string("media_type", media_type))


@dataclass(frozen=True)
class ArtifactEntry:
    """One OCI artifact: `ref` names it (its source, or the profile's repository:tag for packed
    files), `digest` is its manifest's; `files` are its layers that carry a title. An image-packed
    one (`form` "image"): `files` are the files under `directory` in its tar layers, each with its
    own digest (the builder's statement, signed with bundle.json; the layers' digests are checked)."""

    ref: str
    digest: str
    media_type: str
    artifact_type: str
    source: str  # "registry" (copied unchanged) or "path" (packed from local files)
    files: tuple[ArtifactFile, ...] = ()
    form: str = "artifact"
    directory: str = ""  # an image's: where its files are (/models)
    database: str = ""  # a vulnerability database it carries (trivy-db), read at build
    built: str = ""  # when that database was built (its own metadata's word)

    def to_dict(self) -> Doc:
        return {"ref": self.ref, "digest": self.digest, "media_type": self.media_type,
                "artifact_type": self.artifact_type, "source": self.source, "files": [f.to_dict() for f in self.files],
                "form": self.form, **({"directory": self.directory} if self.form == "image" else {}),
                **({"database": self.database, "built": self.built} if self.database else {})}

    @classmethod
    def parse(cls, d: Obj) -> ArtifactEntry:
        return cls(d.string("ref", checked_ref), d.string("digest", check_digest), d.string("media_type", media_type),
                   d.string("artifact_type", names.text, default=""), d.string("source", source),
                   tuple(ArtifactFile.parse(f.obj()) for f in d.array("files")),
                   d.string("form", form, default="artifact"), d.string("directory", image_directory, default=""),
                   d.string("database", names.one_of("trivy-db"), default=""),
                   d.string("built", names.timestamp, default=""))

