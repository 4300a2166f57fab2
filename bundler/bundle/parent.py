"""What a delta builds on (`build --since PARENT`): a bundle file, a bundle's manifest (`bundler
inspect --manifest`), or a site receipt (`bundler site receipt`: everything a site holds)."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bundler import names
from bundler.bundle import layout
from bundler.bundle.kinds import registered
from bundler.bundle.manifest import BundleManifest, FileEntry, file_entries
from bundler.bundle.parts import is_split
from bundler.bundle.reader import BundleReader, split_hint
from bundler.errors import IntegrityError, UsageError
from bundler.fsutil import open_regular
from bundler.jsontypes import Doc
from bundler.names import sha256_digest
from bundler.untrusted import Malformed, Obj

RECEIPT_KIND = "bundler/receipt/v1"
# what a receipt says of each bundle the site imported (state.json's entries, less what stays local)
RECEIPT_BUNDLE_FIELDS = ("name", "version", "manifest_digest", "content_digest", "imported_at", "signers", "status")


@dataclass(frozen=True)
class Parent:
    """What a delta builds on: the parent bundle's (or a site's receipt's) files, each kind's bases and
    the releases it holds."""
    reference: dict[str, str]  # recorded as the delta's `parent`
    files: dict[str, FileEntry]  # every file the parent carried (or the site holds): path -> digest, size
    bases: dict[str, Hashable]  # kind key -> what else a delta of that kind builds on (Git tips)
    releases: frozenset[tuple[str, str]] = frozenset()  # (bundle name, version) it holds

    @property
    def label(self) -> str:
        return parent_label(self.reference)


def parent_label(reference: Mapping[str, str]) -> str:
    """How a person names what provides a delta's base (a bundle's `parent` field)."""
    if "receipt" in reference:
        return f"what site {reference.get('receipt')} held at {reference.get('created')}"
    return f"{reference.get('name')} {reference.get('version')}"


def from_manifest(manifest: BundleManifest, digest: str) -> Parent:
    return Parent({"name": manifest.name, "version": manifest.version, "manifest_digest": digest},
                  {**manifest.requires, **manifest.files},
                  {kind.key: base for kind in registered()
                   if (base := kind.format.base_from_entries(manifest.entries(kind.key)))},
                  frozenset({(manifest.name, manifest.version)}))


def _is_json(path: Path) -> bool:
    """A bundle.json or a receipt, as opposed to a bundle (a file, a part, or its parts' index)."""
    if is_split(path):
        return False
    try:
        fd = open_regular(path)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}", hint=split_hint(path)) from None
    try:
        return os.pread(fd, 1, 0) == b"{"
    finally:
        os.close(fd)


def load_manifest(path: Path) -> tuple[BundleManifest, str]:
    """A bundle's manifest and digest, from the bundle file or from its bundle.json alone."""
    if not _is_json(path):
        with BundleReader(path) as reader:
            manifest, _, digest = reader.manifest()
        return manifest, digest
    data = path.read_bytes()
    return BundleManifest.from_bytes(data), sha256_digest(data)


def read_parent(path: Path) -> Parent:
    if not _is_json(path):
        return from_manifest(*load_manifest(path))
    data = path.read_bytes()
    digest = sha256_digest(data)
    try:
        doc = Obj.load(data, layout.MAX_MANIFEST_BYTES)
    except Malformed:
        raise UsageError(f"--since {path} is neither a bundle, a bundle manifest nor a site receipt") from None
    if doc.value.get("kind") != RECEIPT_KIND:
        return from_manifest(BundleManifest.from_bytes(data), digest)
    try:
        bases = {kind.key: base for kind in registered() if (base := kind.format.base_from_receipt(doc))}
        held = [b.obj() for b in doc.array("bundles")]
        releases = frozenset((b.string("name", names.bundle_name), b.string("version", names.version)) for b in held)
        return Parent({"receipt": doc.string("site", names.text), "created": doc.string("created", names.timestamp),
                       "manifest_digest": digest}, file_entries(doc.obj("files")), bases, releases)
    except Malformed as exc:
        raise IntegrityError(f"site receipt {path} is malformed: {exc}") from None


def receipt(site_name: str, created: str, bundles: list[Doc], manifests: list[BundleManifest],
            held: Doc) -> Doc:
    """A site's receipt: the bundles it imported, every file it holds from them, and what each kind
    adds (`held`: Git refs, updates)."""
    files: dict[str, FileEntry] = {}
    for manifest in manifests:
        files.update(manifest.requires)
        files.update(manifest.files)
    return {"kind": RECEIPT_KIND, "site": site_name, "created": created,
            "bundles": [{k: b.get(k) for k in RECEIPT_BUNDLE_FIELDS} for b in bundles],
            "files": {path: entry.to_dict() for path, entry in sorted(files.items())}, **held}
