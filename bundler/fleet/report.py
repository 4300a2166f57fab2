"""`bundler fleet status --html FILE`: one page in the site page's look (bundler/page.py): what an
operator at the data center looks at first. At the top: how many stores run which version, each
rollout's waves (done / failed / pending, bytes, rate), and the stores with a problem; then one
compact row per store, in natural order (store-2 before store-10)."""

from __future__ import annotations

import datetime as dt
import re

from bundler import names, page
from bundler.fleet.status import FleetStatus, RolloutFigures, SiteRow
from bundler.units import human


def disk_percent(site: SiteRow) -> str:
    used = site.used_percent
    return "-" if used is None else f"{used}%"


def _rollout_html(figures: RolloutFigures) -> str:
    r = figures.rollout
    return (f"<p><b>{page.esc(r.name)} {page.esc(r.version)}</b> (serial {page.esc(r.serial)}): "
            f"{page.state(r.state == 'running', r.state, r.state)}"
            + (f" {page.esc(r.reason)}" if r.reason else "") + f" <span class=\"muted\">expires "
            f"{page.esc(r.expires)}</span></p>"
            + page.table(["wave", "open", "done", "failed", "pending", "fetched", "rate"], [
                [page.esc(w.name), page.state(w.open, "open", "not yet"), page.esc(w.done),
                 page.state(not w.failed, "0", str(w.failed)), page.esc(w.pending), page.esc(human(w.bytes)),
                 page.esc(f"{human(w.bytes_per_second)}/s" if w.bytes_per_second else "-")] for w in figures.waves]))


def _services(site: SiteRow) -> str:
    services = site.receipt.services if site.receipt else None
    if not services or not isinstance(services, dict):
        return "-"
    return page.state(all(services.values()), "healthy", "NOT all answering")


def fleet_page(status: FleetStatus, now: dt.datetime | None = None) -> bytes:
    summary = f"<p><b>{page.esc(status.versions_line())}</b></p>"
    waves = "".join(_rollout_html(r) for r in status.rollouts)
    troubled = [s for s in status.sites if s.problems]
    problems = page.table(["store", "problem"], [[page.esc(s.site), "<br>".join(
        f'<span class="bad">{page.esc(short_digests(p))}</span>' for p in s.problems)] for s in troubled],
        "no store has a problem")
    rows = [[page.esc(s.site), *(page.esc(s.running.get(b, "-")) for b in status.bundles),
             page.esc(f"{s.receipt_age_hours} h" if s.receipt_age_hours is not None else "-"),
             page.esc(disk_percent(s)), _services(s), page.esc("; ".join(s.client_lines()) or "-")]
            for s in status.sites]
    every = page.table(["store", *status.bundles, "receipt age", "disk", "services", "update clients"], rows,
                       "no receipts yet: bundler fleet add RECEIPT...")
    made = names.format_time(now)
    sections = [("Summary", summary)] + ([("Rollouts", waves)] if waves else []) + [
        (f"Stores with a problem ({len(troubled)})", problems), ("Every store (problems first)", every)]
    return page.render("Fleet status", f"{len(status.sites)} stores, from their signed receipts; made {made}",
                       sections)


def short_digests(text: str) -> str:
    """A line for people: each sha256 digest cut to its first 12 hex digits (the JSON keeps them whole)."""
    return re.sub(r"(sha256:[0-9a-f]{12})[0-9a-f]{52}", r"\1...", text)
