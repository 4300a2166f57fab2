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
import datetime as dt
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from bundler import problems
from bundler.bundle import layout
from bundler.bundle.manifest import BundleManifest
from bundler.bundle.parent import parent_label, receipt
from bundler.bundle.reader import BundleReader
from bundler.bundle.verify import (
    Admission,
    SiteChecks,
    Verification,
    VerifyReport,
    part_problems,
    read_verified,
    verify_file,
)
from bundler.errors import BundlerError, IntegrityError, RefusedError, UnreachableError
from bundler.fsutil import atomic_write
from bundler.kinds import KINDS
from bundler.kinds.base import Staged
from bundler.oci.client import RegistryClient
from bundler.parallel import run_parallel
from bundler.pipeline.prune import disk_report, disk_warning
from bundler.pipeline.registry import (
    Plan,
    artifacts_present,
    missing_blobs,
    plan,
    release_quarantine,
    site_artifacts,
    transfer,
)
from bundler.pipeline.registry import publish as publish_registry
from bundler.pipeline.status import site_status
from bundler.problems import Problem, ProblemError
from bundler.progress import byte_progress
from bundler.signing import TrustPolicy
from bundler.site import figures, identity
from bundler.site.cluster import write_cluster_config
from bundler.site.config import SiteConfig, SiteState, load_site
from bundler.site.journal import Journal, files_lock, import_lock
from bundler.site.tokens import QUARANTINE
from bundler.units import human
from bundler.versions import Version


@dataclass(frozen=True)
class ImportOptions:
    bundle: Path
    site: Path
    jobs: int = 8
    allow_downgrade: bool = False
    kinds: dict[str, dict[str, Any]] = field(default_factory=dict)  # each kind's import options, by its key
    dry_run: bool = False  # verify and plan; change nothing


@dataclass
class ImportResult:
    name: str
    version: str
    manifest_digest: str
    already_imported: bool = False
    added: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    bytes_sent: int = 0
    bundle_bytes_read: int = 0  # payload bytes read from the bundle file (each once: about its size)
    notes: list[str] = field(default_factory=list)
    plan: dict[str, Any] | None = None  # with --dry-run: what the import would change

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "manifest_digest": self.manifest_digest,
                "already_imported": self.already_imported, "added": self.added, "unchanged": self.unchanged,
                "bytes_sent": self.bytes_sent, "bundle_bytes_read": self.bundle_bytes_read, "notes": self.notes,
                **({"dry_run": True, "plan": self.plan} if self.plan is not None else {})}


DOWNGRADE_HINT = "this is older than what the site runs; only with a reason: `--allow-downgrade`"


def rollback_problem(site: SiteConfig, state: SiteState, manifest: BundleManifest,
                     digest: str) -> Problem | None:
    """Older than what the site runs, or the same version with other content: a rollback. A full
    bundle and its delta of the same version are the same release (same content digest)."""
    current = state.latest(manifest.name)
    if current is None or current["manifest_digest"] == digest:
        return None
    running = f"the site runs {manifest.name} {current['version']} ({current['manifest_digest'][:19]})"
    if Version(manifest.version) < Version(current["version"]):
        return Problem(problems.ROLLBACK, manifest.name,
                       f"rollback refused: {running}; this bundle is the older {manifest.version}",
                       current["version"], manifest.version, hint=DOWNGRADE_HINT)
    if Version(manifest.version) == Version(current["version"]):
        if recorded_content(site, current) == manifest.content_digest:
            return None  # the same release packed another way (a delta and its full bundle)
        return Problem(problems.SAME_VERSION_OTHER_CONTENT, manifest.name,
                       f"refused: {running}; this bundle claims the same version with different content "
                       f"({manifest.content_digest[:19]})", recorded_content(site, current), manifest.content_digest,
                       hint="two different bundles were given one version: ask release engineering for a new "
                            "version (a delta and its full bundle are the same release: either imports after "
                            "the other)")
    return None


def tag_problem(site: SiteConfig, state: SiteState, manifest: BundleManifest) -> Problem | None:
    """Rollback per tag: a tag that another bundle name set, or a newer release of this name, moves
    only with --allow-downgrade (an old bundle under another name cannot take a shared tag back)."""
    for artifact in site_artifacts(manifest, site):
        owner = state.tags.get(f"{artifact.repo}:{artifact.tag}") if artifact.tag and artifact.release_tag else None
        if owner is None or owner["digest"] == artifact.digest:
            continue
        where = f"tag {artifact.repo}:{artifact.tag}"
        if owner["name"] != manifest.name:
            return Problem(problems.TAG_CLAIMED, f"{artifact.repo}:{artifact.tag}",
                           f"refused: {where} was set by {owner['name']} {owner['version']}; this bundle "
                           f"({manifest.name} {manifest.version}) would move it to {artifact.digest[:19]}",
                           owner["digest"], artifact.digest,
                           hint="two releases claim one tag: ask release engineering; only with a reason: "
                                "`--allow-downgrade`")
        if Version(owner["version"]) > Version(manifest.version):
            return Problem(problems.ROLLBACK, f"{artifact.repo}:{artifact.tag}",
                           f"rollback refused: {where} holds {manifest.name} {owner['version']}; this bundle is the "
                           f"older {manifest.version}", owner["version"], manifest.version, hint=DOWNGRADE_HINT)
    return None


def recorded_content(site: SiteConfig, bundle: dict[str, Any]) -> str | None:
    """The content digest of a bundle the site imported (from the manifest it kept, for older state)."""
    if isinstance(bundle.get("content_digest"), str):
        return str(bundle["content_digest"])
    kept = site.directory / BUNDLES_DIR / f"{str(bundle['manifest_digest']).split(':')[-1]}.json"
    try:
        return BundleManifest.from_bytes(kept.read_bytes()).content_digest
    except (OSError, BundlerError):
        return None


def site_checks(site: SiteConfig, state: SiteState, bases: bool = False) -> SiteChecks:
    """The verifier's site stage: a rollback (by bundle name or by tag), and with `bases` what each
    kind refuses (a delta whose Git base the site lacks; import judges bases with the registry's
    blobs, later)."""
    def checks(manifest: BundleManifest, digest: str) -> list[Problem]:
        found = [p for p in (rollback_problem(site, state, manifest, digest), tag_problem(site, state, manifest)) if p]
        if bases:
            found += [problem for kind in KINDS for problem in kind.site_problems(site, manifest)]
        return found
    return checks


def admission(site: SiteConfig) -> Admission:
    """The verifier's last word for this site: what each kind refuses of verified content."""
    def admit(reader: BundleReader, manifest: BundleManifest) -> list[Problem]:
        return [problem for kind in KINDS for problem in kind.admission(site, reader, manifest)]
    return admit


def verify_for_site(bundle: Path, site_dir: Path, jobs: int) -> VerifyReport:
    """`verify --site`: the site's trust policy, and whether the site would refuse it (a rollback, a
    claimed tag, a delta whose base it lacks, an image its image keys cover without a signature)."""
    site = load_site(site_dir)
    return verify_file(bundle, site.policy(), jobs, site_checks(site, SiteState.load(site.directory), bases=True),
                       admission(site))


@dataclass
class ImportPlan:
    """What an import would change, from HEAD requests and the site's files (nothing written)."""

    artifacts: list[str] = field(default_factory=list)  # top manifests (of every kind) the registry lacks
    blob_bytes: int = 0  # bytes of blobs the registry lacks
    kinds: dict[str, Any] = field(default_factory=dict)  # each kind's plan fields
    disk: dict[str, int] = field(default_factory=dict)  # kind title -> bytes it writes under the site directory

    def disk_needed(self, site: SiteConfig) -> int:
        """Bytes this import writes under the site directory (the registry's, if it is embedded)."""
        return (self.blob_bytes if site.embedded_registry else 0) + sum(self.disk.values())

    def to_dict(self) -> dict[str, Any]:
        return {"add_artifacts": self.artifacts, "blob_bytes": self.blob_bytes, **self.kinds}


BUNDLES_DIR = "bundles"
SBOM_DIR = "sbom"
DISK_MARGIN = 64 << 20  # left free for the registry's and git's own bookkeeping


def plan_import(site: SiteConfig, reader: BundleReader, manifest: BundleManifest, plans: list[Plan],
                client: RegistryClient, jobs: int, count_blobs: bool = True) -> ImportPlan:
    """`count_blobs`: HEAD every new blob to count its bytes (for --dry-run, and for the disk check when
    the registry's storage is the site's disk)."""
    result = ImportPlan()
    present = run_parallel(lambda p: client.head_manifest(p.artifact.repo, p.artifact.tag or p.artifact.digest)
                           == p.artifact.digest, plans, jobs)
    missing = [p for p, there in zip(plans, present, strict=True) if not there]
    result.artifacts = [p.artifact.ref for p in missing]
    blobs = {d: (size, p.artifact.repo) for p in missing if count_blobs for d, size in p.blobs
             if layout.blob_path(d) in reader.members}  # a delta's base is on the site already
    lacking = run_parallel(lambda item: not client.blob_exists(item[1][1], item[0]), list(blobs.items()), jobs)
    result.blob_bytes = sum(size for (_, (size, _)), lack in zip(blobs.items(), lacking, strict=True) if lack)
    for kind in KINDS:
        fields, size = kind.plan(site, manifest)
        result.kinds.update(fields)
        if fields:
            result.disk[kind.title] = size
    return result


def check_requirements(site: SiteConfig, manifest: BundleManifest, plans: list[Plan], client: RegistryClient,
                       jobs: int) -> dict[str, str]:
    """A delta needs its base on the site: refuse, listing what is missing and what would provide it.
    Returns where each required blob is, to mount it from."""
    missing, located = missing_blobs(plans, client, set(manifest.requires), jobs) if manifest.requires else ([], {})
    lacking = [what for kind in KINDS for what in kind.missing(site, manifest)]
    if missing or lacking:
        provider = parent_label(manifest.parent or {})
        shown = ", ".join(d[7:19] for d in missing[:3])
        nouns = " or ".join(kind.noun for kind in KINDS if kind.oci_tops(manifest.entries(kind.key)))
        parts = [f"{len(missing)} {nouns} blobs ({shown}...)"] if missing else []
        raise RefusedError(f"this delta builds on {provider}, and the site lacks: {'; '.join(parts + lacking)}",
                           hint=f"import {provider} first (or a full bundle), then this one; nothing was changed")
    return located


def keep_manifest(site: SiteConfig, manifest: BundleManifest, digest: str, sbom: bytes | None = None) -> None:
    """The site keeps every imported bundle.json (its receipt is made from them) and its SBOM
    (`DIR/sbom/NAME-VERSION.cdx.json`, for auditors without a network)."""
    directory = site.directory / BUNDLES_DIR
    directory.mkdir(exist_ok=True)
    atomic_write(directory / f"{digest.split(':')[1]}.json", manifest.to_bytes())
    if sbom is not None:
        (site.directory / SBOM_DIR).mkdir(exist_ok=True)
        atomic_write(site.directory / SBOM_DIR / f"{manifest.name}-{manifest.version}.cdx.json", sbom)


def site_receipt(site_dir: Path) -> dict[str, Any]:
    """Everything this site holds from the bundles it imported, for `build --since` on the connected side."""
    site = load_site(site_dir)
    state = SiteState.load(site.directory)
    manifests = []
    for bundle in state.bundles:
        path = site.directory / BUNDLES_DIR / f"{bundle['manifest_digest'].split(':')[1]}.json"
        if path.exists() and bundle.get("status") != "pruned":  # a pruned release's files are gone
            manifests.append(BundleManifest.from_bytes(path.read_bytes()))
    held = {field: value for kind in KINDS for field, value in kind.receipt(site, state).items()}
    created = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    doc = receipt(site.site_name, created, state.bundles, manifests, held)
    identity.ensure_site_key(site.directory)  # a site made before site keys
    disk = shutil.disk_usage(site.directory)
    doc.update({
        "site_keyid": identity.key_id(site.directory),
        "disk": {"total": disk.total, "used": disk.used, "free": disk.free},
        "services": {name: bool(s["healthy"]) for name, s in site_status(site.directory)["services"].items()},
    })
    return identity.signed(doc, identity.load_site_key(site.directory))


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


def import_bundle(options: ImportOptions) -> ImportResult:
    site = load_site(options.site)
    policy = site.policy()
    with import_lock(site, options.bundle):
        journal = Journal(site)
        earlier = journal.unfinished()
        with BundleReader(options.bundle) as reader:
            result = _import(site, policy, options, journal, reader)
            result.bundle_bytes_read = reader.bytes_read
        if earlier and earlier.get("manifest_digest") == result.manifest_digest:
            result.notes.append(f"resumed an import of this bundle that stopped during {earlier.get('phase')} "
                                f"(started {earlier.get('started')}); what had arrived was not sent again")
        if not options.dry_run:
            journal.done()
        return result


def _import(site: SiteConfig, policy: TrustPolicy, options: ImportOptions, journal: Journal,
            reader: BundleReader) -> ImportResult:
    state = SiteState.load(site.directory)
    verification = Verification(reader, policy).check(options.bundle)
    verification.site(None if options.allow_downgrade else site_checks(site, state)).check(options.bundle)
    verification.structure().check(options.bundle)
    report = verification.report
    manifest, digest = report.manifest, report.manifest_digest

    client = site.registry_client(options.jobs)
    try:
        client.ping()  # an unreachable site fails before the long read
    except UnreachableError as exc:
        if site.embedded_registry:
            hint = f"start the site's services first: `bundler site up {site.directory}`"
            raise UnreachableError(f"the site's registry does not answer ({exc.message})", hint=hint) from None
        raise
    result = ImportResult(manifest.name, manifest.version, digest)
    current = state.latest(manifest.name)
    artifacts = site_artifacts(manifest, site)
    # one token per 50 repositories, fetched now, rather than a 401 and a token at each one's first request
    client.authorize([a.repo for a in artifacts], "pull,push", shared={QUARANTINE: "pull,push,delete"})
    if (current and current["manifest_digest"] == digest and current.get("status", "done") == "done"
            and artifacts_present(client, artifacts, options.jobs)
            and all(kind.present(site, manifest) for kind in KINDS)):
        result.already_imported = True
        result.unchanged = {"blobs": 0}
        for kind in KINDS:
            result.unchanged.update(kind.unchanged(manifest))
        result.added = {key: 0 for key in result.unchanged}
        write_cluster_config(site, state)
        return result

    try:
        plans = [plan(reader, artifact) for artifact in artifacts]  # manifests read, checked and kept
    except IntegrityError as exc:
        refuse(report, reader, digest, exc, options.bundle)
    # every payload is read once: blobs are hashed as they stream to the registry, update payloads
    # as they are copied into the cache, git bundles as they are extracted for git; a dry run
    # sends nothing, so it hashes everything here
    try:
        sbom = None if options.dry_run else read_verified(reader, manifest, layout.SBOM, layout.MAX_SBOM_BYTES)
    except IntegrityError as exc:
        refuse(report, reader, digest, exc, options.bundle)
    streamed: set[str] = set()
    if not options.dry_run:
        streamed = {layout.blob_path(d) for p in plans for d, _ in p.blobs}
        streamed |= {path for kind in KINDS for path in kind.streamed(manifest)}
        streamed |= {layout.SBOM} if sbom is not None else set()
    total = sum(e.size for e in manifest.files.values())
    with byte_progress("verifying", total + sum(e.size for p, e in manifest.files.items()
                                                if p not in streamed)) as progress:
        verification.payloads(options.jobs, progress.advance, streamed).check(options.bundle)
        verification.graphs(read_packs=False, admit=admission(site)).check(options.bundle)  # transfer reads packs

        progress.phase("planning")
        located = check_requirements(site, manifest, plans, client, options.jobs)
        # the disk check needs the bytes of the blobs the registry lacks; when even every blob the
        # bundle carries fits, there is no need to ask the registry about each one
        carried = sum(e.size for e in manifest.files.values())  # a delta's base is not written again
        count = options.dry_run or (site.embedded_registry and not fits(site, carried))
        intended = plan_import(site, reader, manifest, plans, client, options.jobs, count_blobs=count)
        if options.dry_run:
            result.plan = intended.to_dict()
            if warning := disk_warning(site, intended.disk_needed(site)):
                result.notes.append(f"warning: {warning}")
            return result
        check_disk(site, intended)

        progress.phase("importing")
        journal.step(options.bundle, digest, "transfer")
        staged: list[Staged] = []
        quarantined: list[str] = []
        try:
            try:  # nothing below changes what a client sees: hidden refs, the cache's files, the quarantine
                for kind in KINDS:  # Git first: a history rewrite stops the import here
                    staged.append(kind.stage(site, reader, manifest, options, progress.advance))
                sent = transfer(reader, plans, client, options.jobs, progress.advance, located,
                                registry_verifies=site.embedded_registry, quarantined=quarantined)
            except IntegrityError as exc:  # a payload that does not match: refused before anything moved
                refuse(report, reader, digest, exc, options.bundle)
        except BaseException:
            for done in staged:
                done.discard()
            left = {kind.key: kind.leftovers(site, manifest) for kind in KINDS}
            state.note_unreferenced({**left, "blobs": quarantined})  # the collector frees them at the next prune
            with contextlib.suppress(BundlerError, OSError):  # the quarantine holds nothing of a refused bundle
                release_quarantine(client, quarantined, options.jobs)
            raise

    # every byte verified: publish, state first ("publishing"), so that a re-run finishes the job
    journal.step(options.bundle, digest, "publishing")
    with files_lock(site.directory):
        if not (current and current["manifest_digest"] == digest):
            keep_manifest(site, manifest, digest, sbom)
            sources = sorted({host for kind in KINDS for host in kind.sources(manifest.entries(kind.key))})
            state.record(manifest.name, manifest.version, digest, sorted(report.verdict.valid_signers), sources,
                         manifest.content_digest, status="publishing")
        assert sent is not None
        stats = publish_registry(sent, reader, client, options.jobs)
        for kind, done in zip(KINDS, staged, strict=True):
            result.notes += done.publish()
            kind.published(site, manifest)
        state.finish(manifest.name, manifest.version, digest,
                     [(p.artifact.repo, p.artifact.tag, p.artifact.digest) for p in plans if p.artifact.tag])
        write_cluster_config(site, state)
    for key in {*(kind.count_key or kind.key for kind in KINDS), *stats.added, *stats.unchanged, "blobs"}:
        result.added[key], result.unchanged[key] = stats.added[key], stats.unchanged[key]
    for done in staged:  # each kind's own
        for key, (added, unchanged) in done.counts().items():
            result.added[key], result.unchanged[key] = added, unchanged
    result.bytes_sent = stats.bytes_sent
    figures.write_disk(site, disk_report(site, client))  # what the status page and `site status` show
    if warning := disk_warning(site):
        result.notes.append(f"warning: {warning}")
    return result
