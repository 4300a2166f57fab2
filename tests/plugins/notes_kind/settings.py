"""The notes kind's section of site.yaml: notes anyone on the site's network may read without an
account (the day's message on a store's screen), made by `site init --public-note NAME`:

    notes:
      public: [motd]
      contentType: text/markdown   # what the notes are served as (default text/plain)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from bundler.errors import UsageError
from bundler.jsontypes import Doc
from bundler.kinds.base import Settings, option_values
from bundler.site.config import SiteConfig
from bundler.site.sections import listed
from notes_kind import KEY, NAME_RE

CONTENT_TYPE = re.compile(r"^[a-z]+/[a-z0-9.+-]+$")


@dataclass(frozen=True)
class NoteSettings:
    public: tuple[str, ...] = ()  # note names served without the site's accounts
    content_type: str = "text/plain"  # the Content-Type the notes are served with


def _names(values: Sequence[object], where: str) -> tuple[str, ...]:
    names = tuple(str(v) for v in values)
    if bad := [n for n in names if not NAME_RE.match(n)]:
        raise ValueError(f"{where}: {bad[0]!r} is not a note name (lowercase letters, digits, -)")
    return names


class NoteSiteSettings(Settings[NoteSettings]):
    def parse(self, section: Mapping[str, object], directory: Path) -> NoteSettings:
        if unknown := set(section) - {"public", "contentType"}:
            raise ValueError(f"unknown keys in notes: {', '.join(sorted(unknown))}")
        content_type = str(section.get("contentType", "text/plain"))
        if not CONTENT_TYPE.match(content_type):
            raise ValueError(f"notes.contentType: {content_type!r} is not a media type (such as text/markdown)")
        return NoteSettings(_names(listed(section, "public", "notes"), "notes.public"), content_type)

    def dump(self, value: NoteSettings) -> Doc | None:
        doc: Doc = {**({"public": list(value.public)} if value.public else {}),
               **({"contentType": value.content_type} if value.content_type != "text/plain" else {})}
        return doc or None

    def create(self, options: Mapping[str, object]) -> tuple[NoteSettings, dict[str, bytes]]:
        try:
            return NoteSettings(_names(option_values(options, "public_notes"), "--public-note")), {}
        except ValueError as exc:
            raise UsageError(str(exc)) from None


def note_settings(site: SiteConfig) -> NoteSettings:
    return cast(NoteSettings, site.section(KEY))
