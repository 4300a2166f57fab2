"""The registered content kinds. A new kind is one package and one registration line: a line in
BUILT_IN for a kind shipped here, or an entry point in the `bundler.kinds` group of the package that
carries it (`[project.entry-points."bundler.kinds"] notes = "notes_kind:KIND"`). The pipeline
(profiles, bundle.json, build, verify, import, inspect, diff, receipts, the site's services, status
and prune) iterates over KINDS and names none of them. The order is the order of reports and of an
import's stages: the built-in kinds, then installed ones by entry-point name.

A kind's package names its roles by module (bundler/kinds/base.py); each is imported the first time
it is asked for, so an import or a verify never loads a kind's build side, server or commands."""

from __future__ import annotations

from importlib.metadata import entry_points

from bundler.bundle.kinds import register
from bundler.kinds import artifacts, charts, images, repos, updates
from bundler.kinds.base import Kind
from bundler.site.config import register_sections

BUILT_IN: tuple[Kind, ...] = (
    images.KIND,
    charts.KIND,
    repos.KIND,
    updates.KIND,
    artifacts.KIND,
)
ENTRY_POINTS = "bundler.kinds"


def installed(built_in: tuple[Kind, ...] = BUILT_IN) -> tuple[Kind, ...]:
    """The kinds other installed packages register (entry points), checked: a kind, a key of its own."""
    keys = {kind.key for kind in built_in}
    found = []
    for point in sorted(entry_points(group=ENTRY_POINTS), key=lambda p: p.name):
        kind = point.load()
        if not isinstance(kind, Kind) or not kind.key:
            raise TypeError(f"entry point {point.name} = {point.value} ({ENTRY_POINTS}) is not a Kind")
        if kind.key in keys:
            raise TypeError(f"entry point {point.name} = {point.value} ({ENTRY_POINTS}) registers the kind "
                            f"{kind.key!r} a second time")
        keys.add(kind.key)
        found.append(kind)
    return tuple(found)


KINDS: tuple[Kind, ...] = BUILT_IN + installed()
register(KINDS)  # the format reads bundle.json's entries through them
register_sections([kind for kind in KINDS if "settings" in kind.roles])  # the site reads their sections


def collection_order() -> list[Kind]:
    """A kind that asks another for items (charts: the images they declare) collects first."""
    return sorted(KINDS, key=lambda kind: kind.build.collect_order)
