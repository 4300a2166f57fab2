"""What the format reads of charts: name, version and manifest digest are the release; each chart's
manifest is an OCI top the verifier checks."""

from __future__ import annotations

from collections.abc import Sequence

from bundler.jsontypes import Out
from bundler.kinds.base import Format
from bundler.kinds.charts.entry import ChartEntry
from bundler.oci.layout import OciTop


class ChartFormat(Format[ChartEntry]):
    def content(self, entries: Sequence[ChartEntry]) -> Sequence[Out]:
        return sorted([c.name, c.version, c.digest] for c in entries)

    def oci_tops(self, entries: Sequence[ChartEntry]) -> list[OciTop]:
        return [OciTop(f"chart {c.name} {c.version}", c.digest, c.media_type, f"charts/{c.name}:{c.version}")
                for c in entries]
