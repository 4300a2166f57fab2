"""`bundler import`: verify a bundle completely, then seed the site; a refused bundle changes nothing.

Fail-closed order: bundle.json and signatures.json against the site's trust policy and expiry;
rollback against the site's state; the tar's structure (names, sizes, no extra or odd members);
every payload's sha256 and every image's graph; only then is anything sent, tags last.

Re-importing the bundle the site runs now is a no-op that reads no payload: its signatures are
checked again, the site's state names this exact bundle.json, and the registry still answers every
image with its digest, so nothing would be sent whatever the payload bytes are (a 60 GB bundle on a
USB stick is not re-read to learn that). `bundler verify` checks a copy's bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bundler.bundle.manifest import BundleManifest
from bundler.bundle.reader import BundleReader
from bundler.bundle.verify import (
    VerifyReport,
    check_policy,
    git_problems,
    graph_problems,
    payload_problems,
    structure_problems,
    verify_file,
)
from bundler.errors import RefusedError
from bundler.parallel import run_parallel
from bundler.progress import byte_progress
from bundler.site import git as site_git
from bundler.site.charts import write_helm_repository
from bundler.site.config import SiteState, load_site
from bundler.site.registry import artifacts_present, seed, site_artifacts
from bundler.site.updates import UpdateCache
from bundler.site.updates import publish as publish_updates
from bundler.versions import Version


@dataclass(frozen=True)
class ImportOptions:
    bundle: Path
    site: Path
    jobs: int = 8
    allow_downgrade: bool = False
    force_refs: tuple[str, ...] = ()  # refs allowed to move other than forward (REF or REPO:REF)


@dataclass
class ImportResult:
    name: str
    version: str
    manifest_digest: str
    already_imported: bool = False
    added: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    bytes_sent: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "manifest_digest": self.manifest_digest,
                "already_imported": self.already_imported, "added": self.added, "unchanged": self.unchanged,
                "bytes_sent": self.bytes_sent, "notes": self.notes}


def rollback_problem(state: SiteState, manifest: BundleManifest, digest: str) -> RefusedError | None:
    """Older than what the site runs, or the same version with other content: a rollback."""
    current = state.latest(manifest.name)
    if current is None or current["manifest_digest"] == digest:
        return None
    running = f"the site runs {manifest.name} {current['version']} ({current['manifest_digest'][:19]})"
    if Version(manifest.version) < Version(current["version"]):
        return RefusedError(f"rollback refused: {running}; this bundle is the older {manifest.version}",
                            hint="pass --allow-downgrade to go back on purpose")
    if Version(manifest.version) == Version(current["version"]):
        return RefusedError(f"refused: {running}; this bundle claims the same version with different content "
                            f"({digest[:19]})", hint="a version is never reused: build and sign a new version")
    return None


def verify_for_site(bundle: Path, site_dir: Path, jobs: int) -> VerifyReport:
    """`verify --site`: the site's trust policy, and whether the site would refuse it as a rollback."""
    site = load_site(site_dir)
    report = verify_file(bundle, site.policy(), jobs)
    if (problem := rollback_problem(SiteState.load(site.directory), report.manifest, report.manifest_digest)):
        report.problems.insert(0, problem.message)
    report.problems += [p for repo in report.manifest.repos
                        if (p := site_git.missing_base(site, report.manifest, repo)) is not None]
    return report


def import_bundle(options: ImportOptions) -> ImportResult:
    site = load_site(options.site)
    policy = site.policy()
    state = SiteState.load(site.directory)
    with BundleReader(options.bundle) as reader:
        report = check_policy(reader, policy)
        report.raise_if_failed(str(options.bundle))
        manifest, digest = report.manifest, report.manifest_digest
        if not options.allow_downgrade and (problem := rollback_problem(state, manifest, digest)):
            raise problem
        report.problems += structure_problems(reader, manifest)
        report.raise_if_failed(str(options.bundle))

        client = site.registry_client(options.jobs)
        client.ping()  # an unreachable site fails before the long read
        result = ImportResult(manifest.name, manifest.version, digest)
        current = state.latest(manifest.name)
        artifacts = site_artifacts(manifest, site.chart_prefix)
        if (current and current["manifest_digest"] == digest and artifacts_present(client, artifacts, options.jobs)
                and site_git.refs_present(site, manifest)):
            result.already_imported = True
            result.added = {"images": 0, "charts": 0, "blobs": 0, "refs": 0, "updates": 0}
            result.unchanged = {"images": len(manifest.images), "charts": len(manifest.charts), "blobs": 0,
                                "refs": sum(len(r.refs) for r in manifest.repos), "updates": len(manifest.updates)}
            return result

        total = sum(e.size for e in manifest.files.values())
        with byte_progress("verifying", total) as progress:
            report.problems += payload_problems(reader, manifest, options.jobs, progress.advance)
        report.raise_if_failed(str(options.bundle))
        report.problems += graph_problems(reader, manifest) + git_problems(reader, manifest, read_packs=False)
        report.raise_if_failed(str(options.bundle))

        staged = site_git.stage(site, reader, manifest, options.force_refs)  # a refused history rewrite stops here
        cache = UpdateCache(site)
        try:
            with byte_progress("importing", total) as progress:
                stats = seed(reader, artifacts, client, options.jobs, progress.advance)
                stored = run_parallel(lambda u: cache.store(reader, u), manifest.updates, options.jobs)
        except BaseException:
            site_git.discard(staged)
            site_git.remove_empty(staged)
            raise
        site_git.publish(site, staged)
    if manifest.charts:
        write_helm_repository(site)
    if manifest.updates:
        result.notes += cache.add(manifest)
        publish_updates(site)
    if not (current and current["manifest_digest"] == digest):
        state.record(manifest.name, manifest.version, digest, sorted(report.verdict.valid_signers))
    kinds = ("images", "charts", "blobs")
    result.added = {kind: stats.added[kind] for kind in kinds}
    result.unchanged = {kind: stats.unchanged[kind] for kind in kinds}
    result.added["updates"] = sum(stored)
    result.unchanged["updates"] = len(stored) - sum(stored)
    moved = sum(len(s.updates) for s in staged)
    result.added["refs"] = moved
    result.unchanged["refs"] = sum(len(r.refs) for r in manifest.repos) - moved
    result.bytes_sent = stats.bytes_sent
    return result
