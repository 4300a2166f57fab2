"""Each note's payload is listed in bundle.json's files."""

from __future__ import annotations

from bundler.bundle.manifest import BundleManifest
from bundler.kinds.base import Format
from bundler.untrusted import Malformed
from notes_kind import NoteEntry, notes_of


class NoteFormat(Format[NoteEntry]):
    def check_entries(self, manifest: BundleManifest) -> None:
        for i, note in enumerate(notes_of(manifest)):
            if note.path not in manifest.files:
                raise Malformed(f"notes[{i}]: {note.path} is not listed in files")
