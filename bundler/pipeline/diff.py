"""`bundler diff OLD NEW`: what changed between two bundles (files or their manifests): each content
kind says what changed of its own (under its key), and the bytes are compared here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bundler.bundle.manifest import BundleManifest
from bundler.bundle.parent import load_manifest
from bundler.jsontypes import Doc
from bundler.kinds import KINDS
from bundler.kinds.base import Shown


@dataclass(frozen=True)
class Release:
    name: str
    version: str


@dataclass(frozen=True)
class BundleDiff:
    old: Release
    new: Release
    kinds: dict[str, Shown]  # each kind's changes, by its key (its report role's `diff`)
    old_bytes: int
    new_bytes: int
    new_content: int  # bytes NEW holds that OLD does not

    def to_dict(self) -> Doc:
        return {"old": {"name": self.old.name, "version": self.old.version},
                "new": {"name": self.new.name, "version": self.new.version},
                **{key: changes.to_dict() for key, changes in self.kinds.items()},
                "bytes": {"old": self.old_bytes, "new": self.new_bytes, "new_content": self.new_content}}

    def lines(self) -> list[str]:
        """Each kind's lines of `bundler diff`."""
        return [line for changes in self.kinds.values() for line in changes.lines()]


def diff_manifests(old: BundleManifest, new: BundleManifest) -> BundleDiff:
    old_files = {**old.requires, **old.files}
    new_files = {**new.requires, **new.files}
    return BundleDiff(Release(old.name, old.version), Release(new.name, new.version),
                      {kind.key: kind.report.diff(old.entries(kind.key), new.entries(kind.key)) for kind in KINDS},
                      sum(e.size for e in old_files.values()), sum(e.size for e in new_files.values()),
                      sum(e.size for p, e in new_files.items() if old_files.get(p) != e))


def diff_bundles(old: Path, new: Path) -> BundleDiff:
    return diff_manifests(load_manifest(old)[0], load_manifest(new)[0])
