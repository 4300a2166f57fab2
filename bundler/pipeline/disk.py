"""What a prune would free, and the site's disk figures: the plan `site prune` carries out
(bundler/pipeline/prune.py), and the bytes each store holds, the disk's fullness and the retention
warning that `import`, `site status` and the status page show. Reads only: nothing here deletes.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial

from bundler import names
from bundler.errors import BundlerError
from bundler.fsutil import tree_bytes
from bundler.jsontypes import Doc
from bundler.kinds import KINDS
from bundler.kinds.base import Artifact, Pruning
from bundler.oci import media
from bundler.oci.client import RegistryClient
from bundler.parallel import run_parallel
from bundler.pipeline.registry import site_artifacts
from bundler.site import figures
from bundler.site.config import REGISTRY_STORAGE, SiteConfig
from bundler.site.registry_storage import RegistryStorage
from bundler.site.state import ImportedRelease, ReleaseStatus, SiteState, kept_manifest
from bundler.units import human
from bundler.untrusted import Malformed, Obj


@dataclass
class PrunePlan:
    """What a prune keeps and frees: releases, manifests, blob bytes, each kind's share, leftovers."""
    keep: int
    pruned: list[ImportedRelease] = field(default_factory=list)  # state.json entries that go
    manifests: list[tuple[str, str]] = field(default_factory=list)  # (repository, digest) to delete, tops first
    blob_bytes: int = 0  # bytes of blobs only the pruned manifests reference (what the collector frees)
    kinds: dict[str, Pruning] = field(default_factory=dict)  # each content kind's share, by its key
    leftovers: dict[str, list[str]] = field(default_factory=dict)  # what refused imports left
    leftover_bytes: int = 0  # of the registry's (quarantined blobs)

    @property
    def freed(self) -> dict[str, int]:
        return {"registry": self.blob_bytes, **{key: part.bytes for key, part in self.kinds.items()},
                "leftovers": self.leftover_bytes + sum(part.leftover_bytes for part in self.kinds.values())}

    def to_dict(self) -> Doc:
        return {"keep": self.keep, "releases": [f"{b.name} {b.version}" for b in self.pruned],
                "manifests": [f"{repo}@{digest}" for repo, digest in self.manifests],
                **{key: part.items for key, part in self.kinds.items()},
                "leftovers": self.leftovers, "bytes_freed": self.freed}


def _graph(client: RegistryClient, artifact: Artifact) -> tuple[list[str], dict[str, int]]:
    """(manifest digests, top first; blob digest -> size) of what the registry holds for an
    artifact; empty when it is gone (an earlier prune)."""
    def read(digest: str) -> bytes:
        return client.get_manifest(artifact.repo, digest)[0]

    try:
        graph = media.walk_image(read, artifact.digest, artifact.media_type)
    except (BundlerError, media.ManifestError):
        return [], {}
    return [d for d, _, _ in reversed(graph.manifests)], {b.digest: b.size for b in graph.blobs}


PARTIALS = "partial files"  # the leftovers' key for what killed imports were copying into the registry storage
DERIVED_TAG = re.compile(r"^sha256-([a-f0-9]{64})(?:\.(?:sig|att|sbom))?$")  # named after an image's digest


def _graph_of(client: RegistryClient, repo: str, digest: str) -> tuple[list[str], dict[str, int]]:
    """_graph of a manifest known by digest only (its media type asked of the registry)."""
    try:
        _, media_type, _ = client.get_manifest(repo, digest)
    except BundlerError:
        return [], {}
    return _graph(client, Artifact("extras", digest, digest, media_type, repo, None, release_tag=False))


def plan_prune(site: SiteConfig, state: SiteState, client: RegistryClient | None, keep: int,
               jobs: int = 8) -> PrunePlan:
    plan = PrunePlan(keep)
    live = state.live()
    kept: list[ImportedRelease] = []
    for name in dict.fromkeys(b.name for b in live):
        releases = [b for b in live if b.name == name]
        kept += releases[-keep:] + [b for b in releases[:-keep] if b.status == ReleaseStatus.PUBLISHING]
    plan.pruned = [b for b in live if b not in kept]
    kept_manifests = [m for b in kept if (m := kept_manifest(site, b.manifest_digest)) is not None]
    gone_manifests = [m for b in plan.pruned if (m := kept_manifest(site, b.manifest_digest)) is not None]

    if client is not None and plan.pruned:  # the kept releases' graphs say what a pruned one shares
        kept_artifacts = [a for m in kept_manifests for a in site_artifacts(m, site)]
        gone_artifacts = [a for m in gone_manifests for a in site_artifacts(m, site)]
        graphs = run_parallel(lambda a: _graph(client, a), kept_artifacts + gone_artifacts, jobs)
        kept_graphs, gone_graphs = graphs[:len(kept_artifacts)], graphs[len(kept_artifacts):]
        needed = {(a.repo, d) for a, (ds, _) in zip(kept_artifacts, kept_graphs, strict=True) for d in ds}
        # what a kept image's derived tags (its signature, attestation, SBOM, referrers) point at now,
        # whichever release set them: kept, so the image keeps its signature
        derived = sorted({(repo, owner.digest) for key, owner in state.tags.items()
                          for repo, _, tag in [key.rpartition(":")]
                          if (match := DERIVED_TAG.match(tag)) and (repo, f"sha256:{match.group(1)}") in needed})
        derived_graphs = run_parallel(lambda target: _graph_of(client, *target), derived, jobs)
        kept_graphs += derived_graphs
        needed |= {(repo, d) for (repo, _), (ds, _) in zip(derived, derived_graphs, strict=True) for d in ds}
        kept_blobs = {d for _, blobs in kept_graphs for d in blobs}
        freed: dict[str, int] = {}
        for artifact, (digests, blobs) in zip(gone_artifacts, gone_graphs, strict=True):
            plan.manifests += [(artifact.repo, d) for d in digests
                               if (artifact.repo, d) not in needed and (artifact.repo, d) not in plan.manifests]
            freed.update({d: size for d, size in blobs.items() if d not in kept_blobs})
        plan.blob_bytes = sum(freed.values())

    left = state.unreferenced()
    plan.leftovers = {k: v for k, v in left.items() if v}
    plan.leftover_bytes = sum(map(partial(_stored_blob_size, site), left.get("blobs", [])))
    storage = RegistryStorage.of(site)
    if storage is not None and (partials := storage.partials()):  # what killed imports were copying
        plan.leftovers[PARTIALS] = sorted(path.name for path in partials)
        plan.leftover_bytes += sum(partials.values())
    plan.kinds = {kind.key: kind.prune.prune(site, kept_manifests, left.get(kind.key, [])) for kind in KINDS}
    return plan


def _stored_blob_size(site: SiteConfig, digest: str) -> int:
    """Bytes of a blob in the embedded registry's storage (Distribution's filesystem layout); 0 when
    not there, or not known (a registry that is not the site's own)."""
    if not site.embedded_registry or len(digest.removeprefix("sha256:")) != 64:
        return 0
    try:
        return RegistryStorage(site).data(digest).stat().st_size
    except OSError:
        return 0


def used_percent(site: SiteConfig, adding: int = 0) -> int:
    disk = shutil.disk_usage(site.directory)
    return round(100 * (disk.total - disk.free + adding) / disk.total) if disk.total else 0


def disk_warning(site: SiteConfig, adding: int = 0) -> str | None:
    """The technician's warning when the site's disk is (with `adding` more bytes: would be) fuller
    than retention.warnPercent."""
    percent = used_percent(site, adding)
    if percent <= site.retention.warn_percent:
        return None
    return (f"the site's disk {'would be' if adding else 'is'} {percent}% full (more than retention.warnPercent, "
            f"{site.retention.warn_percent}%): "
            f"free space with `bundler site prune {site.directory}` (`--dry-run` shows what goes)")


# what a disk report holds besides bytes per store
DISK_FIGURES = ("total", "free", "used_percent", "warn_percent", "warning", "prune", "measured_at")


@dataclass(frozen=True)
class DiskReport:
    """The site's disk: what each store under it holds (the registry's, None when it is not on this
    disk; each kind's), the disk's total, free and percent used, the warning, and what a prune with
    the site's retention would free. `measured_at`: when it was measured, when read back."""
    stores: Mapping[str, int | None]
    total: int
    free: int
    used_percent: int
    warn_percent: int
    warning: str | None
    prune_keep: int
    prune_releases: tuple[str, ...]
    prune_freed: Mapping[str, int]
    measured_at: str | None = None

    @property
    def stored(self) -> dict[str, int]:
        """What each store holds, those on this disk."""
        return {name: size for name, size in self.stores.items() if size is not None}

    def to_dict(self) -> Doc:
        return {**self.stores, "total": self.total, "free": self.free, "used_percent": self.used_percent,
                "warn_percent": self.warn_percent, "warning": self.warning,
                "prune": {"keep": self.prune_keep, "releases": self.prune_releases, "bytes_freed": self.prune_freed},
                **({"measured_at": self.measured_at} if self.measured_at is not None else {})}

    @classmethod
    def parse(cls, d: Obj, measured_at: str) -> DiskReport:
        """As the site's figures file keeps it (Malformed naming the field)."""
        prune = d.obj("prune")
        return cls({name: value.integer() if value.value is not None else None for name, value in d.entries()
                    if name not in DISK_FIGURES},
                   d.integer("total"), d.integer("free"), d.integer("used_percent"), d.integer("warn_percent"),
                   d.string("warning", default=None), prune.integer("keep"), prune.strings("releases"),
                   {name: value.integer() for name, value in prune.obj("bytes_freed").entries()}, measured_at)

    def lines(self, age: str | None) -> list[str]:
        """What `site status` says of it (`age`: how old the figures are; None: measured now)."""
        kinds = ", ".join(f"{name} {human(size)}" for name, size in self.stored.items())
        when = f"; measured {age}" if age is not None else ""
        out = [f"disk: {self.used_percent}% of {human(self.total)} used, {human(self.free)} free ({kinds}{when})"]
        if self.prune_releases:
            out.append(f"a prune (keeping {self.prune_keep}) would free {human(sum(self.prune_freed.values()))}: "
                       f"{', '.join(self.prune_releases)}")
        return out


def disk_report(site: SiteConfig, client: RegistryClient | None) -> DiskReport:
    """Bytes under the site directory: the embedded registry's storage, and what each content kind
    stores (Kind.stored: the update cache, the Git repositories); the disk's total, free and
    percent used, and what a prune with the site's retention would free (registry bytes only when
    `client` answers)."""
    disk = shutil.disk_usage(site.directory)
    plan = plan_prune(site, SiteState.load(site.directory), client, site.retention.keep)
    local = site.embedded_registry and not site.registry.storage  # on object storage: not this disk's
    return DiskReport({"registry": tree_bytes(site.directory / REGISTRY_STORAGE) if local else None,
                       **{name: tree_bytes(path) for kind in KINDS for name, path in kind.serve.stored(site).items()}},
                      disk.total, disk.free, used_percent(site), site.retention.warn_percent, disk_warning(site),
                      plan.keep, tuple(f"{b.name} {b.version}" for b in plan.pruned), plan.freed)


def kept_disk_report(site: SiteConfig) -> tuple[DiskReport, str] | None:
    """What the last import, prune or start measured (no walk), and how old it is; None when nothing
    did (or its file is unreadable)."""
    kept = figures.read(site, figures.DISK_FILE)
    if kept is None:
        return None
    try:
        return DiskReport.parse(Obj(kept.figures, "disk"), names.format_time(kept.measured_at)), kept.age
    except Malformed:
        return None

