"""The registered content kinds. A new kind is one package under bundler/kinds/ and one line here;
the pipeline (profiles, bundle.json, build, verify, import, inspect, diff, receipts) iterates over
KINDS and names none of them. The order is the order of reports and of an import's stages."""

from __future__ import annotations

from bundler.bundle.kinds import register
from bundler.kinds import artifacts, charts, images, repos, updates
from bundler.kinds.base import ContentKind

KINDS: tuple[ContentKind, ...] = (
    images.KIND,
    charts.KIND,
    repos.KIND,
    updates.KIND,
    artifacts.KIND,
)
register(KINDS)  # the format reads bundle.json's entries through them


def collection_order() -> list[ContentKind]:
    """A kind that asks another for items (charts: the images they declare) collects first."""
    return sorted(KINDS, key=lambda kind: kind.collect_order)
