"""Updates in the SBOM (deb and rpm by package purl), `inspect`, `diff`, an import's summary and plan."""

from __future__ import annotations

from collections.abc import Sequence

from packageurl import PackageURL

from bundler.bundle.sbom import SbomItem
from bundler.jsontypes import Doc
from bundler.kinds.base import Changes, Report, changes
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

    def inspect_rows(self, entries: Sequence[UpdateEntry]) -> list[Doc]:
        return [{"name": u.name, "kind": u.kind, "file": u.file, "sha256": u.sha256, "size": u.size,
                 "version": u.metadata.get("version", ""), "arch": u.metadata.get("arch", ""),
                 "approve": list(u.approve)} for u in entries]

    def lines(self, entries: Sequence[UpdateEntry]) -> list[str]:
        out = [f"updates ({len(entries)}):"] if entries else []
        for u in entries:
            groups = f"  pre-approved for {', '.join(p(g) for g in u.approve)}" if u.approve else ""
            version, arch = u.metadata.get("version", ""), u.metadata.get("arch", "")
            out.append(f"  {p(u.name)} {p(version)} {p(arch)} ({p(u.kind)}, {human(u.size)})"
                       f"  {u.sha256[:12]}{groups}")
        return out

    def diff(self, old: Sequence[UpdateEntry], new: Sequence[UpdateEntry]) -> Changes:
        return changes(self.kind.noun, {u.name: u.metadata.get("version", u.sha256[:12]) for u in old},
                       {u.name: u.metadata.get("version", u.sha256[:12]) for u in new})

    def import_summary(self, added: dict[str, int], unchanged: dict[str, int]) -> str:
        if not (added.get("updates") or unchanged.get("updates")):
            return ""
        return f"{added['updates']} updates added, {unchanged['updates']} already there; "
