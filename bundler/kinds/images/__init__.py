"""Container images: `spec.images`, carried with their digests into the bundle's OCI layout, and
pushed to the site registry under `<source host>/<path>` with their tags.
Roles: build.py (profile items, the image policy at build, collection with extras), format.py,
admit.py (derived tags' subjects and owners, the site's image policy), stage.py and receipt.py (what
the policy judged, recorded at publication and reported), publish.py, options.py and settings.py (the
site's image policy: `site init --image-key`, site.yaml's `images:`), report.py; cosign.py, keyless.py
and attest.py judge signatures and attestations."""

from __future__ import annotations

from bundler.kinds.base import Kind, role_modules
from bundler.kinds.images.entry import ImageEntry

EXTRAS = "extras"  # import counts signatures, attestations, SBOMs and referrers indexes here

# its one payload outside the OCI layout: the Sigstore trusted root the profile judged keyless
# signatures against, carried for sites to pin (a delta carries it again: payloads_defer=False)
KIND = Kind("images", "images", "image", ImageEntry, in_v1=True, always_reported=True,
            payload_pattern=r"sigstore/trusted_root\.json", payloads_defer=False, roles=role_modules(
    __name__, build="ImageBuild", format="ImageFormat", admit="ImageAdmit", stage="ImageStage",
    publish="ImagePublish", options="ImageOptions", settings="ImageSiteSettings", receipt="ImageReceipt",
    report="ImageReport"))
