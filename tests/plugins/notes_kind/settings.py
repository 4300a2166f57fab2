"""The notes kind's section of site.yaml: notes anyone on the site's network may read without an
account (the day's message on a store's screen), made by `site init --public-note NAME`:

    notes:
      public: [motd]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from bundler.errors import UsageError
from bundler.kinds.base import Settings
from bundler.site.config import SiteConfig
from notes_kind import KEY, NAME_RE


@dataclass(frozen=True)
class NoteSettings:
    public: tuple[str, ...] = ()  # note names served without the site's accounts


def _names(values: Any, where: str) -> tuple[str, ...]:
    names = tuple(str(v) for v in values or ())
    if bad := [n for n in names if not NAME_RE.match(n)]:
        raise ValueError(f"{where}: {bad[0]!r} is not a note name (lowercase letters, digits, -)")
    return names


class NoteSiteSettings(Settings):
    def parse(self, section: Mapping[str, Any], directory: Path) -> NoteSettings:
        if unknown := set(section) - {"public"}:
            raise ValueError(f"unknown keys in notes: {', '.join(sorted(unknown))}")
        return NoteSettings(_names(section.get("public"), "notes.public"))

    def dump(self, value: NoteSettings) -> dict[str, Any] | None:
        return {"public": list(value.public)} if value.public else None

    def create(self, options: Mapping[str, Any]) -> tuple[NoteSettings, dict[str, bytes]]:
        try:
            return NoteSettings(_names(options.get("public_notes"), "--public-note")), {}
        except ValueError as exc:
            raise UsageError(str(exc)) from None


def note_settings(site: SiteConfig) -> NoteSettings:
    return cast(NoteSettings, site.section(KEY))
