"""`bundler sign`: add a signature to a bundle in place, without touching its payloads.

signatures.json is the tar's last member; a countersignature appends a new signatures.json (all
earlier signatures plus the new one) where the end-of-archive blocks were. Readers take the last
one. Before that, every payload is hashed (a countersignature vouches for the content): one read
of the bundle; what is written is a few kilobytes whatever its size (for a split bundle, into its
last part, which is hashed again for the parts index).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from bundler import problems, signing
from bundler.bundle import layout
from bundler.bundle.manifest import signatures_json
from bundler.bundle.parts import rewrite_tail
from bundler.bundle.reader import BundleReader
from bundler.bundle.verify import part_problems, payload_problems, structure_problems
from bundler.bundle.writer import END_OF_ARCHIVE, padding, tar_header
from bundler.errors import BundlerError, IntegrityError
from bundler.fsutil import pwrite_all
from bundler.problems import Problem
from bundler.progress import byte_progress


def existing_signature_problems(manifest_bytes: bytes, existing: Sequence[Mapping[str, str]],
                                known: tuple[signing.TrustedKey, ...]) -> list[Problem]:
    """With the signers' public keys given: every signature already on the bundle must be by one of
    them and valid over these exact bytes (a countersignature next to a forged one vouches for it)."""
    if not known or not existing:
        return []
    verdict = signing.evaluate(signing.TrustPolicy(known, 1), manifest_bytes, existing)
    found = [p for p in verdict.problems if p.code == problems.SIGNATURE_INVALID]
    found += [Problem(problems.SIGNER_UNKNOWN, s.keyid,
                      f"it is signed by key {s.keyid[:12]}, whose public key was not given (--check-key)")
              for s in verdict.signers if s.name is None]
    return found


def add_signature(path: Path, key: ec.EllipticCurvePrivateKey, jobs: int = 4,
                  check_keys: tuple[signing.TrustedKey, ...] = ()) -> str:
    """Sign the bundle's bundle.json with `key` (a whole bundle, or a split one by its index or any
    part); return the new signer's key id. A countersignature vouches for content: the bundle's
    structure and every payload's digest are checked first, and a bundle that fails is not signed."""
    with BundleReader(path) as reader:
        manifest, manifest_bytes, digest = reader.manifest()
        existing = reader.signatures()
        found = existing_signature_problems(manifest_bytes, existing, check_keys)
        found += structure_problems(reader, manifest)
        if not found:
            with byte_progress("verifying", sum(e.size for e in manifest.files.values())) as progress:
                found = payload_problems(reader, manifest, jobs, progress.advance)
            found += part_problems(reader, digest, bool(found))
        end = reader.end_of_members
        index = reader.parts.index if reader.parts is not None else None
        lost = reader.parts.unread if reader.parts is not None else set()
    if lost and not found:
        raise IntegrityError(f"{path} verifies, but {', '.join(sorted(lost))} can only be read from its parity parts "
                             "here: not signing a set that is not whole",
                             hint="copy the set again (or `bundler verify` it, which rebuilds what it can to check "
                                  "it); sign a whole set")
    if found:
        raise IntegrityError(f"{path} does not verify, not signing it: {'; '.join(map(str, found[:3]))}",
                             hint="get a fresh copy from its source; sign only what you have verified")
    entry = signing.sign(key, manifest_bytes)
    if any(s.get("keyid") == entry["keyid"] for s in existing):
        raise BundlerError(f"{path} is already signed by key {entry['keyid'][:12]}",
                           hint="a key signs once; a countersignature needs a different key")
    data = signatures_json([*existing, entry])
    member = tar_header(layout.SIGNATURES, len(data), int(dt.datetime.now(dt.UTC).timestamp()))
    member += data + b"\0" * padding(len(data)) + END_OF_ARCHIVE
    if index is not None:  # the last part changes (and is hashed again); payload parts stay as they are
        rewrite_tail(index, end, member)
        return entry["keyid"]
    fd = os.open(path, os.O_WRONLY)
    try:
        pwrite_all(fd, member, end)
        os.ftruncate(fd, end + len(member))
        os.fsync(fd)
    finally:
        os.close(fd)
    return entry["keyid"]
