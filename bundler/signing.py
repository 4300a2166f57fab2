"""Keys, signatures and trust policies. Pure: bytes in, verdicts out; no file or network I/O.

Keys are ECDSA P-256 (as cosign uses). A signature is base64 of the DER ECDSA-SHA256 signature over
the exact bytes of bundle.json, so `openssl dgst -sha256 -verify` and `cosign verify-blob` check it
too. A key id is the hex SHA-256 of the public key's DER SubjectPublicKeyInfo.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bundler import problems
from bundler.problems import Problem

ALGORITHM = "ecdsa-p256-sha256"


class KeyProblem(ValueError):
    """A key that cannot be used: wrong format, wrong curve, wrong password."""


def generate_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_pem(key: ec.EllipticCurvePrivateKey, password: bytes | None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def public_pem(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(key: ec.EllipticCurvePublicKey) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def load_private_key(pem: bytes, password: bytes | None) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=password or None)
    except TypeError as exc:  # encrypted without a password, or a password for a plain key
        raise KeyProblem("the key is encrypted: set BUNDLER_KEY_PASSWORD" if "encrypted" in str(exc)
                        else "the key is not encrypted: unset BUNDLER_KEY_PASSWORD") from None
    except ValueError:
        raise KeyProblem("not a PEM private key, or the password (BUNDLER_KEY_PASSWORD) is wrong") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyProblem("not an ECDSA P-256 private key")
    return key


def load_public_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        raise KeyProblem("not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyProblem("not an ECDSA P-256 public key")
    return key


def sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> dict[str, str]:
    """One entry of signatures.json."""
    signature = key.sign(data, ec.ECDSA(hashes.SHA256()))
    return {"keyid": key_id(key.public_key()), "algorithm": ALGORITHM,
            "signature": base64.b64encode(signature).decode()}


def ecdsa_valid(key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    """An ECDSA (SHA-256) signature of `data` by `key`: bundle signatures, cosign's, a log's, an SCT."""
    try:
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def signature_valid(key: ec.EllipticCurvePublicKey, data: bytes, entry: Mapping[str, object]) -> bool:
    if entry.get("algorithm") != ALGORITHM or not isinstance(entry.get("signature"), str):
        return False
    try:
        return ecdsa_valid(key, base64.b64decode(str(entry["signature"]), validate=True), data)
    except (binascii.Error, ValueError):
        return False


@dataclass(frozen=True)
class TrustedKey:
    """A public key the trust policy names."""
    name: str
    key: ec.EllipticCurvePublicKey

    @property
    def keyid(self) -> str:
        return key_id(self.key)


@dataclass(frozen=True)
class TrustPolicy:
    """Trusted keys and how many distinct ones must have signed (k of n)."""

    keys: tuple[TrustedKey, ...]
    threshold: int = 1

    def __post_init__(self) -> None:
        if not self.keys:
            raise ValueError("a trust policy needs at least one key")
        if not 1 <= self.threshold <= len({k.keyid for k in self.keys}):
            raise ValueError(f"threshold {self.threshold} must be between 1 and the number of distinct keys "
                             f"({len({k.keyid for k in self.keys})})")

    def by_id(self) -> dict[str, TrustedKey]:
        return {k.keyid: k for k in self.keys}


@dataclass
class SignerReport:
    """One signature on bundle.json: its key id, the policy's name for the key, whether it checks."""
    keyid: str
    name: str | None  # the policy's name for this key; None when the key is not trusted
    valid: bool  # the signature checks against bundle.json (only known for trusted keys)


@dataclass
class PolicyVerdict:
    """What the trust policy says of a bundle's signatures: each signer, the threshold, the problems."""
    signers: list[SignerReport] = field(default_factory=list)
    threshold: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def valid_signers(self) -> set[str]:
        return {s.keyid for s in self.signers if s.valid}

    @property
    def met(self) -> bool:
        return len(self.valid_signers) >= self.threshold and not self.problems


def evaluate(policy: TrustPolicy, manifest: bytes, signatures: Sequence[Mapping[str, str]]) -> PolicyVerdict:
    """Which signatures are by trusted keys and valid over these exact bytes; is the threshold met?"""
    trusted = policy.by_id()
    verdict = PolicyVerdict(threshold=policy.threshold)
    seen: set[str] = set()
    for entry in signatures:
        keyid = str(entry.get("keyid", ""))
        if keyid in seen:
            continue  # a key counts once, however often it signed
        seen.add(keyid)
        key = trusted.get(keyid)
        if key is None:
            verdict.signers.append(SignerReport(keyid, None, False))
            continue
        valid = signature_valid(key.key, manifest, entry)
        verdict.signers.append(SignerReport(keyid, key.name, valid))
        if not valid:
            verdict.problems.append(Problem(problems.SIGNATURE_INVALID, key.name,
                                            f"the signature by {key.name} ({keyid[:12]}) does not match bundle.json"))
    count = len(verdict.valid_signers)
    if count < policy.threshold:
        names = ", ".join(k.name for k in policy.keys)
        if not signatures:
            verdict.problems.append(Problem(problems.UNSIGNED, "signatures.json",
                                            f"the bundle is unsigned; the policy needs {policy.threshold} of: {names}",
                                            expected=str(policy.threshold), actual="0"))
        else:
            untrusted = [s.keyid[:12] for s in verdict.signers if s.name is None]
            extra = f" (also signed by untrusted keys {', '.join(untrusted)})" if untrusted else ""
            verdict.problems.append(Problem(
                problems.THRESHOLD_NOT_MET, "signatures.json",
                f"{count} valid signature(s) by trusted keys, the policy needs {policy.threshold} of: {names}{extra}",
                expected=str(policy.threshold), actual=str(count)))
    return verdict
