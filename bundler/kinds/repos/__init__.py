"""Git repositories: `spec.repos`, carried as one git bundle each (a delta's builds on the tips its
base holds), served by the site's Git server with a Flux GitRepository each. Refs only move forward.
Roles: build.py (profile items; a git bundle per base), format.py (git bundles checked against
bundle.json; a delta's base), admit.py (owners, a delta's base on the site), stage.py, serve.py (the
Git server), prune.py, options.py (`import --force-refs`), receipt.py, report.py."""

from __future__ import annotations

from bundler.kinds.base import Kind, role_modules
from bundler.kinds.repos.entry import PAYLOAD_PATTERN, RepoEntry

KIND = Kind("repos", "git repositories", "repo", RepoEntry, in_v1=True, payload_pattern=PAYLOAD_PATTERN,
            count_key="refs", payloads_defer=False, roles=role_modules(
                __name__, build="RepoBuild", format="RepoFormat", admit="RepoAdmit", stage="RepoStage",
                serve="RepoServe", prune="RepoPrune", options="RepoOptions", receipt="RepoReceipt",
                report="RepoReport"))
