"""A new site: the place (site/config.py) and what each registered content kind keeps there."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bundler.kinds import KINDS
from bundler.site.config import SiteConfig, init_site


def create_site(directory: Path, registry_url: str | None, trust_keys: Sequence[Path], threshold: int,
                **options: Any) -> SiteConfig:
    """`init_site` with every kind's own part (the update cache and its signing key, say)."""
    return init_site(directory, registry_url, trust_keys, threshold, prepare=[kind.init_site for kind in KINDS],
                     **options)
