"""Seed the site registry with the images of a verified bundle.

Order: every blob (HEAD first; mount from a repository that has it; else upload, streamed from the
bundle file), then every manifest by digest (children before their index), and only then the tags.
A tag never points at something incomplete, and what the registry already has is not sent again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from bundler.bundle import layout
from bundler.bundle.manifest import BundleManifest, ImageEntry
from bundler.bundle.reader import BundleReader
from bundler.bundle.verify import image_graph
from bundler.oci.client import RegistryClient
from bundler.oci.reference import ImageReference
from bundler.parallel import run_parallel


@dataclass(frozen=True)
class ImagePlan:
    entry: ImageEntry
    repo: str  # site repository: <source host>/<path>
    tag: str | None
    manifests: tuple[tuple[str, str, bytes], ...]  # (digest, media type, bytes), children first
    blobs: tuple[tuple[str, int], ...]  # (digest, size)

    @property
    def top(self) -> tuple[str, str, bytes]:
        return self.manifests[-1]


@dataclass
class SeedStats:
    images_added: int = 0
    images_unchanged: int = 0
    blobs_added: int = 0
    blobs_unchanged: int = 0
    bytes_sent: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, **amounts: int) -> None:
        with self._lock:
            for key, value in amounts.items():
                setattr(self, key, getattr(self, key) + value)


def site_target(entry: ImageEntry) -> tuple[str, str | None]:
    """(site repository, tag) for an image: docker-daemon images keep their engine name."""
    ref = ImageReference.parse(entry.ref)
    return ref.site_repository, ref.tag


def plan_image(reader: BundleReader, entry: ImageEntry) -> ImagePlan:
    graph = image_graph(reader, entry)
    repo, tag = site_target(entry)
    return ImagePlan(entry, repo, tag, graph.manifests, tuple((b.digest, b.size) for b in graph.blobs))


def images_present(client: RegistryClient, images: tuple[ImageEntry, ...], jobs: int) -> bool:
    """True when every image is in the registry under its tag (or digest) with the bundle's digest."""

    def present(entry: ImageEntry) -> bool:
        repo, tag = site_target(entry)
        return client.head_manifest(repo, tag or entry.digest) == entry.digest

    return all(run_parallel(present, images, jobs))


def seed_images(reader: BundleReader, manifest: BundleManifest, client: RegistryClient, jobs: int,
                progress: Callable[[int], None]) -> SeedStats:
    plans = [plan_image(reader, entry) for entry in manifest.images]
    stats = SeedStats()

    repos_by_blob: dict[str, tuple[int, list[str]]] = {}
    for plan in plans:
        for digest, size in plan.blobs:
            _, repos = repos_by_blob.setdefault(digest, (size, []))
            if plan.repo not in repos:
                repos.append(plan.repo)

    def push_blob(item: tuple[str, tuple[int, list[str]]]) -> None:
        digest, (size, repos) = item
        path = layout.blob_path(digest)
        have: list[str] = []
        for repo in repos:
            if client.blob_exists(repo, digest):
                stats.count(blobs_unchanged=1)
            else:
                how = client.push_blob(repo, digest, size, lambda: reader.iter_member(path), mount_from=have[:1])
                stats.count(blobs_added=1, bytes_sent=size if how == "uploaded" else 0)
            have.append(repo)
        progress(size)

    ordered = sorted(repos_by_blob.items(), key=lambda item: -item[1][0])
    run_parallel(push_blob, ordered, jobs)

    def push_manifests(plan: ImagePlan) -> bool:
        added = False
        for digest, media_type, data in plan.manifests:
            if client.head_manifest(plan.repo, digest) is None:
                client.put_manifest(plan.repo, digest, data, media_type)
                stats.count(bytes_sent=len(data))
                added = True
        return added

    manifests_added = run_parallel(push_manifests, plans, jobs)

    def publish(item: tuple[ImagePlan, bool]) -> None:
        plan, added = item
        digest, media_type, data = plan.top
        if plan.tag and client.head_manifest(plan.repo, plan.tag) != digest:
            client.put_manifest(plan.repo, plan.tag, data, media_type)
            added = True
        stats.count(**({"images_added": 1} if added else {"images_unchanged": 1}))

    run_parallel(publish, list(zip(plans, manifests_added, strict=True)), jobs)
    return stats
