"""Updates in the SBOM (deb and rpm by package purl), `inspect`, `diff`, an import's summary and plan."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from packageurl import PackageURL

from bundler.bundle.sbom import SbomItem
from bundler.kinds.base import Report, changes
from bundler.kinds.updates.entry import UpdateEntry
from bundler.units import human
from bundler.units import printable as p


class UpdateReport(Report[UpdateEntry]):
    def sbom(self, entries: Sequence[UpdateEntry]) -> list[SbomItem]:
        items = []
        for u in entries:
            version = u.metadata.get("version", "")
            kind = u.kind if u.kind in ("deb", "rpm") and u.metadata.get("package") else "generic"
            name = u.metadata.get("package", u.name) if kind != "generic" else u.file
            arch = {"arch": u.metadata["arch"]} if kind != "generic" and u.metadata.get("arch") else None
            purl = PackageURL(kind, name=name, version=version or None, qualifiers=arch)
            items.append(SbomItem(u.name, version or u.sha256[:12], "file" if kind == "generic" else "application",
                                  purl, u.sha256, None,
                                  (("bundler:kind", f"update-{u.kind}"), ("bundler:file", u.file))))
        return items

    def inspect_rows(self, entries: Sequence[UpdateEntry]) -> list[dict[str, Any]]:
        return [{"name": u.name, "kind": u.kind, "file": u.file, "sha256": u.sha256, "size": u.size,
                 "version": u.metadata.get("version", ""), "arch": u.metadata.get("arch", ""),
                 "approve": list(u.approve)} for u in entries]

    def inspect_lines(self, rows: list[dict[str, Any]]) -> list[str]:
        out = [f"updates ({len(rows)}):"] if rows else []
        for u in rows:
            groups = f"  pre-approved for {', '.join(p(g) for g in u['approve'])}" if u["approve"] else ""
            out.append(f"  {p(u['name'])} {p(u['version'])} {p(u['arch'])} ({p(u['kind'])}, {human(u['size'])})"
                       f"  {u['sha256'][:12]}{groups}")
        return out

    def diff(self, old: Sequence[UpdateEntry], new: Sequence[UpdateEntry]) -> dict[str, Any]:
        return changes({u.name: u.metadata.get("version", u.sha256[:12]) for u in old},
                       {u.name: u.metadata.get("version", u.sha256[:12]) for u in new})

    def import_summary(self, added: dict[str, int], unchanged: dict[str, int]) -> str:
        if not (added.get("updates") or unchanged.get("updates")):
            return ""
        return f"{added['updates']} updates added, {unchanged['updates']} already there; "

    def plan_lines(self, plan: dict[str, Any]) -> list[str]:
        return [f"  add {len(plan['add_updates'])} updates ({human(plan['update_bytes'])})"
                + "".join(f"\n    {u}" for u in plan["add_updates"])]
