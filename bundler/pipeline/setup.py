"""A site's life: a new site (the place, site/config.py, and what each registered content kind
keeps there), and its services started with what each kind's service asks of the front."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bundler.kinds import KINDS
from bundler.site.config import SiteConfig, init_site, load_site
from bundler.site.service import site_up


def create_site(directory: Path, registry_url: str | None, trust_keys: Sequence[Path], threshold: int,
                **options: Any) -> SiteConfig:
    """`init_site` with every kind's own part (the update cache and its signing key, say)."""
    return init_site(directory, registry_url, trust_keys, threshold, prepare=[kind.init_site for kind in KINDS],
                     **options)


def start_site(directory: Path, wait: float = 30.0) -> SiteConfig:
    """`site_up` with each kind's front rules (its bodies, the files the front sends for it)."""
    site = load_site(directory)
    return site_up(directory, wait, [rule for kind in KINDS for rule in kind.front(site)])
