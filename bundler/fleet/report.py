"""`bundler fleet status` (text, and `--html FILE`: one page in the site page's look, bundler/page.py):
what an operator at the data center looks at first. At the top: how many stores run which version,
each rollout's waves (done / failed / pending, bytes, rate), and the stores with a problem; then one
compact line per store, in natural order (store-2 before store-10)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from bundler import names, page
from bundler.fleet.store import used_percent
from bundler.units import human


def versions_line(status: dict[str, Any]) -> str:
    """`190 stores; store: 1.5.0 on 180, 1.4.0 on 10; 12 with a problem`."""
    summary = status["summary"]
    parts = [f"{summary['sites']} sites"]
    for bundle, counts in summary["versions"].items():
        parts.append(f"{bundle}: " + ", ".join(f"{version} on {n}" for version, n in counts.items()))
    parts.append(f"{summary['with_problems']} with a problem")
    return "; ".join(parts)


def wave_lines(status: dict[str, Any]) -> list[str]:
    out = []
    for r in status["rollouts"]:
        state = r["state"] + (f" ({r['reason']})" if r["reason"] else "")
        out.append(f"rollout {r['name']} {r['version']} (serial {r['serial']}, expires {r['expires']}): {state}")
        for w in r["waves"]:
            rate = f" at {human(w['bytes_per_second'])}/s" if w["bytes_per_second"] else ""
            out.append(f"  wave {w['name']} ({'open' if w['open'] else 'not open'}): {w['done']} done, "
                       f"{w['failed']} failed, {w['pending']} pending; {human(w['bytes'])} fetched{rate}")
    return out


def disk_percent(site: dict[str, Any]) -> str:
    used = used_percent(site.get("disk"))
    return "-" if used is None else f"{used}%"


def fleet_page(status: dict[str, Any], now: dt.datetime | None = None) -> bytes:
    bundles = status["bundles"]
    summary = f"<p><b>{page.esc(versions_line(status))}</b></p>"
    waves = "".join(
        f"<p><b>{page.esc(r['name'])} {page.esc(r['version'])}</b> (serial {page.esc(r['serial'])}): "
        f"{page.state(r['state'] == 'running', r['state'], r['state'])}"
        + (f" {page.esc(r['reason'])}" if r["reason"] else "") + f" <span class=\"muted\">expires "
        f"{page.esc(r['expires'])}</span></p>"
        + page.table(["wave", "open", "done", "failed", "pending", "fetched", "rate"], [
            [page.esc(w["name"]), page.state(w["open"], "open", "not yet"), page.esc(w["done"]),
             page.state(not w["failed"], "0", str(w["failed"])), page.esc(w["pending"]), page.esc(human(w["bytes"])),
             page.esc(f"{human(w['bytes_per_second'])}/s" if w["bytes_per_second"] else "-")] for w in r["waves"]])
        for r in status["rollouts"])
    troubled = [s for s in status["sites"] if s["problems"]]
    problems = page.table(["store", "problem"], [[page.esc(s["site"]), "<br>".join(
        f'<span class="bad">{page.esc(short_digests(p))}</span>' for p in s["problems"])] for s in troubled],
        "no store has a problem")
    rows = [[page.esc(s["site"]), *(page.esc(s["running"].get(b, "-")) for b in bundles),
             page.esc(f"{s['receipt_age_hours']} h" if s["receipt_age_hours"] is not None else "-"),
             page.esc(disk_percent(s)),
             page.state(all((s["services"] or {}).values()), "healthy", "NOT all answering") if s["services"] else "-",
             page.esc("; ".join(client_lines(s)) or "-")] for s in status["sites"]]
    every = page.table(["store", *bundles, "receipt age", "disk", "services", "update clients"], rows,
                       "no receipts yet: bundler fleet add RECEIPT...")
    made = names.format_time(now)
    sections = [("Summary", summary)] + ([("Rollouts", waves)] if waves else []) + [
        (f"Stores with a problem ({len(troubled)})", problems), ("Every store (problems first)", every)]
    return page.render("Fleet status", f"{len(status['sites'])} stores, from their signed receipts; made {made}",
                       sections)


def short_digests(text: str) -> str:
    """A line for people: each sha256 digest cut to its first 12 hex digits (the JSON keeps them whole)."""
    return re.sub(r"(sha256:[0-9a-f]{12})[0-9a-f]{52}", r"\1...", text)


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
