"""Repositories in a profile (`spec.repos`) and their collection: git bundles depend on a delta's
base, so each base gets its own, collected once per base."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, cast

from bundler.kinds.base import Build, CollectContext, Part
from bundler.kinds.repos.collect import collect_repo, resolve_url
from bundler.kinds.repos.spec import RepoSpec, check_repos, parse_repo
from bundler.oci.content import BlobSource
from bundler.parallel import run_parallel

if TYPE_CHECKING:
    from bundler.bundle.parent import Parent
    from bundler.profile import Checker


@dataclass
class RepoPart(Part):
    """Git bundles depend on the base: each base gets its own (collected once per base)."""
    key: str = ""
    context: CollectContext | None = None
    specs: tuple[RepoSpec, ...] = ()
    built: dict[str, Part] = field(default_factory=dict)

    def for_base(self, parent: Parent | None) -> Part:
        assert self.context is not None
        label = parent.label if parent else ""
        if label not in self.built:
            context = self.context
            tips: dict[str, tuple[str, ...]] = dict(cast(Any, parent.bases.get(self.key)) or ()) if parent else {}
            scratch = context.staging / "git" / hashlib.sha256(label.encode()).hexdigest()[:12]
            repos = run_parallel(lambda spec: collect_repo(replace(spec, url=resolve_url(spec.url, context.base)),
                                                           scratch, tips.get(spec.name, ())), self.specs, context.jobs)
            payloads = {r.entry.bundle: BlobSource(f"sha256:{r.sha256}", r.size, r.entry.url, path=r.staged)
                        for r in repos if r.entry.bundle and r.staged}
            self.built[label] = Part(tuple(r.entry for r in repos), payloads)
        return self.built[label]


class RepoBuild(Build[RepoSpec]):
    example = """\
  repos:                                          # Git repositories (GitOps), served by the site's Git server
    - url: ./gitops                               # anything git fetches: https, ssh, file, a path
      name: gitops
      refs: [main]                                # branches and tags, * globs; default: all of them
"""

    def parse_spec(self, check: Checker, item: object, line: int, where: str) -> RepoSpec | None:
        return parse_repo(check, item, line, where)

    def check_specs(self, check: Checker, specs: Sequence[tuple[RepoSpec, int]], line: int) -> None:
        check_repos(check, specs, line)

    def collect(self, context: CollectContext, specs: Sequence[RepoSpec]) -> Part:
        return RepoPart(key=self.kind.key, context=context, specs=tuple(specs))
