"""Updates in a site's receipt: what the cache holds, the approvals per group, and each client's state."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from bundler.jsontypes import Doc
from bundler.kinds.base import Receipt
from bundler.kinds.updates.cache import UpdateCache

if TYPE_CHECKING:
    from bundler.site.config import SiteConfig
    from bundler.site.state import SiteState


class UpdateReceipt(Receipt):
    titles: ClassVar[dict[str, str]] = {"updates": "Updates held", "approvals": "Update approvals per group",
              "clients": "Update clients, and the approved updates each lacks"}

    def receipt(self, site: SiteConfig, state: SiteState) -> Doc:
        cache = UpdateCache(site)
        catalog = {e.sha256: e for e in cache.catalog.entries}
        return {"updates": [e.brief() for e in catalog.values() if cache.blob(e.sha256).exists()],
                "approvals": [{"group": group, "update": f"{catalog[sha].name} {catalog[sha].version}".strip(),
                               "decision": decision}
                              for group, decisions in sorted(cache.catalog.approvals.items())
                              for sha, decision in decisions.items() if sha in catalog],
                "clients": [c.to_dict() for c in cache.clients.status(cache.catalog)]}
