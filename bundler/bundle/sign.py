"""`bundler sign`: add a signature to a bundle in place, without touching its payloads.

signatures.json is the tar's last member; a countersignature appends a new signatures.json (all
earlier signatures plus the new one) where the end-of-archive blocks were. Readers take the last
one. The cost is a header scan and a few kilobytes written, whatever the bundle's size.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from bundler import signing
from bundler.bundle import layout
from bundler.bundle.manifest import signatures_json
from bundler.bundle.reader import BundleReader
from bundler.bundle.verify import structure_problems
from bundler.bundle.writer import END_OF_ARCHIVE, padding, tar_header
from bundler.errors import BundlerError, IntegrityError


def add_signature(path: Path, key: ec.EllipticCurvePrivateKey) -> str:
    """Sign the bundle's bundle.json with `key`; return the new signer's key id."""
    with BundleReader(path) as reader:
        if reader.parts is not None:
            raise BundlerError(f"{path} is a split bundle; bundler sign works on a whole one",
                               hint="countersign before splitting (build --split-size), or join the parts with "
                                    "`cat NAME.part-* > NAME` and sign that")
        manifest, manifest_bytes, _ = reader.manifest()
        existing = reader.signatures()
        problems = structure_problems(reader, manifest)
        end = reader.end_of_members
    if problems:
        raise IntegrityError(f"{path} is not a well-formed bundle, not signing it: {problems[0]}",
                             hint="run `bundler verify` on it; sign only what you have verified")
    entry = signing.sign(key, manifest_bytes)
    if any(s.get("keyid") == entry["keyid"] for s in existing):
        raise BundlerError(f"{path} is already signed by key {entry['keyid'][:12]}",
                           hint="a key signs once; a countersignature needs a different key")
    data = signatures_json([*existing, entry])
    member = tar_header(layout.SIGNATURES, len(data), int(dt.datetime.now(dt.UTC).timestamp()))
    member += data + b"\0" * padding(len(data)) + END_OF_ARCHIVE
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, member, end)
        os.ftruncate(fd, end + len(member))
        os.fsync(fd)
    finally:
        os.close(fd)
    return entry["keyid"]
