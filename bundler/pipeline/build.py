"""`bundler build`: profile in, one bundle file out.

Order: resolve (manifests only) -> lay out the whole tar -> fetch every blob in parallel straight
to its place in the file -> rename into place. Nothing is written twice and nothing partial stays.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests
from cryptography.hazmat.primitives.asymmetric import ec

from bundler import names, signing
from bundler.bundle import layout
from bundler.bundle.kinds import Entry
from bundler.bundle.manifest import BundleManifest, FileEntry, manifest_digest, signatures_json
from bundler.bundle.parent import Parent, read_parent
from bundler.bundle.parts import INDEX_SUFFIX, Split
from bundler.bundle.sbom import make_sbom
from bundler.bundle.verify import oci_tops as manifest_oci_tops
from bundler.bundle.writer import BundleFile, TarLayout
from bundler.errors import UsageError
from bundler.keyfiles import load_signing_key
from bundler.kinds import KINDS, collection_order
from bundler.kinds.base import CollectContext, Part
from bundler.oci import layout as oci_layout
from bundler.oci import media
from bundler.oci.content import BlobSource, OciContent, registry_clients
from bundler.oci.layout import OciTop
from bundler.parallel import run_parallel
from bundler.profile import Profile, load_profile
from bundler.progress import byte_progress


@dataclass(frozen=True)
class BuildOptions:
    """What `bundler build` was asked: the profile, where to write, parallel jobs, signing keys, a
    delta's base, how to split it."""
    profile: Path
    output: Path | None = None
    jobs: int = 8
    keys: tuple[Path, ...] = ()  # private keys that sign bundle.json
    since: Path | None = None  # a previous bundle, its manifest, or a site receipt: carry only what it lacks
    split: Split | None = None  # write parts of at most its size (and its parity parts), and an index


@dataclass(frozen=True)
class BuildResult:
    """A bundle built: where, which release, its bundle.json digest, size and counts, and who signed it."""
    path: Path
    name: str
    version: str
    manifest_digest: str
    size: int
    counts: dict[str, int]  # kind key -> entries
    blobs: int
    payload_bytes: int
    signers: list[str]
    parts: int = 1  # files written: the bundle, or its parts (then `path` is their index)
    notes: list[str] = field(default_factory=list)
    left_to_parent: tuple[int, int] | None = None  # a delta: the files it leaves to its parent, and their bytes


def _sha256(data: bytes) -> FileEntry:
    return FileEntry(hashlib.sha256(data).hexdigest(), len(data))


@dataclass
class Contents:
    """What goes into one bundle: the OCI layout's content, and each kind's part (by kind key)."""
    oci: OciContent
    parts: dict[str, Part]

    def entries(self, kind: str) -> tuple[Entry, ...]:
        part = self.parts.get(kind)
        return part.entries if part else ()


@dataclass
class Collected:
    """What a profile names, collected once (what depends on a delta's base, per base: Part.for_base)."""
    profile: Profile
    contents: Contents
    notes: list[str]
    jobs: int

    def for_base(self, parent: Parent | None) -> Contents:
        return Contents(self.contents.oci, {key: part.for_base(parent) for key, part in self.contents.parts.items()})

    def size(self, parent: Parent | None) -> int:
        """The bytes of the files the bundle for this base would carry (what `fleet plan` reports)."""
        _, _, files, _ = bundle_files(self.for_base(parent), parent)
        return sum(entry.size for entry in files.values())

    def write(self, output: Path, keys: Sequence[ec.EllipticCurvePrivateKey], parent: Parent | None,
              split: Split | None = None) -> BuildResult:
        info = BundleInfo(self.profile.name, self.profile.version, self.profile.digest, self.profile.expires, parent)
        result = write_bundle(info, self.for_base(parent), output, self.jobs, keys, split)
        result.notes.extend(self.notes)
        return result


def collect(options: BuildOptions, staging: Path) -> Collected:
    profile = load_profile(options.profile, kinds=KINDS)
    session = requests.Session()
    session.headers["User-Agent"] = "bundler"
    context = CollectContext(profile, OciContent(), registry_clients(profile.registries, options.jobs), session,
                             staging, options.profile.resolve().parent, options.jobs)
    parts = {kind.key: kind.build.collect(context, profile.items(kind.key)) for kind in collection_order()}
    return Collected(profile, Contents(context.oci, parts), context.notes, options.jobs)


@contextmanager
def collecting(options: BuildOptions, directory: Path) -> Iterator[Collected]:
    """What the profile names, collected into a scratch directory under `directory` (next to the
    output: payloads are copied, not moved across disks), removed afterwards."""
    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".bundler-staging-", dir=directory)).resolve()
    try:
        yield collect(options, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def build_bundle(options: BuildOptions) -> BuildResult:
    profile = load_profile(options.profile, kinds=KINDS)
    keys = [load_signing_key(path) for path in options.keys]  # a wrong password fails before any transfer
    output = options.output or Path.cwd() / layout.bundle_filename(profile.name, profile.version)
    if output.is_dir():
        raise UsageError(f"output {output} is a directory", hint="give a file name with -o")
    parent = read_parent(options.since) if options.since else None
    with collecting(options, output.parent) as collected:
        result = collected.write(output, keys, parent, options.split)
    if result.path.name.endswith(INDEX_SUFFIX):
        parity = f" and {options.split.parity} parity parts" if options.split and options.split.parity else ""
        result.notes.append(f"split into {result.parts} parts{parity}; the index is {result.path.name}")
    return result


@dataclass(frozen=True)
class DryRun:
    """What `build --dry-run` found: every source resolved, the bundle laid out, nothing written."""
    name: str
    version: str
    output: Path
    size: int  # the bundle's bytes (as the build writes them: the tar's exact layout)
    files: int
    lines: list[str]  # what it carries, as `inspect` says it
    notes: list[str]


def dry_run(options: BuildOptions) -> DryRun:
    """Resolve every source (tags to digests, chart ranges, Git refs, update files) and lay the bundle
    out, in a scratch directory of the system's that goes afterwards: no bundle, nothing beside it."""
    profile = load_profile(options.profile, kinds=KINDS)
    keys = [load_signing_key(path) for path in options.keys]  # signatures.json is sized as the build's
    output = options.output or Path.cwd() / layout.bundle_filename(profile.name, profile.version)
    parent = read_parent(options.since) if options.since else None
    with collecting(options, Path(tempfile.gettempdir())) as collected:
        contents = collected.for_base(parent)
        laid = lay_out(BundleInfo(profile.name, profile.version, profile.digest, profile.expires, parent),
                       contents, keys)
        lines = [line for kind in KINDS for line in kind.report.lines(contents.entries(kind.key))]
        return DryRun(profile.name, profile.version, output, laid.tar.total_size, len(laid.tar.members), lines,
                      list(collected.notes))


@dataclass(frozen=True)
class BundleInfo:
    """The release a build writes into bundle.json: name, version, profile digest, expiry, a delta's
    parent."""
    name: str
    version: str
    profile_digest: str
    expires_after: dt.timedelta | None = None
    parent: Parent | None = None  # what this delta builds on


def oci_tops(contents: Contents) -> list[OciTop]:
    return [top for kind in KINDS for top in kind.format.oci_tops(contents.entries(kind.key))]


def manifest_paths(contents: Contents) -> set[str]:
    """Every manifest and index of the OCI layout (what import reads to find its way)."""
    read = contents.oci.small_blobs.__getitem__
    paths = set()
    for top in oci_tops(contents):
        paths |= {layout.blob_path(d) for d, _, _ in media.walk_image(read, top.digest, top.media_type).manifests}
    return paths


def bundle_files(contents: Contents, parent: Parent | None) -> tuple[dict[str, bytes], dict[str, BlobSource],
                                                                   dict[str, FileEntry], dict[str, FileEntry]]:
    """What a bundle holds: small files (made here), payloads (from where they were collected), every
    file's entry, and for a delta what it leaves to its parent (`requires`: blobs and deferrable
    payloads the parent holds identically; manifests always stay: they are the map)."""
    oci = contents.oci
    index, views = oci_layout.index_json(oci_tops(contents), oci.small_blobs)
    small: dict[str, bytes] = {layout.OCI_LAYOUT: layout.OCI_LAYOUT_CONTENT, layout.OCI_INDEX: index}
    for digest, data in {**oci.small_blobs, **views}.items():
        small[layout.blob_path(digest)] = data
    files = {path: _sha256(data) for path, data in small.items()}
    blobs = {layout.blob_path(d): b for d, b in oci.blobs.items() if layout.blob_path(d) not in small}
    deferring = {kind.key for kind in KINDS if kind.payloads_defer}
    payloads = set()
    for key, part in contents.parts.items():
        for path, blob in part.payloads.items():
            blobs.setdefault(path, blob)
            if key in deferring:
                payloads.add(path)
    files.update({path: FileEntry(b.digest.split(":")[1], b.size) for path, b in blobs.items()})
    requires: dict[str, FileEntry] = {}
    if parent is not None:
        requires = left_to_parent(files, manifest_paths(contents), payloads, parent)
        for path in requires:
            del files[path]
            small.pop(path, None)
            blobs.pop(path, None)
    return small, blobs, files, requires


def left_to_parent(files: dict[str, FileEntry], manifests: set[str], payloads: set[str],
                   parent: Parent) -> dict[str, FileEntry]:
    """The delta rule (one owner: a build and `fleet plan` both ask it): of a release's `files`, what a
    delta on `parent` leaves to it: OCI blobs, and the `payloads` whose kind defers them, that the
    parent holds identically; never a manifest (`manifests`: they are the map import reads)."""
    return {path: entry for path, entry in files.items()
            if ((path.startswith(layout.OCI_BLOBS) and path not in manifests) or path in payloads)
            and parent.files.get(path) == entry}


def delta_bytes(manifest: BundleManifest, parent: Parent) -> int:
    """The bytes of the files a delta of this full release on `parent` carries, by the delta rule, as
    far as bundle.json tells (as `Collected.size` counts: not the SBOM, made with the bundle): its top
    manifests stay (the manifests under an index are counted as blobs,
    a few KB), and a Git repository counts its whole git bundle (a delta carries one made against the
    base's tips: smaller)."""
    tops = {layout.blob_path(top.digest) for top in manifest_oci_tops(manifest)}
    payloads = {path for kind in KINDS if kind.payloads_defer and kind.payload_pattern for path in manifest.files
                if re.fullmatch(kind.payload_pattern, path)}
    left = left_to_parent(manifest.files, tops, payloads, parent)
    return sum(entry.size for path, entry in manifest.files.items() if path not in left and path != layout.SBOM)



@dataclass
class LaidOut:
    """A bundle before a byte of it is written: bundle.json, signatures.json, the small files, the
    payloads (biggest first) and the tar's layout (its exact size)."""
    manifest_bytes: bytes
    signatures: bytes
    small: dict[str, bytes]
    ordered: list[tuple[str, BlobSource]]
    tar: TarLayout
    requires: dict[str, FileEntry]  # a delta: the files it leaves to its parent


def lay_out(info: BundleInfo, contents: Contents, keys: Sequence[ec.EllipticCurvePrivateKey] = ()) -> LaidOut:
    """bundle.json (with the SBOM), its signatures, and where every member goes."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    small, blobs, files, requires = bundle_files(contents, info.parent)

    items = [item for kind in KINDS for item in kind.report.sbom(contents.entries(kind.key))]
    sbom = make_sbom(info.name, info.version, now, items)
    small[layout.SBOM], files[layout.SBOM] = sbom, _sha256(sbom)
    manifest = BundleManifest(
        name=info.name, version=info.version, created=names.format_time(now), profile=info.profile_digest,
        contents={kind.key: contents.entries(kind.key) for kind in KINDS}, files=files,
        expires=names.format_time(now + info.expires_after) if info.expires_after else None,
        parent=info.parent.reference if info.parent else None, requires=requires,
    )
    manifest_bytes = manifest.to_bytes()
    signatures = signatures_json([signing.sign(key, manifest_bytes) for key in keys])

    tar = TarLayout(mtime=int(now.timestamp()))
    tar.add(layout.MANIFEST, len(manifest_bytes))
    for path, data in small.items():
        tar.add(path, len(data))
    ordered = sorted(blobs.items(), key=lambda item: -item[1].size)  # big first: workers finish evenly
    for path, blob in ordered:
        tar.add(path, blob.size)
    tar.add(layout.SIGNATURES, len(signatures))
    return LaidOut(manifest_bytes, signatures, small, ordered, tar, requires)


def write_bundle(info: BundleInfo, contents: Contents, output: Path, jobs: int,
                 keys: Sequence[ec.EllipticCurvePrivateKey] = (), split: Split | None = None) -> BuildResult:
    """Lay out and write the bundle file (or its parts, as `split` says, and their index):
    bundle.json first, payloads, signatures.json last."""
    laid = lay_out(info, contents, keys)
    manifest_bytes, signatures, small, ordered, tar = (laid.manifest_bytes, laid.signatures, laid.small, laid.ordered,
                                                       laid.tar)
    out = BundleFile(output, tar, split)
    try:
        out.write_member(layout.MANIFEST, manifest_bytes)
        for path, data in small.items():
            out.write_member(path, data)
        out.write_member(layout.SIGNATURES, signatures)
        with byte_progress("collecting", sum(b.size for _, b in ordered)) as progress:

            def transfer(item: tuple[str, BlobSource]) -> None:
                path, blob = item
                if blob.path is not None:
                    out.copy_file(path, blob.path)
                    progress.advance(blob.size)
                elif blob.pieces is not None:
                    out.write_pieces(path, blob.pieces(), progress.advance)
                elif blob.fetch is not None:
                    blob.fetch(lambda offset, data: out.write_at(path, offset, data), progress.advance)

            run_parallel(transfer, ordered, jobs)
        written = out.commit(manifest_digest(manifest_bytes))
    except BaseException:
        out.abort()
        raise
    return BuildResult(written, info.name, info.version, manifest_digest(manifest_bytes), tar.total_size,
                       {kind.key: len(contents.entries(kind.key)) for kind in KINDS}, len(contents.oci.blobs),
                       contents.oci.blob_bytes, [signing.key_id(key.public_key()) for key in keys], out.parts,
                       left_to_parent=(len(laid.requires), sum(e.size for e in laid.requires.values()))
                       if info.parent else None)
