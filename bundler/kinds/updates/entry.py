"""An update's entry in bundle.json."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from bundler import debcontrol, names
from bundler.jsontypes import Doc
from bundler.kinds.updates.windows import AKSEE, WINDOWS_KINDS, WindowsInfo
from bundler.untrusted import Obj

if TYPE_CHECKING:
    from bundler.bundle.manifest import BundleManifest

KEY = "updates"
UPDATE_KINDS = ("deb", "rpm", "msu", "cab", "msi", AKSEE, "vm-image", "file")  # the kind owns its names
PAYLOAD_PATTERN = r"updates/[a-f0-9]{64}"  # where a bundle carries an update: by its sha256


def update_path(sha256: str) -> str:
    return f"updates/{sha256}"

_METADATA_KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class UpdateEntry:
    """One OS or VM update payload, stored by digest under updates/."""

    name: str
    kind: str
    file: str  # its original file name (what clients download it as)
    sha256: str
    size: int
    metadata: dict[str, str] = field(default_factory=dict)  # package, version, arch, control, ...
    approve: tuple[str, ...] = ()
    windows: WindowsInfo | None = None  # a Windows payload's KB, OS builds, requirements, AKS EE versions

    @property
    def path(self) -> str:
        return update_path(self.sha256)

    def to_dict(self) -> Doc:
        return {"name": self.name, "kind": self.kind, "file": self.file, "sha256": self.sha256, "size": self.size,
                "metadata": dict(sorted(self.metadata.items())), "approve": list(self.approve),
                **({"windows": self.windows.to_dict()} if self.windows is not None else {})}

    @classmethod
    def parse(cls, d: Obj) -> UpdateEntry:
        found = d.obj("windows", default=None)
        windows = WindowsInfo.parse(found) if found is not None else None
        kind = d.string("kind", names.one_of(*UPDATE_KINDS))
        if windows is not None and kind not in WINDOWS_KINDS:
            raise d.fail(f"windows is for {', '.join(WINDOWS_KINDS)} payloads, not {kind}")
        if kind == AKSEE and (windows is None or windows.aksee_to is None):
            raise d.fail("an AKS EE fragment names the versions it takes a node from and to (windows.aksee_*)")
        return cls(d.string("name", names.update_name), kind,
                   d.string("file", names.file_name), d.string("sha256", names.sha256_hex), d.integer("size"),
                   d.mapping("metadata", metadata_key, metadata_value, required=False),
                   d.strings("approve", names.group), windows)


def metadata_key(value: str) -> str:
    return names.checked(value, _METADATA_KEY_RE, "a metadata key (lowercase letters, digits, _ -)")


def metadata_value(value: str) -> str:
    """Free text, except a .deb's control stanza: that must be one valid stanza (the site's apt
    index is written from its parsed fields, never from the text)."""
    if "\n" in value:
        debcontrol.parse(value)
        return value
    return names.text(value)


def updates_of(manifest: BundleManifest) -> tuple[UpdateEntry, ...]:
    return cast("tuple[UpdateEntry, ...]", manifest.entries(KEY))
