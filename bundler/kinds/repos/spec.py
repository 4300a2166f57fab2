"""`spec.repos` in a profile: a Git repository (any URL git can fetch) and the branches and tags to carry."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bundler.names import REPO_NAME_RE
from bundler.profile import Checker

REF_PATTERN_RE = re.compile(r"^(?!/)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/*-]+(?<!/)(?<!\.lock)$")


@dataclass(frozen=True)
class RepoSpec:
    """A Git repository: any URL git can fetch; `refs` are branch and tag names, `*` globs allowed."""

    url: str
    name: str
    refs: tuple[str, ...] = ()  # empty: every branch and tag


def parse_repo(check: Checker, item: object, line: int, where: str) -> RepoSpec | None:
    m = check.mapping(item, line, where, {"url", "name", "refs"}, {"url"})
    if m is None:
        return None
    url = check.string(m, "url", where)
    name = check.string(m, "name", where, REPO_NAME_RE, "a repository name (letters, digits, . _ -)")
    refs = check.strings(m, "refs", where, REF_PATTERN_RE, "a branch or tag name (globs with * allowed)")
    if url is None:
        return None
    if name is None and "name" not in m:
        name = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].removesuffix(".git")
        if not REPO_NAME_RE.match(name):
            check.fail(m.lines["url"], f"{where}: cannot derive a name from {url!r}; give one with name:")
            return None
    return RepoSpec(url, name, tuple(refs)) if name else None


def check_repos(check: Checker, specs: Sequence[tuple[RepoSpec, int]], line: int) -> None:
    names = [spec.name for spec, _ in specs]
    for duplicate in sorted({n for n in names if names.count(n) > 1}):
        check.fail(line, f"two repos are named {duplicate!r}; give one a different name:")
