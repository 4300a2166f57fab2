"""Repositories in an import: each git bundle fetched into a staging area of its repository, refs
moved at publication (forward only, unless `--force-refs` names them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bundler.jsontypes import Doc
from bundler.kinds.base import Stage, Staged, StageOptions
from bundler.kinds.repos import site as site_git
from bundler.kinds.repos.entry import repos_of
from bundler.kinds.repos.site import pending_moves, refs_present, stage

if TYPE_CHECKING:
    from bundler.bundle.manifest import BundleManifest
    from bundler.bundle.reader import BundleReader
    from bundler.kinds.repos.site import StagedRepo
    from bundler.site.config import SiteConfig


@dataclass(frozen=True)
class RepoPlan:
    """What an import would do to the site's repositories: the ref moves, and the git bundles' bytes."""
    moves: tuple[str, ...]  # "name: ref old..new"
    size: int

    def to_dict(self) -> Doc:
        return {"move_refs": self.moves, "git_bytes": self.size}

    def lines(self) -> list[str]:
        return [f"  move {len(self.moves)} git refs" + "".join(f"\n    {m}" for m in self.moves)]


class StagedRepos(Staged):
    def __init__(self, site: SiteConfig, staged: list[StagedRepo], total: int) -> None:
        self.site, self.staged, self.total = site, staged, total

    def discard(self) -> None:
        site_git.discard(self.staged)
        site_git.remove_empty(self.staged)

    def publish(self) -> list[str]:
        site_git.publish(self.site, self.staged)
        return []

    def counts(self) -> dict[str, tuple[int, int]]:
        moved = sum(len(s.updates) for s in self.staged)
        return {"refs": (moved, self.total - moved)}


class RepoStage(Stage):
    def present(self, site: SiteConfig, manifest: BundleManifest) -> bool:
        return refs_present(site, manifest)

    def unchanged(self, manifest: BundleManifest) -> dict[str, int]:
        return {"refs": sum(len(r.refs) for r in repos_of(manifest))}

    def streamed(self, manifest: BundleManifest) -> set[str]:
        return {r.bundle for r in repos_of(manifest) if r.bundle}

    def plan(self, site: SiteConfig, manifest: BundleManifest) -> tuple[RepoPlan, int]:
        moves, size = [], 0
        for repo in repos_of(manifest):
            changes = pending_moves(site, repo)
            moves += [f"{repo.name}: {change}" for change in changes]
            if changes and repo.bundle:
                size += manifest.files[repo.bundle].size
        return RepoPlan(tuple(moves), size), size

    def stage(self, site: SiteConfig, reader: BundleReader, manifest: BundleManifest, options: StageOptions,
              progress: Callable[[int], None]) -> Staged:
        forced = options.kinds.get(self.kind.key, {}).get("force_refs")  # --force-refs, repeated
        # a rewrite stops here
        staged = stage(site, reader, manifest, tuple(forced) if isinstance(forced, tuple) else ())
        return StagedRepos(site, staged, sum(len(r.refs) for r in repos_of(manifest)))
