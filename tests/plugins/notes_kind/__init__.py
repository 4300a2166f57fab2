"""An example content kind, registered from outside bundler (tests/plugins: not shipped): text notes
a profile names (`spec.notes`), carried under notes/<sha256>, kept by the site under DIR/notes/ and
served at `/notes/<name>` (the site's accounts; the front sends the file), listed by inspect, `site
status` and the status page, pruned with the releases that carried them.

It is one package plus one registration line (bundler_notes-1.0.dist-info/entry_points.txt): the
proof that a kind with files, a route and a site service needs no edit inside bundler. Its roles:
build.py, format.py, stage.py, serve.py, prune.py, options.py and settings.py (its section of
site.yaml: notes served without an account), receipt.py, report.py; what they share is here."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from bundler import names
from bundler.bundle.manifest import BundleManifest
from bundler.jsontypes import Doc
from bundler.kinds.base import Kind, role_modules
from bundler.site.config import SiteConfig
from bundler.untrusted import Obj

KEY = "notes"
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,63}$")
SENT = "/_notes/"  # the front's internal location for note files


def note_name(value: str) -> str:
    return names.checked(value, NAME_RE, "a note name (lowercase letters, digits, -)")


@dataclass(frozen=True)
class NoteEntry:
    name: str
    sha256: str
    size: int

    @property
    def path(self) -> str:
        return f"notes/{self.sha256}"

    def to_dict(self) -> Doc:
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


KIND = Kind(KEY, "notes", "note", NoteEntry, payload_pattern=r"notes/[a-f0-9]{64}", roles=role_modules(
    __name__, build="NoteBuild", format="NoteFormat", stage="NoteStage", serve="NoteServe", prune="NotePrune",
    options="NoteOptions", settings="NoteSiteSettings", receipt="NoteReceipt", report="NoteReport"))
