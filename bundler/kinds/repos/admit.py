"""What a site refuses of repositories: a repository another bundle name published, and a delta
whose Git base the site lacks."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from bundler import names, problems
from bundler.kinds.base import Admit, subject_name
from bundler.kinds.repos.entry import RepoEntry, repos_of
from bundler.kinds.repos.site import hand_over_repository, missing_base, repository_owner
from bundler.problems import Problem

GIT_SUBJECT = re.compile(r"^git/(.+)\.git$")  # a repository as refusals and `site hand-over` name it

if TYPE_CHECKING:
    from bundler.bundle.manifest import BundleManifest
    from bundler.bundle.reader import BundleReader
    from bundler.site.config import SiteConfig


class RepoAdmit(Admit):
    def site_problems(self, site: SiteConfig, manifest: BundleManifest) -> list[Problem]:
        return [Problem(problems.GIT_MISSING_BASE, repo.name, why) for why, repo in _bases(site, manifest)]

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

    def missing(self, site: SiteConfig, manifest: BundleManifest) -> list[str]:
        return [why for why, _ in _bases(site, manifest)]

    def hand_over(self, site: SiteConfig, subject: str, to: str) -> str | None:
        match = GIT_SUBJECT.match(subject)
        return hand_over_repository(site, subject_name(names.repo_name, match.group(1)), to) if match else None


def _bases(site: SiteConfig, manifest: BundleManifest) -> list[tuple[str, RepoEntry]]:
    return [(why, repo) for repo in repos_of(manifest) if (why := missing_base(site, manifest, repo)) is not None]
