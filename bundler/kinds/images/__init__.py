"""Container images: `spec.images`, carried with their digests into the bundle's OCI layout, and
pushed to the site registry under `<source host>/<path>` with their tags.
Roles: build.py (profile items, the image policy at build, collection with extras), format.py,
admit.py (derived tags' subjects and owners, the site's image keys), publish.py, options.py and
settings.py (the site's image policy: `site init --image-key`, site.yaml's `images:`), report.py."""

from __future__ import annotations

from bundler.kinds.base import Kind, role_modules
from bundler.kinds.images.entry import ImageEntry

EXTRAS = "extras"  # import counts signatures, attestations, SBOMs and referrers indexes here

KIND = Kind("images", "images", "image", ImageEntry, in_v1=True, always_reported=True, roles=role_modules(
    __name__, build="ImageBuild", format="ImageFormat", admit="ImageAdmit", publish="ImagePublish",
    options="ImageOptions", settings="ImageSiteSettings", report="ImageReport"))
