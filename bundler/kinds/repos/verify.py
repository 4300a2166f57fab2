"""The verifier's checks of git bundles: each header against bundle.json, and (for a complete one) its
objects, read by git."""

from __future__ import annotations

import tempfile
from pathlib import Path

from bundler import git, problems
from bundler.bundle import layout
from bundler.bundle.manifest import BundleManifest
from bundler.bundle.reader import BundleReader
from bundler.bundle.verify import extract_member
from bundler.kinds.repos.entry import repos_of
from bundler.problems import Problem


def git_problems(reader: BundleReader, manifest: BundleManifest, read_packs: bool = True) -> list[Problem]:
    """Each git bundle's header matches bundle.json; with `read_packs`, a complete one must also be
    readable by git (`git bundle verify` does not read the pack, so it is fetched into a scratch
    repository). Import reads every pack anyway, into the site repository's hidden namespace."""
    found = []
    for repo in repos_of(manifest):
        if repo.bundle is None or repo.bundle not in reader.members:
            continue
        try:
            header = git.parse_bundle_header(reader.iter_member(repo.bundle, 64 << 10))
        except ValueError as exc:
            found.append(Problem(problems.GIT_HEADER, repo.bundle, f"{repo.bundle}: {exc}"))
            continue
        carried = {ref: oid for ref, oid in repo.refs.items() if ref in header.refs}
        if not header.refs or header.refs != carried or set(header.prerequisites) != set(repo.prerequisites):
            found.append(Problem(problems.GIT_HEADER, repo.bundle,
                                 f"{repo.bundle}: its refs or prerequisites differ from what {layout.MANIFEST} says"))
            continue
        if header.prerequisites or not read_packs:
            continue  # a delta: only a repository holding its base can read it (import does)
        with tempfile.TemporaryDirectory(prefix="bundler-git-") as scratch:
            path = extract_member(reader, repo.bundle, Path(scratch) / "repo.bundle")
            git.run(["init", "--bare", "-q", Path(scratch) / "check.git"])
            try:
                git.run(["fetch", "-q", "--no-tags", path, "+refs/*:refs/*"], cwd=Path(scratch) / "check.git")
            except git.GitError as exc:
                found.append(Problem(problems.GIT_UNREADABLE, repo.bundle, f"{repo.bundle}: git cannot read it "
                                     f"({exc.message})"))
    return found
