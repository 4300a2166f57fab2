"""The notes a site holds, in its receipt and on its status page."""

from __future__ import annotations

from typing import ClassVar

from bundler.jsontypes import Doc
from bundler.kinds.base import Receipt
from bundler.site.config import SiteConfig
from bundler.site.state import SiteState
from notes_kind import Store


class NoteReceipt(Receipt):
    titles: ClassVar[dict[str, str]] = {"notes": "Notes held"}

    def receipt(self, site: SiteConfig, state: SiteState) -> Doc:
        return {"notes": [{"name": name, **held} for name, held in sorted(Store(site).index().items())]}
