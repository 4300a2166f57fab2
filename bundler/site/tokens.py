"""Registry tokens: the site's HTTPS service is the token server of its embedded registry.

The Distribution registry's token authentication (docs/spec/auth/token.md): a client without a
token gets 401 with `WWW-Authenticate: Bearer realm=<site>/token,service=...,scope=...`, asks the
realm with its account, and receives a short-lived JWT (ES256) naming exactly the actions its
account may take. The registry checks the token's signature against the key in its
`rootcertbundle` (found by the `kid` header, in libtrust's key-id format) on every request: one
ECDSA verification instead of a bcrypt hash, and pull-only accounts really are pull-only.

Pure: bytes and strings in, token or grants out. The HTTP handler lives in pipeline/server.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from bundler.site.auth import PULL, PUSH

SERVICE = "bundler-site"  # the registry's auth.token.service, and the tokens' audience
ISSUER = "bundler-site-token"
TOKEN_TTL = 300  # seconds; clients ask again when it runs out (the registry allows 60 s of clock skew)
ACTIONS = {PULL: frozenset({"pull"}), PUSH: frozenset({"pull", "push", "delete", "*"})}
QUARANTINE = "bundler/quarantine"  # an import's blobs wait there until all arrived: the import account's alone


@dataclass(frozen=True)
class Scope:
    """One scope of a token request (`repository:<name>:<actions>`)."""
    type: str  # "repository" or "registry"
    name: str
    actions: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Scope | None:
        """`repository:team/app:pull,push` (a malformed scope is None: it grants nothing)."""
        head, sep, actions = text.rpartition(":")
        kind, sep2, name = head.partition(":")
        if not sep or not sep2 or not kind or not name or not actions:
            return None
        return cls(kind, name, tuple(a for a in actions.split(",") if a))


def granted(role: str, scopes: list[Scope]) -> list[dict[str, object]]:
    """What an account of `role` gets of what it asked: the token's `access` claim."""
    access: list[dict[str, object]] = []
    for scope in scopes:
        if scope.type == "repository" and scope.name == QUARANTINE and role != PUSH:
            allowed = []  # a refused bundle's layers are nobody's to read
        elif scope.type == "repository":
            allowed = [a for a in scope.actions if a in ACTIONS.get(role, frozenset())]
        elif scope.type == "registry" and scope.name == "catalog" and role == PUSH:
            allowed = [a for a in scope.actions if a == "*"]
        else:
            allowed = []
        if allowed:
            access.append({"type": scope.type, "name": scope.name, "actions": allowed})
    return access


def libtrust_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """The key id the registry computes for each certificate in its rootcertbundle (libtrust):
    SHA-256 of the DER public key, first 240 bits, base32, in 12 groups of 4."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    text = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(text[i:i + 4] for i in range(0, len(text), 4))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def issue_token(key: ec.EllipticCurvePrivateKey, subject: str, access: list[dict[str, object]],
                now: float | None = None, ttl: int = TOKEN_TTL) -> str:
    """A compact JWS (ES256) the registry accepts for `access` until `ttl` seconds from now."""
    issued = int(now if now is not None else time.time())
    header = {"typ": "JWT", "alg": "ES256", "kid": libtrust_key_id(key.public_key())}
    claims = {"iss": ISSUER, "sub": subject, "aud": SERVICE, "iat": issued, "nbf": issued - 10,
              "exp": issued + ttl, "jti": secrets.token_hex(16), "access": access}
    signing_input = (_b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
                     + _b64url(json.dumps(claims, separators=(",", ":")).encode()))
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return signing_input + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
