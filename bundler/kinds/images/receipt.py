"""Images in a site's receipt: what the site's image policy judged of the releases it runs (per image:
the rule, the key or keyless identity that signed it, the trusted root's version, the attestations
that held), as the import recorded it (stage.py). Signed with the receipt: the site's verification
summary, which `fleet status` shows."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, ClassVar

from bundler.jsontypes import Doc, Out
from bundler.kinds.base import Receipt
from bundler.kinds.images.stage import verdicts_file

if TYPE_CHECKING:
    from bundler.site.config import SiteConfig
    from bundler.site.state import SiteState


class ImageReceipt(Receipt):
    titles: ClassVar[dict[str, str]] = {"image_verdicts": "What the image policy judged of the releases run"}

    def receipt(self, site: SiteConfig, state: SiteState) -> Doc:
        judged: list[Out] = []
        for release in state.running():
            try:
                doc = json.loads(verdicts_file(site, release.content_digest or "sha256:").read_text())
            except (OSError, ValueError):
                continue  # imported before the site had an image policy (or before verdicts were kept)
            judged += [{"release": f"{release.name} {release.version}", **verdict}
                       for verdict in doc.get("verdicts", []) if isinstance(verdict, dict)]
        return {"image_verdicts": judged} if judged else {}
