"""OS and VM updates: `spec.updates`, carried by digest under updates/, kept in the site's update
cache (cache.py: apt and dnf repositories per group, approvals, client reports).
Roles: build.py, format.py, admit.py (downloads by name have owners), stage.py, serve.py (the update
server), prune.py, commands.py (`bundler updates`, `site client windows`), options.py (`site init
--group`), settings.py (its section of site.yaml: groups, anonymous), receipt.py, report.py."""

from __future__ import annotations

from bundler.kinds.base import Kind, role_modules
from bundler.kinds.updates.entry import PAYLOAD_PATTERN, UpdateEntry

KIND = Kind("updates", "updates", "update", UpdateEntry, in_v1=True, payload_pattern=PAYLOAD_PATTERN,
            roles=role_modules(__name__, build="UpdateBuild", format="UpdateFormat", admit="UpdateAdmit",
                               stage="UpdateStage", serve="UpdateServe", prune="UpdatePrune",
                               commands="UpdateCommands", options="UpdateOptions", settings="UpdateSiteSettings",
                               receipt="UpdateReceipt", report="UpdateReport"))
