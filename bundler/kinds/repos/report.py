"""Repositories in the SBOM (a component per ref), `inspect`, `diff` (refs moved), an import's
summary and plan."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from packageurl import PackageURL

from bundler.bundle.sbom import SbomItem
from bundler.kinds.base import Report
from bundler.kinds.repos.entry import RepoEntry
from bundler.units import printable as p


class RepoReport(Report[RepoEntry]):
    def sbom(self, entries: Sequence[RepoEntry]) -> list[SbomItem]:
        return [SbomItem(f"{repo.name} {ref}", oid, "data", PackageURL(
                         "generic", name=repo.name, version=oid,
                         qualifiers={"vcs_url": f"git+{repo.url}"} if "://" in repo.url else None),
                         None, oid if len(oid) == 40 else None, (("bundler:kind", "git-ref"), ("bundler:ref", ref)))
                for repo in entries for ref, oid in sorted(repo.refs.items())]

    def inspect_rows(self, entries: Sequence[RepoEntry]) -> list[dict[str, Any]]:
        return [{"name": r.name, "url": r.url, "refs": r.refs, "prerequisites": list(r.prerequisites)}
                for r in entries]

    def inspect_lines(self, rows: list[dict[str, Any]]) -> list[str]:
        out = [f"git repositories ({len(rows)}):"] if rows else []
        for repo in rows:
            needs = len(repo["prerequisites"])
            base = f"  (a delta: needs {needs} commits the site has)" if needs else ""
            out.append(f"  {p(repo['name'])}  from {p(repo['url'])}{base}")
            out += [f"    {p(ref)} {p(oid)}" for ref, oid in repo["refs"].items()]
        return out

    def diff(self, old: Sequence[RepoEntry], new: Sequence[RepoEntry]) -> dict[str, Any]:
        changed: dict[str, Any] = {}
        before_all = {r.name: r.refs for r in old}
        for repo in new:
            before = before_all.get(repo.name, {})
            moved = {ref: {"old": before.get(ref), "new": oid} for ref, oid in repo.refs.items()
                     if before.get(ref) != oid}
            gone = sorted(set(before) - set(repo.refs))
            if moved or gone or repo.name not in before_all:
                changed[repo.name] = {"refs": moved, "removed_refs": gone,
                                      "new_repository": repo.name not in before_all}
        return {"changed": changed, "removed": sorted(set(before_all) - {r.name for r in new})}

    def diff_lines(self, diff: dict[str, Any]) -> list[str]:
        return [f"  ~ repo {name} {ref}: {(move['old'] or '(new)')[:12]}..{move['new'][:12]}"
                for name, repo in diff["changed"].items() for ref, move in repo["refs"].items()]

    def import_summary(self, added: dict[str, int], unchanged: dict[str, int]) -> str:
        if not (added.get("refs") or unchanged.get("refs")):
            return ""
        return f"{added['refs']} git refs moved, {unchanged['refs']} unchanged; "

    def plan_lines(self, plan: dict[str, Any]) -> list[str]:
        return [f"  move {len(plan['move_refs'])} git refs" + "".join(f"\n    {m}" for m in plan["move_refs"])]
