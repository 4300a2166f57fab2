"""Charts in a profile (`spec.charts`) and their collection: a chart with `images: auto` asks the
images kind to collect the images it declares, so charts collect first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bundler.kinds.base import Build, CollectContext, Part
from bundler.kinds.charts.collect import collect_charts
from bundler.kinds.charts.spec import ChartSpec, parse_chart

if TYPE_CHECKING:
    from bundler.profile import Checker

IMAGES = "images"  # the kind a chart with `images: auto` asks to collect what it declares


class ChartBuild(Build[ChartSpec]):
    example = """\
  charts:                                         # Helm charts, stored as `helm push` stores them
    - repo: http://127.0.0.1:8080                 # a classic chart repository (its index.yaml)
      name: hello
      version: "1.x"                              # exact, or a range: 1.x, ~1.2, ^1.2.0, >=1.0 <2.0
      images: auto                                # and the images the chart declares
    # - ref: oci://registry.example.com/charts/podinfo:6.5.0   # an OCI chart, copied as it is
"""
    collect_order = -1  # before the images it declares

    def parse_spec(self, check: Checker, item: object, line: int, where: str) -> ChartSpec | None:
        return parse_chart(check, item, line, where)

    def collect(self, context: CollectContext, specs: Sequence[ChartSpec]) -> Part:
        charts = collect_charts(specs, context.oci, context.client_for)
        context.requests.setdefault(IMAGES, []).extend(charts.images)
        context.notes += charts.notes
        return Part(tuple(charts.entries))
