"""Verification, in the fail-closed order (class Verification: used by verify, verify --site and
import): signatures over bundle.json against a trust policy and expiry first (reading nothing
else), then what the site refuses (rollback), then the tar's structure against bundle.json (every
listed file present with its size, nothing else, nothing odd), then every payload's sha256, then
the graphs: each top manifest of the OCI layout (every manifest and blob it needs is in the
bundle), then each content kind's own (the git bundles). Every problem is typed (bundler/problems.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bundler import problems
from bundler.bundle import layout
from bundler.bundle.kinds import registered
from bundler.bundle.manifest import BundleManifest
from bundler.bundle.parts import PART_HINT
from bundler.bundle.reader import BundleReader, read_mending
from bundler.errors import IntegrityError
from bundler.jsontypes import Doc
from bundler.names import parse_time
from bundler.oci import media
from bundler.oci.layout import OciTop
from bundler.parallel import run_parallel
from bundler.problems import Problem, ProblemError
from bundler.progress import byte_progress
from bundler.signing import PolicyVerdict, TrustPolicy, evaluate


@dataclass
class VerifyReport:
    """What a reviewer files: who signed, whether the policy is met, and every problem found."""

    manifest: BundleManifest
    manifest_digest: str
    verdict: PolicyVerdict
    problems: list[Problem] = field(default_factory=list)
    judged: list[Doc] = field(default_factory=list)  # with a site: what its policies judged, and by whom
    rebuilt_parts: list[str] = field(default_factory=list)  # a split bundle's parts read from its parity parts

    @property
    def verified(self) -> bool:
        return not self.problems

    def to_dict(self) -> Doc:
        m = self.manifest
        return {
            "verified": self.verified, "name": m.name, "version": m.version, "created": m.created,
            "expires": m.expires, "manifest_digest": self.manifest_digest, "threshold": self.verdict.threshold,
            "threshold_met": self.verdict.met,
            "signers": [{"keyid": s.keyid, "name": s.name, "trusted": s.name is not None, "valid": s.valid}
                        for s in self.verdict.signers],
            "file_count": len(m.files), "total_bytes": sum(f.size for f in m.files.values()),
            "problems": [p.to_dict() for p in self.problems],
            **({"judged": self.judged} if self.judged else {}),
            **({"rebuilt_parts": self.rebuilt_parts} if self.rebuilt_parts else {}),
        }

    def raise_if_failed(self, path: str) -> None:
        if self.problems:
            more = len(self.problems) - 5
            shown = "; ".join(map(str, self.problems[:5])) + (f"; and {more} more" if more > 0 else "")
            raise IntegrityError(f"bundle {path} refused: {shown}", hint=self.hint())

    def hint(self) -> str:
        """What to do, as the technician's page (docs/technician.md) says it."""
        codes = {p.code for p in self.problems}
        if codes <= problems.POLICY:  # only signatures
            return ("it lacks a signature this trust policy requires: send it back to be signed "
                    "(`bundler sign`); nothing was changed")
        if specific := next((p.hint for p in self.problems if p.hint), None):
            return specific  # what the site runs decides it (a rollback, a claimed tag)
        if problems.EXPIRED in codes:
            return "ask release engineering for a current bundle; nothing was changed"
        if {problems.PART_DAMAGED, problems.PART_INDEX_MISMATCH} & codes:
            return PART_HINT
        return "the copy is damaged (or was tampered with): copy it again from the source; nothing was changed"


def structure_problems(reader: BundleReader, manifest: BundleManifest) -> list[Problem]:
    """Cheap checks (no payload read): missing, extra, wrongly sized members; dangling image digests."""
    found = list(reader.problems)
    for path, entry in sorted(manifest.files.items()):
        member = reader.members.get(path)
        if member is None:
            found.append(Problem(problems.MISSING, path,
                                 f"{path}: listed in {layout.MANIFEST} but missing from the bundle"))
        elif member.size != entry.size:
            found.append(Problem(problems.SIZE_MISMATCH, path,
                                 f"{path}: {member.size} bytes, {layout.MANIFEST} says {entry.size}",
                                 str(entry.size), str(member.size)))
        if path.startswith(layout.OCI_BLOBS) and path[len(layout.OCI_BLOBS):] != entry.sha256:
            found.append(Problem(problems.MISNAMED_BLOB, path, f"{path}: {layout.MANIFEST} gives it sha256 "
                                 f"{entry.sha256}, not the digest it is named by", path[len(layout.OCI_BLOBS):],
                                 entry.sha256))
    for path in sorted(reader.members):
        if path not in manifest.files and path not in (layout.MANIFEST, layout.SIGNATURES):
            found.append(Problem(problems.UNLISTED, path, f"{path}: in the bundle but not listed in {layout.MANIFEST}"))
    for top in oci_tops(manifest):
        if layout.blob_path(top.digest) not in manifest.files:
            found.append(Problem(problems.GRAPH_INCOMPLETE, top.label,
                                 f"{top.label}: its manifest {top.digest} is not in the bundle"))
    return found


def oci_tops(manifest: BundleManifest) -> list[OciTop]:
    """Every top manifest the bundle's OCI layout holds, of every kind."""
    return [top for kind in registered() for top in kind.format.oci_tops(manifest.entries(kind.key))]


def hash_member(reader: BundleReader, name: str, progress: Callable[[int], None]) -> str:
    h = hashlib.sha256()
    for chunk in reader.iter_member(name):
        h.update(chunk)
        progress(len(chunk))
    return h.hexdigest()


def payload_problems(reader: BundleReader, manifest: BundleManifest, jobs: int,
                     progress: Callable[[int], None], streamed: Collection[str] = ()) -> list[Problem]:
    """Hash every listed file that is present with the right size, in parallel; report mismatches.
    `streamed`: files the caller hashes as it sends them (verified_chunks), not read here."""
    names = [p for p, e in manifest.files.items()
             if p in reader.members and reader.members[p].size == e.size and p not in streamed]
    names.sort(key=lambda p: -manifest.files[p].size)  # big first: the pool finishes evenly
    digests = dict(zip(names, run_parallel(lambda n: hash_member(reader, n, progress), names, jobs), strict=True))
    return [digest_problem(p, manifest.files[p].sha256, d) for p, d in sorted(digests.items())
            if d != manifest.files[p].sha256]


def digest_problem(path: str, expected: str, actual: str) -> Problem:
    return Problem(problems.DIGEST_MISMATCH, path, f"{path}: sha256 is {actual}, {layout.MANIFEST} says {expected}",
                   expected, actual)


def verified_chunks(reader: BundleReader, name: str, sha256: str) -> Iterator[bytes]:
    """A member's bytes, hashed as they pass: the last chunk is held back until the digest matches,
    so a receiver (a registry upload) never gets a complete wrong copy. IntegrityError otherwise."""
    h = hashlib.sha256()
    pending = b""
    for chunk in reader.iter_member(name):
        if pending:
            yield pending
        h.update(chunk)
        pending = chunk
    if h.hexdigest() != sha256:
        raise ProblemError(digest_problem(name, sha256, h.hexdigest()))
    if pending:
        yield pending


def read_verified(reader: BundleReader, manifest: BundleManifest, path: str, limit: int) -> bytes | None:
    """A small listed file read whole and checked against bundle.json (None when it is not listed);
    ProblemError when its bytes differ."""
    entry = manifest.files.get(path)
    if entry is None:
        return None
    data = reader.read_small(path, limit)
    actual = hashlib.sha256(data).hexdigest()
    if actual != entry.sha256:
        raise ProblemError(digest_problem(path, entry.sha256, actual))
    return data


def image_graph(reader: BundleReader, ref: str, digest: str, media_type: str) -> media.ImageGraph:
    """An image's (or chart's) manifests and blobs, read from the bundle and checked against their
    digests as they are read; IntegrityError when changed or malformed."""

    def read(digest: str) -> bytes:
        path = layout.blob_path(digest)
        data = reader.read_small(path, media.MAX_MANIFEST_BYTES)
        actual = hashlib.sha256(data).hexdigest()
        if digest.startswith("sha256:") and actual != digest[7:]:
            raise ProblemError(digest_problem(path, digest[7:], actual))
        return data

    try:
        return media.walk_image(read, digest, media_type)
    except (media.ManifestError, ValueError) as exc:
        raise ProblemError(Problem(problems.GRAPH_INVALID, ref, f"{ref}: {exc}")) from None


def graph_problems(reader: BundleReader, manifest: BundleManifest, read_packs: bool = True) -> list[Problem]:
    """Every manifest and blob each top manifest needs is in the bundle (run after the payloads
    verified), then each kind's own graph checks (git bundles: with `read_packs`, their objects)."""
    found = []
    for top in oci_tops(manifest):
        try:
            graph = image_graph(reader, top.label, top.digest, top.media_type)
        except ProblemError as exc:
            found.append(exc.problem)
            continue
        found += [Problem(problems.GRAPH_INCOMPLETE, top.label, f"{top.label}: blob {blob.digest} is not in the bundle")
                  for blob in graph.blobs if layout.blob_path(blob.digest) not in manifest.files
                  and layout.blob_path(blob.digest) not in manifest.requires]  # a delta's base: on the site
    for kind in registered():
        found += kind.format.graph_problems(reader, manifest, read_packs)
    return found


def extract_member(reader: BundleReader, name: str, target: Path, sha256: str | None = None) -> Path:
    """Copy one member to a scratch file (for tools that want a path, like git); no more than its
    size. With `sha256`, hashed on the way: IntegrityError before the copy is complete if it differs."""
    with open(target, "wb") as out:
        for chunk in reader.iter_member(name) if sha256 is None else verified_chunks(reader, name, sha256):
            out.write(chunk)
    return target


def part_problems(reader: BundleReader, manifest_digest: str, damaged: bool) -> list[Problem]:
    """For a split bundle: the index must belong to this bundle.json; when something is damaged, name
    the parts whose bytes differ from the index (the file to copy again)."""
    if reader.parts is None:
        return []
    found = []
    if reader.parts.manifest_digest != manifest_digest:
        found.append(Problem(problems.PART_INDEX_MISMATCH, reader.parts.index.name,
                             f"{reader.parts.index.name} belongs to another bundle (manifest "
                             f"{reader.parts.manifest_digest[:19]}, this one is {manifest_digest[:19]})",
                             manifest_digest, reader.parts.manifest_digest))
    if damaged:  # the parts read as they are (a rebuilt one is not), parity parts too
        for part, actual in reader.parts.damaged():
            found.append(Problem(problems.PART_DAMAGED, part.file, f"part {part.file} is damaged: sha256 is "
                                 f"{actual}, the index says {part.sha256}", part.sha256, actual))
    return found


def check_policy(reader: BundleReader, policy: TrustPolicy, now: dt.datetime | None = None) -> VerifyReport:
    """Signatures and expiry, from bundle.json and signatures.json alone."""
    manifest, data, digest = reader.manifest()
    verdict = evaluate(policy, data, reader.signatures())
    report = VerifyReport(manifest, digest, verdict, list(verdict.problems))
    if manifest.expires and (now or dt.datetime.now(dt.UTC)) >= parse_time(manifest.expires):  # parsed: a time
        report.problems.append(Problem(problems.EXPIRED, layout.MANIFEST, f"the bundle expired at {manifest.expires}",
                                       manifest.expires))
    return report


SiteChecks = Callable[[BundleManifest, str], list[Problem]]  # (manifest, its digest) -> what the site refuses
Admission = Callable[[BundleReader, BundleManifest], list[Problem]]  # what the site refuses of verified content


class Verification:
    """One bundle verified stage by stage, in the fail-closed order, which is written here and
    nowhere else: policy (signatures, expiry: bundle.json and signatures.json alone) -> site (a
    rollback, a claimed tag, a delta's missing base) -> structure (the tar against bundle.json, no
    payload read) -> payloads (every sha256, and a split bundle's damaged parts) -> graphs (what each
    top manifest of the OCI layout needs is there; then each kind's own: each git bundle's header,
    and its objects).

    Each stage adds its problems to the report; a stage called before the one it follows is a
    programming error. `verify` runs them all and reports every problem; `import` calls `check()`
    after each, so it stops at the first stage that finds one (and, between them, hashes the
    payloads it sends itself: `payloads(streamed=...)`)."""

    ORDER = ("policy", "site", "structure", "payloads", "graphs")

    def __init__(self, reader: BundleReader, policy: TrustPolicy, now: dt.datetime | None = None) -> None:
        self.reader = reader
        self.report = check_policy(reader, policy, now)
        self.done = "policy"

    def _enter(self, stage: str) -> BundleManifest:
        if self.ORDER.index(stage) <= self.ORDER.index(self.done):
            raise AssertionError(f"verification stage {stage} after {self.done}")
        self.done = stage
        return self.report.manifest

    def check(self, path: str | Path) -> Verification:
        """Refuse (IntegrityError, exit 3) when any stage so far found a problem."""
        self.report.raise_if_failed(str(path))
        return self

    def site(self, checks: SiteChecks | None) -> Verification:
        manifest = self._enter("site")
        if checks is not None:
            self.report.problems += checks(manifest, self.report.manifest_digest)
        return self

    def structure(self) -> Verification:
        self.report.problems += structure_problems(self.reader, self._enter("structure"))
        return self

    def payloads(self, jobs: int, progress: Callable[[int], None], streamed: Collection[str] = ()) -> Verification:
        """`streamed`: files the caller hashes itself as it sends them (the import), not read here."""
        manifest = self._enter("payloads")
        self.report.problems += payload_problems(self.reader, manifest, jobs, progress, streamed)
        self.report.problems += part_problems(self.reader, self.report.manifest_digest, bool(self.report.problems))
        return self

    def graphs(self, read_packs: bool = True, admit: Admission | None = None) -> Verification:
        """With `read_packs`, git reads every complete git bundle's objects (the import fetches them
        anyway); `admit`: what the site refuses once the graphs are known (unsigned images)."""
        manifest = self._enter("graphs")
        self.report.problems += graph_problems(self.reader, manifest, read_packs)
        if admit is not None and not self.report.problems:
            self.report.problems += admit(self.reader, manifest)
        return self


def verify_bundle(reader: BundleReader, policy: TrustPolicy, jobs: int = 4,
                  progress: Callable[[int], None] = lambda n: None, site: SiteChecks | None = None,
                  admit: Admission | None = None) -> VerifyReport:
    """Everything, reporting every problem found (a reviewer wants the whole list); the graphs
    are judged once the payloads verified."""
    verification = Verification(reader, policy).site(site).structure().payloads(jobs, progress)
    if not verification.report.problems:
        verification.graphs(admit=admit)
    return verification.report


def unreadable_report(path: Path, error: IntegrityError, threshold: int) -> Doc:
    """`verify --json`'s report for a bundle that could not even be opened (a malformed bundle.json,
    signatures.json or tar): the same shape, verified false, the refusal as a typed problem."""
    problem = error.problem if isinstance(error, ProblemError) else Problem(
        problems.UNREADABLE, path.name, error.message, hint=error.hint)
    return {"verified": False, "name": None, "version": None, "created": None, "expires": None,
            "manifest_digest": None, "threshold": threshold, "threshold_met": False, "signers": [],
            "file_count": 0, "total_bytes": 0, "problems": [problem.to_dict()]}


def verify_file(path: Path, policy: TrustPolicy, jobs: int = 4, site: SiteChecks | None = None,
                admit: Admission | None = None) -> VerifyReport:
    """Open and verify a bundle file completely, with a progress bar over the payload bytes."""
    def attempt(reader: BundleReader) -> VerifyReport:
        manifest, _, _ = reader.manifest()
        with byte_progress("verifying", sum(f.size for f in manifest.files.values())) as progress:
            return verify_bundle(reader, policy, jobs, progress.advance, site, admit)

    read = read_mending(path, attempt, lambda report: bool(report.problems))
    read.result.rebuilt_parts = read.rebuilt
    return read.result
