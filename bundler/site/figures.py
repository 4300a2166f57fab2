"""Figures the status page and `site status` show, kept up to date by the work that changes them,
so a view costs no disk walk and no request to a service:

    DIR/run/health.json   each service's health, written by the HTTPS application's own periodic
                          check (every HEALTH_INTERVAL seconds)
    DIR/run/disk.json     disk use per kind and what a prune would free, written by import, prune
                          and the application at its start

Each carries the time it was measured; a view shows its age.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass

from bundler.fsutil import atomic_write, make_dirs
from bundler.jsontypes import JsonObject, Out
from bundler.site.config import RUN_DIR, SiteConfig
from bundler.units import age_text

HEALTH_FILE, DISK_FILE = "health.json", "disk.json"
HEALTH_INTERVAL = 10.0  # seconds between the application's health checks


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _write(site: SiteConfig, name: str, figures: Mapping[str, Out]) -> None:
    make_dirs(site.directory / RUN_DIR, 0o700)
    doc = {"measured_at": _now().isoformat().replace("+00:00", "Z"), "figures": figures}
    atomic_write(site.directory / RUN_DIR / name, json.dumps(doc, indent=1).encode())


def write_health(site: SiteConfig, services: dict[str, bool]) -> None:
    _write(site, HEALTH_FILE, services)


def write_disk(site: SiteConfig, report: Mapping[str, Out]) -> None:
    _write(site, DISK_FILE, report)


@dataclass(frozen=True)
class Measured:
    """Figures the site measured (disk use) and when."""
    figures: JsonObject
    measured_at: dt.datetime

    @property
    def age_seconds(self) -> int:
        return max(0, int((_now() - self.measured_at).total_seconds()))

    @property
    def age(self) -> str:
        return f"{age_text(dt.timedelta(seconds=self.age_seconds))} ago"


def read(site: SiteConfig, name: str) -> Measured | None:
    """The last figures written under `name`, or None (never measured, or unreadable)."""
    try:
        doc = json.loads((site.directory / RUN_DIR / name).read_text())
        when = dt.datetime.fromisoformat(str(doc["measured_at"]).replace("Z", "+00:00"))
        figures = doc["figures"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return Measured(figures, when) if isinstance(figures, dict) else None


def mtime_key(site: SiteConfig) -> tuple[int, ...]:
    """Changes whenever a figure file is rewritten (a cache key for views)."""
    out = []
    for name in (HEALTH_FILE, DISK_FILE):
        try:
            out.append((site.directory / RUN_DIR / name).stat().st_mtime_ns)
        except OSError:
            out.append(0)
    return tuple(out)
