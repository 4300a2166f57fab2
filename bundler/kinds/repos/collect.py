"""Git repositories: one git bundle per repository, holding exactly the selected branches and tags.

The real `git` does the work: `ls-remote` to resolve refs, a fetch of just those refs into a
scratch bare repository, `git bundle create`. With a parent (`--since`), the bundle leaves out every
commit the parent carried: its prerequisites are the parent's ref tips, and the site must have them.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from bundler import git
from bundler.errors import UsageError
from bundler.kinds.repos.entry import RepoEntry, git_bundle_path
from bundler.kinds.repos.spec import RepoSpec

CHUNK = 1 << 20


@dataclass(frozen=True)
class CollectedRepo:
    """A Git repository collected: its entry and its git bundle staged on disk (digest, size)."""
    entry: RepoEntry
    staged: Path | None  # the git bundle on this machine; None when nothing is new since the parent
    sha256: str = ""
    size: int = 0


def remote_refs(url: str) -> dict[str, str]:
    """Every branch and tag of the remote: full ref name -> object id (a tag's own id, not peeled)."""
    listing = git.run(["ls-remote", "--heads", "--tags", url], remote=url).stdout.decode()
    refs = {}
    for line in listing.splitlines():
        oid, _, ref = line.partition("\t")
        if ref and not ref.endswith("^{}"):
            refs[ref] = oid
    return refs


def select(refs: dict[str, str], patterns: tuple[str, ...], url: str) -> dict[str, str]:
    """The refs the patterns name: `main`, `v*`, `release/*` match branch and tag names (or full names)."""
    if not patterns:
        return dict(refs)
    chosen: dict[str, str] = {}
    for pattern in patterns:
        matched = {ref: oid for ref, oid in refs.items()
                   if fnmatch.fnmatchcase(ref, pattern) or fnmatch.fnmatchcase(ref.split("/", 2)[2], pattern)}
        if not matched:
            have = ", ".join(sorted(r.split("/", 2)[2] for r in refs)[:20]) or "nothing"
            raise UsageError(f"repository {url} has no branch or tag matching {pattern!r} (it has: {have})",
                             hint="fix refs: in the profile's spec.repos")
        chosen.update(matched)
    return chosen


def resolve_url(url: str, base: Path) -> str:
    """A relative local path in a profile is relative to the profile's directory, not to where bundler runs."""
    if "://" in url or re.match(r"^[^/]+@[^/]+:", url) or Path(url).is_absolute():
        return url
    return str((base / url).resolve())


def collect_repo(spec: RepoSpec, staging: Path, parent_tips: tuple[str, ...] = ()) -> CollectedRepo:
    refs = select(remote_refs(spec.url), spec.refs, spec.url)
    work = staging / f"git-{spec.name}.git"
    git.run(["init", "--bare", "-q", work])
    git.run(["fetch", "--no-tags", "-q", spec.url, *(f"+{ref}:{ref}" for ref in refs)], cwd=work, remote=spec.url)
    exclude = [f"^{oid}" for oid in parent_tips
               if git.run(["cat-file", "-e", f"{oid}^{{commit}}"], cwd=work, check=False).returncode == 0]
    new = int(git.out(["rev-list", "--count", *refs, *exclude], cwd=work))
    if new == 0:  # every selected commit is in the parent: the site moves refs to commits it has
        tips = tuple(sorted({git.out(["rev-parse", f"{ref}^{{commit}}"], cwd=work) for ref in refs}))
        return CollectedRepo(RepoEntry(spec.name, spec.url, refs, None, tips), None)
    staged = staging / f"{spec.name}.bundle"
    git.run(["bundle", "create", "-q", staged, *refs, *exclude], cwd=work)
    digest, size = hashlib.sha256(), 0
    with open(staged, "rb") as f:
        first = f.read(git.MAX_HEADER)
        header = git.parse_bundle_header([first])
        while first:
            digest.update(first)
            size += len(first)
            first = f.read(CHUNK)
    # a ref whose commits the parent already carried is left out of a delta's git bundle, but it is
    # still part of what this bundle releases: the manifest lists every selected ref
    entry = RepoEntry(spec.name, spec.url, refs, git_bundle_path(spec.name), header.prerequisites)
    return CollectedRepo(entry, staged, digest.hexdigest(), size)
