"""Git repositories: `spec.repos`, carried as one git bundle each (a delta's builds on the tips its
base holds), served by the site's Git server with a Flux GitRepository each. Refs only move forward."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, cast

import click
from packageurl import PackageURL

from bundler import git, names, problems
from bundler.bundle.sbom import SbomItem
from bundler.kinds.base import CollectContext, ContentKind, Part, Pruning, Staged, StageOptions
from bundler.kinds.repos import site as site_git
from bundler.kinds.repos.entry import PAYLOAD_PATTERN, RepoEntry, repos_of
from bundler.kinds.repos.site import (
    check_force_ref,
    current_refs,
    missing_base,
    pending_moves,
    refs_present,
    repositories,
    repository_owner,
    stage,
)
from bundler.kinds.repos.verify import git_problems
from bundler.parallel import run_parallel
from bundler.problems import Problem
from bundler.site.config import GIT_DIR
from bundler.units import printable as p
from bundler.untrusted import Malformed

if TYPE_CHECKING:
    from pathlib import Path

    from bundler.bundle.manifest import BundleManifest
    from bundler.bundle.parent import Parent
    from bundler.bundle.reader import BundleReader
    from bundler.kinds.repos.site import StagedRepo
    from bundler.kinds.repos.spec import RepoSpec
    from bundler.profile import Checker
    from bundler.site.config import SiteConfig, SiteState
    from bundler.site.front import FrontRule
    from bundler.site.http import Accounts, Route
    from bundler.untrusted import Obj


class PrunedGit(Pruning):
    """History stays (refs only move forward); objects nothing reaches go."""

    def __init__(self, site: SiteConfig) -> None:
        super().__init__()
        self.site = site

    def tidy(self) -> None:
        for repository in sorted((self.site.directory / GIT_DIR).glob("*.git")):
            git.run(["reflog", "expire", "--expire=now", "--all"], cwd=repository, check=False)
            git.run(["gc", "-q", "--prune=now"], cwd=repository, check=False)


@dataclass
class RepoPart(Part):
    """Git bundles depend on the base: each base gets its own (collected once per base)."""
    context: CollectContext | None = None
    specs: tuple[RepoSpec, ...] = ()
    built: dict[str, Part] = field(default_factory=dict)

    def for_base(self, parent: Parent | None) -> Part:
        from bundler.kinds.repos.collect import collect_repo, resolve_url  # build-side: loaded when a build runs
        from bundler.oci.content import BlobSource

        assert self.context is not None
        label = parent.label if parent else ""
        if label not in self.built:
            context = self.context
            tips: dict[str, tuple[str, ...]] = dict(cast(Any, parent.bases.get(KIND.key)) or ()) if parent else {}
            scratch = context.staging / "git" / hashlib.sha256(label.encode()).hexdigest()[:12]
            repos = run_parallel(lambda spec: collect_repo(replace(spec, url=resolve_url(spec.url, context.base)),
                                                           scratch, tips.get(spec.name, ())), self.specs, context.jobs)
            payloads = {r.entry.bundle: BlobSource(f"sha256:{r.sha256}", r.size, r.entry.url, path=r.staged)
                        for r in repos if r.entry.bundle and r.staged}
            self.built[label] = Part(tuple(r.entry for r in repos), payloads, deferrable=False)
        return self.built[label]


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


class Repos(ContentKind["RepoSpec", RepoEntry]):
    key, title, noun, entry_type = "repos", "git repositories", "repo", RepoEntry
    example = """\
  repos:                                          # Git repositories (GitOps), served by the site's Git server
    - url: ./gitops                               # anything git fetches: https, ssh, file, a path
      name: gitops
      refs: [main]                                # branches and tags, * globs; default: all of them
"""
    in_v1 = True
    payload_pattern = PAYLOAD_PATTERN
    count_key = "refs"

    def parse_spec(self, check: Checker, item: Any, line: int, where: str) -> RepoSpec | None:
        from bundler.kinds.repos.spec import parse_repo  # build-side: loaded when a profile is read

        return parse_repo(check, item, line, where)

    def check_specs(self, check: Checker, specs: Sequence[tuple[Any, int]], line: int) -> None:
        from bundler.kinds.repos.spec import check_repos

        check_repos(check, specs, line)

    def check_entries(self, manifest: BundleManifest) -> None:
        for i, repo in enumerate(repos_of(manifest)):
            if repo.bundle is not None and repo.bundle not in manifest.files:
                raise Malformed(f"repos[{i}].bundle: {repo.bundle} is not listed in files")

    def content(self, entries: Sequence[RepoEntry]) -> list[Any]:
        return sorted([r.name, dict(sorted(r.refs.items()))] for r in entries)

    def collect(self, context: CollectContext, specs: Sequence[RepoSpec]) -> Part:
        return RepoPart(context=context, specs=tuple(specs), deferrable=False)

    def graph_problems(self, reader: BundleReader, manifest: BundleManifest, read_packs: bool) -> list[Problem]:
        return git_problems(reader, manifest, read_packs)

    def site_problems(self, site: SiteConfig, manifest: BundleManifest) -> list[Problem]:
        return [Problem(problems.GIT_MISSING_BASE, repo.name, why) for why, repo in self._bases(site, manifest)]

    def routes(self, site: SiteConfig, accounts: Accounts) -> list[Route]:
        from bundler.kinds.repos.server import GitServer  # the service's: loaded when it starts

        return [GitServer(site, accounts).route()]  # /git/<name>.git: clone and fetch

    def import_options(self) -> list[click.Option]:
        return [click.Option(["--force-refs", "force_refs"], multiple=True, metavar="REF",
                             callback=lambda _ctx, _param, values: tuple(map(check_force_ref, values)),
                             help="let this Git ref move other than forward, named in full: refs/heads/main, "
                                  "refs/tags/v1, or REPO:REF for one repository (repeatable)")]

    def front(self, site: SiteConfig) -> list[FrontRule]:
        from bundler.kinds.repos.server import GIT_BODY
        from bundler.site.front import FrontRule

        return [FrontRule("/git/", body="0" if site.allow_push else GIT_BODY)]  # a push: no limit

    def services(self, site: SiteConfig) -> dict[str, dict[str, Any]]:
        return {"git": {"url": f"{site.http_url}/git/", "push": site.allow_push}}

    def stored(self, site: SiteConfig) -> dict[str, Path]:
        return {"git": site.directory / GIT_DIR}

    def watched(self, site: SiteConfig) -> list[Path]:
        return [site.directory / GIT_DIR]

    def prune(self, site: SiteConfig, kept: Sequence[BundleManifest], leftovers: Sequence[str]) -> Pruning:
        return PrunedGit(site)

    def admission(self, site: SiteConfig, reader: BundleReader, manifest: BundleManifest) -> list[Problem]:
        """A repository's refs belong to the bundle name that first published it there."""
        found = []
        for repo in repos_of(manifest):
            owner = repository_owner(site, repo.name)
            if owner is not None and owner != manifest.name:
                found.append(problems.name_owned(
                    f"git/{repo.name}.git", f"Git repository {repo.name}", owner, manifest.name, manifest.version,
                    "move its refs", "two products ship one repository name: ask release engineering to rename one",
                    site.directory))
        return found

    def _bases(self, site: SiteConfig, manifest: BundleManifest) -> list[tuple[str, RepoEntry]]:
        return [(why, repo) for repo in repos_of(manifest) if (why := missing_base(site, manifest, repo)) is not None]

    def present(self, site: SiteConfig, manifest: BundleManifest) -> bool:
        return refs_present(site, manifest)

    def unchanged(self, manifest: BundleManifest) -> dict[str, int]:
        return {"refs": sum(len(r.refs) for r in repos_of(manifest))}

    def streamed(self, manifest: BundleManifest) -> set[str]:
        return {r.bundle for r in repos_of(manifest) if r.bundle}

    def missing(self, site: SiteConfig, manifest: BundleManifest) -> list[str]:
        return [why for why, _ in self._bases(site, manifest)]

    def plan(self, site: SiteConfig, manifest: BundleManifest) -> tuple[dict[str, Any], int]:
        moves, size = [], 0
        for repo in repos_of(manifest):
            changes = pending_moves(site, repo)
            moves += [f"{repo.name}: {change}" for change in changes]
            if changes and repo.bundle:
                size += manifest.files[repo.bundle].size
        return {"move_refs": moves, "git_bytes": size}, size

    def stage(self, site: SiteConfig, reader: BundleReader, manifest: BundleManifest, options: StageOptions,
              progress: Callable[[int], None]) -> Staged:

        forced = options.kinds.get(self.key, {}).get("force_refs", ())
        staged = stage(site, reader, manifest, forced)  # a rewrite stops here
        return StagedRepos(site, staged, sum(len(r.refs) for r in repos_of(manifest)))

    receipt_titles: ClassVar[dict[str, str]] = {"repos": "Git repositories and their refs"}

    def receipt(self, site: SiteConfig, state: SiteState) -> dict[str, Any]:
        return {"repos": {name: current_refs(site, name) for name in repositories(site)}}

    def base_from_receipt(self, receipt: Obj) -> Hashable:
        tips = {}
        for name, refs in receipt.obj("repos").entries():
            refs.checked(name, names.repo_name)
            tips[name] = tuple(sorted({str(oid.string(names.object_id)) for _, oid in refs.obj().entries()}))
        return tuple(sorted(tips.items()))

    def base_from_entries(self, entries: Sequence[RepoEntry]) -> Hashable:
        return tuple(sorted((repo.name, tuple(sorted(set(repo.refs.values())))) for repo in entries))

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


KIND = Repos()
