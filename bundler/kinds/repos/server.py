"""The repos kind's site service: the Git server Flux and technicians read, smart HTTP through
`git http-backend` behind the site's front (HTTP basic auth, the site's accounts); push is refused
unless the site enables it (http.push). At most GIT_PROCESSES `git http-backend` processes at once."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.types import StartResponse, WSGIEnvironment

from bundler import git
from bundler.site.config import GIT_DIR, SiteConfig
from bundler.site.http import Accounts, Route, basic_challenge, text_response

CHUNK = 64 << 10
GIT_PROCESSES = 8  # Git requests served at once (each a process); the front has buffered their bodies
GIT_WAIT = 5  # seconds a Git request waits for one of them before 503
GIT_BODY = "10m"  # a request body the front buffers: git's own default request buffer (http.maxRequestBuffer)


class GitServer:
    """`/git/<name>.git/...`: clone and fetch over smart HTTP."""

    def __init__(self, site: SiteConfig, accounts: Accounts) -> None:
        self.site, self.accounts = site, accounts
        self.git_root = site.directory / GIT_DIR
        self._git_slots = threading.BoundedSemaphore(GIT_PROCESSES)  # `git http-backend` processes at once

    def route(self) -> Route:
        return Route("git", self.handle)

    def handle(self, environ: WSGIEnvironment, start_response: StartResponse, rest: str) -> Iterable[bytes]:
        user = self.accounts.authorized(environ)
        if user is None:
            return basic_challenge(start_response)
        query = environ.get("QUERY_STRING", "")
        path = "/" + rest
        service = smart_service(environ.get("REQUEST_METHOD", "GET"), path, query)
        if service is None:  # dumb HTTP would list the hidden staging refs and every pack, refused ones too
            return text_response(start_response, "403 Forbidden", "this Git server speaks smart HTTP only\n")
        if service == "git-receive-pack" and not self.site.http.push:
            return text_response(start_response, "403 Forbidden", "push is disabled on this site\n")
        if not self._git_slots.acquire(timeout=GIT_WAIT):
            start_response("503 Service Unavailable", [("Retry-After", "5"), ("Content-Type", "text/plain")])
            return [b"the Git server is busy; try again\n"]
        try:
            return self.http_backend(environ, start_response, path, query, user)
        except BaseException:
            self._git_slots.release()
            raise

    def http_backend(self, environ: WSGIEnvironment, start_response: StartResponse, path: str, query: str,
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
