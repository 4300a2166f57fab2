"""Site credentials for its HTTP services: generated at `site init`, given to the technician in a
0600 file, stored for the server only as scrypt hashes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

CREDENTIALS_FILE = "credentials.json"  # what clients use (plain, 0600)
USERS_FILE = "users.json"  # what the server checks (hashed)
SCRYPT = {"n": 1 << 14, "r": 8, "p": 1}


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **SCRYPT)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def password_matches(stored: str, password: str) -> bool:
    try:
        scheme, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), dklen=32, **SCRYPT)
        return hmac.compare_digest(actual, base64.b64decode(digest))
    except ValueError:
        return False


def _write_private(path: Path, doc: dict[str, object]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2)


def create_credentials(directory: Path, username: str = "site",
                       registry_htpasswd: Path | None = None) -> tuple[str, str]:
    """One credential pair for the site's services: the Git server keeps an scrypt hash, the embedded
    registry an htpasswd (bcrypt, all the Distribution registry reads)."""
    password = secrets.token_urlsafe(24)
    _write_private(directory / CREDENTIALS_FILE, {"username": username, "password": password})
    _write_private(directory / USERS_FILE, {username: hash_password(password)})
    if registry_htpasswd is not None:
        import bcrypt

        registry_htpasswd.parent.mkdir(parents=True, exist_ok=True)
        entry = username.encode() + b":" + bcrypt.hashpw(password.encode(), bcrypt.gensalt()) + b"\n"
        fd = os.open(registry_htpasswd, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(entry)
    return username, password


def load_users(directory: Path) -> dict[str, str]:
    return dict(json.loads((directory / USERS_FILE).read_text()))


def load_credentials(directory: Path) -> tuple[str, str]:
    doc = json.loads((directory / CREDENTIALS_FILE).read_text())
    return str(doc["username"]), str(doc["password"])
