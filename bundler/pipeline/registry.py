"""Seed the site registry with the top manifests of a verified bundle (images, charts, artifacts: each
kind says where its go, `site_artifacts`), in two steps.

`transfer`: every blob the registry lacks is copied into the site's own registry storage
(site/registry_storage.py: the default site, hashed on the way, linked nowhere yet) or uploaded into
the quarantine repository, which no client is given (a registry that is not the site's own, or on
object storage: hashed here, or by the registry itself); every other carried blob is read and hashed
all the same. Nothing a client sees changes.
`publish` (once the whole bundle verified, updates and Git packs included): each blob is linked
into its repositories (a link file written, or a mount), then every manifest by digest (children
before their index, the bytes kept from the verified read, never read again), then the tags, each
with its top manifest (one request stores the manifest and moves the tag); the quarantine lets go.
A tag never points at something incomplete, and what the registry already has is not sent again.
"""

from __future__ import annotations

import collections
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from bundler import problems
from bundler.bundle import layout
from bundler.bundle.manifest import BundleManifest
from bundler.bundle.reader import BundleReader
from bundler.bundle.verify import image_graph, verified_chunks
from bundler.errors import BundlerError, IntegrityError
from bundler.kinds import KINDS
from bundler.kinds.base import Artifact
from bundler.oci.client import Pushed, RegistryClient
from bundler.parallel import run_parallel
from bundler.problems import Problem, ProblemError
from bundler.site.config import SiteConfig
from bundler.site.registry_storage import RegistryStorage
from bundler.site.tokens import QUARANTINE

DIRECT = "(the registry's storage)"  # a blob's source when it was copied into the storage directly


def site_artifacts(manifest: BundleManifest, site: SiteConfig) -> list[Artifact]:
    """Every top manifest of the bundle, of every kind, where the site registry gets it."""
    return [a for kind in KINDS for a in kind.publish.site_artifacts(manifest.entries(kind.key), site)]


@dataclass(frozen=True)
class Plan:
    """A top manifest to publish: its artifact, its manifests (children first) and its blobs."""
    artifact: Artifact
    manifests: tuple[tuple[str, str, bytes], ...]  # (digest, media type, bytes), children first
    blobs: tuple[tuple[str, int], ...]  # (digest, size)

    @property
    def top(self) -> tuple[str, str, bytes]:
        return self.manifests[-1]


@dataclass
class SeedStats:
    """Counts of what the registry got (added, unchanged, by kind) and the bytes sent, shared by
    threads."""
    added: Counter[str] = field(default_factory=Counter)
    unchanged: Counter[str] = field(default_factory=Counter)
    bytes_sent: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, added: str | None = None, unchanged: str | None = None, sent: int = 0) -> None:
        with self._lock:
            if added:
                self.added[added] += 1
            if unchanged:
                self.unchanged[unchanged] += 1
            self.bytes_sent += sent


def plan(reader: BundleReader, artifact: Artifact) -> Plan:
    graph = image_graph(reader, artifact.ref, artifact.digest, artifact.media_type)
    return Plan(artifact, graph.manifests, tuple((b.digest, b.size) for b in graph.blobs))


def manifest_lookup(client: RegistryClient, storage: RegistryStorage | None) -> Callable[[str, str], str | None]:
    """(repository, tag or digest) -> the digest the registry holds there, or None: read from the site
    registry's own storage when bundler writes it, else asked (a HEAD request)."""
    return storage.manifest if storage is not None else client.head_manifest


def artifacts_present(held: Callable[[str, str], str | None], artifacts: list[Artifact], jobs: int) -> bool:
    """True when every artifact is in the registry under its tag (or digest) with the bundle's digest."""

    def present(a: Artifact) -> bool:
        return held(a.repo, a.tag or a.digest) == a.digest

    return all(run_parallel(present, artifacts, jobs))


def missing_blobs(plans: list[Plan], client: RegistryClient, required: set[str],
                  jobs: int) -> tuple[list[str], dict[str, str]]:
    """For a delta: which required blobs no target repository of this bundle has, and where the
    others are (to mount them from)."""
    candidates: dict[str, list[str]] = {}
    for p in plans:
        for digest, _ in p.blobs:
            if layout.blob_path(digest) in required:
                candidates.setdefault(digest, []).append(p.artifact.repo)

    def locate(item: tuple[str, list[str]]) -> str | None:
        digest, repos = item
        return next((repo for repo in dict.fromkeys(repos) if client.blob_exists(repo, digest)), None)

    found = run_parallel(locate, list(candidates.items()), jobs)
    where = {digest: repo for digest, repo in zip(candidates, found, strict=True) if repo is not None}
    return [digest for digest in candidates if digest not in where], where


def _not_carried(digest: str) -> Iterator[bytes]:
    raise BundlerError(f"blob {digest} is not in this delta and could not be mounted from the site's copy")
    yield b""  # pragma: no cover - makes this a generator




@dataclass(frozen=True)
class _Staged:
    """A blob after the transfer: the repositories that lack it and where it can be linked or mounted
    from."""
    digest: str
    size: int
    lacking: tuple[str, ...]  # target repositories without the blob
    source: str | None  # where it can be mounted from (a target that has it, the quarantine, the site)


@dataclass
class Transfer:
    """What `transfer` did, for `publish`: each blob and where to link it from."""

    plans: list[Plan]
    staged: list[_Staged]
    stats: SeedStats
    quarantine: str  # the quarantine repository (under the registry's prefix)
    storage: RegistryStorage | None = None  # the registry's storage, written directly (the site's own, on its disk)

    @property
    def quarantined(self) -> list[str]:
        return [blob.digest for blob in self.staged if blob.source == self.quarantine]


def transfer(reader: BundleReader, plans: list[Plan], client: RegistryClient, jobs: int,
             progress: Callable[[int], None], located: dict[str, str] | None = None,
             registry_verifies: bool = False, quarantined: list[str] | None = None,
             quarantine: str = QUARANTINE, storage: RegistryStorage | None = None) -> Transfer:
    """`quarantined` receives each blob as it lands in the quarantine, so a refusal half-way knows
    what to take out again.
    `registry_verifies`: the registry hashes every upload and refuses one whose bytes do not match
    its digest (DIGEST_INVALID) before storing anything, as the embedded Distribution registry does;
    then the bytes it receives are hashed there only, once. Otherwise they are hashed here too.
    `storage`: the site's own registry on its disk: blobs are copied into its storage directly
    (hashed on the way, committed by rename, linked by no repository yet) instead of uploaded.
    Every carried blob is read exactly once. IntegrityError names a blob that does not match."""
    stats = SeedStats()

    repos_by_blob: dict[str, tuple[int, list[str]]] = {}
    for p in plans:
        for digest, size in p.blobs:
            _, repos = repos_by_blob.setdefault(digest, (size, []))
            if p.artifact.repo not in repos:
                repos.append(p.artifact.repo)

    def chunks(digest: str, sent: bool = True) -> Callable[[], Iterator[bytes]]:
        path = layout.blob_path(digest)
        if path not in reader.members:
            return lambda: _not_carried(digest)
        if sent and registry_verifies:
            return lambda: reader.iter_member(path)
        return lambda: verified_chunks(reader, path, digest[7:])  # a changed blob never arrives whole

    def push(repo: str, digest: str, size: int, mount_from: list[str]) -> Pushed:
        try:
            return client.push_blob(repo, digest, size, chunks(digest), mount_from=mount_from)
        except ProblemError:  # hashed here as it streamed: already names the file
            raise
        except IntegrityError as exc:  # the registry's verdict on the bytes: name the file, as the verifier does
            path = layout.blob_path(digest)
            raise ProblemError(Problem(problems.DIGEST_MISMATCH, path, f"{path}: its bytes do not match its "
                                       f"digest ({exc.message})", expected=digest[7:])) from None

    # 1. every carried blob that no target repository has goes to the quarantine repository first:
    #    a target repository shows in the registry's catalog once it links a blob, so none links any
    #    before every blob of the bundle arrived and matched its digest
    def stage(item: tuple[str, tuple[int, list[str]]]) -> _Staged:
        digest, (size, repos) = item
        lacking = tuple(repo for repo in repos
                        if not (storage.linked(repo, digest, size) if storage else client.blob_exists(repo, digest)))
        for _ in range(len(repos) - len(lacking)):
            stats.count(unchanged="blobs")
        source = next((repo for repo in repos if repo not in lacking), None)
        carried, read = layout.blob_path(digest) in reader.members, False
        if lacking and source is None:
            if not carried:
                source = (located or {}).get(digest)  # a delta's base, elsewhere on the site
            elif storage is not None:  # straight into the registry's storage, linked at publication
                source = DIRECT
                if not storage.has(digest, size):  # there whole already: an interrupted or refused import wrote it
                    storage.write(digest, size, chunks(digest, sent=False)())  # hashed as it is copied
                    stats.count(sent=size)
                    read = True
                if quarantined is not None:
                    quarantined.append(digest)
            else:
                source = quarantine
                if not client.blob_exists(quarantine, digest):  # there already: an interrupted import
                    push(quarantine, digest, size, [])
                    stats.count(sent=size)
                    read = True
                if quarantined is not None:
                    quarantined.append(digest)
        if carried:
            if not read:  # not sent, read once all the same: a damaged bundle is refused whole
                collections.deque(chunks(digest, sent=False)(), maxlen=0)
            progress(size)  # a delta's base blob, elsewhere on the site, is not read
        return _Staged(digest, size, lacking, source)

    staged = run_parallel(stage, sorted(repos_by_blob.items(), key=lambda item: -item[1][0]), jobs)
    return Transfer(plans, staged, stats, quarantine, storage)


def publish(done: Transfer, reader: BundleReader, client: RegistryClient, jobs: int) -> SeedStats:
    """Make a transferred (and verified) bundle visible: links, manifests by digest, then tags."""
    plans, stats = done.plans, done.stats

    def fallback(digest: str) -> Callable[[], Iterator[bytes]]:
        path = layout.blob_path(digest)
        if path not in reader.members:
            return lambda: _not_carried(digest)
        return lambda: verified_chunks(reader, path, digest[7:])  # checked again: it is read again

    # 2. link each blob into the repositories that lack it (a mount; an upload where mounts fail)
    def link(item: tuple[_Staged, str]) -> None:
        blob, repo = item
        if done.storage is not None and done.storage.has(blob.digest, blob.size):  # what the registry's mount writes
            done.storage.link(repo, blob.digest)
            stats.count(added="blobs")
            return
        how = client.push_blob(repo, blob.digest, blob.size, fallback(blob.digest),
                               mount_from=[blob.source] if blob.source else [])
        stats.count(added="blobs", sent=blob.size if how == Pushed.UPLOADED else 0)

    run_parallel(link, [(blob, repo) for blob in done.staged for repo in blob.lacking], jobs)

    held = manifest_lookup(client, done.storage)

    def push_manifests(p: Plan) -> tuple[bool, bool]:
        """Its manifests the registry lacks, by digest, children first; a tagged top manifest waits
        for its tag. Returns (a manifest added, the top one lacking)."""
        repo, added = p.artifact.repo, False
        for digest, media_type, data in p.manifests[:-1]:
            if held(repo, digest) is None:
                client.put_manifest(repo, digest, data, media_type)
                stats.count(sent=len(data))
                added = True
        digest, media_type, data = p.top
        lacking = held(repo, digest) is None
        if lacking and not p.artifact.tag:
            client.put_manifest(repo, digest, data, media_type)
            stats.count(sent=len(data))
        return added or lacking, lacking

    manifests_added = run_parallel(push_manifests, plans, jobs)

    def publish(item: tuple[Plan, tuple[bool, bool]]) -> None:
        """A tag last, with its manifest: one request stores a lacking top manifest and moves the tag
        (its children and blobs are all there by now); a top manifest the registry lacked cannot be
        what the tag names: no need to ask."""
        p, (added, lacking) = item
        digest, media_type, data = p.top
        if p.artifact.tag and (lacking or held(p.artifact.repo, p.artifact.tag) != digest):
            client.put_manifest(p.artifact.repo, p.artifact.tag, data, media_type)
            stats.count(sent=len(data) if lacking else 0)
            added = True
        if added:
            stats.count(added=p.artifact.kind)
        else:
            stats.count(unchanged=p.artifact.kind)

    run_parallel(publish, list(zip(plans, manifests_added, strict=True)), jobs)
    # 3. the quarantine lets go of what it held (the blobs stay, linked by their repositories)
    release_quarantine(client, done.quarantine, done.quarantined, jobs)
    return stats


def release_quarantine(client: RegistryClient, quarantine: str, digests: list[str], jobs: int) -> None:
    """The quarantine lets go of its links (the blobs stay where a repository links them; others
    are left for the registry's garbage collector)."""
    run_parallel(lambda digest: client.unlink_blob(quarantine, digest), digests, jobs)
