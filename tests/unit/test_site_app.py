"""The site's HTTPS application, called as the front calls it (WSGI environ): a request body is
bounded by its Content-Length before any credential is looked at or a byte is read, and a group's
update paths need that group's client."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bundler.kinds.updates.server import MAX_REPORT
from bundler.pipeline.server import SiteApp
from bundler.signing import generate_key, public_pem
from bundler.site.http import body_length
from tests.helpers import make_site


class Unreadable(io.RawIOBase):
    """A request body that must not be read."""

    def read(self, size: int = -1) -> bytes:
        raise AssertionError("the body was read")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiteApp]:
    work = tmp_path_factory.mktemp("app")
    key = work / "release.pub"
    key.write_bytes(public_pem(generate_key().public_key()))
    yield SiteApp(make_site(work / "site", None, [key], 1, groups=["line-1", "line-2"], name="store-1"))


def call(app: SiteApp, method: str, path: str, headers: dict[str, str] | None = None,
         length: str | None = None) -> tuple[str, bytes]:
    seen: list[str] = []
    environ: dict[str, Any] = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "",
                               "wsgi.input": Unreadable(), **(headers or {})}
    if length is not None:
        environ["CONTENT_LENGTH"] = length
    body = b"".join(app(environ, lambda status, _: seen.append(status)))
    return seen[0], body


@pytest.mark.parametrize(("length", "expected"), [
    ("", "411 Length Required"), ("-1", "400 Bad Request"), ("1e3", "400 Bad Request"), (" 5", "400 Bad Request"),
    ("9" * 30, "400 Bad Request"), (str(MAX_REPORT + 1), "413 Content Too Large"), ("0", 0), ("512", 512),
])
def test_a_body_length_is_taken_only_when_valid_and_bounded(length: str, expected: int | str) -> None:
    assert body_length({"CONTENT_LENGTH": length}, MAX_REPORT) == expected


@pytest.mark.parametrize("path", ["/updates/api/report", "/token"])
@pytest.mark.parametrize(("length", "status"), [
    (None, "411"), ("-1", "400"), ("18446744073709551617", "400"), (str(1 << 30), "413"),
])
def test_a_post_with_a_bad_length_is_refused_before_credentials_and_unread(
        app: SiteApp, path: str, length: str | None, status: str) -> None:
    got, _ = call(app, "POST", path, length=length)  # no credentials at all: the length is refused first
    assert got.startswith(status)


@pytest.mark.parametrize("path", ["files/agent.bin", "blobs/sha256/" + "a" * 64, "api/groups/line-1/approved",
                                  "apt/dists/line-1/InRelease", "rpm/line-2/repodata/repomd.xml",
                                  "apt/pool/" + "a" * 64 + "/agent.deb"])
def test_every_group_path_needs_a_client(app: SiteApp, path: str) -> None:
    assert call(app, "GET", f"/updates/{path}")[0].startswith("401")
    assert call(app, "GET", f"/updates/{path}", {"HTTP_AUTHORIZATION": "Bearer forged"})[0].startswith("401")
    assert call(app, "GET", f"/updates/{path}", {"HTTP_AUTHORIZATION": "Basic !!"})[0].startswith("401")


def test_another_groups_index_is_not_found_for_a_client(app: SiteApp) -> None:
    from bundler.kinds.updates.cache import UpdateCache

    token = UpdateCache(app.site).clients.enroll("pos-1", "line-1")
    own = call(app, "GET", "/updates/apt/dists/line-1/InRelease", {"HTTP_AUTHORIZATION": f"Bearer {token}"})
    other = call(app, "GET", "/updates/apt/dists/line-2/InRelease", {"HTTP_AUTHORIZATION": f"Bearer {token}"})
    assert own[0].startswith("200") and other[0].startswith("404")
    climbing = call(app, "GET", "/updates/apt/dists/line-1/../../../../users.json",
                    {"HTTP_AUTHORIZATION": f"Bearer {token}"})
    assert climbing[0].startswith("404")
    assert Path(app.site.directory / "updates" / "published").exists()


def test_git_requests_beyond_the_bound_wait_then_get_503(app: SiteApp, monkeypatch: pytest.MonkeyPatch) -> None:
    """At most GIT_PROCESSES `git http-backend` processes at once: a request beyond them waits
    GIT_WAIT seconds for one, then is told to come back (503, Retry-After); a slot frees when its
    response ends."""
    import base64
    import json
    import subprocess
    import threading

    from bundler.kinds.repos import server

    monkeypatch.setattr(server, "GIT_WAIT", 0.2)
    git_server = app.routes["git"].handle.__self__  # type: ignore[attr-defined]
    git_server._git_slots = threading.BoundedSemaphore(1)  # one process at a time, for the test
    subprocess.run(["git", "init", "--bare", "-q", str(app.site.directory / "git" / "config.git")], check=True)
    creds = json.loads((app.site.directory / "credentials.json").read_text())
    auth = "Basic " + base64.b64encode(f"{creds['username']}:{creds['password']}".encode()).decode()
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/git/config.git/info/refs",
               "QUERY_STRING": "service=git-upload-pack", "HTTP_AUTHORIZATION": auth}
    statuses: list[str] = []
    def call() -> Iterable[bytes]:
        return app({**environ, "wsgi.input": io.BytesIO(b"")}, lambda status, _: statuses.append(status))

    first = call()  # its response not read yet: it holds the slot
    second = b"".join(call())
    assert statuses[0].startswith("200") and statuses[1].startswith("503") and b"busy" in second
    b"".join(first)  # the first response ends: its slot is free again
    b"".join(call())
    assert statuses[2].startswith("200")


def test_why_a_service_stopped_is_read_from_its_log(tmp_path: Path) -> None:
    """The registry's fatal message, a Go panic's first line (not the goroutine dump after it), or
    the last line: what `site up` prints when a service stops at start."""
    from bundler.site.service import failure_reason

    log = tmp_path / "registry.log"
    log.write_text('time="x" level=fatal msg="listen tcp 127.0.0.1:5443: bind: address already in use"\n')
    assert failure_reason(log) == "listen tcp 127.0.0.1:5443: bind: address already in use"
    log.write_text("panic: LoadCustomCABundleError: unable to load custom CA bundle, HTTPClient's transport "
                   "unsupported type\n\ngoroutine 1 [running]:\ngithub.com/docker/distribution/main.go:22 +0x25\n")
    assert failure_reason(log).startswith("panic: LoadCustomCABundleError")
    log.write_text("something\nthe end\n")
    assert failure_reason(log) == "the end"
