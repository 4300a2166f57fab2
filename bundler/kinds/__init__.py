"""The registered content kinds. A new kind is one package and one registration line: a line in
BUILT_IN for a kind shipped here, or an entry point in the `bundler.kinds` group of the package that
carries it (`[project.entry-points."bundler.kinds"] notes = "notes_kind:KIND"`). The pipeline
(profiles, bundle.json, build, verify, import, inspect, diff, receipts, the site's services, status
and prune) iterates over KINDS and names none of them. The order is the order of reports and of an
import's stages: the built-in kinds, then installed ones by entry-point name.

A kind's package imports what the format, the verifier and the import need; its build side (the
profile items' parsing, collection: `spec`, `collect`) and its service (`server`, commands) are
imported inside the methods that use them, so an import or a verify does not load them (about a
fifth of the start-up of `bundler import`)."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from bundler.bundle.kinds import register
from bundler.kinds import artifacts, charts, images, repos, updates
from bundler.kinds.base import ContentKind

BUILT_IN: tuple[ContentKind[Any, Any], ...] = (
    images.KIND,
    charts.KIND,
    repos.KIND,
    updates.KIND,
    artifacts.KIND,
)
ENTRY_POINTS = "bundler.kinds"


def installed(built_in: tuple[ContentKind[Any, Any], ...] = BUILT_IN) -> tuple[ContentKind[Any, Any], ...]:
    """The kinds other installed packages register (entry points), checked: a kind, a key of its own."""
    keys = {kind.key for kind in built_in}
    found = []
    for point in sorted(entry_points(group=ENTRY_POINTS), key=lambda p: p.name):
        kind = point.load()
        if not isinstance(kind, ContentKind) or not getattr(kind, "key", ""):
            raise TypeError(f"entry point {point.name} = {point.value} ({ENTRY_POINTS}) is not a ContentKind")
        if kind.key in keys:
            raise TypeError(f"entry point {point.name} = {point.value} ({ENTRY_POINTS}) registers the kind "
                            f"{kind.key!r} a second time")
        keys.add(kind.key)
        found.append(kind)
    return tuple(found)


KINDS: tuple[ContentKind[Any, Any], ...] = BUILT_IN + installed()
register(KINDS)  # the format reads bundle.json's entries through them


def collection_order() -> list[ContentKind[Any, Any]]:
    """A kind that asks another for items (charts: the images they declare) collects first."""
    return sorted(KINDS, key=lambda kind: kind.collect_order)
