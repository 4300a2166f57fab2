"""Notes in a profile: `{name, path}` items, collected as payloads."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from bundler.kinds.base import Build, CollectContext, Part
from bundler.oci.content import BlobSource
from bundler.profile import Checker
from notes_kind import NAME_RE, NoteEntry


@dataclass(frozen=True)
class NoteSpec:
    name: str
    path: str


class NoteBuild(Build[NoteSpec]):
    def parse_spec(self, check: Checker, item: object, line: int, where: str) -> NoteSpec | None:
        m = check.mapping(item, line, where, {"name", "path"}, {"name", "path"})
        if m is None:
            return None
        name = check.string(m, "name", where, NAME_RE, "a note name (lowercase letters, digits, -)")
        path = check.string(m, "path", where)
        return NoteSpec(name, path) if name and path else None

    def collect(self, context: CollectContext, specs: Sequence[NoteSpec]) -> Part:
        entries, payloads = [], {}
        for spec in specs:
            path = context.base / spec.path
            data = path.read_bytes()
            note = NoteEntry(spec.name, hashlib.sha256(data).hexdigest(), len(data))
            entries.append(note)
            payloads[note.path] = BlobSource(f"sha256:{note.sha256}", note.size, str(path), path=path)
        return Part(tuple(entries), payloads)
