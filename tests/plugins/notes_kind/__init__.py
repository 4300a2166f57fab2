"""An example content kind, registered from outside bundler (tests/plugins: not shipped): text notes
a profile names (`spec.notes`), carried under notes/<sha256>, kept by the site under DIR/notes/ and
served at `/notes/<name>` (the site's accounts; the front sends the file), listed by inspect, `site
status` and the status page, pruned with the releases that carried them.

It is one package plus one registration line (bundler_notes-1.0.dist-info/entry_points.txt): the
proof that a kind with files, a route and a site service needs no edit inside bundler."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

from bundler import names
from bundler.bundle.manifest import BundleManifest
from bundler.bundle.reader import BundleReader
from bundler.fsutil import atomic_write
from bundler.kinds.base import CollectContext, ContentKind, Part, Pruning, Staged, StageOptions, changes
from bundler.oci.content import BlobSource
from bundler.profile import Checker
from bundler.site.config import SiteConfig, SiteState
from bundler.site.front import FrontRule
from bundler.site.http import Accounts, Route, StartResponse, accel, basic_challenge, text_response
from bundler.units import printable
from bundler.untrusted import Malformed, Obj

KEY = "notes"
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,63}$")
SENT = "/_notes/"  # the front's internal location for note files


def note_name(value: str) -> str:
    return names.checked(value, NAME_RE, "a note name (lowercase letters, digits, -)")


@dataclass(frozen=True)
class NoteSpec:
    name: str
    path: str


@dataclass(frozen=True)
class NoteEntry:
    name: str
    sha256: str
    size: int

    @property
    def path(self) -> str:
        return f"notes/{self.sha256}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256, "size": self.size}

    @classmethod
    def parse(cls, d: Obj) -> NoteEntry:
        return cls(d.string("name", note_name), d.string("sha256", names.sha256_hex), d.integer("size"))


def notes_of(manifest: BundleManifest) -> tuple[NoteEntry, ...]:
    return cast("tuple[NoteEntry, ...]", manifest.entries(KEY))


class Store:
    """DIR/notes/: blobs/<sha256>, and index.json (name -> sha256, bundle) of what is published."""

    def __init__(self, site: SiteConfig) -> None:
        self.site, self.root = site, site.directory / KEY

    def blob(self, sha256: str) -> Path:
        return self.root / "blobs" / sha256

    def index(self) -> dict[str, dict[str, str]]:
        try:
            return dict(json.loads((self.root / "index.json").read_text()))
        except FileNotFoundError:
            return {}

    def blobs(self) -> list[str]:
        folder = self.root / "blobs"
        return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.exists() else []


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


class PrunedNotes(Pruning):
    def __init__(self, store: Store, kept: Sequence[BundleManifest]) -> None:
        held = {n.sha256 for m in kept for n in notes_of(m)} | {n["sha256"] for n in store.index().values()}
        self.going = [sha for sha in store.blobs() if sha not in held]
        self.store = store
        super().__init__([sha[:12] for sha in self.going], sum(store.blob(s).stat().st_size for s in self.going))

    def delete(self) -> None:
        for sha in self.going:
            self.store.blob(sha).unlink(missing_ok=True)


class Notes(ContentKind[NoteSpec, NoteEntry]):
    key, title, noun, entry_type = KEY, "notes", "note", NoteEntry
    payload_pattern = r"notes/[a-f0-9]{64}"
    receipt_titles: ClassVar[dict[str, str]] = {"notes": "Notes held"}

    def parse_spec(self, check: Checker, item: Any, line: int, where: str) -> NoteSpec | None:
        m = check.mapping(item, line, where, {"name", "path"}, {"name", "path"})
        if m is None:
            return None
        name = check.string(m, "name", where, NAME_RE, "a note name (lowercase letters, digits, -)")
        path = check.string(m, "path", where)
        return NoteSpec(name, path) if name and path else None

    def check_entries(self, manifest: BundleManifest) -> None:
        for i, note in enumerate(notes_of(manifest)):
            if note.path not in manifest.files:
                raise Malformed(f"notes[{i}]: {note.path} is not listed in files")

    def collect(self, context: CollectContext, specs: Sequence[NoteSpec]) -> Part:
        entries, payloads = [], {}
        for spec in specs:
            path = context.base / spec.path
            data = path.read_bytes()
            note = NoteEntry(spec.name, hashlib.sha256(data).hexdigest(), len(data))
            entries.append(note)
            payloads[note.path] = BlobSource(f"sha256:{note.sha256}", note.size, str(path), path=path)
        return Part(tuple(entries), payloads)

    # --- the site --------------------------------------------------------------------------------

    def init_site(self, site: SiteConfig) -> None:
        (site.directory / KEY / "blobs").mkdir(parents=True, exist_ok=True)

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

    def routes(self, site: SiteConfig, accounts: Accounts) -> list[Route]:
        def handle(environ: dict[str, Any], start_response: StartResponse, rest: str) -> Iterable[bytes]:
            if accounts.authorized(environ) is None:
                return basic_challenge(start_response)
            held = Store(site).index().get(rest) if NAME_RE.match(rest) else None
            if held is None:
                return text_response(start_response, "404 Not Found", "no such note\n")
            return accel(start_response, SENT + held["sha256"], [("Content-Type", "text/plain")])

        return [Route(KEY, handle)]

    def front(self, site: SiteConfig) -> list[FrontRule]:
        return [FrontRule(SENT, files=Store(site).root / "blobs")]

    def services(self, site: SiteConfig) -> dict[str, dict[str, Any]]:
        return {KEY: {"url": f"{site.http_url}/notes/"}}

    def stored(self, site: SiteConfig) -> dict[str, Path]:
        return {KEY: Store(site).root}

    def watched(self, site: SiteConfig) -> list[Path]:
        return [Store(site).root / "index.json"]

    def prune(self, site: SiteConfig, kept: Sequence[BundleManifest], leftovers: Sequence[str]) -> Pruning:
        return PrunedNotes(Store(site), kept)

    def receipt(self, site: SiteConfig, state: SiteState) -> dict[str, Any]:
        return {"notes": [{"name": name, **held} for name, held in sorted(Store(site).index().items())]}

    # --- reports ---------------------------------------------------------------------------------

    def inspect_rows(self, entries: Sequence[NoteEntry]) -> list[dict[str, Any]]:
        return [n.to_dict() for n in entries]

    def inspect_lines(self, rows: list[dict[str, Any]]) -> list[str]:
        return ([f"notes ({len(rows)}):"] if rows else []) + [
            f"  {printable(r['name'])} ({r['size']} bytes)  {r['sha256'][:12]}" for r in rows]

    def diff(self, old: Sequence[NoteEntry], new: Sequence[NoteEntry]) -> dict[str, Any]:
        return changes({n.name: n.sha256[:12] for n in old}, {n.name: n.sha256[:12] for n in new})


KIND = Notes()
