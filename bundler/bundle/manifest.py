"""bundle.json: the signed description of everything in a bundle.

Machines write it, so unknown fields are kept (a newer writer's additions survive a round trip);
the fields we rely on are validated on construction.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from bundler.bundle import layout
from bundler.errors import IntegrityError

_HEX64 = re.compile(r"^[a-f0-9]{64}$")
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
    def from_dict(cls, d: Any) -> ImageEntry:
        if not isinstance(d, dict) or not isinstance(d.get("ref"), str) or not isinstance(d.get("digest"), str):
            raise ValueError("image entry needs 'ref' and 'digest' strings")
        return cls(d["ref"], d["digest"], str(d.get("media_type", "")), tuple(d.get("platforms") or ()),
                   str(d.get("source", "registry")), d.get("upstream_digest"))


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
    def from_dict(cls, d: Any) -> ChartEntry:
        if not isinstance(d, dict) or not all(isinstance(d.get(k), str) for k in ("name", "version", "digest")):
            raise ValueError("chart entry needs 'name', 'version' and 'digest' strings")
        return cls(d["name"], d["version"], str(d.get("source", "")), d["digest"], str(d.get("tgz_digest", "")),
                   str(d.get("media_type", "application/vnd.oci.image.manifest.v1+json")),
                   tuple(d.get("images") or ()), str(d.get("requested", "")))


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
    def from_dict(cls, d: Any) -> RepoEntry:
        if (not isinstance(d, dict) or not isinstance(d.get("name"), str) or not isinstance(d.get("refs"), dict)
                or not all(isinstance(k, str) and isinstance(v, str) for k, v in d["refs"].items())):
            raise ValueError("repo entry needs a 'name' and 'refs' (ref name -> object id)")
        bundle = d.get("bundle")
        return cls(d["name"], str(d.get("url", "")), dict(d["refs"]), bundle if isinstance(bundle, str) else None,
                   tuple(str(p) for p in d.get("prerequisites") or ()))


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
    def from_dict(cls, d: Any) -> UpdateEntry:
        if (not isinstance(d, dict) or not all(isinstance(d.get(k), str) for k in ("name", "kind", "file", "sha256"))
                or not _HEX64.match(d["sha256"]) or not isinstance(d.get("size"), int)
                or "/" in d["file"] or d["file"] in ("", ".", "..")):
            raise ValueError("update entry needs name, kind, a plain file name, sha256 and size")
        metadata = d.get("metadata") or {}
        return cls(d["name"], d["kind"], d["file"], d["sha256"], d["size"],
                   {str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, dict) else {},
                   tuple(str(g) for g in d.get("approve") or ()))


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
        """Parse and validate; any problem is an IntegrityError naming bundle.json."""
        try:
            d = json.loads(data)
            if not isinstance(d, dict):
                raise ValueError("not a JSON object")
            if d.get("schema") != layout.SCHEMA:
                raise ValueError(f"schema is {d.get('schema')!r}, this bundler reads {layout.SCHEMA!r}")
            for key in ("name", "version", "created", "profile"):
                if not isinstance(d.get(key), str):
                    raise ValueError(f"'{key}' must be a string")
            files = _file_entries(d.get("files"), "files")
            requires = _file_entries(d.get("requires") or {}, "requires")
            images = tuple(ImageEntry.from_dict(i) for i in d.get("images") or [])
            charts = tuple(ChartEntry.from_dict(c) for c in d.get("charts") or [])
            repos = tuple(RepoEntry.from_dict(r) for r in d.get("repos") or [])
            updates = tuple(UpdateEntry.from_dict(u) for u in d.get("updates") or [])
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            raise IntegrityError(f"{layout.MANIFEST} is not a valid bundle manifest: {exc}") from None
        manifest = cls(
            name=d["name"], version=d["version"], created=d["created"], profile=d["profile"], images=images,
            files=files, charts=charts, repos=repos, updates=updates, expires=d.get("expires"), parent=d.get("parent"),
            requires=requires,
            extra={k: v for k, v in d.items() if k not in _KNOWN},
        )
        claimed = d.get("content_digest")  # absent in bundles from before it; never trusted, always recomputed
        if claimed is not None and claimed != manifest.content_digest:
            raise IntegrityError(f"{layout.MANIFEST} is not a valid bundle manifest: content_digest {claimed!r} "
                                 f"does not match its content ({manifest.content_digest})")
        return manifest


def _file_entries(raw: Any, key: str) -> dict[str, FileEntry]:
    if not isinstance(raw, dict):
        raise ValueError(f"'{key}' must be an object")
    out = {}
    for path, entry in raw.items():
        if (not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str)
                or not _HEX64.match(entry["sha256"]) or not isinstance(entry.get("size"), int) or entry["size"] < 0):
            raise ValueError(f"{key} entry for {path!r} needs a sha256 (64 hex) and a size")
        out[path] = FileEntry(entry["sha256"], entry["size"])
    return out


def signatures_json(signatures: list[dict[str, str]]) -> bytes:
    return canonical_json({"signatures": signatures})


def manifest_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
