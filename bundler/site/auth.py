"""The site's accounts, with the least rights each needs.

Two accounts, made by `site init` (and by `site up` on a site from before they existed):
    credentials.json         the client account (cluster nodes, Flux, technicians' tools):
                             pull from the registry, fetch from the Git server. Given out.
    import-credentials.json  the import account: push and delete in the registry. Read by
                             `bundler import` (and prune) on the site machine only; never given out.
Both files are 0600. The server keeps only salted hashes (users.json) with each account's role.
The passwords are 192-bit random secrets, so a fast salted SHA-256 protects them as well as a
slow hash would, at no cost per check; scrypt entries of older sites are still read.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bundler.fsutil import own_like_parent

CREDENTIALS_FILE = "credentials.json"  # the client (pull) account: what clients use (plain, 0600)
IMPORT_CREDENTIALS_FILE = "import-credentials.json"  # the import (push) account: bundler import only
USERS_FILE = "users.json"  # what the server checks (hashed), with each account's role
CLIENT_USER, IMPORT_USER = "site", "import"
PULL, PUSH = "pull", "push"  # roles
SCRYPT = {"n": 1 << 14, "r": 8, "p": 1}


@dataclass(frozen=True)
class Account:
    """A site account: its salted password hash and its role (pull or push)."""
    stored: str  # "sha256$salt$digest" (or "scrypt$..." from an older site)
    role: str  # PULL or PUSH


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.sha256(salt + password.encode()).digest()
    return "sha256$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def password_matches(stored: str, password: str) -> bool:
    try:
        scheme, salt_text, digest_text = stored.split("$")
        salt, digest = base64.b64decode(salt_text), base64.b64decode(digest_text)
    except ValueError:
        return False
    if scheme == "sha256":
        actual = hashlib.sha256(salt + password.encode()).digest()
    elif scheme == "scrypt":
        actual = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **SCRYPT)
    else:
        return False
    return hmac.compare_digest(actual, digest)


def _write_private(path: Path, doc: Mapping[str, object]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2)
    own_like_parent(path)


def _new_account(directory: Path, file: str, username: str, role: str) -> dict[str, str]:
    """Write `file` (username and a new random password, 0600); return the server's entry for it."""
    password = secrets.token_urlsafe(24)
    _write_private(directory / file, {"username": username, "password": password})
    return {"hash": hash_password(password), "role": role}


def create_credentials(directory: Path) -> None:
    """Both accounts for a new site."""
    _write_private(directory / USERS_FILE, {CLIENT_USER: _new_account(directory, CREDENTIALS_FILE, CLIENT_USER, PULL),
                                            IMPORT_USER: _new_account(directory, IMPORT_CREDENTIALS_FILE,
                                                                      IMPORT_USER, PUSH)})


def upgrade_credentials(directory: Path) -> bool:
    """A site from before the import account: its one account (which the cluster holds) keeps its
    password and becomes the pull-only client account; an import account is added. True if changed."""
    if (directory / IMPORT_CREDENTIALS_FILE).exists():
        return False
    raw = json.loads((directory / USERS_FILE).read_text())
    users: dict[str, object] = {name: {"hash": value, "role": PULL} if isinstance(value, str) else value
                                for name, value in raw.items()}
    users[IMPORT_USER] = _new_account(directory, IMPORT_CREDENTIALS_FILE, IMPORT_USER, PUSH)
    _write_private(directory / USERS_FILE, users)
    return True


def load_users(directory: Path) -> dict[str, Account]:
    """The server's view: username -> Account (an old site's plain hash entries are pull accounts)."""
    raw = json.loads((directory / USERS_FILE).read_text())
    users = {}
    for name, value in raw.items():
        if isinstance(value, str):
            users[str(name)] = Account(value, PULL)
        elif isinstance(value, dict) and value.get("role") in (PULL, PUSH):
            users[str(name)] = Account(str(value.get("hash", "")), str(value["role"]))
    return users


def load_credentials(directory: Path, file: str = CREDENTIALS_FILE) -> tuple[str, str]:
    doc = json.loads((directory / file).read_text())
    return str(doc["username"]), str(doc["password"])
