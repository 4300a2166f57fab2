"""`bundler diff OLD NEW`: what changed between two bundles (files or their manifests): each content
kind says what changed of its own, and the bytes are compared here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bundler.bundle.manifest import BundleManifest
from bundler.bundle.parent import load_manifest
from bundler.kinds import KINDS


def diff_manifests(old: BundleManifest, new: BundleManifest) -> dict[str, Any]:
    old_files = {**old.requires, **old.files}
    new_files = {**new.requires, **new.files}
    added_bytes = sum(e.size for p, e in new_files.items() if old_files.get(p) != e)
    return {
        "old": {"name": old.name, "version": old.version}, "new": {"name": new.name, "version": new.version},
        **{kind.key: kind.report.diff(old.entries(kind.key), new.entries(kind.key)) for kind in KINDS},
        "bytes": {"old": sum(e.size for e in old_files.values()), "new": sum(e.size for e in new_files.values()),
                  "new_content": added_bytes},
    }


def diff_text(diff: dict[str, Any]) -> list[str]:
    """Each kind's lines of `bundler diff`."""
    return [line for kind in KINDS for line in kind.report.diff_lines(diff[kind.key])]


def diff_bundles(old: Path, new: Path) -> dict[str, Any]:
    return diff_manifests(load_manifest(old)[0], load_manifest(new)[0])
