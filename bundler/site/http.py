"""The site's HTTP application parts every route shares: responses, a body bounded by its length
before anything is read, `X-Accel-Redirect` for files the front sends, the site's accounts (HTTP basic
auth against users.json), and the route table content kinds add their routes to."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from wsgiref.types import StartResponse, WSGIEnvironment

from bundler.jsontypes import Out
from bundler.site.auth import load_users, password_matches

Handler = Callable[[WSGIEnvironment, StartResponse, str], Iterable[bytes]]  # environ, start_response, rest of path


@dataclass(frozen=True)
class Route:
    """Requests under `/<prefix>/` go to `handle` with the rest of the path (a kind's site service)."""

    prefix: str
    handle: Handler


class Accounts:
    """The site's accounts (users.json): who a request's HTTP basic credentials name, if any."""

    def __init__(self, directory: Path) -> None:
        self.users = load_users(directory)
        self._verified: set[str] = set()  # digests of credentials already checked (an old site's scrypt is slow)
        self._lock = threading.Lock()

    def authorized(self, environ: WSGIEnvironment) -> str | None:
        header = environ.get("HTTP_AUTHORIZATION", "")
        if not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return self.check(user, password)

    def check(self, user: str, password: str) -> str | None:
        """The user, if the password is theirs."""
        key = hashlib.sha256(f"{user}:{password}".encode()).hexdigest()
        with self._lock:
            if key in self._verified:
                return user
        account = self.users.get(user)
        if account is None or not password_matches(account.stored, password):
            return None
        with self._lock:
            self._verified.add(key)
        return user


def basic_challenge(start_response: StartResponse) -> list[bytes]:
    start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="bundler site"'),
                                         ("Content-Type", "text/plain")])
    return [b"credentials required (see the site's credentials file)\n"]


def body_length(environ: WSGIEnvironment, limit: int) -> int | str:
    """The request body's length, or the status refusing it before a byte is read: 411 without a
    Content-Length (chunked), 400 for one that is not a number, 413 above `limit`."""
    text = str(environ.get("CONTENT_LENGTH") or "")
    if not text:
        return "411 Length Required"
    if not text.isdigit() or len(text) > 19:
        return "400 Bad Request"
    return int(text) if int(text) <= limit else "413 Content Too Large"


def accel(start_response: StartResponse, internal: str, headers: list[tuple[str, str]]) -> list[bytes]:
    """Let the front send a file this request may have: it serves `internal` itself (sendfile,
    Range, HEAD) and adds `headers`."""
    start_response("200 OK", [("X-Accel-Redirect", urllib.parse.quote(internal)), ("Content-Length", "0"), *headers])
    return [b""]


def json_response(start_response: StartResponse, status: str, doc: Out) -> list[bytes]:
    data = json.dumps(doc, indent=1).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def text_response(start_response: StartResponse, status: str, body: str) -> list[bytes]:
    data = body.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]
