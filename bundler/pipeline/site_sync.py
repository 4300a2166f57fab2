"""`bundler site sync`: one sync of the site from its hub (pipeline/hub.py's protocol), wired to
this site's import and receipt, and the sync service's loop (`--every`): a sync, the next one's time
kept for `site status` and the page, a pause; a failure is reported (to the hub, in sync.json, to the
caller) and the next sync comes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NoReturn

from bundler.errors import BundlerError
from bundler.pipeline.hub import SyncOptions, SyncResult, sync
from bundler.pipeline.importer import ImportOptions, import_bundle
from bundler.pipeline.receipt import site_receipt


def sync_once(options: SyncOptions, every: float | None = None) -> SyncResult:
    """Fetch what the site's wave of the hub's rollout gives it, import it as `bundler import` does,
    and push the site's receipt (BundlerError when it failed: the site keeps running what it runs);
    `every`: the service's pause, so the site's record says when it syncs next."""
    return sync(options, lambda index: import_bundle(ImportOptions(index, options.site, options.jobs)).to_dict(),
                site_receipt, every)


def sync_every(options: SyncOptions, pause: float, changed: Callable[[SyncResult], None],
               failed: Callable[[BundlerError], None]) -> NoReturn:
    """Sync every `pause` seconds until stopped: `changed` hears a result unlike the last one (not one
    a minute saying the same), `failed` every failure."""
    last: tuple[str, str] | None = None
    while True:
        try:
            result = sync_once(options, pause)
            if (result.state, result.message) != last:
                last = (result.state, result.message)
                changed(result)
        except BundlerError as exc:
            failed(exc)
        time.sleep(pause)
