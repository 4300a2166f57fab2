"""OCI artifacts: `spec.artifacts` (AI models, Flux artifacts, configuration, WASM modules: any file).
Copied from a registry unchanged, or packed from local files as `oras push` does, or packed as an
image (`as: image`: tar layers under a directory, for image volumes and KServe modelcars); pushed to
the site registry under the same naming rule as images (`<source host>/<path>`). A consumer fetches
an artifact with the distribution API or `oras pull` (a Flux OCIRepository each); a node's container
runtime pulls an image-packed one by its name, as any image."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from bundler import problems
from bundler.bundle import layout
from bundler.bundle.sbom import SbomItem
from bundler.errors import BundlerError
from bundler.kinds.artifacts.entry import ArtifactEntry
from bundler.kinds.artifacts.site import write_oci_repositories
from bundler.kinds.base import Artifact, CollectContext, ContentKind, Part, changes, oci_item
from bundler.oci import media
from bundler.oci.layout import OciTop
from bundler.oci.reference import ImageReference
from bundler.parallel import run_parallel
from bundler.problems import Problem
from bundler.units import human
from bundler.units import printable as p

if TYPE_CHECKING:
    from bundler.bundle.manifest import BundleManifest
    from bundler.bundle.reader import BundleReader
    from bundler.kinds.artifacts.spec import ArtifactSpec
    from bundler.profile import Checker
    from bundler.site.config import SiteConfig


class Artifacts(ContentKind["ArtifactSpec", ArtifactEntry]):
    key, title, noun, entry_type = "artifacts", "artifacts", "artifact", ArtifactEntry
    example = """\
  artifacts:                                      # OCI artifacts: models, configuration, any file
    - path: ./models/model.onnx                   # a file or a directory, packed as `oras push` packs it
      repository: models.example.com/store/model  # where it lives (on the site: under its host, as images)
      tag: "1.0"
      artifactType: application/vnd.example.model.v1
    # - ref: registry.example.com/models/order-accuracy:1.3   # copied unchanged
"""

    def parse_spec(self, check: Checker, item: Any, line: int, where: str) -> ArtifactSpec | None:
        from bundler.kinds.artifacts.spec import parse_artifact  # build-side: loaded when a profile is read

        return parse_artifact(check, item, line, where)

    def check_specs(self, check: Checker, specs: Sequence[tuple[Any, int]], line: int) -> None:
        from bundler.kinds.artifacts.spec import check_artifacts

        check_artifacts(check, list(specs))

    def content(self, entries: Sequence[ArtifactEntry]) -> list[Any]:
        return sorted([a.ref, a.digest] for a in entries)

    def collect(self, context: CollectContext, specs: Sequence[ArtifactSpec]) -> Part:
        from bundler.kinds.artifacts.collect import copy_artifact, pack_artifact  # build-side: loaded when a build runs

        def one(spec: ArtifactSpec) -> ArtifactEntry:
            if spec.path is not None:
                return pack_artifact(spec, context.base, context.oci)
            return copy_artifact(spec, context.client_for(spec.ref.host), context.oci)

        return Part(tuple(run_parallel(one, list(specs), context.jobs)))

    def oci_tops(self, entries: Sequence[ArtifactEntry]) -> list[OciTop]:
        return [OciTop(f"artifact {a.ref}", a.digest, a.media_type, a.ref) for a in entries]

    def graph_problems(self, reader: BundleReader, manifest: BundleManifest, read_packs: bool) -> list[Problem]:
        """The titles bundle.json lists are the artifact's own, and each stays inside the directory a
        client pulls into (`oras pull` writes each layer to its title); an image-packed one is an image
        of tar layers."""
        entries = cast("tuple[ArtifactEntry, ...]", manifest.entries(self.key))
        if not entries:
            return []
        from bundler.kinds.artifacts.collect import titled_files  # loaded when a bundle carries artifacts
        from bundler.kinds.artifacts.image import check_image

        found = []
        for entry in entries:
            label = f"artifact {entry.ref}"
            read = partial(_read_manifest, reader)
            try:
                if entry.form == "image":
                    check_image(read, entry.digest, entry.media_type, sum(f.size for f in entry.files), label)
                    continue
                files = titled_files(read, entry.digest, entry.media_type, label)
            except (ValueError, BundlerError) as exc:  # ManifestError is a ValueError
                found.append(Problem(problems.GRAPH_INVALID, label, str(exc)))
                continue
            if files != entry.files:
                found.append(Problem(problems.GRAPH_INVALID, label,
                                     f"{label}: its files differ from what {layout.MANIFEST} lists"))
        return found

    def sources(self, entries: Sequence[ArtifactEntry]) -> list[str]:
        return sorted({ImageReference.parse(e.ref).host for e in entries})

    def site_artifacts(self, entries: Sequence[ArtifactEntry], site: SiteConfig) -> list[Artifact]:
        out = []
        for entry in entries:
            ref = ImageReference.parse(entry.ref)
            out.append(Artifact(self.key, entry.ref, entry.digest, entry.media_type,
                                site.image_repository(ref.host, ref.repository), ref.tag))
        return out

    def published(self, site: SiteConfig, manifest: BundleManifest) -> None:
        write_oci_repositories(site, cast("tuple[ArtifactEntry, ...]", manifest.entries(self.key)))

    def sbom(self, entries: Sequence[ArtifactEntry]) -> list[SbomItem]:
        return [oci_item(a.ref, a.digest, "data", ("bundler:kind", "artifact"),
                         *((("bundler:artifact-type", a.artifact_type),) if a.artifact_type else ())) for a in entries]

    def inspect_rows(self, entries: Sequence[ArtifactEntry]) -> list[dict[str, Any]]:
        return [entry.to_dict() for entry in entries]

    def inspect_lines(self, rows: list[dict[str, Any]]) -> list[str]:
        out = [f"artifacts ({len(rows)}):"] if rows else []
        for a in rows:
            kind = f"  [{p(a['artifact_type'])}]" if a["artifact_type"] else ""
            how = ("packed from files" if a["source"] == "path" else "copied") if a["form"] != "image" \
                else f"packed as an image, files under {p(a['directory'])}"
            out.append(f"  {p(a['ref'])}{kind}  ({how})")
            out.append(f"    {p(a['digest'])}")
            out += [f"    {p(f['title'])}  {human(f['size'])}  {f['digest'][7:19]}" for f in a["files"]]
        return out

    def diff(self, old: Sequence[ArtifactEntry], new: Sequence[ArtifactEntry]) -> dict[str, Any]:
        return changes({a.ref: a.digest for a in old}, {a.ref: a.digest for a in new})


def _read_manifest(reader: BundleReader, digest: str) -> bytes:
    return reader.read_small(layout.blob_path(digest), media.MAX_MANIFEST_BYTES)


KIND = Artifacts()
