"""What the format reads of repositories: names and refs are the release; each git bundle is checked
against bundle.json; a delta builds on the tips its base holds."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING

from bundler import names
from bundler.jsontypes import Out
from bundler.kinds.base import Format
from bundler.kinds.repos.entry import RepoEntry, repos_of
from bundler.kinds.repos.verify import git_problems
from bundler.untrusted import Malformed

if TYPE_CHECKING:
    from bundler.bundle.manifest import BundleManifest
    from bundler.bundle.reader import BundleReader
    from bundler.problems import Problem
    from bundler.untrusted import Obj


class RepoFormat(Format[RepoEntry]):
    def check_entries(self, manifest: BundleManifest) -> None:
        for i, repo in enumerate(repos_of(manifest)):
            if repo.bundle is not None and repo.bundle not in manifest.files:
                raise Malformed(f"repos[{i}].bundle: {repo.bundle} is not listed in files")

    def content(self, entries: Sequence[RepoEntry]) -> Sequence[Out]:
        rows: list[list[Out]] = [[r.name, dict(sorted(r.refs.items()))] for r in entries]
        return sorted(rows)

    def graph_problems(self, reader: BundleReader, manifest: BundleManifest, read_packs: bool) -> list[Problem]:
        return git_problems(reader, manifest, read_packs)

    def base_from_receipt(self, receipt: Obj) -> Hashable:
        tips = {}
        for name, refs in receipt.obj("repos").entries():
            refs.checked(name, names.repo_name)
            tips[name] = tuple(sorted({str(oid.string(names.object_id)) for _, oid in refs.obj().entries()}))
        return tuple(sorted(tips.items()))

    def base_from_entries(self, entries: Sequence[RepoEntry]) -> Hashable:
        return tuple(sorted((repo.name, tuple(sorted(set(repo.refs.values())))) for repo in entries))
