"""One read of the update cache's catalog (what was imported), its approvals per group and the
downloads handed over by name: what a request or a command works from, read once (a download by file
name asks for the catalog, the approvals and the owners: one read of each, not one per question).
Written by UpdateCache (cache.py), under the site's files lock."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from bundler import names
from bundler.errors import BundlerError, UsageError
from bundler.jsontypes import Doc
from bundler.kinds.updates.windows import WindowsInfo
from bundler.untrusted import Malformed, Obj, Value, load_json
from bundler.versions import package_version_key

CATALOG_FILE = "catalog.json"
APPROVALS_FILE = "approvals.json"
OWNERS_FILE = "owners.json"  # downloads by file name handed over to another bundle name
APPROVED = "approved"


MAX_FILE_BYTES = 256 << 20  # the site's own catalog files: bounded like any JSON bundler reads


def read_json(path: Path, what: str) -> Value | None:
    """One of the update cache's own files, or None when it is not there; BundlerError naming the
    file when it is not JSON of a readable size."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return Value(load_json(data, MAX_FILE_BYTES), what)
    except Malformed as exc:
        raise BundlerError(f"{path} is damaged: {exc}", hint="restore it from a backup of the site") from None


def _strings(value: Value) -> dict[str, str]:
    """An object of string -> string (a group's decisions by sha256, owners by file name)."""
    return {key: item.string() for key, item in value.obj().entries()}


@dataclass(frozen=True)
class ImportedBy:
    """The release that brought an update to the site."""
    name: str
    version: str


@dataclass(frozen=True)
class CatalogEntry:
    """One update the site imported (catalog.json): what bundle.json said of it, and which release
    brought it when."""
    name: str
    kind: str
    file: str
    sha256: str
    size: int
    version: str = ""
    arch: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    bundle: ImportedBy | None = None
    imported_at: str = ""
    windows: WindowsInfo | None = None

    def to_dict(self) -> Doc:
        return {"name": self.name, "kind": self.kind, "file": self.file, "sha256": self.sha256, "size": self.size,
                "version": self.version, "arch": self.arch, "metadata": self.metadata,
                "bundle": {"name": self.bundle.name, "version": self.bundle.version} if self.bundle else None,
                "imported_at": self.imported_at,
                **({"windows": self.windows.to_dict()} if self.windows is not None else {})}

    @classmethod
    def parse(cls, d: Obj) -> CatalogEntry:
        bundle = d.obj("bundle", default=None)
        windows = d.obj("windows", default=None)
        return cls(d.string("name"), d.string("kind"), d.string("file"), d.string("sha256", names.sha256_hex),
                   d.integer("size"), d.string("version", default=""), d.string("arch", default=""),
                   d.mapping("metadata", required=False),
                   ImportedBy(bundle.string("name"), bundle.string("version")) if bundle is not None else None,
                   d.string("imported_at", default=""), WindowsInfo.parse(windows) if windows is not None else None)

    def brief(self) -> Doc:
        """What a receipt and a client's status name of it."""
        return {"name": self.name, "version": self.version, "kind": self.kind, "sha256": self.sha256}


@dataclass(frozen=True)
class Catalog:
    entries: tuple[CatalogEntry, ...]  # what was imported
    approvals: Mapping[str, Mapping[str, str]]  # {group: {sha256: "approved" | "declined"}}
    handovers: Mapping[str, str]  # {file name: bundle name} the site handed over (`site hand-over`)

    @classmethod
    def load(cls, root: Path) -> Catalog:
        entries = read_json(root / CATALOG_FILE, CATALOG_FILE)
        approvals = read_json(root / APPROVALS_FILE, APPROVALS_FILE)
        handed = read_json(root / OWNERS_FILE, OWNERS_FILE)
        try:
            return cls(tuple(CatalogEntry.parse(e.obj()) for e in entries.items()) if entries else (),
                       {group: _strings(decisions) for group, decisions in approvals.obj().entries()}
                       if approvals else {},
                       _strings(handed) if handed else {})
        except Malformed as exc:
            raise BundlerError(f"{root} holds a damaged catalog: {exc}",
                               hint="restore it from a backup of the site") from None

    @cached_property
    def shas(self) -> set[str]:
        return {e.sha256 for e in self.entries}

    def approved(self, group: str) -> list[CatalogEntry]:
        decided = self.approvals.get(group, {})
        return [e for e in self.entries if decided.get(e.sha256) == APPROVED]

    def servable_set(self, group: str | None = None) -> set[str]:
        """The payloads served: approved for `group` (an enrolled client's), else for any group."""
        groups = [group] if group is not None else list(self.approvals)
        return {sha for g in groups for sha, d in self.approvals.get(g, {}).items() if d == APPROVED}

    def servable(self, sha256: str, group: str | None = None) -> bool:
        return sha256 in self.servable_set(group)

    @cached_property
    def owners(self) -> dict[str, str]:
        """{file name: the bundle name its download by name belongs to}: the one that first brought that
        file name, unless the site handed it over."""
        first: dict[str, tuple[str, str]] = {}
        for e in self.entries:
            if e.bundle is not None and (e.file not in first or e.imported_at < first[e.file][0]):
                first[e.file] = (e.imported_at, e.bundle.name)
        return {file: name for file, (_, name) in first.items()} | dict(self.handovers)

    def newest_approved(self, file_name: str, group: str | None = None) -> CatalogEntry | None:
        """The newest approved update with this file name of its owner's, by package version order."""
        servable, owner = self.servable_set(group), self.owners.get(file_name)
        found = [e for e in self.entries if e.file == file_name and e.sha256 in servable
                 and e.bundle is not None and e.bundle.name == owner]
        if not found:
            return None
        order = package_version_key(found[0].kind)  # dpkg's order, rpm's for rpms
        return max(found, key=lambda e: order(e.version))

    def matching(self, name: str) -> list[CatalogEntry]:
        """The updates a person names: by name, file, name=version, or 12+ hex of the digest."""
        found = [e for e in self.entries
                 if name in (e.name, e.file, f"{e.name}={e.version}")
                 or (len(name) >= 12 and e.sha256.startswith(name))]
        if not found:
            known = sorted({e.name for e in self.entries})
            raise UsageError(f"no update named {name!r} in this site's catalog",
                             hint=f"`bundler updates list` shows them: {', '.join(known[:15]) or 'none yet'}")
        return found
