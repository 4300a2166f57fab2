"""`bundler import`: verify a bundle completely, then seed the site; a refused bundle changes nothing.

Fail-closed order: read bundle.json, check the tar's structure against it (names, sizes, no extra
or odd members), hash every payload, and only then send anything.

Re-importing a bundle the site already holds is a no-op that reads no payload: the site's state
names this exact bundle.json and the registry still answers every image with its digest, so nothing
would be sent whatever the payload bytes are (a 60 GB bundle on a USB stick is not re-read to learn
that). `bundler verify` checks a copy's bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bundler.bundle.reader import BundleReader
from bundler.bundle.verify import VerifyReport, graph_problems, payload_problems, structure_problems
from bundler.progress import byte_progress
from bundler.site.config import SiteState, load_site
from bundler.site.registry import images_present, seed_images


@dataclass(frozen=True)
class ImportOptions:
    bundle: Path
    site: Path
    jobs: int = 8


@dataclass
class ImportResult:
    name: str
    version: str
    manifest_digest: str
    already_imported: bool = False
    added: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    bytes_sent: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "manifest_digest": self.manifest_digest,
                "already_imported": self.already_imported, "added": self.added, "unchanged": self.unchanged,
                "bytes_sent": self.bytes_sent}


def import_bundle(options: ImportOptions) -> ImportResult:
    site = load_site(options.site)
    state = SiteState.load(site.directory)
    with BundleReader(options.bundle) as reader:
        manifest, _, digest = reader.manifest()
        report = VerifyReport(manifest.name, manifest.version, digest,
                              structure_problems(reader, manifest), manifest)
        report.raise_if_failed(str(options.bundle))
        client = site.registry_client(options.jobs)
        client.ping()  # an unreachable site fails before the long read
        result = ImportResult(manifest.name, manifest.version, digest)
        if state.imported(digest) and images_present(client, manifest.images, options.jobs):
            result.already_imported = True
            result.added, result.unchanged = {"images": 0, "blobs": 0}, {"images": len(manifest.images), "blobs": 0}
            return result
        total = sum(e.size for e in manifest.files.values())
        with byte_progress("verifying", total) as progress:
            report.problems += payload_problems(reader, manifest, options.jobs, progress.advance)
        report.raise_if_failed(str(options.bundle))
        report.problems += graph_problems(reader, manifest)
        report.raise_if_failed(str(options.bundle))
        with byte_progress("importing", total) as progress:
            stats = seed_images(reader, manifest, client, options.jobs, progress.advance)
    if not state.imported(digest):
        state.record(manifest.name, manifest.version, digest, signers=[])
    result.added = {"images": stats.images_added, "blobs": stats.blobs_added}
    result.unchanged = {"images": stats.images_unchanged, "blobs": stats.blobs_unchanged}
    result.bytes_sent = stats.bytes_sent
    return result
