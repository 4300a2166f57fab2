"""`bundler fleet status --html FILE`: the fleet's status as one page, in the site page's look
(bundler/page.py): sites x bundle names -> the version each runs, the age of its receipt, the
clients lacking approved updates, disk use and services."""

from __future__ import annotations

import datetime as dt
from typing import Any

from bundler import page
from bundler.units import human


def fleet_page(status: dict[str, Any], now: dt.datetime | None = None) -> bytes:
    bundles = status["bundles"]
    rows = []
    for s in status["sites"]:
        disk = s.get("disk") or {}
        used = (f"{round(100 * (disk['total'] - disk['free']) / disk['total'])}% of {human(disk['total'])}"
                if isinstance(disk.get("free"), int) and disk.get("total") else "-")  # as the site's page counts
        services = s.get("services") or {}
        rows.append([page.esc(s["site"]), *(page.esc(s["running"].get(b, "-")) for b in bundles),
                     page.esc(f"{s['receipt_age_hours']} h"),
                     "<br>".join(page.esc(line) for line in client_lines(s)) or '<span class="muted">none</span>',
                     page.esc(used),
                     "<br>".join(f"{page.esc(name)} {page.state(bool(ok))}" for name, ok in services.items())])
    table = page.table(["site", *bundles, "receipt age", "clients lacking updates", "disk", "services"], rows,
                       "no receipts yet: bundler fleet add RECEIPT...")
    made = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return page.render("Fleet status", f"{len(status['sites'])} sites, from their signed receipts; made {made}",
                       [("Which site runs what", table)])


def client_lines(site: dict[str, Any]) -> list[str]:
    """Per update client of a site with something to say: approved updates it lacks, failed steps, a
    restart it waits for, its AKS EE version."""
    names = dict.fromkeys([*site["clients_lacking_updates"], *site.get("clients_failed", {}),
                           *site.get("clients_waiting_restart", []), *site.get("aksee_versions", {})])
    out = []
    for client in names:
        said = [f"{n} lacking" for n in [site["clients_lacking_updates"].get(client)] if n]
        said += [f"{n} failed" for n in [site.get("clients_failed", {}).get(client)] if n]
        said += ["restart pending"] if client in site.get("clients_waiting_restart", []) else []
        said += [f"AKS EE {v}" for v in [site.get("aksee_versions", {}).get(client)] if v]
        out.append(f"{client}: {', '.join(said)}")
    return out
