"""What the format asks of a content kind, and the kinds registered with it.

The format (bundle.json's entries, the content digest, a delta's bases, the verifier's OCI tops and
graph checks) iterates over the kinds it is given; it never imports them. `bundler.kinds` registers
every kind here when it is imported, which every command does before it reads a bundle."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from bundler.jsontypes import Doc, Out
from bundler.registered import Registered

if TYPE_CHECKING:
    from bundler.oci.layout import OciTop
    from bundler.problems import Problem
    from bundler.untrusted import Obj


class Entry(Protocol):
    """A kind's bundle.json entry: a record of its own type, written back as it was read."""

    def to_dict(self) -> Doc: ...


class EntryType(Protocol):
    """A kind's entry type: `parse` makes an entry from bundle.json's object, totally (untrusted.Malformed
    naming the field)."""

    def parse(self, obj: Obj) -> Entry: ...


class KindFormat(Protocol):
    """A kind's format role (bundler.kinds.base.Format implements it, typed). The manifest and the
    reader are `Any` here: this module is what they import, so it names neither (the role's own
    signatures name them)."""

    def check_entries(self, manifest: Any) -> None: ...

    def content(self, entries: Sequence[Entry]) -> Sequence[Out]: ...

    def oci_tops(self, entries: Sequence[Entry]) -> list[OciTop]: ...

    def graph_problems(self, reader: Any, manifest: Any, read_packs: bool) -> list[Problem]: ...

    def base_from_receipt(self, receipt: Obj) -> Hashable | None: ...

    def base_from_entries(self, entries: Sequence[Entry]) -> Hashable | None: ...


class FormatKind(Protocol):
    """What the format reads of a registered kind: its names and its format role."""

    @property
    def key(self) -> str: ...

    @property
    def entry_type(self) -> EntryType: ...

    @property
    def in_v1(self) -> bool: ...

    @property
    def payload_pattern(self) -> str: ...  # a regular expression: the bundle paths of its own payloads ("" for none)

    @property
    def format(self) -> KindFormat: ...


_KINDS: Registered[FormatKind] = Registered("reading a bundle")
register = _KINDS.set
registered = _KINDS.get
