"""The site's HTTPS application, behind the front (site/front.py: nginx terminates TLS and faces
the network; this listens on a unix socket, through cheroot, a production WSGI server): `/healthz`,
the registry's token server (`/token`), the status page at `/` (site credentials), and the routes
each content kind adds for its own site service (`Kind.routes`: the repos kind's Git server,
the updates kind's update cache).

Run by `bundler site up` as `python -m bundler.pipeline.server DIR`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import urllib.parse
from collections.abc import Iterable, Sequence
from pathlib import Path
from wsgiref.types import StartResponse, WSGIEnvironment

from bundler.errors import BundlerError
from bundler.fsutil import make_dirs, own_like_parent
from bundler.kinds import KINDS
from bundler.pipeline.disk import disk_report
from bundler.pipeline.status_page import status_page
from bundler.site import figures, tokens
from bundler.site.config import RUN_DIR, SiteConfig, load_site
from bundler.site.front import app_socket
from bundler.site.http import (
    Accounts,
    Route,
    basic_challenge,
    body_length,
    json_response,
    text_response,
)
from bundler.site.pki import load_token_key
from bundler.site.service import http_healthy, registry_healthy

WORKERS = 32  # threads serving requests: the front buffers bodies and responses, so none waits on a client
CLIENT_TIMEOUT = 30  # seconds the front may take to send a request it has buffered
BACKLOG = 1024  # connections from the front waiting to be accepted (cheroot's default, 5, makes nginx answer 502)
MAX_TOKEN_FORM = 64 << 10  # bytes of a POST /token form (front: TOKEN_BODY)


class SiteApp:
    """WSGI application: /healthz, /token for the embedded registry, /, and each kind's routes."""

    def __init__(self, site: SiteConfig, routes: Sequence[Route] | None = None) -> None:
        self.site = site
        self.accounts = Accounts(site.directory)
        self.token_key = load_token_key(site.directory) if site.embedded_registry else None
        self.routes = {route.prefix: route for route in (
            routes if routes is not None else [r for kind in KINDS for r in kind.serve.routes(site, self.accounts)])}
        self._page_lock = threading.Lock()
        self._page: tuple[tuple[int, ...], bytes] | None = None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return text_response(start_response, "200 OK", "ok\n")
        if path == "/" and environ.get("REQUEST_METHOD", "GET") in ("GET", "HEAD"):
            return self.status_page(environ, start_response)
        if path == "/token" and self.token_key is not None:
            return self.token(environ, start_response)
        prefix, slash, rest = path.lstrip("/").partition("/")
        if slash and (route := self.routes.get(prefix)) is not None:
            return route.handle(environ, start_response, rest)
        return text_response(start_response, "404 Not Found", "not found\n")

    def status_page(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """The technician's page: what the site runs and holds (the site's credentials). Rendered
        again only when what it shows changed (the site's state, updates, or the kept figures)."""
        if self.accounts.authorized(environ) is None:
            return basic_challenge(start_response)
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

    def token(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """GET with basic auth (Docker, skopeo, oras) or POST with an OAuth2 password grant (containerd)."""
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        user: str | None
        if environ.get("REQUEST_METHOD") == "POST":
            length = body_length(environ, MAX_TOKEN_FORM)
            if isinstance(length, str):
                return json_response(start_response, length, {"error": f"a token request needs a valid Content-Length "
                                                               f"of at most {MAX_TOKEN_FORM} bytes"})
            form = urllib.parse.parse_qs(environ["wsgi.input"].read(length).decode("utf-8", "replace"))
            if form.get("grant_type") != ["password"]:
                return json_response(start_response, "400 Bad Request", {"error": "unsupported_grant_type"})
            query = {**query, **form}
            user = self.accounts.check(form.get("username", [""])[0], form.get("password", [""])[0])
        else:
            user = self.accounts.authorized(environ)
        if user is None:
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="bundler site"'),
                                                 ("Content-Type", "application/json")])
            return [b'{"errors": [{"code": "UNAUTHORIZED", "message": "the site credentials are required"}]}\n']
        if query.get("service", [tokens.SERVICE]) != [tokens.SERVICE]:
            return json_response(start_response, "400 Bad Request", {"error": "unknown service"})
        scopes = [s for text in query.get("scope", []) for part in text.split(" ")
                  if (s := tokens.Scope.parse(part)) is not None]
        assert self.token_key is not None
        token = tokens.issue_token(self.token_key, user, tokens.granted(self.accounts.users[user].role, scopes))
        return json_response(start_response, "200 OK", {"token": token, "access_token": token,
                                                "expires_in": tokens.TOKEN_TTL})


def _changes(site: SiteConfig) -> tuple[int, ...]:
    """Modification times of what the status page shows besides the figures."""
    out = []
    for path in (site.directory / "state.json", *(path for kind in KINDS for path in kind.serve.watched(site))):
        try:
            out.append(path.stat().st_mtime_ns)
        except OSError:
            out.append(0)
    return tuple(out)


def check_health(site: SiteConfig, stop: threading.Event) -> None:
    """Keep the figures views read: the disk once at start (a walk no view pays for), then each
    service's health every HEALTH_INTERVAL seconds."""
    with contextlib.suppress(BundlerError, OSError):
        client = site.registry_client(2) if site.embedded_registry and registry_healthy(site) else None
        figures.write_disk(site, disk_report(site, client).to_dict())
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
