"""VEX documents from a profile, carried as OCI referrers of their image: an OpenVEX document (`vex:`
on a `spec.images` item: what the product team says of its image's vulnerabilities, "not affected"
and why) becomes an artifact (`artifactType: application/vnd.openvex+json`, its layer the document)
whose subject is the image's manifest, listed in the image's referrers index beside those the source
registry had. It travels as referrers do (the site serves the index under the fallback tag
`sha256-<hex>`), where an in-cluster scanner that reads VEX from referrers finds it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from bundler.errors import UsageError
from bundler.keyfiles import read_operator_file
from bundler.kinds.images.entry import ImageEntry, ImageExtra
from bundler.names import sha256_digest
from bundler.oci import media
from bundler.oci.content import OciContent

OPENVEX = "application/vnd.openvex+json"
OPENVEX_CONTEXT = "https://openvex.dev/ns"
EMPTY = b"{}"
MAX_VEX = 4 << 20


def read_vex(path: Path) -> bytes:
    """An OpenVEX document's bytes, when they are one (UsageError naming the file otherwise)."""
    data = read_operator_file(path, "an OpenVEX document")
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise UsageError(f"{path}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or not str(doc.get("@context", "")).startswith(OPENVEX_CONTEXT) \
            or not isinstance(doc.get("statements"), list):
        raise UsageError(f"{path} is not an OpenVEX document (its @context is {OPENVEX_CONTEXT}/..., with statements)",
                         hint="write it with `vexctl create`, or see https://github.com/openvex/spec")
    if len(data) > MAX_VEX:
        raise UsageError(f"{path} is {len(data)} bytes, more than an OpenVEX document may be ({MAX_VEX})")
    return data


def attach_vex(entry: ImageEntry, document: bytes, oci: OciContent) -> ImageEntry:
    """`entry` with `document` as a referrer of its manifest: the artifact and a referrers index (the
    source's, with it added) in the collection, the index among the entry's extras."""
    subject = oci.small_blobs[entry.digest]
    oci.add_small_blob(sha256_digest(document), document)
    oci.add_small_blob(sha256_digest(EMPTY), EMPTY)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": media.OCI_MANIFEST, "artifactType": OPENVEX,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256_digest(EMPTY), "size": 2},
        "layers": [{"mediaType": OPENVEX, "digest": sha256_digest(document), "size": len(document),
                    "annotations": {"org.opencontainers.image.title": "vex.openvex.json"}}],
        "subject": {"mediaType": entry.media_type, "digest": entry.digest, "size": len(subject)}},
        separators=(",", ":")).encode()
    oci.add_small_blob(sha256_digest(manifest), manifest)
    listed = {"mediaType": media.OCI_MANIFEST, "digest": sha256_digest(manifest), "size": len(manifest),
              "artifactType": OPENVEX}
    earlier = next((e for e in entry.extras if e.kind == "referrers" and e.subject == entry.digest), None)
    children = json.loads(oci.small_blobs[earlier.digest]).get("manifests", []) if earlier is not None else []
    index = json.dumps({"schemaVersion": 2, "mediaType": media.OCI_INDEX,
                        "manifests": [*children, listed]}, separators=(",", ":")).encode()
    oci.add_small_blob(sha256_digest(index), index)
    extras = tuple(e for e in entry.extras if e is not earlier)
    referrers = ImageExtra("referrers", entry.digest, sha256_digest(index), media.OCI_INDEX)
    return replace(entry, extras=(*extras, referrers))
