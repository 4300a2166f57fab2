"""The site's HTTPS service: the Git server (smart HTTP through `git http-backend`), behind cheroot,
a production WSGI server, with TLS from the site CA and HTTP basic auth.

Run by `bundler site up` as `python -m bundler.site.server DIR`. Clients clone and fetch
https://HOST:PORT/git/<name>.git; push is refused unless the site enables it (http.push).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from bundler import git
from bundler.site.auth import load_users, password_matches
from bundler.site.config import GIT_DIR, SiteConfig, load_site
from bundler.site.pki import PKI_DIR, SERVER_CERT, SERVER_KEY

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
CHUNK = 64 << 10


class SiteApp:
    """WSGI application: /healthz, and /git/* for Git clients."""

    def __init__(self, site: SiteConfig) -> None:
        self.site = site
        self.users = load_users(site.directory)
        self.git_root = site.directory / GIT_DIR
        self._verified: set[str] = set()  # digests of Authorization headers already checked (scrypt is slow)
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return _text(start_response, "200 OK", "ok\n")
        if path.startswith("/git/"):
            return self.git(environ, start_response)
        return _text(start_response, "404 Not Found", "not found\n")

    def authorized(self, environ: dict[str, Any]) -> str | None:
        header = environ.get("HTTP_AUTHORIZATION", "")
        if not header.startswith("Basic "):
            return None
        key = hashlib.sha256(header.encode()).hexdigest()
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        with self._lock:
            if key in self._verified:
                return user
        stored = self.users.get(user)
        if stored is None or not password_matches(stored, password):
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
        if ("service=git-receive-pack" in query or path.endswith("/git-receive-pack")) and not self.site.allow_push:
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
        if environ.get("HTTP_GIT_PROTOCOL"):
            env["GIT_PROTOCOL"] = environ["HTTP_GIT_PROTOCOL"]
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
    server = wsgi.Server((host.strip("[]"), int(port)), SiteApp(site), numthreads=16, server_name="bundler-site")
    pki = site.directory / PKI_DIR
    server.ssl_adapter = BuiltinSSLAdapter(str(pki / SERVER_CERT), str(pki / SERVER_KEY))
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    try:
        server.start()
    finally:
        server.stop()


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
