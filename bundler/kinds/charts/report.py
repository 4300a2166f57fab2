"""Charts in the SBOM, `inspect` and `diff`."""

from __future__ import annotations

from collections.abc import Sequence

from packageurl import PackageURL

from bundler.bundle.sbom import SbomItem
from bundler.jsontypes import Doc
from bundler.kinds.base import Changes, Report, changes
from bundler.kinds.charts.entry import ChartEntry
from bundler.units import printable as p


class ChartReport(Report[ChartEntry]):
    def sbom(self, entries: Sequence[ChartEntry]) -> list[SbomItem]:
        return [SbomItem(c.name, c.version, "application", PackageURL(
                         "generic", name=c.name, version=c.version,
                         qualifiers={"download_url": c.source} if c.source else None), c.digest[7:], None,
                         (("bundler:kind", "chart"), ("bundler:tgz-sha256", c.tgz_digest))) for c in entries]

    def inspect_rows(self, entries: Sequence[ChartEntry]) -> list[Doc]:
        return [{"name": c.name, "version": c.version, "source": c.source, "digest": c.digest,
                 "tgz_digest": c.tgz_digest, "images": list(c.images)} for c in entries]

    def lines(self, entries: Sequence[ChartEntry]) -> list[str]:
        out = [f"charts ({len(entries)}):"] if entries else []
        for chart in entries:
            out.append(f"  {p(chart.name)} {p(chart.version)}  from {p(chart.source)}")
            out.append(f"    {p(chart.digest)}")
            if chart.images:
                out.append(f"    images: {', '.join(p(i) for i in chart.images)}")
        return out

    def diff(self, old: Sequence[ChartEntry], new: Sequence[ChartEntry]) -> Changes:
        return changes(self.kind.noun, {c.name: c.version for c in old}, {c.name: c.version for c in new})
