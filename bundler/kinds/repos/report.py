"""Repositories in the SBOM (a component per ref), `inspect`, `diff` (refs moved), an import's
summary and plan."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from packageurl import PackageURL

from bundler.bundle.sbom import SbomItem
from bundler.jsontypes import Doc
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

    def inspect_rows(self, entries: Sequence[RepoEntry]) -> list[Doc]:
        return [{"name": r.name, "url": r.url, "refs": r.refs, "prerequisites": list(r.prerequisites)}
                for r in entries]

    def lines(self, entries: Sequence[RepoEntry]) -> list[str]:
        out = [f"git repositories ({len(entries)}):"] if entries else []
        for repo in entries:
            needs = len(repo.prerequisites)
            base = f"  (a delta: needs {needs} commits the site has)" if needs else ""
            out.append(f"  {p(repo.name)}  from {p(repo.url)}{base}")
            out += [f"    {p(ref)} {p(oid)}" for ref, oid in repo.refs.items()]
        return out

    def diff(self, old: Sequence[RepoEntry], new: Sequence[RepoEntry]) -> RepoChanges:
        changed = {}
        before_all = {r.name: r.refs for r in old}
        for repo in new:
            before = before_all.get(repo.name, {})
            moved = {ref: (before.get(ref), oid) for ref, oid in repo.refs.items() if before.get(ref) != oid}
            gone = tuple(sorted(set(before) - set(repo.refs)))
            if moved or gone or repo.name not in before_all:
                changed[repo.name] = RepoChange(moved, gone, repo.name not in before_all)
        return RepoChanges(changed, tuple(sorted(set(before_all) - {r.name for r in new})))

    def import_summary(self, added: dict[str, int], unchanged: dict[str, int]) -> str:
        if not (added.get("refs") or unchanged.get("refs")):
            return ""
        return f"{added['refs']} git refs moved, {unchanged['refs']} unchanged; "



@dataclass(frozen=True)
class RepoChange:
    """One repository's refs between two bundles."""
    moved: Mapping[str, tuple[str | None, str]]  # ref -> (old object id, None when new; new one)
    removed_refs: tuple[str, ...]
    new_repository: bool


@dataclass(frozen=True)
class RepoChanges:
    """What `diff` reports of repositories: refs moved per repository, and repositories gone."""
    changed: Mapping[str, RepoChange]
    removed: tuple[str, ...]

    def to_dict(self) -> Doc:
        return {"changed": {name: {"refs": {ref: {"old": old, "new": new} for ref, (old, new) in c.moved.items()},
                                   "removed_refs": c.removed_refs, "new_repository": c.new_repository}
                            for name, c in self.changed.items()},
                "removed": self.removed}

    def lines(self) -> list[str]:
        return [f"  ~ repo {name} {ref}: {(old or '(new)')[:12]}..{new[:12]}"
                for name, c in self.changed.items() for ref, (old, new) in c.moved.items()]
