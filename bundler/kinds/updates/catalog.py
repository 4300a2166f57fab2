"""One read of the update cache's catalog (what was imported), its approvals per group and the
downloads handed over by name: what a request or a command works from, read once (a download by file
name asks for the catalog, the approvals and the owners: one read of each, not one per question).
Written by UpdateCache (cache.py), under the site's files lock."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from bundler.errors import UsageError
from bundler.versions import package_version_key

CATALOG_FILE = "catalog.json"
APPROVALS_FILE = "approvals.json"
OWNERS_FILE = "owners.json"  # downloads by file name handed over to another bundle name
APPROVED = "approved"


def read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default


@dataclass(frozen=True)
class Catalog:
    entries: tuple[dict[str, Any], ...]  # what was imported (name, kind, version, arch, sha256, size, bundle, ...)
    approvals: Mapping[str, Mapping[str, str]]  # {group: {sha256: "approved" | "declined"}}
    handovers: Mapping[str, str]  # {file name: bundle name} the site handed over (`site hand-over`)

    @classmethod
    def load(cls, root: Path) -> Catalog:
        handed = read_json(root / OWNERS_FILE, {})
        return cls(tuple(read_json(root / CATALOG_FILE, [])), dict(read_json(root / APPROVALS_FILE, {})),
                   {str(k): str(v) for k, v in handed.items()} if isinstance(handed, dict) else {})

    @cached_property
    def shas(self) -> set[str]:
        return {e["sha256"] for e in self.entries}

    def approved(self, group: str) -> list[dict[str, Any]]:
        decided = self.approvals.get(group, {})
        return [e for e in self.entries if decided.get(e["sha256"]) == APPROVED]

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
            if isinstance(e.get("bundle"), dict):
                when = str(e.get("imported_at", ""))
                if e["file"] not in first or when < first[e["file"]][0]:
                    first[e["file"]] = (when, str(e["bundle"]["name"]))
        return {file: name for file, (_, name) in first.items()} | dict(self.handovers)

    def newest_approved(self, file_name: str, group: str | None = None) -> dict[str, Any] | None:
        """The newest approved update with this file name of its owner's, by package version order."""
        servable, owner = self.servable_set(group), self.owners.get(file_name)
        found = [e for e in self.entries if e["file"] == file_name and e["sha256"] in servable
                 and (e.get("bundle") or {}).get("name") == owner]
        if not found:
            return None
        order = package_version_key(str(found[0].get("kind", "")))  # dpkg's order, rpm's for rpms
        return max(found, key=lambda e: order(str(e.get("version", ""))))

    def matching(self, name: str) -> list[dict[str, Any]]:
        """The updates a person names: by name, file, name=version, or 12+ hex of the digest."""
        found = [e for e in self.entries
                 if name in (e["name"], e["file"], f"{e['name']}={e['version']}")
                 or (len(name) >= 12 and e["sha256"].startswith(name))]
        if not found:
            known = sorted({e["name"] for e in self.entries})
            raise UsageError(f"no update named {name!r} in this site's catalog",
                             hint=f"`bundler updates list` shows them: {', '.join(known[:15]) or 'none yet'}")
        return found
