"""A Sigstore instance of the tests' own, offline: a Fulcio-like CA issuing short-lived code-signing
certificates with the OIDC issuer and subject in them (and an embedded SCT from a CT log key), a
Rekor-like log that signs checkpoints and entry timestamps, and the `trusted_root.json` naming them.
Keyless signatures and attestations made with it are what cosign v3 attaches to an image: a Sigstore
bundle (v0.3: a DSSE-wrapped in-toto statement, a transparency-log entry with its inclusion proof and
signed checkpoint, and its signed entry timestamp), stored as an OCI referrer of the image.

Every part a verifier judges can be made wrong on purpose (`Fault`), to test that each is refused."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bundler.oci import media
from bundler.oci.client import RegistryClient

FULCIO_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
FULCIO_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
SCT_LIST = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
IN_TOTO = "application/vnd.in-toto+json"
COSIGN_SIGN = "https://sigstore.dev/cosign/sign/v1"
SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
GITHUB = "https://token.actions.githubusercontent.com"
WORKFLOW = "https://github.com/acme/pos/.github/workflows/release.yml@refs/heads/main"


def _spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _key_id(key: ec.EllipticCurvePublicKey) -> bytes:
    return hashlib.sha256(_spki(key)).digest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _der_utf8(text: str) -> bytes:
    raw = text.encode()
    assert len(raw) < 128
    return bytes([0x0C, len(raw)]) + raw


def _octets(data: bytes) -> bytes:
    length = len(data)
    if length < 128:
        return bytes([0x04, length]) + data
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x04, 0x80 | len(size)]) + size + data


def _pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what a DSSE signature signs."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _leaf_hash(body: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + body).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _root(leaves: list[bytes]) -> bytes:
    """RFC 6962's Merkle tree hash of leaf hashes."""
    if len(leaves) == 1:
        return leaves[0]
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    return _node(_root(leaves[:split]), _root(leaves[split:]))


def _path(index: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962's audit path of leaf `index`, bottom up."""
    if len(leaves) == 1:
        return []
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    if index < split:
        return [*_path(index, leaves[:split]), _root(leaves[split:])]
    return [*_path(index - split, leaves[split:]), _root(leaves[:split])]


@dataclass(frozen=True)
class Fault:
    """What to make wrong in one signature (each refused by a verifier that judges it)."""
    expired_at_signing: bool = False  # the log's time falls after the certificate expired
    no_proof: bool = False  # no inclusion proof in the log entry
    proof_of_other_entry: bool = False  # the inclusion proof (and checkpoint) of another entry of the log
    foreign_log_key: bool = False  # the checkpoint and entry timestamp signed by a log key not in the root
    subject_digest: str | None = None  # the statement names another image digest


@dataclass
class Instance:
    """The CA, the CT log and the transparency log, and the trusted root that names them."""
    ca_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    ct_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    log_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    origin: str = "rekor.lab.invalid - 1193050959916656506"
    entries: list[bytes] = field(default_factory=list)  # the log's bodies, in order

    def __post_init__(self) -> None:
        start = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lab.invalid"),
                          x509.NameAttribute(NameOID.COMMON_NAME, "lab fulcio")])
        ski = x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key())
        self.ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(self.ca_key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(start).not_valid_after(start + dt.timedelta(days=3650))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
                   .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                  critical=True)
                   .add_extension(ski, critical=False)
                   .sign(self.ca_key, hashes.SHA256()))

    # --- the trusted root -------------------------------------------------------------------------

    def trusted_root(self, log_keys: list[ec.EllipticCurvePublicKey] | None = None) -> bytes:
        """`trusted_root.json` naming this instance's CA, CT log and transparency log (`log_keys`:
        other log keys instead, for a root that does not trust this log)."""
        start = _time(self.ca.not_valid_before_utc)

        def log(key: ec.EllipticCurvePublicKey, url: str) -> dict[str, object]:
            return {"baseUrl": url, "hashAlgorithm": "SHA2_256",
                    "publicKey": {"rawBytes": _b64(_spki(key)), "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                                  "validFor": {"start": start}},
                    "logId": {"keyId": _b64(_key_id(key))}}

        return json.dumps({
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [log(key, "https://rekor.lab.invalid")
                      for key in (log_keys if log_keys is not None else [self.log_key.public_key()])],
            "certificateAuthorities": [{
                "subject": {"organization": "lab.invalid", "commonName": "lab fulcio"},
                "uri": "https://fulcio.lab.invalid",
                "certChain": {"certificates": [{"rawBytes": _b64(self.ca.public_bytes(serialization.Encoding.DER))}]},
                "validFor": {"start": start}}],
            "ctlogs": [log(self.ct_key.public_key(), "https://ctfe.lab.invalid")],
            "timestampAuthorities": [],
        }, indent=1).encode()

    # --- Fulcio ------------------------------------------------------------------------------------

    def certificate(self, key: ec.EllipticCurvePrivateKey, issuer: str, subject: str,
                    not_before: dt.datetime) -> x509.Certificate:
        """A 10-minute code-signing certificate for `key`, naming the OIDC issuer and the subject (a URI:
        a workflow; else an e-mail address), with an SCT embedded."""
        san: x509.GeneralName = (x509.UniformResourceIdentifier(subject) if "://" in subject
                                 else x509.RFC822Name(subject))
        builder = (x509.CertificateBuilder().subject_name(x509.Name([]))
                   .issuer_name(self.ca.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(not_before).not_valid_after(not_before + dt.timedelta(minutes=10))
                   .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                                  critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                                  critical=False)
                   .add_extension(x509.SubjectAlternativeName([san]), critical=True)
                   .add_extension(x509.UnrecognizedExtension(FULCIO_ISSUER_V1, issuer.encode()), critical=False)
                   .add_extension(x509.UnrecognizedExtension(FULCIO_ISSUER_V2, _der_utf8(issuer)), critical=False))
        pre = builder.sign(self.ca_key, hashes.SHA256())
        sct = self._sct(pre.tbs_certificate_bytes, not_before + dt.timedelta(seconds=1))
        cert = builder.add_extension(x509.UnrecognizedExtension(SCT_LIST, _octets(sct)),
                                     critical=False).sign(self.ca_key, hashes.SHA256())
        assert cert.tbs_precertificate_bytes == pre.tbs_certificate_bytes
        return cert

    def _sct(self, tbs: bytes, when: dt.datetime) -> bytes:
        """A SignedCertificateTimestampList with one precertificate SCT by the CT log key."""
        millis = int(when.timestamp() * 1000)
        issuer_key_hash = _key_id(self.ca_key.public_key())
        entry = issuer_key_hash + len(tbs).to_bytes(3, "big") + tbs
        signed = struct.pack("!BBQH", 0, 0, millis, 1) + entry + struct.pack("!H", 0)
        signature = self.ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        sct = (bytes([0]) + _key_id(self.ct_key.public_key()) + struct.pack("!QH", millis, 0)
               + bytes([4, 3]) + struct.pack("!H", len(signature)) + signature)
        single = struct.pack("!H", len(sct)) + sct
        return struct.pack("!H", len(single)) + single

    # --- signing -----------------------------------------------------------------------------------

    def attest(self, image_digest: str, predicate_type: str = COSIGN_SIGN, predicate: dict[str, object] | None = None,
               issuer: str = GITHUB, subject: str = WORKFLOW, fault: Fault = Fault()) -> bytes:
        """A Sigstore bundle (v0.3) of an in-toto statement about `image_digest`, signed keyless
        (cosign v3's image signature is the predicate `https://sigstore.dev/cosign/sign/v1`)."""
        digest = fault.subject_digest or image_digest
        statement = json.dumps({"_type": "https://in-toto.io/Statement/v1",
                                "subject": [{"name": "image", "digest": {"sha256": digest.split(":", 1)[1]}}],
                                "predicateType": predicate_type, "predicate": predicate or {}}).encode()
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        signed_at = now + dt.timedelta(minutes=30) if fault.expired_at_signing else now
        cert = self.certificate(key, issuer, subject, now - dt.timedelta(minutes=1))
        signature = key.sign(_pae(IN_TOTO, statement), ec.ECDSA(hashes.SHA256()))
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        envelope = json.dumps({"payload": _b64(statement), "payloadType": IN_TOTO,
                               "signatures": [{"sig": _b64(signature), "keyid": ""}]}, separators=(",", ":")).encode()
        body = json.dumps({"apiVersion": "0.0.1", "kind": "dsse", "spec": {
            "envelopeHash": {"algorithm": "sha256", "value": hashlib.sha256(envelope).hexdigest()},
            "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(statement).hexdigest()},
            "signatures": [{"signature": _b64(signature), "verifier": _b64(cert_pem)}]}},
            separators=(",", ":"), sort_keys=True).encode()
        entry = self._log(body, int(signed_at.timestamp()), fault)
        return json.dumps({
            "mediaType": BUNDLE_TYPE,
            "verificationMaterial": {"certificate": {"rawBytes": _b64(cert.public_bytes(serialization.Encoding.DER))},
                                     "tlogEntries": [entry]},
            "dsseEnvelope": {"payload": _b64(statement), "payloadType": IN_TOTO,
                             "signatures": [{"sig": _b64(signature), "keyid": ""}]},
        }).encode()

    def sign_tag_scheme(self, image_digest: str, issuer: str = GITHUB, subject: str = WORKFLOW,
                        fault: Fault = Fault()) -> tuple[bytes, dict[str, str]]:
        """A keyless signature as cosign v2 writes it in its tag scheme: the simple-signing payload and
        the layer's annotations (signature, certificate, chain, and the log's signed entry timestamp)."""
        payload = json.dumps({"critical": {"identity": {"docker-reference": "lab.invalid/pos"},
                                           "image": {"docker-manifest-digest": fault.subject_digest or image_digest},
                                           "type": "cosign container image signature"}, "optional": None}).encode()
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        cert = self.certificate(key, issuer, subject, now - dt.timedelta(minutes=1))
        signature = _b64(key.sign(payload, ec.ECDSA(hashes.SHA256())))
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        hashed = hashlib.sha256(b"another payload" if fault.proof_of_other_entry else payload).hexdigest()
        body = json.dumps({"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": hashed}},
            "signature": {"content": signature, "publicKey": {"content": _b64(cert_pem)}}}},
            separators=(",", ":"), sort_keys=True).encode()
        return payload, {"dev.cosignproject.cosign/signature": signature,
                         **self._tag_log(body, cert, now, fault)}

    def attest_tag_scheme(self, image_digest: str, predicate_type: str, predicate: dict[str, object],
                          issuer: str = GITHUB, subject: str = WORKFLOW,
                          fault: Fault = Fault()) -> tuple[bytes, dict[str, str]]:
        """A keyless attestation as cosign v2 writes it in its tag scheme (`.att`): the DSSE envelope
        (the layer) and its annotations; logged as an `intoto` 0.0.2 entry."""
        digest = fault.subject_digest or image_digest
        statement = json.dumps({"_type": "https://in-toto.io/Statement/v1", "predicateType": predicate_type,
                                "subject": [{"name": "image", "digest": {"sha256": digest.split(":", 1)[1]}}],
                                "predicate": predicate}).encode()
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        cert = self.certificate(key, issuer, subject, now - dt.timedelta(minutes=1))
        signature = _b64(key.sign(_pae(IN_TOTO, statement), ec.ECDSA(hashes.SHA256())))
        envelope = json.dumps({"payloadType": IN_TOTO, "payload": _b64(statement),
                               "signatures": [{"keyid": "", "sig": signature}]}).encode()
        logged = b"another statement" if fault.proof_of_other_entry else statement
        body = json.dumps({"apiVersion": "0.0.2", "kind": "intoto", "spec": {"content": {
            "envelope": {"payloadType": IN_TOTO, "signatures": [
                {"sig": _b64(signature.encode()), "publicKey": _b64(cert.public_bytes(serialization.Encoding.PEM))}]},
            "hash": {"algorithm": "sha256", "value": hashlib.sha256(envelope).hexdigest()},
            "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(logged).hexdigest()}}}},
            separators=(",", ":"), sort_keys=True).encode()
        return envelope, {"dev.cosignproject.cosign/signature": "", "predicateType": predicate_type,
                          **self._tag_log(body, cert, now, fault)}

    def _tag_log(self, body: bytes, cert: x509.Certificate, now: dt.datetime, fault: Fault) -> dict[str, str]:
        """`body` appended to the log; the annotations the tag scheme carries of it (the certificate,
        its chain, the log's signed entry timestamp), or as `fault` says."""
        import rfc8785

        self.entries.append(body)
        integrated = int((now + dt.timedelta(minutes=30) if fault.expired_at_signing else now).timestamp())
        signer = ec.generate_private_key(ec.SECP256R1()) if fault.foreign_log_key else self.log_key
        entry = {"body": _b64(body), "integratedTime": integrated, "logID": _key_id(signer.public_key()).hex(),
                 "logIndex": len(self.entries) - 1}
        promise = signer.sign(rfc8785.dumps(entry), ec.ECDSA(hashes.SHA256()))
        notes = {"dev.sigstore.cosign/certificate": cert.public_bytes(serialization.Encoding.PEM).decode(),
                 "dev.sigstore.cosign/chain": self.ca.public_bytes(serialization.Encoding.PEM).decode(),
                 "dev.sigstore.cosign/bundle": json.dumps({"SignedEntryTimestamp": _b64(promise), "Payload": entry})}
        if fault.no_proof:
            del notes["dev.sigstore.cosign/bundle"]
        return notes

    def _log(self, body: bytes, integrated: int, fault: Fault) -> dict[str, object]:
        """Append `body` to the log; its entry as a bundle carries it (the proof, checkpoint and entry
        timestamp signed by the log's key, or as `fault` says)."""
        self.entries.append(body)
        index = len(self.entries) - 1
        if fault.proof_of_other_entry:
            self.entries.append(b'{"another":"entry"}')
        leaves = [_leaf_hash(b) for b in self.entries]
        proven = index + 1 if fault.proof_of_other_entry else index
        root = _root(leaves)
        signer = ec.generate_private_key(ec.SECP256R1()) if fault.foreign_log_key else self.log_key
        log_id = _key_id(signer.public_key())
        note = f"{self.origin}\n{len(leaves)}\n{_b64(root)}\n"
        note_sig = signer.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        checkpoint = f"{note}\n\u2014 {self.origin.split()[0]} {_b64(log_id[:4] + note_sig)}\n"
        promise = json.dumps({"body": _b64(body), "integratedTime": integrated, "logID": log_id.hex(),
                              "logIndex": index}, separators=(",", ":"), sort_keys=True).encode()
        entry: dict[str, object] = {
            "logIndex": str(index), "logId": {"keyId": _b64(log_id)},
            "kindVersion": {"kind": "dsse", "version": "0.0.1"}, "integratedTime": str(integrated),
            "inclusionPromise": {"signedEntryTimestamp": _b64(signer.sign(promise, ec.ECDSA(hashes.SHA256())))},
            "canonicalizedBody": _b64(body)}
        if not fault.no_proof:
            entry["inclusionProof"] = {"logIndex": str(proven), "rootHash": _b64(root), "treeSize": str(len(leaves)),
                                       "hashes": [_b64(h) for h in _path(proven, leaves)],
                                       "checkpoint": {"envelope": checkpoint}}
        return entry


def attach(client: RegistryClient, repo: str, subject: str, bundles: list[bytes],
           predicate_type: str = COSIGN_SIGN) -> list[str]:
    """Push Sigstore bundles as OCI referrers of `subject`, as cosign v3 does, with the referrers
    fallback tag (`sha256-<hex>`: the tests' registry has no referrers API); their manifests' digests."""
    data, subject_type, _ = client.get_manifest(repo, subject)
    descriptors = []
    for bundle in bundles:
        digest = _attach_one(client, repo, subject, subject_type, len(data), bundle, predicate_type)
        descriptors.append({"mediaType": media.OCI_MANIFEST, "digest": digest[0], "size": digest[1],
                            "artifactType": BUNDLE_TYPE})
    index = json.dumps({"schemaVersion": 2, "mediaType": media.OCI_INDEX, "manifests": descriptors}).encode()
    client.put_manifest(repo, f"sha256-{subject[7:]}", index, media.OCI_INDEX)
    return [str(d["digest"]) for d in descriptors]


def _attach_one(client: RegistryClient, repo: str, subject: str, subject_type: str, subject_size: int,
                bundle: bytes, predicate_type: str) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(bundle).hexdigest()
    client.push_blob(repo, digest, len(bundle), lambda: iter([bundle]))
    empty = b"{}"
    client.push_blob(repo, "sha256:" + hashlib.sha256(empty).hexdigest(), 2, lambda: iter([empty]))
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": media.OCI_MANIFEST, "artifactType": BUNDLE_TYPE,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                   "digest": "sha256:" + hashlib.sha256(empty).hexdigest(), "size": 2},
        "layers": [{"mediaType": BUNDLE_TYPE, "digest": digest, "size": len(bundle),
                    "annotations": {"org.opencontainers.image.title": f"sha256-{digest[7:]}.sigstore.json"}}],
        "subject": {"mediaType": subject_type, "digest": subject, "size": subject_size},
        "annotations": {"dev.sigstore.bundle.content": "dsse-envelope",
                        "dev.sigstore.bundle.predicateType": predicate_type}}).encode()
    manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    client.put_manifest(repo, manifest_digest, manifest, media.OCI_MANIFEST)
    return manifest_digest, len(manifest)


def write_root(instance: Instance, path: Path) -> Path:
    path.write_bytes(instance.trusted_root())
    return path
