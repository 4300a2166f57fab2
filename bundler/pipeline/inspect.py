"""`bundler inspect`: what a bundle says it holds, from bundle.json alone (payloads are not read)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bundler.bundle import layout
from bundler.bundle.reader import BundleReader
from bundler.bundle.verify import read_verified
from bundler.errors import UsageError
from bundler.kinds import KINDS


def inspect_bundle(path: Path, key_names: dict[str, str] | None = None) -> dict[str, Any]:
    """`key_names`: key id -> name of the reviewer's keys, to name signers (unchecked: `verify` checks).
    Each content kind lists its entries under its key (`inspect_text` shows them for people)."""
    with BundleReader(path) as reader:
        manifest, _, digest = reader.manifest()
        signers = [str(s.get("keyid", "")) for s in reader.signatures()]
        size = reader.size
    return {
        "name": manifest.name, "version": manifest.version, "manifest_digest": digest,
        "content_digest": manifest.content_digest,
        "created": manifest.created, "expires": manifest.expires, "parent": manifest.parent, "size": size,
        "payload_bytes": sum(f.size for f in manifest.files.values()), "signers": signers,
        "signer_names": {k: (key_names or {}).get(k) for k in signers},
        "requires": {"files": len(manifest.requires), "bytes": sum(f.size for f in manifest.requires.values())},
        **{kind.key: kind.report.inspect_rows(manifest.entries(kind.key)) for kind in KINDS},
    }


def inspect_text(info: dict[str, Any]) -> list[str]:
    """Each kind's lines of `bundler inspect` (after the bundle's own)."""
    return [line for kind in KINDS for line in kind.report.inspect_lines(info[kind.key])]


def sbom_bytes(reader: BundleReader) -> bytes:
    """The bundle's SBOM, its bytes checked against bundle.json (signatures: `verify`)."""
    manifest, _, _ = reader.manifest()
    data = read_verified(reader, manifest, layout.SBOM, layout.MAX_SBOM_BYTES)
    if data is None:
        raise UsageError(f"{reader.path} carries no {layout.SBOM}",
                         hint="bundles built before bundler wrote SBOMs have none: build it again")
    return data
