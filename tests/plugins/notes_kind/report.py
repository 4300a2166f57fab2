"""Notes in `inspect` and `diff`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bundler.kinds.base import Report, changes
from bundler.units import printable
from notes_kind import NoteEntry


class NoteReport(Report[NoteEntry]):
    def inspect_lines(self, rows: list[dict[str, Any]]) -> list[str]:
        return ([f"notes ({len(rows)}):"] if rows else []) + [
            f"  {printable(r['name'])} ({r['size']} bytes)  {r['sha256'][:12]}" for r in rows]

    def diff(self, old: Sequence[NoteEntry], new: Sequence[NoteEntry]) -> dict[str, Any]:
        return changes({n.name: n.sha256[:12] for n in old}, {n.name: n.sha256[:12] for n in new})
