"""The one error family the CLI catches: a message for the user, a hint, and an exit code.

Two branches matter to callers: `RefusedError` (bad content: integrity, signature, policy; do not
retry) and `UnreachableError` (transport: a source or target did not answer; retrying may help).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_UNREACHABLE = 4


class BundlerError(Exception):
    """A failure the user can act on. `str()` is the one-line message; `hint` says what to do."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(BundlerError):
    """Bad arguments or a bad profile."""

    exit_code = EXIT_USAGE


class ProfileError(UsageError):
    """A profile that does not validate; the message starts with `file:line:`."""


class RefusedError(BundlerError):
    """Content that must not be trusted: integrity, signature, trust policy, expiry, rollback."""

    exit_code = EXIT_REFUSED


class IntegrityError(RefusedError):
    """A file whose bytes, size or presence differ from what the manifest says."""


class UnreachableError(BundlerError):
    """A source or target could not be reached (connection refused, timeout, TLS failure)."""

    exit_code = EXIT_UNREACHABLE


class NotFoundError(BundlerError):
    """A source answered but does not have what was asked for (unknown image, tag or blob)."""
