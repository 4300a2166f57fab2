"""The site's HTTPS service, behind cheroot (a production WSGI server) with TLS from the site CA:
the Git server (smart HTTP through `git http-backend`, HTTP basic auth) and the update cache
(signed apt and rpm repositories per group, approved payloads with Range support, the catalog API,
and reports from enrolled clients with their tokens), and the status page at / (site credentials).

Run by `bundler site up` as `python -m bundler.site.server DIR`. Clients clone and fetch
https://HOST:PORT/git/<name>.git; push is refused unless the site enables it (http.push).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from bundler import git
from bundler.errors import BundlerError
from bundler.site import tokens
from bundler.site.auth import load_users, password_matches
from bundler.site.config import GIT_DIR, SiteConfig, load_site
from bundler.site.pki import PKI_DIR, SERVER_CERT, SERVER_KEY, load_token_key
from bundler.site.updates import APT_KEY, ASC_KEY, UpdateCache

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
CHUNK = 64 << 10
WORKERS = 96  # threads serving requests (a slow client occupies one while it sends its request)
CLIENT_TIMEOUT = 10  # seconds a connection may stay silent before it is closed


class SiteApp:
    """WSGI application: /healthz, /token for the embedded registry, /git/* and /updates/*."""

    def __init__(self, site: SiteConfig) -> None:
        self.site = site
        self.users = load_users(site.directory)
        self.git_root = site.directory / GIT_DIR
        self.token_key = load_token_key(site.directory) if site.embedded_registry else None
        self._verified: set[str] = set()  # digests of credentials already checked (an old site's scrypt is slow)
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return _text(start_response, "200 OK", "ok\n")
        if path == "/" and environ.get("REQUEST_METHOD", "GET") in ("GET", "HEAD"):
            return self.status_page(environ, start_response)
        if path == "/token" and self.token_key is not None:
            return self.token(environ, start_response)
        if path.startswith("/git/"):
            return self.git(environ, start_response)
        if path.startswith("/updates/"):
            return self.updates(environ, start_response, path[len("/updates/"):])
        return _text(start_response, "404 Not Found", "not found\n")

    # --- updates: read-only repositories and payloads, the catalog API and client reports -------

    def updates(self, environ: dict[str, Any], start_response: StartResponse, rest: str) -> Iterable[bytes]:
        cache = UpdateCache(self.site)
        method = environ.get("REQUEST_METHOD", "GET")
        if rest == "api/report" and method == "POST":
            return self.report(environ, start_response, cache)
        if method not in ("GET", "HEAD"):
            return _text(start_response, "405 Method Not Allowed", "read-only\n")
        client = _bearer(environ)
        group = None
        if client is not None:  # an enrolled client: its token, and its group's approvals
            known = cache.client_for(client)
            if known is None:
                return _unauthorized(start_response)
            group = known[1]
        parts = rest.split("/")
        if parts[0] == "api" and len(parts) == 4 and parts[1] == "groups" and parts[3] == "approved":
            if parts[2] not in self.site.groups:
                return _text(start_response, "404 Not Found", "no such group\n")
            listing = [{k: e[k] for k in ("name", "kind", "file", "version", "arch", "sha256", "size")}
                       | {"url": f"/updates/blobs/sha256/{e['sha256']}"} for e in cache.approved(parts[2])]
            return _json(start_response, "200 OK", {"group": parts[2], "updates": listing})
        # payloads: only approved ones (for the client's group where it authenticates); others are 404
        if parts[:2] == ["blobs", "sha256"] and len(parts) == 3 and re.fullmatch(r"[a-f0-9]{64}", parts[2]):
            if cache.servable(parts[2], group):
                return serve_file(environ, start_response, cache.blob(parts[2]), parts[2])
            return _text(start_response, "404 Not Found", "no approved update has this digest\n")
        if parts[0] == "files" and len(parts) == 2:
            entry = cache.newest_approved(parts[1], group)
            if entry is not None:
                return serve_file(environ, start_response, cache.blob(entry["sha256"]), entry["sha256"])
            return _text(start_response, "404 Not Found", "no approved update has this file name\n")
        if parts[0] == "apt" and len(parts) == 4 and parts[1] == "pool":  # apt/pool/<sha256>/<file>
            entry = next((e for e in cache.catalog() if e["sha256"] == parts[2] and e["file"] == parts[3]
                          and cache.servable(e["sha256"], group)), None)
            if entry is not None:
                return serve_file(environ, start_response, cache.blob(entry["sha256"]), entry["sha256"])
        if parts[0] == "keys" and len(parts) == 2 and parts[1] in (APT_KEY, ASC_KEY):
            return serve_file(environ, start_response, cache.root / parts[1], None)
        if parts[0] in ("apt", "rpm") and ".." not in parts and "" not in parts[1:]:
            published = (cache.root / "published").resolve()
            return serve_file(environ, start_response, published.joinpath(*parts), None)
        return _text(start_response, "404 Not Found", "not found\n")

    def report(self, environ: dict[str, Any], start_response: StartResponse, cache: UpdateCache) -> Iterable[bytes]:
        """A client says what it installed: with its own token (`bundler updates enroll`), for itself
        and its group only; the body bounded (a valid Content-Length, at most MAX_REPORT bytes)."""
        token = _bearer(environ)
        known = cache.client_for(token) if token is not None else None
        if known is None:
            return _unauthorized(start_response)
        client, group = known
        length_text = environ.get("CONTENT_LENGTH") or ""
        if not length_text.isdigit():
            return _json(start_response, "411 Length Required", {"error": "a report needs a valid Content-Length"})
        if int(length_text) > MAX_REPORT:
            return _json(start_response, "413 Content Too Large", {"error": f"a report is at most {MAX_REPORT} bytes"})
        try:
            doc = json.loads(environ["wsgi.input"].read(int(length_text)))
            if not isinstance(doc, dict):
                raise ValueError("a report is a JSON object")
            installed = doc.get("installed", [])
            if not isinstance(installed, list) or not all(isinstance(i, str) for i in installed):
                raise ValueError("installed must be a list of strings")
            if doc.get("client", client) != client or doc.get("group", group) != group:
                return _json(start_response, "403 Forbidden", {"error": f"this token reports for {client} "
                                                                         f"(group {group}) only"})
            cache.record_report(client, group, installed)
        except (ValueError, KeyError, TypeError, RecursionError, BundlerError) as exc:
            return _json(start_response, "400 Bad Request", {"error": str(exc)[:300]})
        return _json(start_response, "200 OK", {"recorded": True, "client": client, "group": group})

    def status_page(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """The technician's page: what the site runs and holds (the site's credentials)."""
        if self.authorized(environ) is None:
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="bundler site"'),
                                                 ("Content-Type", "text/plain")])
            return [b"credentials required (see the site's credentials file)\n"]
        from bundler.site.status_page import status_page

        body = status_page(self.site)
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body))),
                                  ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"),
                                  ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")])
        return [body]

    # --- the registry's token server ------------------------------------------------------------

    def token(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """GET with basic auth (Docker, skopeo, oras) or POST with an OAuth2 password grant (containerd)."""
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        user: str | None
        if environ.get("REQUEST_METHOD") == "POST":
            length = min(int(environ.get("CONTENT_LENGTH") or 0), 64 << 10)
            form = urllib.parse.parse_qs(environ["wsgi.input"].read(length).decode("utf-8", "replace"))
            if form.get("grant_type") != ["password"]:
                return _json(start_response, "400 Bad Request", {"error": "unsupported_grant_type"})
            query = {**query, **form}
            user = self.check(form.get("username", [""])[0], form.get("password", [""])[0])
        else:
            user = self.authorized(environ)
        if user is None:
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="bundler site"'),
                                                 ("Content-Type", "application/json")])
            return [b'{"errors": [{"code": "UNAUTHORIZED", "message": "the site credentials are required"}]}\n']
        if query.get("service", [tokens.SERVICE]) != [tokens.SERVICE]:
            return _json(start_response, "400 Bad Request", {"error": "unknown service"})
        scopes = [s for text in query.get("scope", []) for part in text.split(" ")
                  if (s := tokens.Scope.parse(part)) is not None]
        assert self.token_key is not None
        token = tokens.issue_token(self.token_key, user, tokens.granted(self.users[user].role, scopes))
        return _json(start_response, "200 OK", {"token": token, "access_token": token,
                                                "expires_in": tokens.TOKEN_TTL})

    def authorized(self, environ: dict[str, Any]) -> str | None:
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

    def git(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        user = self.authorized(environ)
        if user is None:
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="bundler site"'),
                                                 ("Content-Type", "text/plain")])
            return [b"credentials required (see the site's credentials file)\n"]
        query = environ.get("QUERY_STRING", "")
        path = environ["PATH_INFO"][len("/git"):]
        service = smart_service(environ.get("REQUEST_METHOD", "GET"), path, query)
        if service is None:  # dumb HTTP would list the hidden staging refs and every pack, refused ones too
            return _text(start_response, "403 Forbidden", "this Git server speaks smart HTTP only\n")
        if service == "git-receive-pack" and not self.site.allow_push:
            return _text(start_response, "403 Forbidden", "push is disabled on this site\n")
        return self.http_backend(environ, start_response, path, query, user)

    def http_backend(self, environ: dict[str, Any], start_response: StartResponse, path: str, query: str,
                     user: str) -> Iterator[bytes]:
        env = {"GIT_PROJECT_ROOT": str(self.git_root), "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": path,
               "QUERY_STRING": query, "REQUEST_METHOD": environ.get("REQUEST_METHOD", "GET"),
               "CONTENT_TYPE": environ.get("CONTENT_TYPE", ""), "REMOTE_USER": user,
               "REMOTE_ADDR": environ.get("REMOTE_ADDR", ""), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "HOME": str(self.site.directory), "GIT_HTTP_MAX_REQUEST_BUFFER": "100M"}
        if environ.get("CONTENT_LENGTH"):
            env["CONTENT_LENGTH"] = environ["CONTENT_LENGTH"]
        if environ.get("HTTP_CONTENT_ENCODING"):
            env["HTTP_CONTENT_ENCODING"] = environ["HTTP_CONTENT_ENCODING"]
        # No GIT_PROTOCOL: upload-pack speaks protocol v0, which refuses a `want` not reachable from an
        # advertised ref. Protocol v2 serves any object it has by id, the hidden staging refs' too.
        proc = subprocess.Popen([git.git_binary(), "http-backend"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                env=env)
        assert proc.stdin is not None and proc.stdout is not None
        feeder = threading.Thread(target=_feed, args=(environ["wsgi.input"], proc.stdin,
                                                      environ.get("CONTENT_LENGTH")), daemon=True)
        feeder.start()
        status, headers = "200 OK", []
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("latin-1").rstrip("\r\n")
            if not line:
                break
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = value.strip()
            else:
                headers.append((name.strip(), value.strip()))
        start_response(status, headers)
        return _stream(proc, feeder)


def smart_service(method: str, path: str, query: str) -> str | None:
    """The smart-HTTP service a Git request asks for (`git-upload-pack`, `git-receive-pack`), or None
    for anything else (dumb HTTP: info/refs without a service, objects/, HEAD)."""
    services = ("git-upload-pack", "git-receive-pack")
    if method in ("GET", "HEAD") and path.endswith("/info/refs"):
        asked = urllib.parse.parse_qs(query).get("service", [])
        return asked[0] if len(asked) == 1 and asked[0] in services else None
    if method == "POST":
        return next((s for s in services if path.endswith(f"/{s}")), None)
    return None


def _feed(source: Any, sink: Any, length: str | None) -> None:
    remaining = int(length) if length else None
    try:
        while remaining is None or remaining > 0:
            chunk = source.read(CHUNK if remaining is None else min(CHUNK, remaining))
            if not chunk:
                break
            sink.write(chunk)
            if remaining is not None:
                remaining -= len(chunk)
    except (BrokenPipeError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.close()


def _stream(proc: subprocess.Popen[bytes], feeder: threading.Thread) -> Iterator[bytes]:
    assert proc.stdout is not None
    try:
        while chunk := proc.stdout.read(CHUNK):
            yield chunk
    finally:
        proc.stdout.close()
        proc.wait()
        feeder.join(timeout=5)


RANGE_RE = re.compile(r"^bytes=(\d{0,19})-(\d{0,19})$")  # longer numbers: not a range we serve, ignored


def serve_file(environ: dict[str, Any], start_response: StartResponse, path: Path,
               sha256: str | None) -> Iterable[bytes]:
    """A file with HTTP Range support (one range: resumable downloads) and its sha256 when known."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed by the response iterator
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return _text(start_response, "404 Not Found", "not found\n")
    size = os.fstat(f.fileno()).st_size
    start, end, status = 0, size - 1, "200 OK"
    headers = [("Accept-Ranges", "bytes"), ("Content-Type", "application/octet-stream")]
    if sha256:
        headers += [("X-Checksum-Sha256", sha256), ("ETag", f'"{sha256}"'),
                    ("Digest", "sha-256=" + base64.b64encode(bytes.fromhex(sha256)).decode())]
    if match := RANGE_RE.match(environ.get("HTTP_RANGE", "")):
        first, last = match.groups()
        if first:
            start, end = int(first), min(int(last), size - 1) if last else size - 1
        elif last:
            start = max(size - int(last), 0)
        if start > end or start >= size:
            f.close()
            start_response("416 Range Not Satisfiable", [("Content-Range", f"bytes */{size}")])
            return [b""]
        status = "206 Partial Content"
        headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))
    headers.append(("Content-Length", str(end - start + 1)))
    start_response(status, headers)
    if environ.get("REQUEST_METHOD") == "HEAD":
        f.close()
        return [b""]
    return _read_range(f, start, end - start + 1)


def _read_range(f: Any, start: int, length: int) -> Iterator[bytes]:
    try:
        f.seek(start)
        while length > 0:
            chunk = f.read(min(CHUNK * 16, length))
            if not chunk:
                break
            length -= len(chunk)
            yield chunk
    finally:
        f.close()


MAX_REPORT = 1 << 20  # bytes of one client report


def _bearer(environ: dict[str, Any]) -> str | None:
    header = str(environ.get("HTTP_AUTHORIZATION", ""))
    return header[7:].strip() if header.startswith("Bearer ") else None


def _unauthorized(start_response: StartResponse) -> list[bytes]:
    body = b'{"error": "an enrolled client\'s token is required (bundler updates enroll)"}\n'
    start_response("401 Unauthorized", [("WWW-Authenticate", 'Bearer realm="bundler site updates"'),
                                         ("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _json(start_response: StartResponse, status: str, doc: Any) -> list[bytes]:
    data = json.dumps(doc, indent=1).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def _text(start_response: StartResponse, status: str, body: str) -> list[bytes]:
    data = body.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]


def serve(directory: Path) -> None:
    """Run the site's HTTPS service in this process until SIGTERM."""
    from cheroot import wsgi
    from cheroot.ssl.builtin import BuiltinSSLAdapter

    site = load_site(directory)
    host, _, port = site.http_listen.rpartition(":")
    # a slow or broken client holds one worker at most `timeout` seconds; enough workers that 50 of
    # them at once leave /healthz, the page and real clients answering
    server = wsgi.Server((host.strip("[]"), int(port)), SiteApp(site), numthreads=WORKERS, server_name="bundler-site",
                         timeout=CLIENT_TIMEOUT)
    server.max_request_header_size = 64 << 10
    pki = site.directory / PKI_DIR
    server.ssl_adapter = BuiltinSSLAdapter(str(pki / SERVER_CERT), str(pki / SERVER_KEY))
    # stop() joins the worker threads: from the handler (the main thread, inside serve) it would hang
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.stop, daemon=True).start())
    try:
        server.start()
    finally:
        server.stop()


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
