"""The updates kind's site service, behind the site's front: the signed apt and rpm repositories per
group, approved payloads (sent by the front: `X-Accel-Redirect`), the approvals API, and reports
from enrolled clients. A group is a boundary: its paths go to its enrolled clients only (a Bearer
token, or basic auth with the client's name and token), unless the site reads updates anonymously."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bundler.errors import BundlerError
from bundler.kinds.updates.cache import APT_KEY, ASC_KEY, UPDATES_DIR, UpdateCache
from bundler.site.config import SiteConfig
from bundler.site.front import FrontRule
from bundler.site.http import Route, StartResponse, accel, body_length, json_response, text_response

MAX_REPORT = 1 << 20  # bytes of one client report
PAYLOADS = "/_updates/payloads/"  # the front's internal locations the application redirects downloads to
PUBLISHED = "/_updates/published/"


def front_rules(site: SiteConfig) -> list[FrontRule]:
    """Reports up to MAX_REPORT (with a Content-Length); payloads and published indexes sent by the front."""
    root = site.directory / UPDATES_DIR
    return [FrontRule("/updates/api/report", exact=True, body=f"{MAX_REPORT >> 20}m", posts=True),
            FrontRule(PAYLOADS, files=root / "blobs"), FrontRule(PUBLISHED, files=root / "published")]


class UpdateServer:
    """`/updates/...`."""

    def __init__(self, site: SiteConfig) -> None:
        self.site = site

    def route(self) -> Route:
        return Route("updates", self.handle)

    def update_client(self, environ: dict[str, Any], cache: UpdateCache) -> tuple[str, str] | bool | None:
        """(client, group) for an enrolled client's token (Bearer, or Basic with the client id as the
        user name: apt's auth.conf, dnf's username/password); None without credentials; False when
        the credentials are not an enrolled client's."""
        header = str(environ.get("HTTP_AUTHORIZATION", ""))
        if header.startswith("Bearer "):
            return cache.client_for(header[7:].strip()) or False
        if header.startswith("Basic "):
            try:
                user, _, token = base64.b64decode(header[6:], validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            known = cache.client_for(token)
            return known if known is not None and known[0] == user else False
        return None

    def handle(self, environ: dict[str, Any], start_response: StartResponse, rest: str) -> Iterable[bytes]:
        cache = UpdateCache(self.site)
        method = environ.get("REQUEST_METHOD", "GET")
        if rest == "api/report" and method == "POST":
            return self.report(environ, start_response, cache)
        if method not in ("GET", "HEAD"):
            return text_response(start_response, "405 Method Not Allowed", "read-only\n")
        parts = rest.split("/")
        if parts[0] == "keys" and len(parts) == 2 and parts[1] in (APT_KEY, ASC_KEY):  # public keys: for anyone
            return _small_file(start_response, cache.root / parts[1])
        known = self.update_client(environ, cache)
        if known is False or (known is None and not self.site.anonymous_updates):
            return _unauthorized(start_response)
        # a group is a boundary: an enrolled client reads its own group only; anonymous readers (a
        # site setting, off by default) read what any group approved
        group = known[1] if isinstance(known, tuple) else None

        def allows(g: str) -> bool:
            return group is None or g == group

        if parts[0] == "api" and len(parts) == 4 and parts[1] == "groups" and parts[3] == "approved":
            if parts[2] not in self.site.groups or not allows(parts[2]):
                return text_response(start_response, "404 Not Found", "no such group for this client\n")
            listing = [{k: e[k] for k in ("name", "kind", "file", "version", "arch", "sha256", "size")}
                       | {"url": f"/updates/blobs/sha256/{e['sha256']}"} for e in cache.approved(parts[2])]
            return json_response(start_response, "200 OK", {"group": parts[2], "updates": listing})
        # payloads: only approved ones (for the client's group); others are 404
        if parts[:2] == ["blobs", "sha256"] and len(parts) == 3 and re.fullmatch(r"[a-f0-9]{64}", parts[2]):
            if cache.servable(parts[2], group):
                return _payload(start_response, parts[2])
            return text_response(start_response, "404 Not Found", "no approved update has this digest\n")
        if parts[0] == "files" and len(parts) == 2:
            entry = cache.newest_approved(parts[1], group)
            if entry is not None:
                return _payload(start_response, entry["sha256"])
            return text_response(start_response, "404 Not Found", "no approved update has this file name\n")
        if parts[0] == "apt" and len(parts) == 4 and parts[1] == "pool":  # apt/pool/<sha256>/<file>
            entry = next((e for e in cache.catalog() if e["sha256"] == parts[2] and e["file"] == parts[3]
                          and cache.servable(e["sha256"], group)), None)
            if entry is not None:
                return _payload(start_response, entry["sha256"])
        elif all(_SAFE_PART.match(p) and p != ".." for p in parts) and (
                (parts[0] == "apt" and len(parts) > 3 and parts[1] == "dists" and allows(parts[2]))
                or (parts[0] == "rpm" and len(parts) > 2 and allows(parts[1]))) \
                and (cache.root / "published").joinpath(*parts).is_file():
            return accel(start_response, PUBLISHED + "/".join(parts), [])
        return text_response(start_response, "404 Not Found", "not found\n")

    def report(self, environ: dict[str, Any], start_response: StartResponse, cache: UpdateCache) -> Iterable[bytes]:
        """A client says what it installed: with its own token (`bundler updates enroll`), for itself
        and its group only; the body bounded (a valid Content-Length, at most MAX_REPORT bytes) and
        its length checked before the token."""
        length = body_length(environ, MAX_REPORT)
        if isinstance(length, str):
            return json_response(start_response, length, {"error": f"a report needs a valid Content-Length of at most "
                                                           f"{MAX_REPORT} bytes"})
        known = self.update_client(environ, cache)
        if not isinstance(known, tuple):
            return _unauthorized(start_response)
        client, group = known
        try:
            doc = json.loads(environ["wsgi.input"].read(length))
            if not isinstance(doc, dict):
                raise ValueError("a report is a JSON object")
            installed = doc.get("installed", [])
            if not isinstance(installed, list) or not all(isinstance(i, str) for i in installed):
                raise ValueError("installed must be a list of strings")
            if doc.get("client", client) != client or doc.get("group", group) != group:
                return json_response(start_response, "403 Forbidden", {"error": f"this token reports for {client} "
                                                                         f"(group {group}) only"})
            cache.record_report(client, group, installed)
        except (ValueError, KeyError, TypeError, RecursionError, BundlerError) as exc:
            return json_response(start_response, "400 Bad Request", {"error": str(exc)[:300]})
        return json_response(start_response, "200 OK", {"recorded": True, "client": client, "group": group})


_SAFE_PART = re.compile(r"^[A-Za-z0-9._+~-]{1,255}$")  # a published index's path, part by part


def _payload(start_response: StartResponse, sha256: str) -> list[bytes]:
    return accel(start_response, PAYLOADS + sha256, [
        ("X-Checksum-Sha256", sha256), ("ETag", f'"{sha256}"'),
        ("Digest", "sha-256=" + base64.b64encode(bytes.fromhex(sha256)).decode())])


def _small_file(start_response: StartResponse, path: Path) -> list[bytes]:
    try:
        data = path.read_bytes()
    except OSError:
        return text_response(start_response, "404 Not Found", "not found\n")
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(data)))])
    return [data]


def _unauthorized(start_response: StartResponse) -> list[bytes]:
    body = b'{"error": "an enrolled client\'s token is required (bundler updates enroll)"}\n'
    start_response("401 Unauthorized", [("WWW-Authenticate", 'Bearer realm="bundler site updates"'),
                                         ("WWW-Authenticate", 'Basic realm="bundler site updates"'),
                                         ("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
