"""Artifacts in the SBOM, `inspect` and `diff`."""

from __future__ import annotations

from collections.abc import Sequence

from bundler.bundle.sbom import SbomItem
from bundler.kinds.artifacts.entry import ArtifactEntry
from bundler.kinds.base import Changes, Report, changes, oci_item
from bundler.units import human
from bundler.units import printable as p


class ArtifactReport(Report[ArtifactEntry]):
    def sbom(self, entries: Sequence[ArtifactEntry]) -> list[SbomItem]:
        return [oci_item(a.ref, a.digest, "data", ("bundler:kind", "artifact"),
                         *((("bundler:artifact-type", a.artifact_type),) if a.artifact_type else ())) for a in entries]

    def lines(self, entries: Sequence[ArtifactEntry]) -> list[str]:
        out = [f"artifacts ({len(entries)}):"] if entries else []
        for a in entries:
            kind = f"  [{p(a.artifact_type)}]" if a.artifact_type else ""
            how = ("packed from files" if a.source == "path" else "copied") if a.form != "image" \
                else f"packed as an image, files under {p(a.directory)}"
            out.append(f"  {p(a.ref)}{kind}  ({how})")
            out.append(f"    {p(a.digest)}")
            out += [f"    {p(f.title)}  {human(f.size)}  {f.digest[7:19]}" for f in a.files]
        return out

    def diff(self, old: Sequence[ArtifactEntry], new: Sequence[ArtifactEntry]) -> Changes:
        return changes(self.kind.noun, {a.ref: a.digest for a in old}, {a.ref: a.digest for a in new})
