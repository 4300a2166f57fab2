"""`bundler inspect`: what a bundle says it holds, from bundle.json alone (payloads are not read)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bundler.bundle import layout
from bundler.bundle.kinds import Entry
from bundler.bundle.reader import BundleReader
from bundler.bundle.verify import read_verified
from bundler.errors import UsageError
from bundler.jsontypes import Doc
from bundler.kinds import KINDS


@dataclass(frozen=True)
class BundleSummary:
    """What a bundle says it holds (`bundler inspect`): its own fields, and each kind's rows by its key."""
    name: str
    version: str
    manifest_digest: str
    content_digest: str
    created: str
    expires: str | None
    parent: dict[str, str] | None  # a delta's parent, as bundle.json names it
    size: int
    payload_bytes: int
    signers: list[str]  # key ids
    signer_names: dict[str, str | None]  # the reviewer's names for them (unchecked)
    required_files: int  # a delta: what the site must hold
    required_bytes: int
    kinds: dict[str, tuple[Entry, ...]]  # each kind's entries, by its key

    def to_dict(self) -> Doc:
        return {"name": self.name, "version": self.version, "manifest_digest": self.manifest_digest,
                "content_digest": self.content_digest, "created": self.created, "expires": self.expires,
                "parent": self.parent, "size": self.size, "payload_bytes": self.payload_bytes,
                "signers": self.signers, "signer_names": self.signer_names,
                "requires": {"files": self.required_files, "bytes": self.required_bytes},
                **{kind.key: kind.report.inspect_rows(self.kinds[kind.key]) for kind in KINDS}}

    def lines(self) -> list[str]:
        """Each kind's lines of `bundler inspect` (after the bundle's own)."""
        return [line for kind in KINDS for line in kind.report.lines(self.kinds[kind.key])]


def inspect_bundle(path: Path, key_names: dict[str, str] | None = None) -> BundleSummary:
    """`key_names`: key id -> name of the reviewer's keys, to name signers (unchecked: `verify` checks)."""
    with BundleReader(path) as reader:
        manifest, _, digest = reader.manifest()
        signers = [str(s.get("keyid", "")) for s in reader.signatures()]
        size = reader.size
    return BundleSummary(
        manifest.name, manifest.version, digest, manifest.content_digest, manifest.created, manifest.expires,
        manifest.parent, size, sum(f.size for f in manifest.files.values()), signers,
        {k: (key_names or {}).get(k) for k in signers}, len(manifest.requires),
        sum(f.size for f in manifest.requires.values()),
        {kind.key: manifest.entries(kind.key) for kind in KINDS})


def sbom_bytes(reader: BundleReader) -> bytes:
    """The bundle's SBOM, its bytes checked against bundle.json (signatures: `verify`)."""
    manifest, _, _ = reader.manifest()
    data = read_verified(reader, manifest, layout.SBOM, layout.MAX_SBOM_BYTES)
    if data is None:
        raise UsageError(f"{reader.path} carries no {layout.SBOM}",
                         hint="bundles built before bundler wrote SBOMs have none: build it again")
    return data
