"""Keyless signatures and attestations, judged offline: a Sigstore bundle (cosign v3 attaches one to an
image as an OCI referrer, artifact type `application/vnd.dev.sigstore.bundle.v0.3+json`) is verified
with sigstore-python's `Verifier` against a pinned trusted root (`trusted_root.json`; never fetched):
the signing certificate chains to the root's CA at the transparency log's time and carries a valid
SCT of a root's CT log; the log entry's inclusion proof, its signed checkpoint and its signed entry
timestamp are by a log key of the root; the DSSE signature is by the certificate's key. Then this
module judges what the library leaves to its caller: the identity in the certificate (OIDC issuer,
and a subject the rule's regular expression matches whole), and the in-toto statement (its subject
is this image's digest, its predicate the one asked for).

Found while building this: a keyless signature in cosign's older tag scheme (`sha256-<hex>.sig`
with the `dev.sigstore.cosign/bundle` annotation) carries the log's signed entry timestamp but no
inclusion proof, and sigstore-python (4.x) refuses any log entry without a proof with checkpoint;
tagscheme.py judges those (as `cosign verify --offline` does) against the same root.

sigstore is imported when a keyless rule is first judged: `bundler --help` and keyed-only sites do
not pay for it."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509

from bundler.kinds.images.attest import IN_TOTO
from bundler.oci import media

if TYPE_CHECKING:
    from sigstore.models import TrustedRoot

BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
COSIGN_SIGN = "https://sigstore.dev/cosign/sign/v1"  # cosign v3's image signature, as an in-toto predicate
ISSUER_V1 = "1.3.6.1.4.1.57264.1.1"  # Fulcio's OIDC issuer extension (raw text)
ISSUER_V2 = "1.3.6.1.4.1.57264.1.8"  # the same, DER UTF8String
MAX_BUNDLE = 1 << 20
ROOT_PAYLOAD = "sigstore/trusted_root.json"  # a bundle's carried trusted root: the next one a site pins
MAX_ROOT = 1 << 20


class KeylessRefused(ValueError):
    """A Sigstore bundle that does not hold: the message says why."""


class OtherStatement(KeylessRefused):
    """A bundle that holds, of another predicate than the one asked for (an attestation where a
    signature is asked for, an SBOM where provenance is): not a failure of the one asked for."""


@dataclass(frozen=True)
class Identity:
    """Who may sign: the OIDC issuer, exactly, and a regular expression the certificate's subject (a
    workflow URI, an e-mail address) must match whole."""
    issuer: str
    subject: str

    def matches(self, issuer: str, subjects: Sequence[str]) -> bool:
        return issuer == self.issuer and any(re.fullmatch(self.subject, s) for s in subjects)

    def __str__(self) -> str:
        return f"{self.issuer} {self.subject}"


@dataclass(frozen=True)
class Judged:
    """A keyless signature that held: whose it is, what it states, and the root it was judged against."""
    issuer: str
    subject: str
    predicate_type: str
    predicate: dict[str, object]
    root: str  # the trusted root's sha256 (its version, as the site pins it)


def _utf8_string(der: bytes) -> str:
    """A DER UTF8String's text ("" when it is not one)."""
    if len(der) < 2 or der[0] != 0x0C:
        return ""
    length, start = der[1], 2
    if length & 0x80:  # the long form: the next (length & 0x7f) bytes hold it
        start = 2 + (length & 0x7F)
        length = int.from_bytes(der[2:start], "big")
    return der[start:start + length].decode(errors="replace") if start + length == len(der) else ""


def certificate_identity(cert: x509.Certificate) -> tuple[str, list[str]]:
    """(OIDC issuer, subjects) a Fulcio certificate names: the issuer from its V2 extension, else V1."""
    issuer = ""
    for ext in cert.extensions:
        value = ext.value.value if isinstance(ext.value, x509.UnrecognizedExtension) else b""
        if ext.oid.dotted_string == ISSUER_V2:
            issuer = _utf8_string(value) or issuer
            break
        if ext.oid.dotted_string == ISSUER_V1:
            issuer = value.decode(errors="replace")
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return issuer, []
    subjects = [*names.get_values_for_type(x509.UniformResourceIdentifier),
                *names.get_values_for_type(x509.RFC822Name)]
    return issuer, subjects


class IdentityPolicy:
    """sigstore's verification policy (one method): the certificate names one of `identities`."""

    def __init__(self, identities: Sequence[Identity]) -> None:
        self.identities = identities

    def verify(self, cert: x509.Certificate) -> None:
        from sigstore.errors import VerificationError

        issuer, subjects = certificate_identity(cert)
        if not any(identity.matches(issuer, subjects) for identity in self.identities):
            raise VerificationError(f"signed by {issuer or '(no issuer)'} {', '.join(subjects) or '(no subject)'}, "
                                    "whom the rule does not name")


@dataclass(frozen=True)
class Root:
    """A trusted root (the site's pinned one, a profile's, or one a signed bundle carries): its bytes,
    and their digest, its version."""
    data: bytes

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    @classmethod
    def load(cls, path: Path) -> Root:
        return cls(path.read_bytes())

    @staticmethod
    def parse(data: bytes) -> TrustedRoot:
        """A trusted root's bytes as sigstore reads them; KeylessRefused saying why they are not one."""
        from sigstore.errors import Error
        from sigstore.models import TrustedRoot
        from sigstore_models.trustroot import v1 as trustroot

        try:
            return TrustedRoot(trustroot.TrustedRoot.from_json(data))
        except (Error, ValueError, UnicodeDecodeError) as exc:
            raise KeylessRefused(_first_lines(str(exc))) from None

    def trusted(self) -> TrustedRoot:
        """The root as sigstore reads it, parsed once per root (every image of an import is judged against it)."""
        return _parsed(self.data)


@functools.lru_cache(maxsize=4)
def _parsed(data: bytes) -> TrustedRoot:
    return Root.parse(data)


def judge(bundle: bytes, image_digest: str, identities: Sequence[Identity], root: Root,
          predicate_type: str = COSIGN_SIGN) -> Judged:
    """The keyless signature (or attestation of `predicate_type`) in `bundle`, for `image_digest`, by one
    of `identities`, judged against `root` offline; KeylessRefused saying why otherwise."""
    from sigstore.errors import Error
    from sigstore.models import Bundle
    from sigstore.verify import Verifier

    try:
        parsed = Bundle.from_json(bundle)
        issuer, subjects = certificate_identity(parsed.signing_certificate)
        payload_type, payload = Verifier(trusted_root=root.trusted()).verify_dsse(parsed, IdentityPolicy(identities))
    except (Error, ValueError) as exc:  # sigstore's VerificationError and InvalidBundle; pydantic's ValueError
        raise KeylessRefused(_first_lines(str(exc)) or type(exc).__name__) from None
    if payload_type != IN_TOTO:
        raise KeylessRefused(f"its payload is {payload_type}, not an in-toto statement")
    try:
        statement = json.loads(payload)
        digests = [s["digest"]["sha256"] for s in statement["subject"]]
        stated = str(statement["predicateType"])
        predicate = statement.get("predicate") or {}
    except (ValueError, KeyError, TypeError) as exc:
        raise KeylessRefused(f"its statement is malformed ({exc})") from None
    if image_digest.split(":", 1)[1] not in digests:
        raise KeylessRefused(f"it is about {', '.join('sha256:' + str(d)[:12] for d in digests)}, "
                             f"not this image ({image_digest[:19]})")
    if stated != predicate_type:
        raise OtherStatement(f"it states {stated}, not {predicate_type}")
    return Judged(issuer, subjects[0] if subjects else "", stated, predicate if isinstance(predicate, dict) else {},
                  root.digest)


def _first_lines(message: str) -> str:
    """A library's message for people: its first lines (pydantic appends a URL per error)."""
    lines = [line.strip() for line in message.strip().splitlines()[:3] if "errors.pydantic.dev" not in line]
    return " ".join(lines)[:300]


def sigstore_bundles(read: Callable[[str], bytes], referrers: Sequence[str]) -> list[bytes]:
    """The Sigstore bundles among an image's referrers (`referrers`: the digests of its referrers
    indexes, each read with its digest checked by `read`); what is malformed is left out."""
    found = []
    for index in referrers:
        try:
            children = media.index_children(read(index))
        except (media.ManifestError, ValueError):
            continue
        for child in children:
            if (child.raw or {}).get("artifactType") != BUNDLE_TYPE:
                continue
            try:
                layers = media.image_blobs(read(child.digest))[1:]
                found += [read(layer.digest) for layer in layers
                          if layer.media_type == BUNDLE_TYPE and layer.size <= MAX_BUNDLE]
            except (media.ManifestError, ValueError):
                continue
    return found
