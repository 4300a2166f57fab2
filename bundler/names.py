"""The rules for every name that becomes a path, a repository or an index entry, in one place.

Profiles (written by people) and bundle.json (read from a USB stick) are checked by the same rules:
what a profile may name, a bundle may carry, and nothing else. Each check returns the value or
raises ValueError saying what is wrong; none of them lets through `/` where one path component is
meant, `..`, a leading `.`, or a control character.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable

from bundler.versions import Version

NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")  # a bundle (release) name
PLATFORM_RE = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?$")
CHART_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,126}[a-z0-9])?$")
REPO_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")  # a Git repository on the site
UPDATE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~-]{0,127}$")
GROUP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
SHA256_RE = re.compile(r"^[a-f0-9]{64}$")
OBJECT_ID_RE = re.compile(r"^[a-f0-9]{40}(?:[a-f0-9]{24})?$")  # SHA-1 or SHA-256 Git object ids
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_REF_FORBIDDEN_RE = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
MAX_TEXT = 4096


def checked(value: str, rule: re.Pattern[str], what: str) -> str:
    if not rule.match(value):
        raise ValueError(f"{shown(value)} is not {what}")
    return value


def rule(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    """A check for one pattern: the value, or ValueError saying what it should have been."""
    def check(value: str) -> str:
        return checked(value, pattern, what)
    return check


def one_of(*allowed: str) -> Callable[[str], str]:
    """A check that the value is one of `allowed`: the value, or ValueError naming them."""
    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"{shown(value)} is not one of {', '.join(allowed)}")
        return value
    return check


def shown(value: str) -> str:
    """A value in an error message: quoted, control characters escaped, long ones cut."""
    return repr(value[:80] + ("..." if len(value) > 80 else ""))


def text(value: str, max_len: int = MAX_TEXT) -> str:
    """Free text from a bundle (a media type, a source URL): bounded, no control characters."""
    if len(value) > max_len:
        raise ValueError(f"is {len(value)} characters long, more than {max_len}")
    if _CONTROL_RE.search(value):
        raise ValueError(f"{shown(value)} holds a control character")
    return value


bundle_name = rule(NAME_RE, "a bundle name (lowercase letters, digits, . _ -; at most 64)")
chart_name = rule(CHART_NAME_RE, "a chart name (lowercase letters, digits, . _ -)")
repo_name = rule(REPO_NAME_RE, "a repository name (letters, digits, . _ -; at most 100)")
update_name = rule(UPDATE_NAME_RE, "an update name (letters, digits, . _ + ~ -)")
group = rule(GROUP_RE, "a group name (letters, digits, . _ -)")
site_name = rule(GROUP_RE, "a site name (letters, digits, . _ -; at most 63)")
platform = rule(PLATFORM_RE, "a platform (os/arch or os/arch/variant)")
sha256_hex = rule(SHA256_RE, "a sha256 (64 lowercase hex digits)")
digest_or_hex = rule(re.compile(r"^(sha256:)?[a-f0-9]{64}$"), "a sha256 digest")
object_id = rule(OBJECT_ID_RE, "a Git object id (40 or 64 lowercase hex digits)")


def file_name(value: str) -> str:
    """One path component a client downloads by: no `/` or `\\`, no leading `.`, no control
    characters, at most 255 bytes."""
    if (not value or "/" in value or "\\" in value or value.startswith(".") or _CONTROL_RE.search(value)
            or len(value.encode()) > 255):
        raise ValueError(f"{shown(value)} is not a plain file name")
    return value


def ref_name(value: str) -> str:
    """A full Git ref name under refs/ that `git check-ref-format` accepts."""
    parts = value.split("/")
    if (not value.startswith("refs/") or len(parts) < 3 or len(value) > 1024 or _REF_FORBIDDEN_RE.search(value)
            or ".." in value or "@{" in value or value.endswith((".", "/"))
            or any(not p or p.startswith(".") or p.endswith(".lock") for p in parts)):
        raise ValueError(f"{shown(value)} is not a Git ref name (refs/heads/..., refs/tags/...)")
    return value


def version(value: str) -> str:
    """A release version: semver, as rollback protection compares them."""
    Version(value)
    return value


def chart_version(value: str) -> str:
    """A chart version as Helm reads it (`v1.14.4`, `1.2`)."""
    Version.helm(value)
    return value


def timestamp(value: str) -> str:
    """An ISO 8601 time with its UTC offset (`2026-11-28T10:00:00+00:00` or `...Z`)."""
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if len(value) <= 64 else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise ValueError(f"{shown(value)} is not a time with its UTC offset (ISO 8601)")
    return value


def sha256_digest(data: bytes) -> str:
    """The OCI digest of `data` (`sha256:<64 hex>`): of a manifest, a config, a document."""
    return digest_of(hashlib.sha256(data))


def digest_of(hasher: hashlib._Hash) -> str:
    """The OCI digest a sha256 fed as bytes went by ended at (`sha256:<64 hex>`)."""
    return f"sha256:{hasher.hexdigest()}"


def parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(timestamp(value).replace("Z", "+00:00"))


def natural_key(name: str) -> tuple[tuple[int, str], ...]:
    """Sort key putting store-2 before store-10 (digits compared as numbers)."""
    return tuple((int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"(\d+)", name) if part)


def format_time(moment: dt.datetime | None = None) -> str:
    """`moment` (default: now) as bundler writes times: UTC, whole seconds, `Z`."""
    moment = (moment or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
    return moment.isoformat().replace("+00:00", "Z")
