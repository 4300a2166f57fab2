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

import contextlib
import errno
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from bundler import problems
from bundler.bundle import layout
from bundler.bundle.manifest import BundleManifest
from bundler.bundle.parent import parent_label
from bundler.bundle.reader import BundleReader, read_mending, rebuilt_note
from bundler.bundle.verify import Verification, VerifyReport, part_problems, read_verified
from bundler.errors import BundlerError, IntegrityError, RefusedError, UnreachableError
from bundler.fsutil import atomic_write
from bundler.jsontypes import Doc
from bundler.kinds import KINDS
from bundler.kinds.base import Shown, Staged
from bundler.oci.client import AuthError, RegistryClient
from bundler.parallel import run_parallel
from bundler.pipeline.disk import disk_report, disk_warning
from bundler.pipeline.registry import (
    Plan,
    Transfer,
    artifacts_present,
    manifest_lookup,
    missing_blobs,
    plan,
    release_quarantine,
    site_artifacts,
    transfer,
)
from bundler.pipeline.registry import publish as publish_registry
from bundler.pipeline.rules import KindAdmission, SiteRules
from bundler.problems import Problem, ProblemError
from bundler.progress import Phase, byte_progress
from bundler.site import figures
from bundler.site.cluster import write_cluster_config
from bundler.site.config import SiteConfig, load_site
from bundler.site.journal import Journal, files_lock, import_lock
from bundler.site.registry_storage import RegistryStorage
from bundler.site.state import ReleaseStatus, SiteState, kept_manifest_path
from bundler.units import human


@dataclass(frozen=True)
class ImportOptions:
    """What `bundler import` was asked: the bundle, the site, parallel jobs, each kind's options."""
    bundle: Path
    site: Path
    jobs: int = 8
    allow_downgrade: bool = False
    kinds: dict[str, dict[str, object]] = field(default_factory=dict)  # each kind's import options, by its key
    dry_run: bool = False  # verify and plan; change nothing


@dataclass
class ImportResult:
    """What an import did, as `import --json` prints it: counts added and unchanged, bytes, notes,
    phases."""
    name: str
    version: str
    manifest_digest: str
    already_imported: bool = False
    added: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    bytes_sent: int = 0
    bundle_bytes_read: int = 0  # payload bytes read from the bundle file (each once: about its size)
    notes: list[str] = field(default_factory=list)
    plan: ImportPlan | None = None  # with --dry-run: what the import would change
    phases: list[Phase] = field(default_factory=list)  # bytes and seconds of verifying, importing
    rebuilt_parts: list[str] = field(default_factory=list)  # a split bundle's parts read from its parity parts

    def to_dict(self) -> Doc:
        return {"name": self.name, "version": self.version, "manifest_digest": self.manifest_digest,
                "already_imported": self.already_imported, "added": self.added, "unchanged": self.unchanged,
                "bytes_sent": self.bytes_sent, "bundle_bytes_read": self.bundle_bytes_read, "notes": self.notes,
                "phases": [phase.to_dict() for phase in self.phases],
                **({"rebuilt_parts": self.rebuilt_parts} if self.rebuilt_parts else {}),
                **({"dry_run": True, "plan": self.plan.to_dict()} if self.plan is not None else {})}


@dataclass
class ImportPlan:
    """What an import would change, from HEAD requests and the site's files (nothing written)."""

    artifacts: list[str] = field(default_factory=list)  # top manifests (of every kind) the registry lacks
    blob_bytes: int = 0  # bytes of blobs the registry lacks
    kinds: dict[str, Shown] = field(default_factory=dict)  # each kind's plan, by its key
    disk: dict[str, int] = field(default_factory=dict)  # kind title -> bytes it writes under the site directory

    def disk_needed(self, site: SiteConfig) -> int:
        """Bytes this import writes under the site directory (the registry's, if it is embedded)."""
        return (self.blob_bytes if site.embedded_registry else 0) + sum(self.disk.values())

    def to_dict(self) -> Doc:
        return {"add_artifacts": self.artifacts, "blob_bytes": self.blob_bytes,
                **{name: value for plan in self.kinds.values() for name, value in plan.to_dict().items()}}

    def lines(self) -> list[str]:
        """What `import --dry-run` shows (after the bundle's name)."""
        return [f"  add {len(self.artifacts)} registry artifacts ({human(self.blob_bytes)} of new blobs)"
                + "".join(f"\n    {ref}" for ref in self.artifacts),
                *(line for plan in self.kinds.values() for line in plan.lines())]


ACCOUNT_HINT = ("check the account given with site init --registry-credentials (a robot account's name and "
                "secret, with pull and push on the project)")
SBOM_DIR = "sbom"
DISK_MARGIN = 64 << 20  # left free for the registry's and git's own bookkeeping


def plan_import(site: SiteConfig, reader: BundleReader, manifest: BundleManifest, plans: list[Plan],
                client: RegistryClient, jobs: int, count_blobs: bool = True) -> ImportPlan:
    """`count_blobs`: ask the registry which artifacts and blobs it lacks, and count the new blobs'
    bytes (for --dry-run, and for the disk check when even what the bundle carries might not fit);
    otherwise only the kinds' own part is planned."""
    result = ImportPlan()
    if count_blobs:
        present = run_parallel(lambda p: client.head_manifest(p.artifact.repo, p.artifact.tag or p.artifact.digest)
                               == p.artifact.digest, plans, jobs)
        missing = [p for p, there in zip(plans, present, strict=True) if not there]
        result.artifacts = [p.artifact.ref for p in missing]
        blobs = {d: (size, p.artifact.repo) for p in missing for d, size in p.blobs
                 if layout.blob_path(d) in reader.members}  # a delta's base is on the site already
        lacking = run_parallel(lambda item: not client.blob_exists(item[1][1], item[0]), list(blobs.items()), jobs)
        result.blob_bytes = sum(size for (_, (size, _)), lack in zip(blobs.items(), lacking, strict=True) if lack)
    for kind in KINDS:
        shown, size = kind.stage.plan(site, manifest)
        if shown is not None:
            result.kinds[kind.key] = shown
            result.disk[kind.title] = size
    return result


def check_requirements(site: SiteConfig, manifest: BundleManifest, plans: list[Plan], client: RegistryClient,
                       jobs: int) -> dict[str, str]:
    """A delta needs its base on the site: refuse, listing what is missing and what would provide it.
    Returns where each required blob is, to mount it from."""
    missing, located = missing_blobs(plans, client, set(manifest.requires), jobs) if manifest.requires else ([], {})
    lacking = [what for kind in KINDS for what in kind.admit.missing(site, manifest)]
    if missing or lacking:
        provider = parent_label(manifest.parent or {})
        shown = ", ".join(d[7:19] for d in missing[:3])
        nouns = " or ".join(kind.noun for kind in KINDS if kind.format.oci_tops(manifest.entries(kind.key)))
        parts = [f"{len(missing)} {nouns} blobs ({shown}...)"] if missing else []
        raise RefusedError(f"this delta builds on {provider}, and the site lacks: {'; '.join(parts + lacking)}",
                           hint=f"import {provider} first (or a full bundle), then this one; nothing was changed")
    return located


def keep_manifest(site: SiteConfig, manifest: BundleManifest, digest: str, sbom: bytes | None = None) -> None:
    """The site keeps every imported bundle.json (its receipt is made from them) and its SBOM
    (`DIR/sbom/NAME-VERSION.cdx.json`, for auditors without a network)."""
    path = kept_manifest_path(site, digest)
    path.parent.mkdir(exist_ok=True)
    atomic_write(path, manifest.to_bytes())
    if sbom is not None:
        (site.directory / SBOM_DIR).mkdir(exist_ok=True)
        atomic_write(site.directory / SBOM_DIR / f"{manifest.name}-{manifest.version}.cdx.json", sbom)


def fits(site: SiteConfig, size: int) -> bool:
    return size + DISK_MARGIN <= shutil.disk_usage(site.directory).free


def check_disk(site: SiteConfig, plan: ImportPlan) -> None:
    free = shutil.disk_usage(site.directory).free
    needed = plan.disk_needed(site)
    if needed + DISK_MARGIN > free:
        raise BundlerError(
            f"not enough disk space for this import: it writes {human(needed)} under {site.directory} "
            f"(registry {human(plan.blob_bytes if site.embedded_registry else 0)}"
            + "".join(f", {title} {human(size)}" for title, size in plan.disk.items())
            + f") and keeps {human(DISK_MARGIN)} free; {human(free)} is free",
            hint="free space on that disk (or move the site to a larger one), then run the same command again; "
                 "nothing was written")


def refuse(report: VerifyReport, reader: BundleReader, digest: str, exc: IntegrityError, bundle: Path) -> NoReturn:
    """A payload found changed as the import sent it (the payloads stage, done while transferring):
    refuse it as the verifier would, naming a damaged part."""
    report.problems.append(exc.problem if isinstance(exc, ProblemError)
                           else Problem(problems.DIGEST_MISMATCH, str(bundle), exc.message))
    report.problems += part_problems(reader, digest, True)
    report.raise_if_failed(str(bundle))
    raise exc




DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def disk_full(site: SiteConfig, phase: str | None) -> BundlerError:
    """The site's disk filled while the import wrote: what is free now, where, and what clients see."""
    free = shutil.disk_usage(site.directory).free
    seen = ("the publication stopped partway (the release the site ran before stays its current one)"
            if phase == "publishing" else "nothing was published: clients see the site as it was")
    return BundlerError(f"the disk under {site.directory} filled up during the import ({human(free)} free now); {seen}",
                        hint="free space on that disk (`bundler site prune` frees older releases), then run the "
                             "same command again: it resumes, and what arrived whole is not sent again")


def import_bundle(options: ImportOptions) -> ImportResult:
    site = load_site(options.site)
    with import_lock(site, options.bundle):
        journal = Journal(site)
        earlier = journal.unfinished()

        def attempt(reader: BundleReader) -> ImportResult:
            try:
                result = Import(site, options, journal, reader).run()
            except OSError as exc:
                if exc.errno not in DISK_FULL:
                    raise
                raise disk_full(site, journal.phase) from None
            except RefusedError:
                journal.done()  # a refusal ends the import: the next one starts anew, it resumes nothing
                raise
            except AuthError as exc:  # the site's registry, not a source: its own hint
                raise UnreachableError(f"the registry {site.registry_location} refuses the site's account "
                                       f"({exc.message})", hint=ACCOUNT_HINT if not site.embedded_registry else
                                       "the site's import account (import-credentials.json) was refused: run "
                                       "`bundler site up` to take up the site's accounts again") from None
            result.bundle_bytes_read = reader.bytes_read
            return result

        read = read_mending(options.bundle, attempt)  # a refused split set with parity: damaged parts mended
        result = read.result
        if read.rebuilt:
            result.rebuilt_parts = read.rebuilt
            result.notes.append(rebuilt_note(read.rebuilt))
        if earlier and earlier.get("manifest_digest") == result.manifest_digest:
            result.notes.append(f"resumed an import of this bundle that stopped during {earlier.get('phase')} "
                                f"(started {earlier.get('started')}); what had arrived was not sent again")
        if not options.dry_run:
            journal.done()
        return result


class Import:
    """One import, its steps in the verifier's order (bundle/verify.py's `Verification` stages):

        envelope     bundle.json and signatures against the trust policy, expiry; the site's rules
                     (rules.SiteRules: rollback, tag ownership); the tar's structure
        connect      the site's registry answers (before the long read), tokens fetched up front
        unchanged    the release the site runs, every artifact present (in the site's own storage,
                     every blob linked at its full length): done, no payload read
        manifests    each artifact's manifests read, checked and kept (registry.plan)
        payloads     every payload hashed (the ones the transfer hashes as it sends them are left to it),
                     graphs, and the kinds' admission (rules.KindAdmission)
        plan         a delta's base on the site, disk space (a dry run stops here)
        stage        each kind stages what no client sees yet; blobs go to the registry's quarantine
        publish      state first ("publishing"), manifests and tags, each kind's publication, the
                     cluster's files; then the figures the status page shows
    A refusal at any step before `publish` changes nothing a client sees."""

    def __init__(self, site: SiteConfig, options: ImportOptions, journal: Journal, reader: BundleReader) -> None:
        self.site, self.options, self.journal, self.reader = site, options, journal, reader
        self.state = SiteState.load(site.directory)
        self.verification = Verification(reader, site.policy())
        self.client = site.registry_client(options.jobs)
        self.storage = RegistryStorage.of(site)  # the site's own registry, on this machine's disk
        # its work is bound by this machine's cores, not by round trips: more threads only contend
        self.jobs = min(options.jobs, os.cpu_count() or 1) if self.storage is not None else options.jobs
        self._plans: list[Plan] | None = None  # manifests(): read once

    @property
    def report(self) -> VerifyReport:
        return self.verification.report

    def run(self) -> ImportResult:
        self.envelope()
        manifest, digest = self.report.manifest, self.report.manifest_digest
        self.result = ImportResult(manifest.name, manifest.version, digest)
        self.connect()
        if self.unchanged():
            return self.result
        self.push_rights()
        plans = self.manifests()
        sbom = self.sbom()
        with byte_progress("verifying", self.reading(plans, sbom)) as progress:
            self.payloads(plans, sbom, progress.advance)
            progress.phase("planning")
            located = self.plan(plans)
            if not self.options.dry_run:
                progress.phase("importing")
                staged, sent = self.stage(plans, located, progress.advance)
                progress.phase("publishing")
                self.publish(plans, staged, sent, sbom)
        self.result.phases = list(progress.phases)  # each one ended, the last as the progress closed
        return self.result

    def refuse(self, exc: IntegrityError) -> NoReturn:
        refuse(self.report, self.reader, self.report.manifest_digest, exc, self.options.bundle)

    # --- the steps -------------------------------------------------------------------------------

    def envelope(self) -> None:
        bundle = self.options.bundle
        self.verification.check(bundle)
        self.verification.site(SiteRules.for_import(self.site, self.state, self.options.allow_downgrade)).check(bundle)
        self.verification.structure().check(bundle)

    def connect(self) -> None:
        try:
            self.artifacts = site_artifacts(self.report.manifest, self.site)
            # one token per 50 repositories, fetched now, rather than a 401 and a token at each one's first request
            self.client.authorize([a.repo for a in self.artifacts], "pull,push",
                                  shared={self.site.quarantine: "pull,push,delete"})
            self.client.ping()  # with that token: an unreachable site, or one refusing the account, fails here
        except UnreachableError as exc:
            if self.site.embedded_registry:
                hint = f"start the site's services first: `bundler site up {self.site.directory}`"
                raise UnreachableError(f"the site's registry does not answer ({exc.message})", hint=hint) from None
            raise
        except AuthError as exc:  # a registry that is not the site's own refuses the site's account
            raise UnreachableError(f"the registry {self.site.registry_location} refuses the site's account "
                                   f"({exc.message}); nothing was sent", hint=ACCOUNT_HINT) from None

    def unchanged(self) -> bool:
        """The release the site runs, every artifact and every kind's content present: nothing to do
        (no layer is read, only the images' manifests: `bundler verify` checks a copy's bytes)."""
        manifest, current = self.report.manifest, self.state.latest(self.report.manifest.name)
        if not (current and current.manifest_digest == self.report.manifest_digest
                and current.status in (None, ReleaseStatus.DONE)
                and artifacts_present(manifest_lookup(self.client, self.storage), self.artifacts, self.jobs)
                and all(kind.stage.present(self.site, manifest) for kind in KINDS) and self.blobs_whole()):
            return False
        self.result.already_imported = True
        self.result.unchanged = {"blobs": 0}
        for kind in KINDS:
            self.result.unchanged.update(kind.stage.unchanged(manifest))
        self.result.added = {key: 0 for key in self.result.unchanged}
        write_cluster_config(self.site, self.state)
        return True

    def blobs_whole(self) -> bool:
        """In the site's own registry storage, every blob of every image linked by its repository and
        of its full length: a data file cut short (what a power cut left of an older bundler's
        unsynced copy) or gone makes the import run again and write it. A registry that is not the
        site's own is not asked about each blob (a request each): its tags and manifests are."""
        storage = self.storage
        if storage is None:
            return True
        links = {(p.artifact.repo, digest, size) for p in self.manifests() for digest, size in p.blobs}
        return all(storage.linked(*link) for link in links)  # a layer two images of a repository share: once

    def push_rights(self) -> None:
        """A registry that is not the site's own (a Harbor project, say) must take pushes to every
        repository this import writes, before a blob is sent: a project that does not exist, or an
        account without the push right, is refused here (exit 4)."""
        if self.site.embedded_registry:
            return
        repos = sorted({a.repo for a in self.artifacts} | {self.site.quarantine})
        refused = [(repo, why) for repo, why in zip(repos, run_parallel(self.client.push_refusal, repos,
                                                                        self.options.jobs), strict=True) if why]
        if refused:
            repo, why = refused[0]
            raise UnreachableError(
                f"the registry {self.site.registry_location} takes no push to {repo} ({why})"
                + (f" nor to {len(refused) - 1} more repositories" if len(refused) > 1 else "") + "; nothing was sent",
                hint="the account (site init --registry-credentials) needs the push right on that project, and the "
                     "project must exist: a robot account cannot create one")

    def manifests(self) -> list[Plan]:
        if self._plans is None:
            try:
                self._plans = [plan(self.reader, artifact) for artifact in self.artifacts]  # read, checked, kept
            except IntegrityError as exc:
                self.refuse(exc)
        return self._plans

    def sbom(self) -> bytes | None:
        try:
            return None if self.options.dry_run else read_verified(self.reader, self.report.manifest, layout.SBOM,
                                                                   layout.MAX_SBOM_BYTES)
        except IntegrityError as exc:
            self.refuse(exc)

    def streamed(self, plans: list[Plan], sbom: bytes | None) -> set[str]:
        """Payloads hashed as they are sent (blobs to the registry, update payloads into the cache, git
        bundles into git): the verifier leaves them to the transfer. A dry run sends nothing: none."""
        if self.options.dry_run:
            return set()
        manifest = self.report.manifest
        return ({layout.blob_path(d) for p in plans for d, _ in p.blobs}
                | {path for kind in KINDS for path in kind.stage.streamed(manifest)}
                | ({layout.SBOM} if sbom is not None else set()))

    def reading(self, plans: list[Plan], sbom: bytes | None) -> int:
        """Bytes the progress counts as they are read: each payload the verifier hashes first, then each
        one the import moves (blobs into the registry, the kinds' payloads into their stores; the SBOM
        was read whole before)."""
        files, streamed = self.report.manifest.files, self.streamed(plans, sbom)
        return (sum(e.size for p, e in files.items() if p not in streamed)
                + sum(files[p].size for p in streamed - {layout.SBOM} if p in files))

    def payloads(self, plans: list[Plan], sbom: bytes | None, advance: Callable[[int], None]) -> None:
        bundle = self.options.bundle
        self.verification.payloads(self.options.jobs, advance, self.streamed(plans, sbom)).check(bundle)
        # the transfer reads the git packs
        self.verification.graphs(read_packs=False, admit=KindAdmission(self.site)).check(bundle)

    def plan(self, plans: list[Plan]) -> dict[str, str]:
        """A delta's base (refused when the site lacks it; returns where each required blob is), the
        disk check; for a dry run the plan in the result."""
        site, manifest, jobs = self.site, self.report.manifest, self.options.jobs
        located = check_requirements(site, manifest, plans, self.client, jobs)
        # the disk check needs the bytes of the blobs the registry lacks; when even every blob the
        # bundle carries fits, there is no need to ask the registry about each one
        carried = sum(e.size for e in manifest.files.values())  # a delta's base is not written again
        count = self.options.dry_run or (site.embedded_registry and not fits(site, carried))
        intended = plan_import(site, self.reader, manifest, plans, self.client, jobs, count_blobs=count)
        if self.options.dry_run:
            self.result.plan = intended
            if warning := disk_warning(site, intended.disk_needed(site)):
                self.result.notes.append(f"warning: {warning}")
        else:
            check_disk(site, intended)
        return located

    def stage(self, plans: list[Plan], located: dict[str, str],
              advance: Callable[[int], None]) -> tuple[list[Staged], Transfer]:
        """What no client sees yet: each kind's staging (Git first: a history rewrite stops the import
        here), then the blobs into the registry's quarantine. A refusal or failure undoes it."""
        site, manifest = self.site, self.report.manifest
        self.journal.step(self.options.bundle, self.report.manifest_digest, "transfer")
        staged: list[Staged] = []
        quarantined: list[str] = []
        try:
            try:
                for kind in KINDS:
                    staged.append(kind.stage.stage(site, self.reader, manifest, self.options, advance))
                sent = transfer(self.reader, plans, self.client, self.jobs, advance, located,
                                registry_verifies=site.embedded_registry, quarantined=quarantined,
                                quarantine=site.quarantine, storage=self.storage)
            except IntegrityError as exc:  # a payload that does not match: refused before anything moved
                self.refuse(exc)
        except BaseException:
            for done in staged:
                done.discard()
            left = {kind.key: kind.stage.leftovers(site, manifest) for kind in KINDS}
            self.state.note_unreferenced({**left, "blobs": quarantined})  # the collector frees them at a prune
            with contextlib.suppress(BundlerError, OSError):  # the quarantine holds nothing of a refused bundle
                release_quarantine(self.client, site.quarantine, quarantined, self.options.jobs)
            raise
        return staged, sent

    def publish(self, plans: list[Plan], staged: list[Staged], sent: Transfer, sbom: bytes | None) -> None:
        """Every byte verified: state first ("publishing", so that a re-run finishes the job), the
        registry's manifests and tags, each kind's publication, the cluster's files."""
        site, manifest, digest, state = self.site, self.report.manifest, self.report.manifest_digest, self.state
        current = state.latest(manifest.name)
        self.journal.step(self.options.bundle, digest, "publishing")
        with files_lock(site.directory):
            if not (current and current.manifest_digest == digest):
                keep_manifest(site, manifest, digest, sbom)
                sources = sorted({host for kind in KINDS for host in kind.publish.sources(manifest.entries(kind.key))})
                state.record(manifest.name, manifest.version, digest, sorted(self.report.verdict.valid_signers),
                             sources, manifest.content_digest, status=ReleaseStatus.PUBLISHING)
            stats = publish_registry(sent, self.reader, self.client, self.jobs)
            for kind, done in zip(KINDS, staged, strict=True):
                self.result.notes += done.publish()
                kind.publish.published(site, manifest)
            state.finish(manifest.name, manifest.version, digest,
                         [(p.artifact.repo, p.artifact.tag, p.artifact.digest) for p in plans if p.artifact.tag])
            write_cluster_config(site, state)
        result = self.result
        for key in {*(kind.count_key or kind.key for kind in KINDS), *stats.added, *stats.unchanged, "blobs"}:
            result.added[key], result.unchanged[key] = stats.added[key], stats.unchanged[key]
        for done in staged:  # each kind's own
            for key, (added, unchanged) in done.counts().items():
                result.added[key], result.unchanged[key] = added, unchanged
        result.bytes_sent = stats.bytes_sent
        # what the status page and `site status` show
        figures.write_disk(site, disk_report(site, self.client).to_dict())
        if warning := disk_warning(site):
            result.notes.append(f"warning: {warning}")
