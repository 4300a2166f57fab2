"""The site's HTTPS application, behind the front (site/front.py: nginx terminates TLS and faces
the network; this listens on a unix socket, through cheroot, a production WSGI server): the registry's
token server, the Git server (smart HTTP through `git http-backend`, HTTP basic auth), the update cache
(signed apt and rpm repositories per group, approved payloads, the catalog API, and reports from
enrolled clients with their tokens) and the status page at / (site credentials).

Run by `bundler site up` as `python -m bundler.pipeline.server DIR`. Clients clone and fetch
https://HOST:PORT/git/<name>.git; push is refused unless the site enables it (http.push).
An update download is authorized here and sent by the front (`X-Accel-Redirect`).
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
from bundler.fsutil import make_dirs, own_like_parent
from bundler.kinds.updates.cache import APT_KEY, ASC_KEY, UPDATES_DIR, UpdateCache
from bundler.pipeline.prune import disk_report
from bundler.pipeline.status_page import status_page
from bundler.site import figures, tokens
from bundler.site.auth import load_users, password_matches
from bundler.site.config import GIT_DIR, RUN_DIR, SiteConfig, load_site
from bundler.site.front import PAYLOADS, PUBLISHED, app_socket
from bundler.site.pki import load_token_key
from bundler.site.service import http_healthy, registry_healthy

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
CHUNK = 64 << 10
WORKERS = 32  # threads serving requests: the front buffers bodies and responses, so none waits on a client
CLIENT_TIMEOUT = 30  # seconds the front may take to send a request it has buffered
BACKLOG = 1024  # connections from the front waiting to be accepted (cheroot's default, 5, makes nginx answer 502)
MAX_TOKEN_FORM = 64 << 10  # bytes of a POST /token form (front: TOKEN_BODY)
MAX_REPORT = 1 << 20  # bytes of one client report (front: REPORT_BODY)
GIT_PROCESSES = 8  # Git requests served at once (each a process); the front has buffered their bodies
GIT_WAIT = 5  # seconds a Git request waits for one of them before 503


class SiteApp:
    """WSGI application: /healthz, /token for the embedded registry, /git/*, /updates/* and /."""

    def __init__(self, site: SiteConfig) -> None:
        self.site = site
        self.users = load_users(site.directory)
        self.git_root = site.directory / GIT_DIR
        self.token_key = load_token_key(site.directory) if site.embedded_registry else None
        self._verified: set[str] = set()  # digests of credentials already checked (an old site's scrypt is slow)
        self._lock = threading.Lock()
        self._page_lock = threading.Lock()
        self._page: tuple[tuple[int, ...], bytes] | None = None
        self._git_slots = threading.BoundedSemaphore(GIT_PROCESSES)  # `git http-backend` processes at once

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

    def updates(self, environ: dict[str, Any], start_response: StartResponse, rest: str) -> Iterable[bytes]:
        cache = UpdateCache(self.site)
        method = environ.get("REQUEST_METHOD", "GET")
        if rest == "api/report" and method == "POST":
            return self.report(environ, start_response, cache)
        if method not in ("GET", "HEAD"):
            return _text(start_response, "405 Method Not Allowed", "read-only\n")
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
                return _text(start_response, "404 Not Found", "no such group for this client\n")
            listing = [{k: e[k] for k in ("name", "kind", "file", "version", "arch", "sha256", "size")}
                       | {"url": f"/updates/blobs/sha256/{e['sha256']}"} for e in cache.approved(parts[2])]
            return _json(start_response, "200 OK", {"group": parts[2], "updates": listing})
        # payloads: only approved ones (for the client's group); others are 404
        if parts[:2] == ["blobs", "sha256"] and len(parts) == 3 and re.fullmatch(r"[a-f0-9]{64}", parts[2]):
            if cache.servable(parts[2], group):
                return _payload(start_response, parts[2])
            return _text(start_response, "404 Not Found", "no approved update has this digest\n")
        if parts[0] == "files" and len(parts) == 2:
            entry = cache.newest_approved(parts[1], group)
            if entry is not None:
                return _payload(start_response, entry["sha256"])
            return _text(start_response, "404 Not Found", "no approved update has this file name\n")
        if parts[0] == "apt" and len(parts) == 4 and parts[1] == "pool":  # apt/pool/<sha256>/<file>
            entry = next((e for e in cache.catalog() if e["sha256"] == parts[2] and e["file"] == parts[3]
                          and cache.servable(e["sha256"], group)), None)
            if entry is not None:
                return _payload(start_response, entry["sha256"])
        elif all(_SAFE_PART.match(p) and p != ".." for p in parts) and (
                (parts[0] == "apt" and len(parts) > 3 and parts[1] == "dists" and allows(parts[2]))
                or (parts[0] == "rpm" and len(parts) > 2 and allows(parts[1]))) \
                and (cache.root / "published").joinpath(*parts).is_file():
            return _accel(start_response, PUBLISHED + "/".join(parts), [])
        return _text(start_response, "404 Not Found", "not found\n")

    def report(self, environ: dict[str, Any], start_response: StartResponse, cache: UpdateCache) -> Iterable[bytes]:
        """A client says what it installed: with its own token (`bundler updates enroll`), for itself
        and its group only; the body bounded (a valid Content-Length, at most MAX_REPORT bytes) and
        its length checked before the token."""
        length = _body_length(environ, MAX_REPORT)
        if isinstance(length, str):
            return _json(start_response, length, {"error": f"a report needs a valid Content-Length of at most "
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
                return _json(start_response, "403 Forbidden", {"error": f"this token reports for {client} "
                                                                         f"(group {group}) only"})
            cache.record_report(client, group, installed)
        except (ValueError, KeyError, TypeError, RecursionError, BundlerError) as exc:
            return _json(start_response, "400 Bad Request", {"error": str(exc)[:300]})
        return _json(start_response, "200 OK", {"recorded": True, "client": client, "group": group})

    def status_page(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """The technician's page: what the site runs and holds (the site's credentials). Rendered
        again only when what it shows changed (the site's state, updates, or the kept figures)."""
        if self.authorized(environ) is None:
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="bundler site"'),
                                                 ("Content-Type", "text/plain")])
            return [b"credentials required (see the site's credentials file)\n"]
        body = self.page()
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body))),
                                  ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"),
                                  ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")])
        return [body] if environ.get("REQUEST_METHOD") != "HEAD" else [b""]

    def page(self) -> bytes:
        key = _changes(self.site) + figures.mtime_key(self.site)
        with self._page_lock:  # one render at a time; the others take its result
            if self._page is None or self._page[0] != key:
                self._page = key, status_page(self.site)
            return self._page[1]

    # --- the registry's token server ------------------------------------------------------------

    def token(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """GET with basic auth (Docker, skopeo, oras) or POST with an OAuth2 password grant (containerd)."""
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        user: str | None
        if environ.get("REQUEST_METHOD") == "POST":
            length = _body_length(environ, MAX_TOKEN_FORM)
            if isinstance(length, str):
                return _json(start_response, length, {"error": f"a token request needs a valid Content-Length "
                                                               f"of at most {MAX_TOKEN_FORM} bytes"})
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
        if not self._git_slots.acquire(timeout=GIT_WAIT):
            start_response("503 Service Unavailable", [("Retry-After", "5"), ("Content-Type", "text/plain")])
            return [b"the Git server is busy; try again\n"]
        try:
            return self.http_backend(environ, start_response, path, query, user)
        except BaseException:
            self._git_slots.release()
            raise

    def http_backend(self, environ: dict[str, Any], start_response: StartResponse, path: str, query: str,
                     user: str) -> Iterator[bytes]:
        env = {"GIT_PROJECT_ROOT": str(self.git_root), "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": path,
               "QUERY_STRING": query, "REQUEST_METHOD": environ.get("REQUEST_METHOD", "GET"),
               "CONTENT_TYPE": environ.get("CONTENT_TYPE", ""), "REMOTE_USER": user,
               "REMOTE_ADDR": environ.get("HTTP_X_REAL_IP", ""), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "HOME": str(self.site.directory),
               # the repositories an import (as root) wrote, served by the site's own user
               "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "safe.directory", "GIT_CONFIG_VALUE_0": "*"}
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
        return _stream(proc, feeder, self._git_slots.release)


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


def _stream(proc: subprocess.Popen[bytes], feeder: threading.Thread, done: Callable[[], None]) -> Iterator[bytes]:
    assert proc.stdout is not None
    try:
        while chunk := proc.stdout.read(CHUNK):
            yield chunk
    finally:
        proc.stdout.close()
        proc.wait()
        feeder.join(timeout=5)
        done()


_SAFE_PART = re.compile(r"^[A-Za-z0-9._+~-]{1,255}$")  # a published index's path, part by part


def _body_length(environ: dict[str, Any], limit: int) -> int | str:
    """The request body's length, or the status refusing it before a byte is read: 411 without a
    Content-Length (chunked), 400 for one that is not a number, 413 above `limit`."""
    text = str(environ.get("CONTENT_LENGTH") or "")
    if not text:
        return "411 Length Required"
    if not text.isdigit() or len(text) > 19:
        return "400 Bad Request"
    return int(text) if int(text) <= limit else "413 Content Too Large"


def _accel(start_response: StartResponse, internal: str, headers: list[tuple[str, str]]) -> list[bytes]:
    """Let the front send a file this request may have: it serves `internal` itself (sendfile,
    Range, HEAD) and adds `headers`."""
    start_response("200 OK", [("X-Accel-Redirect", urllib.parse.quote(internal)), ("Content-Length", "0"), *headers])
    return [b""]


def _payload(start_response: StartResponse, sha256: str) -> list[bytes]:
    return _accel(start_response, PAYLOADS + sha256, [
        ("X-Checksum-Sha256", sha256), ("ETag", f'"{sha256}"'),
        ("Digest", "sha-256=" + base64.b64encode(bytes.fromhex(sha256)).decode())])


def _small_file(start_response: StartResponse, path: Path) -> list[bytes]:
    try:
        data = path.read_bytes()
    except OSError:
        return _text(start_response, "404 Not Found", "not found\n")
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(data)))])
    return [data]


def _changes(site: SiteConfig) -> tuple[int, ...]:
    """Modification times of what the status page shows besides the figures."""
    out = []
    for path in (site.directory / "state.json", site.directory / UPDATES_DIR / "catalog.json",
                 site.directory / UPDATES_DIR / "approvals.json", site.directory / UPDATES_DIR / "reports",
                 site.directory / GIT_DIR):
        try:
            out.append(path.stat().st_mtime_ns)
        except OSError:
            out.append(0)
    return tuple(out)


def _unauthorized(start_response: StartResponse) -> list[bytes]:
    body = b'{"error": "an enrolled client\'s token is required (bundler updates enroll)"}\n'
    start_response("401 Unauthorized", [("WWW-Authenticate", 'Bearer realm="bundler site updates"'),
                                         ("WWW-Authenticate", 'Basic realm="bundler site updates"'),
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


def check_health(site: SiteConfig, stop: threading.Event) -> None:
    """Keep the figures views read: the disk once at start (a walk no view pays for), then each
    service's health every HEALTH_INTERVAL seconds."""
    with contextlib.suppress(BundlerError, OSError):
        client = site.registry_client(2) if site.embedded_registry and registry_healthy(site) else None
        figures.write_disk(site, disk_report(site, client))
    while not stop.wait(figures.HEALTH_INTERVAL):  # `site up` wrote the first, once all answered
        with contextlib.suppress(OSError):
            figures.write_health(site, {"http": http_healthy(site), "registry": registry_healthy(site)})


def serve(directory: Path) -> None:
    """Run the site's HTTPS application on its unix socket in this process until SIGTERM."""
    from cheroot import wsgi

    site = load_site(directory)
    make_dirs(site.directory / RUN_DIR, 0o700)
    socket_path = app_socket(site)
    socket_path.unlink(missing_ok=True)  # a socket left by a process that was killed
    server = wsgi.Server(str(socket_path), SiteApp(site), numthreads=WORKERS, server_name="bundler-site",
                         timeout=CLIENT_TIMEOUT, request_queue_size=BACKLOG)
    server.max_request_header_size = 64 << 10
    stop = threading.Event()
    threading.Thread(target=check_health, args=(site, stop), daemon=True).start()

    def on_term(*_: object) -> None:  # stop() joins the worker threads: not from the handler's thread
        stop.set()
        threading.Thread(target=server.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    try:
        server.prepare()  # binds the socket: the front's workers (the site directory's owner) connect to it
        os.chmod(socket_path, 0o660)
        own_like_parent(socket_path)
        server.serve()
    finally:
        server.stop()
        socket_path.unlink(missing_ok=True)


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
