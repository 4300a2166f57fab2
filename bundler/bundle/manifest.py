"""bundle.json: the signed description of everything in a bundle.

Machines write it, so unknown fields are kept (a newer writer's additions survive a round trip).
It is read before any signature is checked, so it is parsed totally (bundler/untrusted.py): every
field we rely on is typed and checked by the same name rules as a profile (bundler/names.py), and
anything else is an IntegrityError naming the field.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from bundler import debcontrol, names
from bundler.bundle import layout
from bundler.errors import IntegrityError
from bundler.oci.reference import ImageReference, check_digest
from bundler.untrusted import Malformed, Obj

_METADATA_KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_KNOWN = {"schema", "name", "version", "created", "expires", "parent", "requires", "profile", "images", "charts",
          "repos", "updates", "files", "content_digest"}


def canonical_json(value: Any) -> bytes:
    """Sorted keys, UTF-8, no insignificant whitespace: the bytes that get signed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class FileEntry:
    sha256: str  # lowercase hex, no algorithm prefix
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "size": self.size}


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
        return cls(d.string("ref", image_ref), d.string("digest", check_digest),
                   d.string("media_type", names.text, default=""), d.strings("platforms", names.platform),
                   d.string("source", names.text, default="registry"),
                   d.string("upstream_digest", check_digest, default=None))


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

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "source": self.source, "digest": self.digest,
                "tgz_digest": self.tgz_digest, "media_type": self.media_type, "images": list(self.images),
                "requested": self.requested}

    @classmethod
    def parse(cls, d: Obj) -> ChartEntry:
        return cls(d.string("name", names.chart_name), d.string("version", names.chart_version),
                   d.string("source", names.text, default=""), d.string("digest", check_digest),
                   d.string("tgz_digest", optional_digest, default=""),
                   d.string("media_type", names.text, default="application/vnd.oci.image.manifest.v1+json"),
                   d.strings("images", image_ref), d.string("requested", names.text, default=""))


@dataclass(frozen=True)
class RepoEntry:
    """One Git repository: the refs it carries (full ref name -> object id) and its git bundle."""

    name: str
    url: str
    refs: dict[str, str]
    bundle: str | None  # path of the git bundle in the bundle; None when no commit is new since the parent
    prerequisites: tuple[str, ...] = ()  # commits the site must already have (a delta's base)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "refs": dict(sorted(self.refs.items())), "bundle": self.bundle,
                "prerequisites": list(self.prerequisites)}

    @classmethod
    def parse(cls, d: Obj) -> RepoEntry:
        name = d.string("name", names.repo_name)
        bundle = d.string("bundle", default=None)
        if bundle is not None and bundle != layout.git_bundle_path(name):
            raise Malformed(f"{d.where}.bundle: {bundle[:120]!r} is not {layout.git_bundle_path(name)!r}")
        return cls(name, d.string("url", names.text, default=""), d.mapping("refs", names.ref_name, names.object_id),
                   bundle, d.strings("prerequisites", names.object_id))


@dataclass(frozen=True)
class UpdateEntry:
    """One OS or VM update payload, stored by digest under updates/."""

    name: str
    kind: str
    file: str  # its original file name (what clients download it as)
    sha256: str
    size: int
    metadata: dict[str, str] = field(default_factory=dict)  # package, version, arch, control, ...
    approve: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        return layout.update_path(self.sha256)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "file": self.file, "sha256": self.sha256, "size": self.size,
                "metadata": dict(sorted(self.metadata.items())), "approve": list(self.approve)}

    @classmethod
    def parse(cls, d: Obj) -> UpdateEntry:
        return cls(d.string("name", names.update_name), d.string("kind", names.update_kind),
                   d.string("file", names.file_name), d.string("sha256", names.sha256_hex), d.integer("size"),
                   d.mapping("metadata", metadata_key, metadata_value, required=False),
                   d.strings("approve", names.group))


def image_ref(value: str) -> str:
    ImageReference.parse(value)
    return value


def optional_digest(value: str) -> str:
    return check_digest(value) if value else value


def metadata_key(value: str) -> str:
    return names.checked(value, _METADATA_KEY_RE, "a metadata key (lowercase letters, digits, _ -)")


def metadata_value(value: str) -> str:
    """Free text, except a .deb's control stanza: that must be one valid stanza (the site's apt
    index is written from its parsed fields, never from the text)."""
    if "\n" in value:
        debcontrol.parse(value)
        return value
    return names.text(value)


@dataclass(frozen=True)
class BundleManifest:
    name: str
    version: str
    created: str
    profile: str
    images: tuple[ImageEntry, ...]
    files: dict[str, FileEntry]
    charts: tuple[ChartEntry, ...] = ()
    repos: tuple[RepoEntry, ...] = ()
    updates: tuple[UpdateEntry, ...] = ()
    expires: str | None = None
    parent: dict[str, Any] | None = None
    requires: dict[str, FileEntry] = field(default_factory=dict)  # a delta: files the site must already hold
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = dict(self.extra)
        d.update({
            "schema": layout.SCHEMA, "name": self.name, "version": self.version, "created": self.created,
            "expires": self.expires, "parent": self.parent, "profile": self.profile,
            "images": [i.to_dict() for i in self.images], "charts": [c.to_dict() for c in self.charts],
            "repos": [r.to_dict() for r in self.repos], "updates": [u.to_dict() for u in self.updates],
            "files": {path: entry.to_dict() for path, entry in sorted(self.files.items())},
            "requires": {path: entry.to_dict() for path, entry in sorted(self.requires.items())},
            "content_digest": self.content_digest,
        })
        return d

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_dict())

    @property
    def content_digest(self) -> str:
        """What identifies the release: its name, version and what it delivers (images, charts, Git
        refs, updates and their pre-approvals), not how it is packed. A full bundle and its delta
        (`--since`) of the same version have the same content digest; any other content differs."""
        content = {"name": self.name, "version": self.version,
                   "images": sorted([i.ref, i.digest] for i in self.images),
                   "charts": sorted([c.name, c.version, c.digest] for c in self.charts),
                   "repos": sorted([r.name, dict(sorted(r.refs.items()))] for r in self.repos),
                   "updates": sorted([u.name, u.kind, u.file, u.sha256, u.size, sorted(u.approve)]
                                     for u in self.updates)}
        return "sha256:" + hashlib.sha256(canonical_json(content)).hexdigest()

    @classmethod
    def from_bytes(cls, data: bytes) -> BundleManifest:
        """Parse and validate; any problem is an IntegrityError naming bundle.json and the field."""
        try:
            d = Obj.load(data, layout.MAX_MANIFEST_BYTES)
            if d.value.get("schema") != layout.SCHEMA:
                raise Malformed(f"schema is {str(d.value.get('schema'))[:80]!r}, this bundler reads {layout.SCHEMA!r}")
            manifest = cls(
                name=d.string("name", names.bundle_name), version=d.string("version", names.version),
                created=d.string("created", names.timestamp), profile=d.string("profile", names.text),
                images=tuple(ImageEntry.parse(i.obj()) for i in d.array("images")),
                files=file_entries(d.obj("files")),
                charts=tuple(ChartEntry.parse(c.obj()) for c in d.array("charts")),
                repos=tuple(RepoEntry.parse(r.obj()) for r in d.array("repos")),
                updates=tuple(UpdateEntry.parse(u.obj()) for u in d.array("updates")),
                expires=d.string("expires", names.timestamp, default=None),
                parent=d.mapping("parent", None, names.text, required=False) or None,
                requires=file_entries(d.obj("requires", default=None)),
                extra={k: v for k, v in d.value.items() if k not in _KNOWN},
            )
            claimed = d.string("content_digest", default=None)  # absent in older bundles; always recomputed
            for i, repo in enumerate(manifest.repos):
                if repo.bundle is not None and repo.bundle not in manifest.files:
                    raise Malformed(f"repos[{i}].bundle: {repo.bundle} is not listed in files")
            for i, update in enumerate(manifest.updates):
                if update.path not in manifest.files and update.path not in manifest.requires:
                    raise Malformed(f"updates[{i}]: {update.path} is listed neither in files nor in requires")
        except Malformed as exc:
            raise IntegrityError(f"{layout.MANIFEST} is not a valid bundle manifest: {exc}") from None
        if claimed is not None and claimed != manifest.content_digest:
            raise IntegrityError(f"{layout.MANIFEST} is not a valid bundle manifest: content_digest "
                                 f"{claimed[:80]!r} does not match its content ({manifest.content_digest})")
        return manifest


def file_entries(raw: Obj | None) -> dict[str, FileEntry]:
    """bundle.json's `files` or `requires` (or a receipt's `files`): payload path -> sha256, size."""
    out = {}
    for path, value in raw.entries() if raw is not None else ():
        value.checked(path, layout.payload_path)
        entry = value.obj()
        out[path] = FileEntry(entry.string("sha256", names.sha256_hex), entry.integer("size"))
    return out


def signatures_json(signatures: list[dict[str, str]]) -> bytes:
    return canonical_json({"signatures": signatures})


def manifest_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
