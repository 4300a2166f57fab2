"""The site's status page (`GET /` on its HTTPS service, with the site's credentials): services and
their health, disk use, the releases imported (with signers) and what the running ones hold, and
what each content kind reports of the site (Git repositories and refs; updates, their approvals
per group, and the clients lacking approved ones). Read-only, server-rendered, escaped."""

from __future__ import annotations

from bundler import page
from bundler.bundle.manifest import BundleManifest
from bundler.kinds import KINDS
from bundler.pipeline.disk import kept_disk_report
from bundler.pipeline.hub import SyncResult, SyncState
from bundler.site import figures
from bundler.site.config import SiteConfig
from bundler.site.state import ReleaseStatus, SiteState, kept_manifest
from bundler.units import human


def _running(site: SiteConfig, state: SiteState) -> list[BundleManifest]:
    """The manifest of the release each bundle name runs (its latest import)."""
    return [m for b in state.running() if (m := kept_manifest(site, b.manifest_digest)) is not None]


def sync_html(last: SyncResult) -> str:
    return f'<p class="{"ok" if last.good else "bad"}">{page.esc(last.line())}</p>'

def status_page(site: SiteConfig) -> bytes:
    """The page from the kept figures (figures.py): no disk walk, no request to a service."""
    state = SiteState.load(site.directory)
    health = figures.read(site, figures.HEALTH_FILE)
    checked = f"checked {health.age}" if health else "not checked yet"
    urls = {"registry": site.registry.url,  # the kinds' services: the HTTPS service's
            **{name: service.url for kind in KINDS for name, service in kind.serve.services(site).items()}}
    up = health.figures if health else {}
    services = [[page.esc(name), f"<code>{page.esc(url)}</code>",
                 page.state(bool(up.get("registry" if name == "registry" else "http"))), page.esc(checked)]
                for name, url in urls.items()]
    measured = kept_disk_report(site)
    if measured is None:
        disk_html = "<p>not measured yet (an import, a prune or the service's start measures it)</p>"
    else:
        disk, age = measured
        kinds = ", ".join(f"{name} {human(size)}" for name, size in disk.stored.items())
        disk_html = (f"<p>{disk.used_percent}% of {page.esc(human(disk.total))} used, "
                     f"{page.esc(human(disk.free))} free ({page.esc(kinds)}); measured {page.esc(age)}</p>"
                     + (f'<p class="bad">{page.esc(disk.warning)}</p>' if disk.warning else ""))
    releases = [[page.esc(b.name), page.esc(b.version), page.esc(b.status or ReleaseStatus.DONE),
                 page.esc(b.imported_at or ""), page.value(site.signer_names(b.signers))]
                for b in reversed(state.bundles)]
    sections = [("Services", page.table(["service", "URL", "health", "as of"], services)), ("Disk", disk_html),
                *([("Hub sync", sync_html(last))] if (last := SyncState.load(site.directory).last) else []),
                ("Releases imported", page.table(["bundle", "version", "status", "imported", "signers"], releases,
                                                 "nothing imported yet"))]
    for manifest in _running(site, state):
        lines = [line for kind in KINDS for line in kind.report.lines(manifest.entries(kind.key))]
        sections.append((f"{manifest.name} {manifest.version}: what it holds",
                         f"<pre>{page.esc(chr(10).join(lines))}</pre>"))
    for kind in KINDS:
        for field, held in kind.receipt.receipt(site, state).items():
            sections.append((kind.receipt.titles.get(field, field), page.value(held)))
    return page.render(f"Site {site.site_name}", f"bundler site at {site.directory.resolve()}", sections)
