"""`bundler diff OLD NEW`: what changed between two bundles (files or their manifests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bundler.bundle.manifest import BundleManifest
from bundler.bundle.parent import load_manifest


def _changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    return {"added": sorted(set(new) - set(old)), "removed": sorted(set(old) - set(new)),
            "changed": [{"name": k, "old": old[k], "new": new[k]} for k in sorted(set(old) & set(new))
                        if old[k] != new[k]]}


def diff_manifests(old: BundleManifest, new: BundleManifest) -> dict[str, Any]:
    old_files = {**old.requires, **old.files}
    new_files = {**new.requires, **new.files}
    added_bytes = sum(e.size for p, e in new_files.items() if old_files.get(p) != e)
    repos: dict[str, Any] = {}
    old_repos = {r.name: r.refs for r in old.repos}
    for repo in new.repos:
        before = old_repos.get(repo.name, {})
        moved = {ref: {"old": before.get(ref), "new": oid} for ref, oid in repo.refs.items() if before.get(ref) != oid}
        gone = sorted(set(before) - set(repo.refs))
        if moved or gone or repo.name not in old_repos:
            repos[repo.name] = {"refs": moved, "removed_refs": gone, "new_repository": repo.name not in old_repos}
    return {
        "old": {"name": old.name, "version": old.version}, "new": {"name": new.name, "version": new.version},
        "images": _changes({i.ref: i.digest for i in old.images}, {i.ref: i.digest for i in new.images}),
        "charts": _changes({c.name: c.version for c in old.charts}, {c.name: c.version for c in new.charts}),
        "repos": {"changed": repos, "removed": sorted(set(old_repos) - {r.name for r in new.repos})},
        "updates": _changes({u.name: u.metadata.get("version", u.sha256[:12]) for u in old.updates},
                            {u.name: u.metadata.get("version", u.sha256[:12]) for u in new.updates}),
        "bytes": {"old": sum(e.size for e in old_files.values()), "new": sum(e.size for e in new_files.values()),
                  "new_content": added_bytes},
    }


def diff_bundles(old: Path, new: Path) -> dict[str, Any]:
    return diff_manifests(load_manifest(old)[0], load_manifest(new)[0])
