"""OS and VM updates: `spec.updates`, carried by digest under updates/, kept in the site's update
cache (bundler/kinds/updates/cache.py: apt and dnf repositories per group, approvals, client reports)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from packageurl import PackageURL

from bundler import problems
from bundler.bundle.sbom import SbomItem
from bundler.kinds.base import CollectContext, ContentKind, Part, Pruning, Staged, StageOptions, changes
from bundler.kinds.updates.cache import APT_KEY, ASC_KEY, UPDATES_DIR, UpdateCache, init_updates, publish
from bundler.kinds.updates.entry import PAYLOAD_PATTERN, UpdateEntry, updates_of
from bundler.parallel import run_parallel
from bundler.problems import Problem
from bundler.units import human
from bundler.units import printable as p
from bundler.untrusted import Malformed

if TYPE_CHECKING:
    from pathlib import Path

    import click

    from bundler.bundle.manifest import BundleManifest
    from bundler.bundle.reader import BundleReader
    from bundler.kinds.updates.spec import UpdateSpec
    from bundler.profile import Checker
    from bundler.site.config import SiteConfig, SiteState
    from bundler.site.front import FrontRule
    from bundler.site.http import Accounts, Route


class StagedUpdates(Staged):
    def __init__(self, site: SiteConfig, manifest: BundleManifest, stored: list[bool]) -> None:
        self.site, self.manifest, self.stored = site, manifest, stored

    def publish(self) -> list[str]:
        if not updates_of(self.manifest):
            return []
        notes = UpdateCache(self.site).add(self.manifest)
        publish(self.site)
        return notes

    def counts(self) -> dict[str, tuple[int, int]]:
        return {"updates": (sum(self.stored), len(self.stored) - sum(self.stored))}


class PrunedUpdates(Pruning):
    """Payloads no kept release carries and no group approved, and what refused imports left."""

    def __init__(self, site: SiteConfig, kept: Sequence[BundleManifest], leftovers: Sequence[str]) -> None:
        self.site, self.cache = site, UpdateCache(site)
        held = {u.sha256 for manifest in kept for u in updates_of(manifest)}
        approved = self.cache.servable_set()  # approved for some group
        self.going = [e for e in self.cache.catalog() if e["sha256"] not in held and e["sha256"] not in approved]
        self.leftovers = list(leftovers)
        super().__init__([f"{e.get('name')} {e.get('version', '')}".strip() for e in self.going],
                         sum(int(e.get("size", 0)) for e in self.going),
                         sum(self.cache.blob(sha).stat().st_size for sha in leftovers if self.cache.blob(sha).exists()))

    def delete(self) -> None:
        cataloged = {e["sha256"] for e in self.cache.catalog()}
        for sha in [e["sha256"] for e in self.going] + [s for s in self.leftovers if s not in cataloged]:
            self.cache.blob(sha).unlink(missing_ok=True)

    def record(self) -> None:
        if self.going:
            self.cache.forget({e["sha256"] for e in self.going})
            publish(self.site)


class Updates(ContentKind["UpdateSpec", UpdateEntry]):
    key, title, noun, entry_type = "updates", "updates", "update", UpdateEntry
    example = """\
  updates:                                        # OS and VM updates: the site's update cache (apt, dnf, Windows)
    - path: ./files/edge-agent_1.0.0_all.deb      # a local file, relative to this profile
      approve: [line-1]                           # pre-approved for these site groups
    # - url: https://updates.example.com/pool/tool_2.1.0_amd64.deb
    #   sha256: <64 hex>                          # required with a URL: checked before anything is kept
"""
    in_v1 = True
    payload_pattern = PAYLOAD_PATTERN

    def parse_spec(self, check: Checker, item: Any, line: int, where: str) -> UpdateSpec | None:
        from bundler.kinds.updates.spec import parse_update  # build-side: loaded when a profile is read

        return parse_update(check, item, line, where)

    def check_specs(self, check: Checker, specs: Sequence[tuple[Any, int]], line: int) -> None:
        from bundler.kinds.updates.spec import check_updates

        check_updates(check, specs, line)

    def check_entries(self, manifest: BundleManifest) -> None:
        for i, update in enumerate(updates_of(manifest)):
            if update.path not in manifest.files and update.path not in manifest.requires:
                raise Malformed(f"updates[{i}]: {update.path} is listed neither in files nor in requires")

    def content(self, entries: Sequence[UpdateEntry]) -> list[Any]:
        return sorted([u.name, u.kind, u.file, u.sha256, u.size, sorted(u.approve)]
                      + ([u.windows.to_dict()] if u.windows is not None else []) for u in entries)

    def collect(self, context: CollectContext, specs: Sequence[UpdateSpec]) -> Part:
        from bundler.kinds.updates.collect import collect_update  # build-side: loaded when a build runs
        from bundler.oci.content import BlobSource

        updates = run_parallel(lambda spec: collect_update(spec, context.staging, context.base, context.session),
                               list(specs), context.jobs)
        payloads: dict[str, BlobSource] = {}
        for update in updates:
            e = update.entry
            payloads.setdefault(e.path, BlobSource(f"sha256:{e.sha256}", e.size, e.file, path=update.staged))
        return Part(tuple(u.entry for u in updates), payloads)

    def present(self, site: SiteConfig, manifest: BundleManifest) -> bool:
        cache = UpdateCache(site)
        return all(cache.blob(u.sha256).exists() for u in updates_of(manifest))

    def streamed(self, manifest: BundleManifest) -> set[str]:
        return {u.path for u in updates_of(manifest)}

    def missing(self, site: SiteConfig, manifest: BundleManifest) -> list[str]:
        cache = UpdateCache(site)
        return [f"update {u.name} {u.metadata.get('version', '')}".rstrip() for u in updates_of(manifest)
                if u.path in manifest.requires and not cache.blob(u.sha256).exists()]

    def plan(self, site: SiteConfig, manifest: BundleManifest) -> tuple[dict[str, Any], int]:
        cache = UpdateCache(site)
        new = [u for u in updates_of(manifest) if not cache.blob(u.sha256).exists()]
        size = sum(u.size for u in {u.sha256: u for u in new}.values())
        return {"add_updates": [f"{u.name} {u.metadata.get('version', '')}".strip() for u in new],
                "update_bytes": size}, size

    def stage(self, site: SiteConfig, reader: BundleReader, manifest: BundleManifest, options: StageOptions,
              progress: Callable[[int], None]) -> Staged:

        cache = UpdateCache(site)

        def store(update: UpdateEntry) -> bool:
            added = cache.store(reader, update)  # hashed as it is copied: the one read of it
            progress(update.size)
            return added

        return StagedUpdates(site, manifest, run_parallel(store, list(updates_of(manifest)), options.jobs))

    def routes(self, site: SiteConfig, accounts: Accounts) -> list[Route]:
        from bundler.kinds.updates.server import UpdateServer  # the service's: loaded when it starts

        return [UpdateServer(site).route()]  # /updates/...: repositories, payloads, the API, reports

    def front(self, site: SiteConfig) -> list[FrontRule]:
        from bundler.kinds.updates.server import front_rules

        return front_rules(site)

    def services(self, site: SiteConfig) -> dict[str, dict[str, Any]]:
        return {"updates": {"url": f"{site.http_url}/updates/", "apt_url": f"{site.http_url}/updates/apt",
                            "rpm_url": f"{site.http_url}/updates/rpm",
                            "apt_key_file": str((site.directory / UPDATES_DIR / APT_KEY).resolve()),
                            "rpm_key_url": f"{site.http_url}/updates/keys/{ASC_KEY}", "groups": list(site.groups)}}

    def stored(self, site: SiteConfig) -> dict[str, Path]:
        return {"updates": UpdateCache(site).root}

    def watched(self, site: SiteConfig) -> list[Path]:
        root = UpdateCache(site).root
        return [root / "catalog.json", root / "approvals.json", root / "reports"]

    def prune(self, site: SiteConfig, kept: Sequence[BundleManifest], leftovers: Sequence[str]) -> Pruning:
        return PrunedUpdates(site, kept, leftovers)

    def commands(self) -> list[tuple[str, click.Command]]:
        from bundler.kinds.updates.commands import client_windows, updates  # the CLI's: loaded when it lists them

        return [("", updates), ("site client", client_windows)]

    def init_site(self, site: SiteConfig) -> None:
        init_updates(site)  # the cache's directories and the site's OpenPGP key

    def admission(self, site: SiteConfig, reader: BundleReader, manifest: BundleManifest) -> list[Problem]:
        """A download by file name (`files/<name>`) belongs to the bundle name that first brought it:
        another product's bundle may not take it over (only a deliberate `site hand-over`)."""
        owners = UpdateCache(site).owners()  # the catalog read once, not per update
        return [problems.name_owned(f"files/{u.file}", f"files/{u.file}", owner, manifest.name, manifest.version,
                                    "take over its download by name", "two products ship one file name: ask "
                                    "release engineering", site.directory)
                for u in updates_of(manifest) if (owner := owners.get(u.file)) not in (None, manifest.name)]

    def leftovers(self, site: SiteConfig, manifest: BundleManifest) -> list[str]:
        cache = UpdateCache(site)
        cataloged = {e["sha256"] for e in cache.catalog()}
        return [u.sha256 for u in updates_of(manifest) if u.sha256 not in cataloged and cache.blob(u.sha256).exists()]

    receipt_titles: ClassVar[dict[str, str]] = {
        "updates": "Updates held", "approvals": "Update approvals per group",
        "clients": "Update clients, and the approved updates each lacks"}

    def receipt(self, site: SiteConfig, state: SiteState) -> dict[str, Any]:
        cache = UpdateCache(site)
        catalog = {e["sha256"]: e for e in cache.catalog()}
        return {"updates": [{k: e[k] for k in ("name", "version", "kind", "sha256")} for e in catalog.values()
                            if cache.blob(e["sha256"]).exists()],
                "approvals": [{"group": group, "update": f"{catalog[sha]['name']} {catalog[sha]['version']}".strip(),
                               "decision": decision}
                              for group, decisions in sorted(cache.approvals().items())
                              for sha, decision in decisions.items() if sha in catalog],
                "clients": cache.status()}

    def sbom(self, entries: Sequence[UpdateEntry]) -> list[SbomItem]:
        items = []
        for u in entries:
            version = u.metadata.get("version", "")
            kind = u.kind if u.kind in ("deb", "rpm") and u.metadata.get("package") else "generic"
            name = u.metadata.get("package", u.name) if kind != "generic" else u.file
            arch = {"arch": u.metadata["arch"]} if kind != "generic" and u.metadata.get("arch") else None
            purl = PackageURL(kind, name=name, version=version or None, qualifiers=arch)
            items.append(SbomItem(u.name, version or u.sha256[:12], "file" if kind == "generic" else "application",
                                  purl, u.sha256, None,
                                  (("bundler:kind", f"update-{u.kind}"), ("bundler:file", u.file))))
        return items

    def inspect_rows(self, entries: Sequence[UpdateEntry]) -> list[dict[str, Any]]:
        return [{"name": u.name, "kind": u.kind, "file": u.file, "sha256": u.sha256, "size": u.size,
                 "version": u.metadata.get("version", ""), "arch": u.metadata.get("arch", ""),
                 "approve": list(u.approve)} for u in entries]

    def inspect_lines(self, rows: list[dict[str, Any]]) -> list[str]:
        out = [f"updates ({len(rows)}):"] if rows else []
        for u in rows:
            groups = f"  pre-approved for {', '.join(p(g) for g in u['approve'])}" if u["approve"] else ""
            out.append(f"  {p(u['name'])} {p(u['version'])} {p(u['arch'])} ({p(u['kind'])}, {human(u['size'])})"
                       f"  {u['sha256'][:12]}{groups}")
        return out

    def diff(self, old: Sequence[UpdateEntry], new: Sequence[UpdateEntry]) -> dict[str, Any]:
        return changes({u.name: u.metadata.get("version", u.sha256[:12]) for u in old},
                       {u.name: u.metadata.get("version", u.sha256[:12]) for u in new})

    def import_summary(self, added: dict[str, int], unchanged: dict[str, int]) -> str:
        if not (added.get("updates") or unchanged.get("updates")):
            return ""
        return f"{added['updates']} updates added, {unchanged['updates']} already there; "

    def plan_lines(self, plan: dict[str, Any]) -> list[str]:
        return [f"  add {len(plan['add_updates'])} updates ({human(plan['update_bytes'])})"
                + "".join(f"\n    {u}" for u in plan["add_updates"])]


KIND = Updates()
