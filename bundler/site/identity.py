"""The site's own key: it signs the site's receipts, so the connected side can tell a receipt this
site wrote from one edited on the way back (`bundler fleet enroll DIR/site.pub`, `fleet add`).

The private half stays on the site (`DIR/pki/site.key`, mode 0600, unencrypted: receipts are
written unattended); the public half is `DIR/site.pub`. A signed receipt is the receipt's JSON with
a `signature` entry (keyid, algorithm, signature) over the canonical JSON of everything else.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from bundler import signing
from bundler.bundle.manifest import canonical_json
from bundler.fsutil import atomic_write
from bundler.jsontypes import Doc, Out

SITE_KEY = "pki/site.key"
SITE_PUB = "site.pub"


def ensure_site_key(directory: Path) -> bool:
    """Make the site key unless it exists (a site made before keys gets one at `site up`); True if made."""
    key_path = directory / SITE_KEY
    if key_path.exists():
        return False
    key_path.parent.mkdir(parents=True, exist_ok=True)
    key = signing.generate_key()
    atomic_write(key_path, signing.private_pem(key, None), mode=0o600)
    atomic_write(directory / SITE_PUB, signing.public_pem(key.public_key()))
    return True


def load_site_key(directory: Path) -> ec.EllipticCurvePrivateKey:
    return signing.load_private_key((directory / SITE_KEY).read_bytes(), None)


def signed(doc: Mapping[str, Out], key: ec.EllipticCurvePrivateKey) -> Doc:
    body = {k: v for k, v in doc.items() if k != "signature"}
    return {**body, "signature": signing.sign(key, canonical_json(body))}


def signature_valid(doc: Mapping[str, Out], key: ec.EllipticCurvePublicKey) -> bool:
    """The receipt's signature is by `key` over exactly its other fields."""
    entry = doc.get("signature")
    body = {k: v for k, v in doc.items() if k != "signature"}
    return isinstance(entry, dict) and signing.signature_valid(key, canonical_json(body), entry)


def key_id(directory: Path) -> str:
    return signing.key_id(signing.load_public_key((directory / SITE_PUB).read_bytes()))



