"""An update's entry in bundle.json."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from bundler import debcontrol, names
from bundler.untrusted import Obj

if TYPE_CHECKING:
    from bundler.bundle.manifest import BundleManifest

KEY = "updates"
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

    @property
    def path(self) -> str:
        return update_path(self.sha256)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "file": self.file, "sha256": self.sha256, "size": self.size,
                "metadata": dict(sorted(self.metadata.items())), "approve": list(self.approve)}

    @classmethod
    def parse(cls, d: Obj) -> UpdateEntry:
        return cls(d.string("name", names.update_name), d.string("kind", names.update_kind),
                   d.string("file", names.file_name), d.string("sha256", names.sha256_hex), d.integer("size"),
                   d.mapping("metadata", metadata_key, metadata_value, required=False),
                   d.strings("approve", names.group))


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
