"""Attestations judged, not only carried: an image policy rule may require an in-toto attestation of a
predicate type (SLSA provenance v1 first) whose fields match the rule's conditions, signed by the
rule's signers: keyless (a Sigstore bundle among the image's referrers, judged by keyless.py against
the pinned root) or keyed (cosign's `.att` tag: DSSE envelopes signed by one of the rule's keys).

SLSA provenance v1 fields a rule names (regular expressions, matched whole):

    builder     runDetails.builder.id
    repository  buildDefinition.externalParameters.workflow.repository
    ref         buildDefinition.externalParameters.workflow.ref
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from bundler.oci import media
from bundler.signing import TrustedKey, ecdsa_valid

SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
DSSE_LAYER = "application/vnd.dsse.envelope.v1+json"
IN_TOTO = "application/vnd.in-toto+json"
FIELDS = {"builder": ("runDetails", "builder", "id"),
          "repository": ("buildDefinition", "externalParameters", "workflow", "repository"),
          "ref": ("buildDefinition", "externalParameters", "workflow", "ref")}
MAX_ENVELOPE = 4 << 20


@dataclass(frozen=True)
class AttestationRule:
    """An attestation an image must carry: its predicate type and conditions on its fields (name ->
    regular expression, the names in FIELDS)."""
    predicate_type: str
    conditions: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        said = ", ".join(f"{name} {pattern}" for name, pattern in self.conditions)
        return self.predicate_type + (f" with {said}" if said else "")

    def mismatch(self, predicate: Mapping[str, object]) -> str | None:
        """Why `predicate` does not meet the conditions (None: it does)."""
        for name, pattern in self.conditions:
            value: object = predicate
            for part in FIELDS[name]:
                value = value.get(part) if isinstance(value, dict) else None
            if not isinstance(value, str) or not re.fullmatch(pattern, value):
                return f"its {name} is {value!r}, not {pattern}"
        return None


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what a DSSE signature signs."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def keyed_statements(read: Callable[[str], bytes], att_manifest: str, subject: str,
                     keys: Sequence[TrustedKey]) -> list[tuple[str, dict[str, object]]]:
    """(predicate type, predicate) of each in-toto statement about `subject` in cosign's `.att`
    manifest whose DSSE envelope one of `keys` signed; what is malformed is left out."""
    found: list[tuple[str, dict[str, object]]] = []
    try:
        layers = media.image_blobs(read(att_manifest))[1:]
    except (media.ManifestError, ValueError):
        return found
    for layer in layers:
        if layer.media_type != DSSE_LAYER or layer.size > MAX_ENVELOPE:
            continue
        try:
            envelope = json.loads(read(layer.digest))
            payload = base64.b64decode(envelope["payload"], validate=True)
            signatures = [base64.b64decode(s["sig"], validate=True) for s in envelope["signatures"]]
            statement = json.loads(payload)
            about = [s["digest"]["sha256"] for s in statement["subject"]]
            predicate_type, predicate = str(statement["predicateType"]), statement.get("predicate") or {}
        except (ValueError, KeyError, TypeError, binascii.Error):
            continue
        if envelope.get("payloadType") != IN_TOTO or subject.split(":", 1)[1] not in about:
            continue
        signed = pae(IN_TOTO, payload)
        for key in keys:
            if any(ecdsa_valid(key.key, signature, signed) for signature in signatures):
                found.append((predicate_type, predicate if isinstance(predicate, dict) else {}))
                break
    return found

