"""Notes in `inspect` and `diff`."""

from __future__ import annotations

from collections.abc import Sequence

from bundler.kinds.base import Changes, Report, changes
from bundler.units import printable
from notes_kind import NoteEntry


class NoteReport(Report[NoteEntry]):
    def lines(self, entries: Sequence[NoteEntry]) -> list[str]:
        return ([f"notes ({len(entries)}):"] if entries else []) + [
            f"  {printable(n.name)} ({n.size} bytes)  {n.sha256[:12]}" for n in entries]

    def diff(self, old: Sequence[NoteEntry], new: Sequence[NoteEntry]) -> Changes:
        return changes(self.kind.noun, {n.name: n.sha256[:12] for n in old}, {n.name: n.sha256[:12] for n in new})
