"""Keyless signatures in cosign's tag scheme (cosign v2's `sha256-<hex>.sig`, still what most public
images carry), judged offline as `cosign verify --offline` judges them. The scheme carries the
signature, the Fulcio certificate and the transparency log's signed entry timestamp (its signed
promise to include the entry), but no inclusion proof; sigstore-python refuses any log entry without
a proof, so this module verifies the scheme itself, with `cryptography`, against the same pinned
trusted root (its CAs, CT logs and transparency logs):

1. the simple-signing payload names this image's digest; the signature verifies with the
   certificate's key;
2. the log entry (hashedrekord) is this signature's: the payload's hash, the signature, the
   certificate; its signed entry timestamp verifies with a log key of the root (none: refused, no
   log proof);
3. the certificate chains to a CA of the root at the log's time, carries a valid SCT of a CT log of
   the root, and names an identity the rule allows (issuer, subject matched whole).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import hashlib
import json
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification as x509v
from cryptography.x509.oid import ExtendedKeyUsageOID

from bundler.kinds.images.attest import DSSE_LAYER, IN_TOTO, pae
from bundler.kinds.images.keyless import Identity, Judged, KeylessRefused, Root, certificate_identity
from bundler.oci import media
from bundler.signing import ecdsa_valid, key_id

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE = "dev.cosignproject.cosign/signature"
CERTIFICATE = "dev.sigstore.cosign/certificate"
CHAIN = "dev.sigstore.cosign/chain"
LOG_BUNDLE = "dev.sigstore.cosign/bundle"
SIMPLE_SIGNING_TYPE = "cosign container image signature"  # what the judgement says was signed
MAX_PAYLOAD = 1 << 20


def _key_id(key: ec.EllipticCurvePublicKey) -> bytes:
    """RFC 6962's key id (what a log id and an SCT name): sha256 of the key's SPKI."""
    return bytes.fromhex(key_id(key))


@dataclass(frozen=True)
class RootKeys:
    """What this module reads of a trusted root: its CA certificates, and its transparency-log and
    CT-log keys by key id."""
    cas: tuple[x509.Certificate, ...]
    logs: dict[bytes, ec.EllipticCurvePublicKey]
    ct_logs: dict[bytes, ec.EllipticCurvePublicKey]

    @classmethod
    @functools.lru_cache(maxsize=4)  # read once per root: every image of an import is judged against it
    def of(cls, root: Root) -> RootKeys:
        root.trusted()  # a trusted root, as sigstore reads it
        doc = json.loads(root.data)

        def keys(section: str) -> dict[bytes, ec.EllipticCurvePublicKey]:
            found = {}
            for log in doc.get(section) or []:
                key = serialization.load_der_public_key(base64.b64decode(log["publicKey"]["rawBytes"]))
                if isinstance(key, ec.EllipticCurvePublicKey):
                    found[_key_id(key)] = key
            return found

        cas = tuple(x509.load_der_x509_certificate(base64.b64decode(c["rawBytes"]))
                    for ca in doc.get("certificateAuthorities") or [] for c in ca["certChain"]["certificates"])
        return cls(cas, keys("tlogs"), keys("ctlogs"))


def judge_tag_scheme(read: Callable[[str], bytes], signature_manifest: str, image_digest: str,
                     identities: Sequence[Identity], root: Root) -> Judged:
    """The keyless signature in a `.sig` manifest (read(digest) -> bytes, checked by the caller) that
    holds for `image_digest` by one of `identities` against `root`; KeylessRefused saying why none does."""
    try:
        layers = media.image_blobs(read(signature_manifest))[1:]
    except (media.ManifestError, ValueError) as exc:
        raise KeylessRefused(f"its signature manifest is unreadable ({exc})") from None
    keys, why = RootKeys.of(root), []
    for layer in layers:
        notes = (layer.raw or {}).get("annotations")
        if layer.media_type != SIMPLE_SIGNING or not isinstance(notes, dict) or CERTIFICATE not in notes \
                or layer.size > MAX_PAYLOAD:
            continue
        try:
            return _judge(read(layer.digest), {str(k): str(v) for k, v in notes.items()}, image_digest, identities,
                          keys, root)
        except KeylessRefused as exc:
            why.append(str(exc))
        except (ValueError, KeyError, TypeError) as exc:  # JSON, base64, PEM or a field that is not there
            why.append(f"it is malformed ({type(exc).__name__}: {exc})")
    raise KeylessRefused("; ".join(why) or "its .sig holds no keyless signature")


def _judge(payload: bytes, notes: dict[str, str], image_digest: str, identities: Sequence[Identity],
           keys: RootKeys, root: Root) -> Judged:
    claimed = json.loads(payload)["critical"]["image"]["docker-manifest-digest"]
    if claimed != image_digest:
        raise KeylessRefused(f"it is about {str(claimed)[:19]}, not this image ({image_digest[:19]})")
    signature = base64.b64decode(notes.get(SIGNATURE, ""), validate=True)
    cert, issuer, subject = _signer(notes, identities, signature, payload)

    def logged(body: object) -> bool:  # hashedrekord: this payload's hash, this signature
        return _at(body, "kind") == "hashedrekord" and _at(body, "spec", "data", "hash", "value") == _sha256(payload) \
            and _at(body, "spec", "signature", "content") == notes.get(SIGNATURE) \
            and _pem(_at(body, "spec", "signature", "publicKey", "content")) == cert

    _held(cert, notes, keys, logged)
    return Judged(issuer, subject, SIMPLE_SIGNING_TYPE, {}, root.digest)


def judge_tag_scheme_attestations(read: Callable[[str], bytes], att_manifest: str, image_digest: str,
                                  identities: Sequence[Identity], root: Root,
                                  predicate_type: str) -> tuple[list[Judged], list[str]]:
    """The keyless attestations of `predicate_type` in cosign's `.att` manifest (DSSE envelopes of
    in-toto statements, logged as `intoto` entries) that hold for `image_digest` by one of
    `identities` against `root`, and why the others of that type do not."""
    try:
        layers = media.image_blobs(read(att_manifest))[1:]
    except (media.ManifestError, ValueError) as exc:
        return [], [f"its attestation manifest is unreadable ({exc})"]
    keys, held, why = RootKeys.of(root), [], []
    for layer in layers:
        notes = (layer.raw or {}).get("annotations")
        if layer.media_type != DSSE_LAYER or not isinstance(notes, dict) or CERTIFICATE not in notes \
                or layer.size > MAX_PAYLOAD or notes.get("predicateType", predicate_type) != predicate_type:
            continue
        try:
            held.append(_judge_attestation(read(layer.digest), {str(k): str(v) for k, v in notes.items()},
                                           image_digest, identities, keys, root))
        except KeylessRefused as exc:
            why.append(str(exc))
        except (ValueError, KeyError, TypeError) as exc:
            why.append(f"it is malformed ({type(exc).__name__}: {exc})")
    return held, why


def _judge_attestation(envelope_bytes: bytes, notes: dict[str, str], image_digest: str,
                       identities: Sequence[Identity], keys: RootKeys, root: Root) -> Judged:
    envelope = json.loads(envelope_bytes)
    payload = base64.b64decode(envelope["payload"], validate=True)
    encoded = str(envelope["signatures"][0]["sig"])
    if envelope.get("payloadType") != IN_TOTO:
        raise KeylessRefused(f"its payload is {envelope.get('payloadType')}, not an in-toto statement")
    cert, issuer, subject = _signer(notes, identities, base64.b64decode(encoded, validate=True), pae(IN_TOTO, payload))

    def logged(body: object) -> bool:  # intoto 0.0.2: this payload's hash, this signature
        content = _at(body, "spec", "content")
        said = _at(content, "envelope", "signatures", 0)
        return _at(body, "kind") == "intoto" and _at(content, "payloadHash", "value") == _sha256(payload) \
            and encoded in (str(_at(said, "sig")), _unwrap(str(_at(said, "sig")))) \
            and _pem(_at(said, "publicKey")) == cert

    _held(cert, notes, keys, logged)
    statement = json.loads(payload)
    digests = [s["digest"]["sha256"] for s in statement["subject"]]
    if image_digest.split(":", 1)[1] not in digests:
        raise KeylessRefused(f"it is about {', '.join('sha256:' + str(d)[:12] for d in digests)}, not this image")
    predicate = statement.get("predicate") or {}
    return Judged(issuer, subject, str(statement["predicateType"]), predicate if isinstance(predicate, dict) else {},
                  root.digest)


def _signer(notes: dict[str, str], identities: Sequence[Identity], signature: bytes,
            signed: bytes) -> tuple[x509.Certificate, str, str]:
    """The certificate in `notes`, when it names an allowed identity and its key made `signature`."""
    cert = x509.load_pem_x509_certificate(notes[CERTIFICATE].encode())
    issuer, subjects = certificate_identity(cert)
    if not any(identity.matches(issuer, subjects) for identity in identities):
        raise KeylessRefused(f"signed by {issuer or '(no issuer)'} {', '.join(subjects) or '(no subject)'}, "
                             "whom the rule does not name")
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or not ecdsa_valid(public, signature, signed):
        raise KeylessRefused("its signature does not verify with its certificate's key")
    return cert, issuer, subjects[0] if subjects else ""


def _held(cert: x509.Certificate, notes: dict[str, str], keys: RootKeys, logged: Callable[[object], bool]) -> None:
    """The log's signed entry (`logged` says it is this signature's), the chain at its time, the SCT."""
    integrated = _log_entry(notes, logged, keys)
    chain = _chain(cert, notes.get(CHAIN, ""), keys, integrated)
    _sct(cert, chain[0] if chain else None, keys)


def _at(doc: object, *path: str | int) -> object:
    """A field deep in a JSON document (None where the path does not lead)."""
    for part in path:
        if isinstance(part, int):
            doc = doc[part] if isinstance(doc, list) and len(doc) > part else None
        else:
            doc = doc.get(part) if isinstance(doc, dict) else None
    return doc


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _pem(encoded: object) -> x509.Certificate | None:
    """The certificate a log entry names (base64 of its PEM); None when it names none."""
    try:
        return x509.load_pem_x509_certificate(base64.b64decode(str(encoded), validate=True))
    except (ValueError, binascii.Error):
        return None


def _unwrap(text: str) -> str:
    """intoto 0.0.2 logs a signature base64-encoded once more than the envelope holds it."""
    try:
        return base64.b64decode(text, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ""



def _log_entry(notes: dict[str, str], logged: Callable[[object], bool], keys: RootKeys) -> dt.datetime:
    """The log's signed promise that it holds this very signature (`logged` judges its body); its time."""
    import rfc8785

    if LOG_BUNDLE not in notes:
        raise KeylessRefused("no log proof: it carries no transparency-log entry (no signed entry timestamp)")
    record = json.loads(notes[LOG_BUNDLE])
    entry, promise = record["Payload"], base64.b64decode(record["SignedEntryTimestamp"], validate=True)
    log_key = keys.logs.get(bytes.fromhex(str(entry["logID"])))
    if log_key is None:
        raise KeylessRefused(f"its log (key id {str(entry['logID'])[:12]}) is not one the trusted root names")
    signed = rfc8785.dumps({"body": entry["body"], "integratedTime": entry["integratedTime"],
                            "logID": entry["logID"], "logIndex": entry["logIndex"]})
    if not ecdsa_valid(log_key, promise, signed):
        raise KeylessRefused("its signed entry timestamp does not verify with the log's key")
    if not logged(json.loads(base64.b64decode(entry["body"], validate=True))):
        raise KeylessRefused("its log entry is another signature's")
    return dt.datetime.fromtimestamp(int(entry["integratedTime"]), dt.UTC)


def _chain(cert: x509.Certificate, chain_pem: str, keys: RootKeys, at: dt.datetime) -> list[x509.Certificate]:
    """The certificate's chain to a CA of the root, valid at the log's time (issuer first)."""
    intermediates = x509.load_pem_x509_certificates(chain_pem.encode()) if chain_pem else []
    ca_policy = x509v.ExtensionPolicy.webpki_defaults_ca().may_be_present(
        x509.ExtendedKeyUsage, x509v.Criticality.NON_CRITICAL, None)
    ee_policy = x509v.ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.ExtendedKeyUsage, x509v.Criticality.NON_CRITICAL, None)
    verifier = (x509v.PolicyBuilder().store(x509v.Store(list(keys.cas))).time(at)
                .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy).build_client_verifier())
    try:
        chain = verifier.verify(cert, [c for c in intermediates if c not in keys.cas]).chain[1:]
    except (x509v.VerificationError, x509.UnsupportedGeneralNameType) as exc:
        raise KeylessRefused(f"its certificate does not chain to the trusted root at the log's time ({exc})") from None
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    if ExtendedKeyUsageOID.CODE_SIGNING not in usage:
        raise KeylessRefused("its certificate is not for code signing")
    return chain


def _sct(cert: x509.Certificate, issuer: x509.Certificate | None, keys: RootKeys) -> None:
    """The certificate's embedded SCT, by a CT log of the root (RFC 6962's precertificate entry)."""
    try:
        [sct] = cert.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value
    except (x509.ExtensionNotFound, ValueError):
        raise KeylessRefused("its certificate carries no SCT (exactly one)") from None
    key = keys.ct_logs.get(sct.log_id)
    if key is None or issuer is None:
        raise KeylessRefused("its certificate's SCT is by a CT log the trusted root does not name")
    public = issuer.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise KeylessRefused("its issuer's key is not an EC key")
    tbs = cert.tbs_precertificate_bytes
    millis = int(sct.timestamp.replace(tzinfo=dt.UTC).timestamp() * 1000)
    signed = (struct.pack("!BBQH", sct.version.value, 0, millis, sct.entry_type.value) + _key_id(public)
              + len(tbs).to_bytes(3, "big") + tbs + struct.pack("!H", len(sct.extension_bytes)) + sct.extension_bytes)
    if not ecdsa_valid(key, sct.signature, signed):
        raise KeylessRefused("its certificate's SCT does not verify")
