"""Exact verification: every listed file present with its size and digest, nothing else in the tar.

Signatures and the trust policy plug in here (next issue); the payload check is the part below.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from bundler.bundle import layout
from bundler.bundle.manifest import BundleManifest, ImageEntry
from bundler.bundle.reader import BundleReader
from bundler.errors import IntegrityError
from bundler.oci import media
from bundler.parallel import run_parallel
from bundler.progress import byte_progress


@dataclass
class VerifyReport:
    name: str = ""
    version: str = ""
    manifest_digest: str = ""
    problems: list[str] = field(default_factory=list)
    manifest: BundleManifest | None = None

    @property
    def verified(self) -> bool:
        return not self.problems

    def raise_if_failed(self, path: str) -> None:
        if self.problems:
            more = len(self.problems) - 5
            shown = "; ".join(self.problems[:5]) + (f"; and {more} more" if more > 0 else "")
            raise IntegrityError(f"bundle {path} failed verification: {shown}",
                                 hint="do not use this bundle; get a fresh copy from its source")


def structure_problems(reader: BundleReader, manifest: BundleManifest) -> list[str]:
    """Cheap checks (no payload read): missing, extra, wrongly sized members; dangling image digests."""
    problems = list(reader.problems)
    for path, entry in sorted(manifest.files.items()):
        member = reader.members.get(path)
        if member is None:
            problems.append(f"{path}: listed in {layout.MANIFEST} but missing from the bundle")
        elif member.size != entry.size:
            problems.append(f"{path}: {member.size} bytes, {layout.MANIFEST} says {entry.size}")
    for path in sorted(reader.members):
        if path not in manifest.files and path not in (layout.MANIFEST, layout.SIGNATURES):
            problems.append(f"{path}: in the bundle but not listed in {layout.MANIFEST}")
    for image in manifest.images:
        try:
            if layout.blob_path(image.digest) not in manifest.files:
                problems.append(f"image {image.ref}: its manifest {image.digest} is not in the bundle")
        except ValueError:
            problems.append(f"image {image.ref}: digest {image.digest!r} is not a sha256 digest")
    return problems


def hash_member(reader: BundleReader, name: str, progress: Callable[[int], None]) -> str:
    h = hashlib.sha256()
    for chunk in reader.iter_member(name):
        h.update(chunk)
        progress(len(chunk))
    return h.hexdigest()


def payload_problems(reader: BundleReader, manifest: BundleManifest, jobs: int,
                     progress: Callable[[int], None]) -> list[str]:
    """Hash every listed file that is present with the right size, in parallel; report mismatches."""
    names = [p for p, e in manifest.files.items() if p in reader.members and reader.members[p].size == e.size]
    names.sort(key=lambda p: -manifest.files[p].size)  # big first: the pool finishes evenly
    digests = dict(zip(names, run_parallel(lambda n: hash_member(reader, n, progress), names, jobs), strict=True))
    return [f"{p}: sha256 is {d}, {layout.MANIFEST} says {manifest.files[p].sha256}"
            for p, d in sorted(digests.items()) if d != manifest.files[p].sha256]


def image_graph(reader: BundleReader, image: ImageEntry) -> media.ImageGraph:
    """An image's manifests and blobs, read from the bundle; IntegrityError when it is malformed."""

    def read(digest: str) -> bytes:
        return reader.read_small(layout.blob_path(digest), media.MAX_MANIFEST_BYTES)

    try:
        return media.walk_image(read, image.digest, image.media_type)
    except (media.ManifestError, ValueError) as exc:
        raise IntegrityError(f"image {image.ref}: {exc}") from None


def graph_problems(reader: BundleReader, manifest: BundleManifest) -> list[str]:
    """Every manifest and blob an image needs is in the bundle (run after the payloads verified)."""
    problems = []
    for image in manifest.images:
        try:
            graph = image_graph(reader, image)
        except IntegrityError as exc:
            problems.append(exc.message)
            continue
        problems += [f"image {image.ref}: blob {blob.digest} is not in the bundle" for blob in graph.blobs
                     if layout.blob_path(blob.digest) not in manifest.files]
    return problems


def verify_bundle(reader: BundleReader, jobs: int = 4, progress: Callable[[int], None] = lambda n: None,
                  payloads: bool = True) -> VerifyReport:
    manifest, _, digest = reader.manifest()
    report = VerifyReport(manifest.name, manifest.version, digest, manifest=manifest)
    report.problems = structure_problems(reader, manifest)
    if payloads:
        report.problems += payload_problems(reader, manifest, jobs, progress)
    if not report.problems:
        report.problems += graph_problems(reader, manifest)
    return report


def verify_file(path: str, jobs: int = 4) -> VerifyReport:
    """Open and verify a bundle file completely, with a progress bar over the payload bytes."""
    with BundleReader(path) as reader:
        manifest, _, _ = reader.manifest()
        with byte_progress("verifying", sum(f.size for f in manifest.files.values())) as progress:
            return verify_bundle(reader, jobs, progress.advance)
