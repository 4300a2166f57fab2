"""What the format reads of updates: name, kind, file, digest, size and approvals are the release;
each is carried in files, or required from the parent (a delta)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bundler.jsontypes import Out
from bundler.kinds.base import Format
from bundler.kinds.updates.entry import UpdateEntry, updates_of
from bundler.untrusted import Malformed

if TYPE_CHECKING:
    from bundler.bundle.manifest import BundleManifest


class UpdateFormat(Format[UpdateEntry]):
    def check_entries(self, manifest: BundleManifest) -> None:
        for i, update in enumerate(updates_of(manifest)):
            if update.path not in manifest.files and update.path not in manifest.requires:
                raise Malformed(f"updates[{i}]: {update.path} is listed neither in files nor in requires")

    def content(self, entries: Sequence[UpdateEntry]) -> Sequence[Out]:
        def row(u: UpdateEntry) -> list[Out]:
            return [u.name, u.kind, u.file, u.sha256, u.size, sorted(u.approve),
                    *([u.windows.to_dict()] if u.windows is not None else [])]

        return sorted(row(u) for u in entries)
