"""`state.json`: what the site imported, in order (rollback protection, status, receipts), which
release owns each tag, and the names handed over on purpose; `unreferenced.json` beside it: what
refused imports left for a prune. Machine-written JSON, replaced atomically, read at this edge into
typed records (the same JSON as before: the `--json` contracts print it)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from bundler import names
from bundler.bundle.manifest import BundleManifest
from bundler.errors import BundlerError, UsageError
from bundler.fsutil import atomic_write
from bundler.jsontypes import Doc
from bundler.oci.reference import check_digest
from bundler.untrusted import Malformed, Obj

if TYPE_CHECKING:
    from bundler.site.config import SiteConfig

MAX_STATE_BYTES = 64 << 20
STATE_FILE = "state.json"
UNREFERENCED_FILE = "unreferenced.json"
BUNDLES_DIR = "bundles"  # the bundle.json of each release imported, named by its digest


class ReleaseStatus(StrEnum):
    PUBLISHING = "publishing"  # recorded before the first tag or ref moves
    DONE = "done"
    PRUNED = "pruned"  # its content is gone; the entry stays (rollback protection, history)


@dataclass(frozen=True)
class ImportedRelease:
    """One release the site imported."""

    name: str
    version: str
    manifest_digest: str
    content_digest: str | None = None
    signers: tuple[str, ...] = ()  # key ids
    imported_at: str | None = None
    sources: tuple[str, ...] = ()  # source registry hosts the cluster mirrors from the site
    status: ReleaseStatus | None = None  # None: a state written before statuses

    @property
    def live(self) -> bool:
        """Its content is on the site (not pruned)."""
        return self.status != ReleaseStatus.PRUNED

    def to_dict(self) -> Doc:
        return {"name": self.name, "version": self.version, "manifest_digest": self.manifest_digest,
                "content_digest": self.content_digest, "signers": list(self.signers), "imported_at": self.imported_at,
                "sources": list(self.sources), "status": None if self.status is None else str(self.status)}

    @classmethod
    def parse(cls, entry: Obj) -> ImportedRelease:
        status = entry.string("status", names.text, default=None)
        try:
            known = ReleaseStatus(status) if status is not None else None
        except ValueError:
            raise entry.fail(f"status {status!r} is not one of {', '.join(ReleaseStatus)}") from None
        return cls(entry.string("name", names.bundle_name), entry.string("version", names.version),
                   entry.string("manifest_digest", check_digest),
                   entry.string("content_digest", check_digest, default=None),
                   tuple(entry.strings("signers", names.text)), entry.string("imported_at", names.text, default=None),
                   tuple(entry.strings("sources", names.text)), known)


@dataclass(frozen=True)
class TagOwner:
    """The release that put a tag where it is (`repo:tag` in the site registry)."""

    name: str
    version: str
    digest: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "digest": self.digest}


@dataclass(frozen=True)
class Handover:
    """A name the site gave to another bundle name on purpose (`site hand-over`)."""

    subject: str
    previous: str
    to: str
    at: str

    def to_dict(self) -> dict[str, str]:
        return {"subject": self.subject, "from": self.previous, "to": self.to, "at": self.at}


@dataclass
class SiteState:
    """What the site imported, in order; machine-written JSON, replaced atomically."""

    path: Path
    bundles: list[ImportedRelease] = field(default_factory=list)
    tags: dict[str, TagOwner] = field(default_factory=dict)  # "repo:tag" -> its owner
    handovers: list[Handover] = field(default_factory=list)

    @classmethod
    def load(cls, directory: Path) -> SiteState:
        path = directory / STATE_FILE
        try:
            doc = Obj.load(path.read_bytes(), MAX_STATE_BYTES)
            bundles = [ImportedRelease.parse(item.obj()) for item in doc.array("bundles")]
            tags = {}
            for key, value in (doc.obj("tags", default=None) or Obj({}, "tags")).entries():
                owner = value.obj()
                tags[key] = TagOwner(owner.string("name", names.bundle_name), owner.string("version", names.version),
                                     owner.string("digest", check_digest))
            handovers = []
            for item in doc.array("handovers"):
                entry = item.obj()
                handovers.append(Handover(*(entry.string(key, names.text) for key in ("subject", "from", "to", "at"))))
        except FileNotFoundError:
            return cls(path)
        except (OSError, Malformed) as exc:
            raise UsageError(f"site state {path} is unreadable: {exc}",
                             hint="restore it from a backup; it records what this site imported") from None
        return cls(path, bundles, tags, handovers)

    def latest(self, name: str) -> ImportedRelease | None:
        """The last bundle of this name the site imported (or is publishing): what it runs now."""
        return next((b for b in reversed(self.bundles) if b.name == name), None)

    def live(self) -> list[ImportedRelease]:
        """The releases whose content is on the site (not pruned), in import order."""
        return [b for b in self.bundles if b.live]

    def running(self) -> list[ImportedRelease]:
        """The release of each bundle name the site runs now (the latest of each), by first import."""
        return [latest for name in dict.fromkeys(b.name for b in self.bundles) if (latest := self.latest(name))]

    def to_dict(self) -> Doc:
        return {"bundles": [b.to_dict() for b in self.bundles],
                "tags": {key: owner.to_dict() for key, owner in sorted(self.tags.items())},
                **({"handovers": [h.to_dict() for h in self.handovers]} if self.handovers else {})}

    def _save(self) -> None:
        atomic_write(self.path, json.dumps(self.to_dict(), indent=2).encode())

    def _reload(self) -> None:
        """What is on disk now (another command may have changed it): call under files_lock."""
        fresh = SiteState.load(self.path.parent)
        self.bundles, self.tags, self.handovers = fresh.bundles, fresh.tags, fresh.handovers

    def record(self, name: str, version: str, manifest_digest: str, signers: list[str],
               sources: list[str] | None = None, content_digest: str | None = None,
               status: ReleaseStatus = ReleaseStatus.DONE) -> None:
        """Append an imported bundle (call under files_lock). An import records itself as
        PUBLISHING before the first tag or ref moves, and `finish`es once everything moved."""
        self._reload()
        self.bundles.append(ImportedRelease(name, version, manifest_digest, content_digest, tuple(signers),
                                            names.format_time(), tuple(sources or ()), status))
        self._save()

    def finish(self, name: str, version: str, manifest_digest: str, tags: list[tuple[str, str, str]]) -> None:
        """The import of this bundle is published: its entry says done, each tag names its release."""
        self._reload()
        self.bundles = [replace(b, status=ReleaseStatus.DONE) if b.manifest_digest == manifest_digest else b
                        for b in self.bundles]
        for repo, tag, digest in tags:
            key = f"{repo}:{tag}"
            owner = self.tags.get(key)
            if owner is None or owner.name == name:
                self.tags[key] = TagOwner(name, version, digest)
            else:  # another name's tag, shipped unchanged (or moved by --allow-downgrade): it stays theirs
                self.tags[key] = replace(owner, digest=digest)
        self._save()

    def record_handover(self, subject: str, previous: str, to: str, tag: str | None = None) -> None:
        """A name handed over on purpose (call under files_lock); a tag's owner changes with it, and so
        does the owner of every tag derived from its image (`sha256-<hex>.sig`, `.att`, `.sbom`, the
        referrers fallback `sha256-<hex>`)."""
        self._reload()
        if tag is not None:
            repo = tag.rpartition(":")[0]
            derived = f"{repo}:sha256-{self.tags[tag].digest.removeprefix('sha256:')}"
            for key in [tag, *(k for k in self.tags if k == derived or k.startswith(f"{derived}."))]:
                self.tags[key] = replace(self.tags[key], name=to)
        self.handovers.append(Handover(subject, previous, to, names.format_time()))
        self._save()

    def unreferenced(self) -> dict[str, list[str]]:
        """What refused imports left (note_unreferenced), by where it is."""
        try:
            held = Obj.load(self.path.with_name(UNREFERENCED_FILE).read_bytes(), MAX_STATE_BYTES)
            return {key: list(held.strings(key, names.digest_or_hex)) for key, _ in held.entries()}
        except (OSError, Malformed):
            return {}

    def clear_unreferenced(self) -> None:
        self.path.with_name(UNREFERENCED_FILE).unlink(missing_ok=True)

    def mark_pruned(self, manifest_digests: list[str], deleted: set[str]) -> None:
        """A prune removed these releases' content: their entries stay (rollback protection, history)
        with status PRUNED; tags that named a deleted manifest are forgotten."""
        self._reload()
        self.bundles = [replace(b, status=ReleaseStatus.PRUNED) if b.manifest_digest in manifest_digests else b
                        for b in self.bundles]
        self.tags = {tag: owner for tag, owner in self.tags.items() if owner.digest not in deleted}
        self._save()

    def note_unreferenced(self, left: dict[str, list[str]]) -> None:
        """What a refused import stored that nothing references, by where it is (`blobs`: blobs in the
        registry's quarantine, by digest; a kind's key: its payloads, by sha256), in UNREFERENCED_FILE
        next to state.json, for a prune to remove. state.json itself stays as it was: a refused import
        changes nothing a command reports."""
        if not any(left.values()):
            return
        path = self.path.with_name(UNREFERENCED_FILE)
        try:
            held = Obj.load(path.read_bytes(), MAX_STATE_BYTES)
            known = {key: set(held.strings(key, names.digest_or_hex)) for key, _ in held.entries()}
        except (OSError, Malformed):  # absent, or unreadable: it is only a list of what may be removed
            known = {}
        doc = {key: sorted(known.get(key, set()) | set(left.get(key, []))) for key in sorted({*known, *left})}
        atomic_write(path, json.dumps(doc, indent=2).encode())


def kept_manifest_path(site: SiteConfig, manifest_digest: str) -> Path:
    return site.directory / BUNDLES_DIR / f"{manifest_digest.split(':')[-1]}.json"


def kept_manifest(site: SiteConfig, manifest_digest: str) -> BundleManifest | None:
    """The bundle.json the site kept of a release it imported; None when it is gone (pruned) or unreadable."""
    try:
        return BundleManifest.from_bytes(kept_manifest_path(site, manifest_digest).read_bytes())
    except (OSError, BundlerError):
        return None
