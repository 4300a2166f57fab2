"""`bundler site receipt`: what the site holds from the bundles it imported, signed with the site's
key, for `build --since` and the fleet on the connected side."""

from __future__ import annotations

import shutil
from pathlib import Path

from bundler import names
from bundler.bundle.parent import receipt
from bundler.jsontypes import Doc
from bundler.kinds import KINDS
from bundler.pipeline.status import site_status
from bundler.site import identity
from bundler.site.config import load_site
from bundler.site.state import SiteState, kept_manifest


def site_receipt(site_dir: Path) -> Doc:
    """Everything this site holds from the bundles it imported, for `build --since` on the connected side."""
    site = load_site(site_dir)
    state = SiteState.load(site.directory)
    manifests = [m for bundle in state.live()  # a pruned release's files are gone
                 if (m := kept_manifest(site, bundle.manifest_digest)) is not None]
    held = {field: value for kind in KINDS for field, value in kind.receipt.receipt(site, state).items()}
    created = names.format_time()
    doc = receipt(site.site_name, created, [b.to_dict() for b in state.bundles], manifests, held)
    identity.ensure_site_key(site.directory)  # a site made before site keys
    disk = shutil.disk_usage(site.directory)
    doc.update({
        "site_keyid": identity.key_id(site.directory),
        "disk": {"total": disk.total, "used": disk.used, "free": disk.free},
        "services": {name: s.healthy for name, s in site_status(site).services.items()},
    })
    return identity.signed(doc, identity.load_site_key(site.directory))
