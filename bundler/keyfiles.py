"""Key files on disk: `keygen`, loading signing keys (password from BUNDLER_KEY_PASSWORD) and
building a trust policy from public key files; and the one bounded reader of what an operator names
on the command line (keys, credentials, CA files). The cryptography itself is in `signing`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from bundler import signing
from bundler.errors import UsageError
from bundler.fsutil import NotRegular, read_regular

PASSWORD_ENV = "BUNDLER_KEY_PASSWORD"


def _password() -> bytes | None:
    value = os.environ.get(PASSWORD_ENV)
    return value.encode() if value else None


def keygen(prefix: Path) -> tuple[Path, Path, str]:
    """Write PREFIX.key (PKCS#8, mode 0600, encrypted when BUNDLER_KEY_PASSWORD is set) and PREFIX.pub."""
    key_path, pub_path = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    for path in (key_path, pub_path):
        if path.exists():
            raise UsageError(f"{path} exists; keygen never overwrites a key", hint="choose another PREFIX")
    key = signing.generate_key()
    try:
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise UsageError(f"cannot create {key_path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(signing.private_pem(key, _password()))
    try:
        fd = os.open(pub_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as exc:
        key_path.unlink()
        raise UsageError(f"cannot create {pub_path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(signing.public_pem(key.public_key()))
    return key_path, pub_path, signing.key_id(key.public_key())


MAX_OPERATOR_FILE = 64 << 10  # a key, an account, a CA: a few KiB at most


def read_operator_file(path: Path, what: str, limit: int = MAX_OPERATOR_FILE) -> bytes:
    """A file an operator named (a key, credentials, a CA): a regular file of at most `limit` bytes,
    read at once. A FIFO (whose open would wait for a writer), a device, a directory or a huge file is
    a UsageError naming it, at once."""
    try:
        return read_regular(path, limit)
    except NotRegular as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}", hint="give the file itself") from None
    except ValueError:
        raise UsageError(f"{path} is larger than {limit >> 10} KiB: not {what}",
                         hint="check the path: it names another file") from None
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None



def load_signing_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        return signing.load_private_key(read_operator_file(path, "private key"), _password())
    except signing.KeyProblem as exc:
        raise UsageError(f"{path}: {exc}") from None


def key_name(path: Path) -> str:
    """A key's name in reports: its file name without .pub (`security.pub` -> security)."""
    return path.name.removesuffix(".pub").removesuffix(".pem") or path.name


def load_trusted_key(path: Path, name: str | None = None) -> signing.TrustedKey:
    """A public key file; one that also holds a private key is refused (it must not travel or be kept)."""
    data = read_operator_file(path, "public key")
    if b"PRIVATE KEY" in data:
        raise UsageError(f"{path} holds a private key: nothing of it was kept",
                         hint="give the `.pub` alone (never the `.key`); keep that file private")
    try:
        return signing.TrustedKey(name or key_name(path), signing.load_public_key(data))
    except signing.KeyProblem as exc:
        raise UsageError(f"{path}: {exc}",
                         hint="that file is not a bundler public key; ask for the `.pub` (never the `.key`)") from None


def load_policy(paths: Sequence[Path], threshold: int | None) -> signing.TrustPolicy:
    if not paths:
        raise UsageError("no trusted keys given", hint="name the public keys that must have signed: --key PUB")
    keys = tuple(load_trusted_key(p) for p in paths)
    try:
        return signing.TrustPolicy(keys, threshold or 1)
    except ValueError as exc:
        raise UsageError(f"trust policy: {exc}") from None
