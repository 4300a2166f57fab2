"""Registry tokens: what each account is granted, scopes from the wild parsed totally, and tokens the
Distribution registry can check (ES256 over the JWS signing input, libtrust key id)."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given
from hypothesis import strategies as st

from bundler.site.auth import PULL, PUSH, hash_password, password_matches
from bundler.site.tokens import ISSUER, SERVICE, Scope, granted, issue_token, libtrust_key_id


@pytest.mark.parametrize(("role", "scope", "expected"), [
    (PULL, "repository:docker.io/library/nginx:pull", ["pull"]),
    (PULL, "repository:docker.io/library/nginx:pull,push", ["pull"]),
    (PULL, "repository:docker.io/library/nginx:push,delete,*", None),
    (PUSH, "repository:charts/webapp:pull,push,delete", ["pull", "push", "delete"]),
    (PULL, "registry:catalog:*", None),
    (PUSH, "registry:catalog:*", ["*"]),
    (PUSH, "registry:other:*", None),
    (PUSH, "plugin:x:pull", None),
    (PULL, "repository:bundler/quarantine:pull", None),  # a refused bundle's blobs wait there
    (PUSH, "repository:bundler/quarantine:pull,push,delete", ["pull", "push", "delete"]),
])
def test_each_role_gets_only_its_actions(role: str, scope: str, expected: list[str] | None) -> None:
    parsed = Scope.parse(scope)
    assert parsed is not None
    access = granted(role, [parsed])
    assert (access[0]["actions"] if access else None) == expected


@pytest.mark.parametrize("text", ["", "repository", "repository:", "repository:name", ":name:pull",
                                  "repository::pull", "repository:name:"])
def test_malformed_scopes_grant_nothing(text: str) -> None:
    assert Scope.parse(text) is None


@given(st.text(max_size=200))
def test_any_scope_text_parses_or_is_refused_never_crashes(text: str) -> None:
    parsed = Scope.parse(text)
    for role in (PULL, PUSH):
        assert isinstance(granted(role, [parsed] if parsed else []), list)


def b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_a_token_verifies_with_the_signers_public_key_and_names_its_key() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    access = granted(PULL, [Scope("repository", "team/app", ("pull", "push"))])
    token = issue_token(key, "site", access, now=1_000_000)
    header_b64, claims_b64, signature_b64 = token.split(".")
    header, claims = json.loads(b64url_decode(header_b64)), json.loads(b64url_decode(claims_b64))
    assert header == {"typ": "JWT", "alg": "ES256", "kid": libtrust_key_id(key.public_key())}
    assert claims["iss"] == ISSUER and claims["aud"] == SERVICE and claims["sub"] == "site"
    assert claims["nbf"] < claims["iat"] == 1_000_000 < claims["exp"]
    assert claims["access"] == [{"type": "repository", "name": "team/app", "actions": ["pull"]}]
    raw = b64url_decode(signature_b64)
    assert len(raw) == 64  # JWS: r || s, 32 bytes each (not DER)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    key.public_key().verify(der, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))


def test_libtrust_key_id_has_twelve_groups_of_four_base32_characters() -> None:
    kid = libtrust_key_id(ec.generate_private_key(ec.SECP256R1()).public_key())
    groups = kid.split(":")
    assert len(groups) == 12 and all(len(g) == 4 for g in groups)
    assert set(kid.replace(":", "")) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")


@pytest.mark.parametrize("stored", ["", "sha256$", "sha256$!!$!!", "md5$YQ==$YQ==", "sha256$YQ==", "$$"])
def test_password_check_refuses_malformed_stored_hashes(stored: str) -> None:
    assert password_matches(stored, "anything") is False


def test_password_hash_round_trip() -> None:
    stored = hash_password("s3cret")
    assert password_matches(stored, "s3cret") and not password_matches(stored, "s3cret!")
