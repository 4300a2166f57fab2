"""Helm charts: `spec.charts`, stored in the bundle's OCI layout as `helm push` stores them, pushed
to the site registry under `<chart prefix>/<name>:<version>`, with a Flux HelmRepository naming them.
Roles: build.py (profile items, collection), format.py, publish.py (the site registry, Flux), report.py."""

from __future__ import annotations

from bundler.kinds.base import Kind, role_modules
from bundler.kinds.charts.entry import ChartEntry

KIND = Kind("charts", "charts", "chart", ChartEntry, in_v1=True, roles=role_modules(
    __name__, build="ChartBuild", format="ChartFormat", publish="ChartPublish", report="ChartReport"))
