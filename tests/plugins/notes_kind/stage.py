"""Notes in an import: blobs written first, the index (what is served) at publication."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

from bundler.bundle.manifest import BundleManifest
from bundler.bundle.reader import BundleReader
from bundler.fsutil import atomic_write
from bundler.kinds.base import Stage, Staged, StageOptions
from bundler.site.config import SiteConfig
from notes_kind import KEY, NoteEntry, Store, notes_of


class StagedNotes(Staged):
    def __init__(self, store: Store, manifest: BundleManifest, added: list[NoteEntry]) -> None:
        self.store, self.manifest, self.added = store, manifest, added

    def discard(self) -> None:
        published = {n["sha256"] for n in self.store.index().values()}
        for note in self.added:
            if note.sha256 not in published:
                self.store.blob(note.sha256).unlink(missing_ok=True)

    def publish(self) -> list[str]:  # the import holds the site's files lock
        index = self.store.index()
        for note in notes_of(self.manifest):
            index[note.name] = {"sha256": note.sha256, "bundle": f"{self.manifest.name} {self.manifest.version}"}
        atomic_write(self.store.root / "index.json", json.dumps(index, indent=1, sort_keys=True).encode())
        return []

    def counts(self) -> dict[str, tuple[int, int]]:
        n = len(notes_of(self.manifest))
        return {KEY: (len(self.added), n - len(self.added))}


class NoteStage(Stage):
    def present(self, site: SiteConfig, manifest: BundleManifest) -> bool:
        return all(Store(site).blob(n.sha256).exists() for n in notes_of(manifest))

    def stage(self, site: SiteConfig, reader: BundleReader, manifest: BundleManifest, options: StageOptions,
              progress: Callable[[int], None]) -> Staged:
        store, added = Store(site), []
        (store.root / "blobs").mkdir(parents=True, exist_ok=True)
        for note in notes_of(manifest):  # the verifier hashed every payload before this reads it
            target = store.blob(note.sha256)
            if not target.exists():
                partial = target.with_name(f".{note.sha256}.partial")
                with open(partial, "wb") as out:
                    for chunk in reader.iter_member(note.path):
                        out.write(chunk)
                    os.fsync(out.fileno())
                os.replace(partial, target)
                added.append(note)
            progress(note.size)
        return StagedNotes(store, manifest, added)

    def leftovers(self, site: SiteConfig, manifest: BundleManifest) -> list[str]:
        published = {n["sha256"] for n in Store(site).index().values()}
        return [n.sha256 for n in notes_of(manifest) if n.sha256 not in published]
