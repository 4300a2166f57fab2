"""`bundler inspect`: what a bundle says it holds, from bundle.json alone (payloads are not read)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bundler.bundle.reader import BundleReader


def inspect_bundle(path: Path, key_names: dict[str, str] | None = None) -> dict[str, Any]:
    """`key_names`: key id -> name of the reviewer's keys, to name signers (unchecked: `verify` checks)."""
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
        "images": [{"ref": i.ref, "digest": i.digest, "platforms": list(i.platforms), "source": i.source,
                    "upstream_digest": i.upstream_digest} for i in manifest.images],
        "charts": [{"name": c.name, "version": c.version, "source": c.source, "digest": c.digest,
                    "tgz_digest": c.tgz_digest, "images": list(c.images)} for c in manifest.charts],
        "repos": [{"name": r.name, "url": r.url, "refs": r.refs, "prerequisites": list(r.prerequisites)}
                  for r in manifest.repos],
        "updates": [{"name": u.name, "kind": u.kind, "file": u.file, "sha256": u.sha256, "size": u.size,
                     "version": u.metadata.get("version", ""), "arch": u.metadata.get("arch", ""),
                     "approve": list(u.approve)} for u in manifest.updates],
    }
