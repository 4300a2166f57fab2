"""bundle.json: the signed description of everything in a bundle.

Machines write it, so unknown fields are kept (a newer writer's additions survive a round trip).
It is read before any signature is checked, so it is parsed totally (bundler/untrusted.py): every
field we rely on is typed and checked by the same name rules as a profile (bundler/names.py), and
anything else is an IntegrityError naming the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from bundler import names
from bundler.bundle import layout
from bundler.bundle.kinds import Entry, registered
from bundler.errors import IntegrityError
from bundler.jsontypes import Doc, Json, Out
from bundler.names import sha256_digest
from bundler.untrusted import Malformed, Obj

_KNOWN = {"schema", "name", "version", "created", "expires", "parent", "requires", "profile", "files", "content_digest"}


def canonical_json(value: Out) -> bytes:
    """Sorted keys, UTF-8, no insignificant whitespace: the bytes that get signed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(frozen=True)
class FileEntry:
    """A file bundle.json lists: its sha256 (hex) and size."""
    sha256: str  # lowercase hex, no algorithm prefix
    size: int

    def to_dict(self) -> Doc:
        return {"sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class BundleManifest:
    """bundle.json: the release (name, version), the profile it came from, every file with its digest
    and size, each kind's entries (`contents`), and for a delta its parent and what it requires of the
    site."""
    name: str
    version: str
    created: str
    profile: str
    files: dict[str, FileEntry]
    contents: dict[str, tuple[Entry, ...]] = field(default_factory=dict)  # kind key -> its entries
    expires: str | None = None
    parent: dict[str, str] | None = None
    requires: dict[str, FileEntry] = field(default_factory=dict)  # a delta: files the site must already hold
    extra: dict[str, Json] = field(default_factory=dict)

    def to_dict(self) -> Doc:
        d: Doc = dict(self.extra)
        d.update({
            "schema": layout.SCHEMA, "name": self.name, "version": self.version, "created": self.created,
            "expires": self.expires, "parent": self.parent, "profile": self.profile,
            **{kind.key: [e.to_dict() for e in self.entries(kind.key)] for kind in registered()
               if kind.in_v1 or self.entries(kind.key)},
            "files": {path: entry.to_dict() for path, entry in sorted(self.files.items())},
            "requires": {path: entry.to_dict() for path, entry in sorted(self.requires.items())},
            "content_digest": self.content_digest,
        })
        return d

    def entries(self, kind: str) -> tuple[Entry, ...]:
        """The entries of one content kind (bundler/kinds/), by its key."""
        return self.contents.get(kind, ())

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_dict())

    @property
    def content_digest(self) -> str:
        """What identifies the release: its name, version and what it delivers (images, charts, Git
        refs, updates and their pre-approvals: each kind's `content`), not how it is packed. A full
        bundle and its delta (`--since`) of the same version have the same content digest; any other
        content differs. A kind newer than format v1 counts only where it has entries."""
        content: Doc = {"name": self.name, "version": self.version}
        for kind in registered():
            if kind.in_v1 or self.entries(kind.key):
                content[kind.key] = kind.format.content(self.entries(kind.key))
        return sha256_digest(canonical_json(content))

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
                files=file_entries(d.obj("files")),
                contents={kind.key: tuple(kind.entry_type.parse(e.obj()) for e in d.array(kind.key))
                          for kind in registered()},
                expires=d.string("expires", names.timestamp, default=None),
                parent=d.mapping("parent", None, names.text, required=False) or None,
                requires=file_entries(d.obj("requires", default=None)),
                extra={k: v for k, v in d.value.items() if k not in _KNOWN | {kind.key for kind in registered()}},
            )
            claimed = d.string("content_digest", default=None)  # absent in older bundles; always recomputed
            for kind in registered():
                kind.format.check_entries(manifest)
        except Malformed as exc:
            raise IntegrityError(f"{layout.MANIFEST} is not a valid bundle manifest: {exc}") from None
        if claimed is not None and claimed != manifest.content_digest:
            raise IntegrityError(f"{layout.MANIFEST} is not a valid bundle manifest: content_digest "
                                 f"{claimed[:80]!r} does not match its content ({manifest.content_digest})")
        return manifest


def file_entries(raw: Obj | None) -> dict[str, FileEntry]:
    """bundle.json's `files` or `requires` (or a receipt's `files`): payload path -> sha256, size."""
    out = {}
    patterns = tuple(kind.payload_pattern for kind in registered() if kind.payload_pattern)
    for path, value in raw.entries() if raw is not None else ():
        value.checked(path, lambda name: layout.payload_path(name, patterns))
        entry = value.obj()
        out[path] = FileEntry(entry.string("sha256", names.sha256_hex), entry.integer("size"))
    return out


def signatures_json(signatures: list[dict[str, str]]) -> bytes:
    return canonical_json({"signatures": signatures})


def manifest_digest(data: bytes) -> str:
    return sha256_digest(data)
