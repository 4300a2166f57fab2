"""The site's rules over a bundle, as named policy objects: pure (they read the site's files and
state, they change nothing), each answering with the problems it finds. The verifier runs them at
its `site` stage (`SiteRules`: before any payload is read) and its last stage (`KindAdmission`: of
content whose bytes and graphs verified). `import` and `verify --site` take the same rules:

    Rollback       a bundle name's release older than what the site runs, or the same version with
                   other content (a full bundle and its delta of one version are one release)
    TagOwnership   a tag another bundle name set, or a newer release of this name set (rollback per tag)
    SharedTargets  two source registries that would land on one path of the site's registry (rewrite rules)
    KindBases      what each content kind refuses before a payload is read (a delta's Git base the site lacks)
    KindAdmission  what each content kind refuses of verified content (images: signatures the site's
                   image keys ask for, owned signature tags; repos and updates: names another bundle owns)

`--allow-downgrade` is the one way past Rollback and TagOwnership; nothing passes the others.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bundler import problems
from bundler.bundle.manifest import BundleManifest
from bundler.bundle.reader import BundleReader
from bundler.jsontypes import Doc
from bundler.kinds import KINDS
from bundler.pipeline.registry import site_artifacts
from bundler.problems import Problem
from bundler.site.cluster import source_hosts
from bundler.site.config import SiteConfig
from bundler.site.state import ImportedRelease, SiteState, kept_manifest
from bundler.versions import Version

DOWNGRADE_HINT = "this is older than what the site runs; only with a reason: `--allow-downgrade`"


class Rule(Protocol):
    def problems(self, manifest: BundleManifest, digest: str) -> list[Problem]: ...


def recorded_content(site: SiteConfig, bundle: ImportedRelease) -> str | None:
    """The content digest of a bundle the site imported (from the manifest it kept, for older state)."""
    if bundle.content_digest is not None:
        return bundle.content_digest
    kept = kept_manifest(site, bundle.manifest_digest)
    return kept.content_digest if kept is not None else None


@dataclass(frozen=True)
class Rollback:
    """The rollback rule: a release older than the one the site runs is refused (unless allowed)."""
    site: SiteConfig
    state: SiteState

    def problems(self, manifest: BundleManifest, digest: str) -> list[Problem]:
        current = self.state.latest(manifest.name)
        if current is None or current.manifest_digest == digest:
            return []
        running = f"the site runs {manifest.name} {current.version} ({current.manifest_digest[:19]})"
        if Version(manifest.version) < Version(current.version):
            return [Problem(problems.ROLLBACK, manifest.name,
                            f"rollback refused: {running}; this bundle is the older {manifest.version}",
                            current.version, manifest.version, hint=DOWNGRADE_HINT)]
        if Version(manifest.version) == Version(current.version):
            recorded = recorded_content(self.site, current)
            if recorded == manifest.content_digest:
                return []  # the same release packed another way (a delta and its full bundle)
            return [Problem(problems.SAME_VERSION_OTHER_CONTENT, manifest.name,
                            f"refused: {running}; this bundle claims the same version with different content "
                            f"({manifest.content_digest[:19]})", recorded, manifest.content_digest,
                            hint="two different bundles were given one version: ask release engineering for a new "
                                 "version (a delta and its full bundle are the same release: either imports after "
                                 "the other)")]
        return []


@dataclass(frozen=True)
class TagOwnership:
    """A tag moves only for the bundle name that set it, and never back to an older release of it."""
    site: SiteConfig
    state: SiteState

    def problems(self, manifest: BundleManifest, digest: str) -> list[Problem]:
        for artifact in site_artifacts(manifest, self.site):
            key = f"{artifact.repo}:{artifact.tag}"
            owner = self.state.tags.get(key) if artifact.tag and artifact.release_tag else None
            if owner is None or owner.digest == artifact.digest:
                continue
            if owner.name != manifest.name:
                return [Problem(problems.TAG_CLAIMED, key,
                                f"refused: tag {key} was set by {owner.name} {owner.version}; this bundle "
                                f"({manifest.name} {manifest.version}) would move it to {artifact.digest[:19]}",
                                owner.digest, artifact.digest,
                                hint="two releases claim one tag: ask release engineering; only with a reason: "
                                     "`--allow-downgrade`")]
            if Version(owner.version) > Version(manifest.version):
                return [Problem(problems.ROLLBACK, key,
                                f"rollback refused: tag {key} holds {manifest.name} {owner.version}; this bundle "
                                f"is the older {manifest.version}", owner.version, manifest.version,
                                hint=DOWNGRADE_HINT)]
        return []


@dataclass(frozen=True)
class SharedTargets:
    """With rewrite rules, each source registry's path in the site's registry must be its own: one
    host's path may not be another's, nor hold it (their images would overwrite each other)."""
    site: SiteConfig
    state: SiteState

    def problems(self, manifest: BundleManifest, digest: str) -> list[Problem]:
        if not self.site.registry.rewrites:
            return []
        hosts = {host for kind in KINDS for host in kind.publish.sources(manifest.entries(kind.key))}
        hosts |= set(source_hosts(self.state))
        paths = sorted((self.site.host_path(host), host) for host in hosts)
        for (path, host), (other_path, other) in itertools.combinations(paths, 2):  # a few hosts: every pair
            if other_path == path or other_path.startswith(f"{path}/"):
                return [Problem(problems.TARGET_SHARED, other_path,
                                f"refused: images of {host} and of {other} would both go under {other_path} in the "
                                f"site's registry (rewrite rules in site.yaml)", path, other_path,
                                hint="give each source registry a path of its own in site.yaml's registry.rewrite")]
        return []


@dataclass(frozen=True)
class KindBases:
    """Each kind's own site rules (what a delta needs of the site, what the site refuses)."""
    site: SiteConfig

    def problems(self, manifest: BundleManifest, digest: str) -> list[Problem]:
        return [problem for kind in KINDS for problem in kind.admit.site_problems(self.site, manifest)]


@dataclass(frozen=True)
class SiteRules:
    """The verifier's site stage (a `SiteChecks`): every rule's problems."""
    rules: Sequence[Rule]

    def __call__(self, manifest: BundleManifest, digest: str) -> list[Problem]:
        return [problem for rule in self.rules for problem in rule.problems(manifest, digest)]

    @classmethod
    def for_import(cls, site: SiteConfig, state: SiteState, allow_downgrade: bool) -> SiteRules:
        """Import judges a delta's bases later, with the registry's blobs (check_requirements)."""
        return cls((SharedTargets(site, state),) if allow_downgrade else
                   (Rollback(site, state), TagOwnership(site, state), SharedTargets(site, state)))

    @classmethod
    def for_verify(cls, site: SiteConfig, state: SiteState) -> SiteRules:
        """`verify --site`: would this site refuse it?"""
        return cls((Rollback(site, state), TagOwnership(site, state), SharedTargets(site, state), KindBases(site)))


@dataclass
class KindAdmission:
    """The verifier's last word for this site (an `Admission`); `judged`, after it spoke: what the
    site's policies judged of the content and by whom (`verify --site --json`)."""
    site: SiteConfig
    judged: list[Doc] = field(default_factory=list)

    def __call__(self, reader: BundleReader, manifest: BundleManifest) -> list[Problem]:
        found = [problem for kind in KINDS for problem in kind.admit.admission(self.site, reader, manifest)]
        self.judged = [verdict for kind in KINDS for verdict in kind.admit.judged(self.site, reader, manifest)]
        return found
