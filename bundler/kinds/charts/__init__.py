"""Helm charts: `spec.charts`, stored in the bundle's OCI layout as `helm push` stores them, pushed
to the site registry under `<chart prefix>/<name>:<version>`, with a Flux HelmRepository naming them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from packageurl import PackageURL

from bundler.bundle.sbom import SbomItem
from bundler.kinds.base import Artifact, CollectContext, ContentKind, Part, changes
from bundler.kinds.charts.entry import ChartEntry
from bundler.kinds.charts.site import write_helm_repository
from bundler.oci.layout import OciTop
from bundler.units import printable as p

if TYPE_CHECKING:
    from bundler.bundle.manifest import BundleManifest
    from bundler.kinds.charts.spec import ChartSpec
    from bundler.profile import Checker
    from bundler.site.config import SiteConfig

IMAGES = "images"  # the kind a chart with `images: auto` asks to collect what it declares


class Charts(ContentKind["ChartSpec", ChartEntry]):
    key, title, noun, entry_type = "charts", "charts", "chart", ChartEntry
    example = """\
  charts:                                         # Helm charts, stored as `helm push` stores them
    - repo: http://127.0.0.1:8080                 # a classic chart repository (its index.yaml)
      name: hello
      version: "1.x"                              # exact, or a range: 1.x, ~1.2, ^1.2.0, >=1.0 <2.0
      images: auto                                # and the images the chart declares
    # - ref: oci://registry.example.com/charts/podinfo:6.5.0   # an OCI chart, copied as it is
"""
    in_v1 = True
    collect_order = -1  # before the images it declares

    def parse_spec(self, check: Checker, item: Any, line: int, where: str) -> ChartSpec | None:
        from bundler.kinds.charts.spec import parse_chart  # build-side: loaded when a profile is read

        return parse_chart(check, item, line, where)

    def content(self, entries: Sequence[ChartEntry]) -> list[Any]:
        return sorted([c.name, c.version, c.digest] for c in entries)

    def collect(self, context: CollectContext, specs: Sequence[ChartSpec]) -> Part:
        from bundler.kinds.charts.collect import collect_charts  # build-side: loaded when a build runs

        charts = collect_charts(specs, context.oci, context.client_for)
        context.requests.setdefault(IMAGES, []).extend(charts.images)
        context.notes += charts.notes
        return Part(tuple(charts.entries))

    def oci_tops(self, entries: Sequence[ChartEntry]) -> list[OciTop]:
        return [OciTop(f"chart {c.name} {c.version}", c.digest, c.media_type, f"charts/{c.name}:{c.version}")
                for c in entries]

    def site_artifacts(self, entries: Sequence[ChartEntry], site: SiteConfig) -> list[Artifact]:
        """Charts go where `helm install oci://<site>/<prefix>/<name> --version <version>` finds them."""
        return [Artifact(self.key, f"{c.name} {c.version}", c.digest, c.media_type,
                         site.repository(f"{site.chart_prefix}/{c.name}"),
                         c.version.replace("+", "_"))  # Helm's tag for a + in a version
                for c in entries]

    def published(self, site: SiteConfig, manifest: BundleManifest) -> None:
        if manifest.entries(self.key):
            write_helm_repository(site)

    def sbom(self, entries: Sequence[ChartEntry]) -> list[SbomItem]:
        return [SbomItem(c.name, c.version, "application", PackageURL(
                         "generic", name=c.name, version=c.version,
                         qualifiers={"download_url": c.source} if c.source else None), c.digest[7:], None,
                         (("bundler:kind", "chart"), ("bundler:tgz-sha256", c.tgz_digest))) for c in entries]

    def inspect_rows(self, entries: Sequence[ChartEntry]) -> list[dict[str, Any]]:
        return [{"name": c.name, "version": c.version, "source": c.source, "digest": c.digest,
                 "tgz_digest": c.tgz_digest, "images": list(c.images)} for c in entries]

    def inspect_lines(self, rows: list[dict[str, Any]]) -> list[str]:
        out = [f"charts ({len(rows)}):"] if rows else []
        for chart in rows:
            out.append(f"  {p(chart['name'])} {p(chart['version'])}  from {p(chart['source'])}")
            out.append(f"    {p(chart['digest'])}")
            if chart["images"]:
                out.append(f"    images: {', '.join(p(i) for i in chart['images'])}")
        return out

    def diff(self, old: Sequence[ChartEntry], new: Sequence[ChartEntry]) -> dict[str, Any]:
        return changes({c.name: c.version for c in old}, {c.name: c.version for c in new})


KIND = Charts()
