"""`bundler site prune`: keep the last N releases of each bundle name, free what only older ones use.

What goes: every top manifest (image, chart, artifact, and what travels with an image: signatures,
attestations, SBOMs, referrers) of a pruned release that no kept release names in that repository,
with the manifests under it no kept one needs; then the registry's garbage collector (registry
stopped for the pass) frees the blobs no manifest references any more. Each content kind with files
of its own frees what no kept release holds (Kind.prune: update payloads no group approved;
Git: history stays, unreachable objects go); what refused imports left (`unreferenced.json`) goes.

Safe when interrupted: nothing a kept release needs is touched, and the plan is made again from
state.json, which changes last (a re-run finishes the job: deleting what is gone is not an error).
Safe on a full disk: deleting comes first and writes nothing; state.json is written once space is free.
"""

from __future__ import annotations

from pathlib import Path

from bundler.errors import BundlerError, UsageError
from bundler.parallel import run_parallel
from bundler.pipeline.disk import PARTIALS, PrunePlan, disk_report, plan_prune
from bundler.site import figures
from bundler.site.config import load_site
from bundler.site.journal import files_lock, import_lock
from bundler.site.registry_storage import RegistryStorage
from bundler.site.service import collect_registry_garbage, resume_after_garbage_collection
from bundler.site.state import SiteState


def prune_site(directory: Path, keep: int | None = None, dry_run: bool = False, jobs: int = 8) -> PrunePlan:
    site = load_site(directory)
    keep = site.retention.keep if keep is None else keep
    if keep < 1:
        raise UsageError("--keep must be at least 1: a site keeps the release it runs")
    with import_lock(site, Path("site prune")):  # no import meanwhile
        state = SiteState.load(site.directory)
        if not dry_run and site.embedded_registry:
            resume_after_garbage_collection(site)  # a prune killed while the collector ran
        client = None
        if site.embedded_registry or site.registry.url:
            client = site.registry_client(jobs)
            try:
                client.ping()
            except BundlerError:
                if not dry_run:
                    raise UsageError("the site's registry does not answer: prune needs it to delete manifests",
                                     hint=f"start it first: `bundler site up {site.directory}`") from None
                client = None
        plan = plan_prune(site, state, client, keep, jobs)
        if dry_run:
            return plan
        # 1. delete (writes nothing: safe on a full disk); a re-run does what is left
        if client is not None and (plan.manifests or plan.leftovers.get("blobs")):
            client.authorize({repo for repo, _ in plan.manifests} | {site.quarantine}, "pull,push,delete")
            for repo, digest in plan.manifests:  # tops first: an index goes before what it lists
                client.delete_manifest(repo, digest)
            run_parallel(lambda d: client.unlink_blob(site.quarantine, d), plan.leftovers.get("blobs", []), jobs)
        for part in plan.kinds.values():
            part.delete()
        if plan.leftovers.get(PARTIALS) and (storage := RegistryStorage.of(site)) is not None:
            storage.discard_partials()
        # 2. the registry's garbage collector frees the blobs (registry stopped for the pass)
        if site.embedded_registry and (plan.pruned or plan.leftovers.get("blobs")):  # also an interrupted run's
            collect_registry_garbage(site)
        # 3. what removing left unreachable (Git's objects)
        for part in plan.kinds.values():
            part.tidy()
        # 4. now that space is free: the kinds' catalogs and indexes, and state.json (last)
        with files_lock(site.directory):
            for part in plan.kinds.values():
                part.record()
            state.mark_pruned([b.manifest_digest for b in plan.pruned], {d for _, d in plan.manifests})
            state.clear_unreferenced()
        figures.write_disk(site, disk_report(site, client).to_dict())
        return plan
