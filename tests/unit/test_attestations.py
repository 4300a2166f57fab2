"""Attestations judged (bundler/kinds/images/attest.py): a keyed DSSE attestation in cosign's `.att`
manifest counts only when a rule's key signed it and it is about this image; a rule's conditions
over SLSA provenance v1's fields are matched whole."""

from __future__ import annotations

import base64
import hashlib
import json

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from bundler.kinds.images.attest import DSSE_LAYER, IN_TOTO, SLSA_PROVENANCE, AttestationRule, keyed_statements
from bundler.oci import media
from bundler.signing import TrustedKey

IMAGE = "sha256:" + "ab" * 32
PROVENANCE = {"buildDefinition": {"externalParameters": {"workflow": {"repository": "https://github.com/acme/pos",
                                                                      "ref": "refs/heads/main"}}},
              "runDetails": {"builder": {"id": "https://github.com/actions/runner/github-hosted"}}}


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def att_manifest(key: ec.EllipticCurvePrivateKey, subject: str = IMAGE) -> tuple[str, dict[str, bytes]]:
    """cosign's `.att` manifest holding one DSSE envelope of an SLSA statement, signed by `key`."""
    statement = json.dumps({"_type": "https://in-toto.io/Statement/v1", "predicateType": SLSA_PROVENANCE,
                            "subject": [{"name": "x", "digest": {"sha256": subject[7:]}}],
                            "predicate": PROVENANCE}).encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(IN_TOTO), IN_TOTO.encode(), len(statement), statement)
    envelope = json.dumps({"payloadType": IN_TOTO, "payload": base64.b64encode(statement).decode(),
                           "signatures": [{"keyid": "", "sig": base64.b64encode(
                               key.sign(pae, ec.ECDSA(hashes.SHA256()))).decode()}]}).encode()
    config = b"{}"
    manifest = json.dumps({"schemaVersion": 2, "mediaType": media.OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": _digest(config), "size": len(config)},
                           "layers": [{"mediaType": DSSE_LAYER, "digest": _digest(envelope),
                                       "size": len(envelope)}]}).encode()
    blobs = {_digest(b): b for b in (config, envelope, manifest)}
    return _digest(manifest), blobs


def trusted(key: ec.EllipticCurvePrivateKey) -> TrustedKey:
    return TrustedKey("release", key.public_key())


def test_a_keyed_attestation_counts_only_when_a_rule_key_signed_it_about_this_image() -> None:
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    manifest, blobs = att_manifest(key)
    assert keyed_statements(blobs.__getitem__, manifest, IMAGE, [trusted(key)]) == [(SLSA_PROVENANCE, PROVENANCE)]
    assert keyed_statements(blobs.__getitem__, manifest, IMAGE, [trusted(other)]) == []  # another key's
    assert keyed_statements(blobs.__getitem__, manifest, "sha256:" + "cd" * 32, [trusted(key)]) == []  # another image


def test_conditions_are_matched_whole_and_say_which_field_failed() -> None:
    rule = AttestationRule(SLSA_PROVENANCE, (("builder", r"https://github\.com/actions/runner/.*"),
                                             ("repository", r"https://github\.com/acme/.+"),
                                             ("ref", "refs/heads/main")))
    assert rule.mismatch(PROVENANCE) is None
    assert "with builder" in str(rule)
    narrower = AttestationRule(SLSA_PROVENANCE, (("ref", "refs/heads/mai"),))  # a prefix is not a match
    assert narrower.mismatch(PROVENANCE) == "its ref is 'refs/heads/main', not refs/heads/mai"
    assert AttestationRule(SLSA_PROVENANCE, (("builder", ".*"),)).mismatch({}) == "its builder is None, not .*"
