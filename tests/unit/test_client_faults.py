"""Registry faults we cannot make a real registry produce, served by a real HTTP server on loopback:
a connection dropped mid-blob, corrupt bytes, transient 503s, and the bearer-token flow."""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bundler.errors import IntegrityError, UnreachableError
from bundler.oci import client as client_module
from bundler.oci.client import AuthError, Credentials, RegistryClient
from bundler.retry import retry_delay

BLOB = bytes(range(256)) * 4096 * 4  # 4 MiB: several 1 MiB chunks arrive before the drop
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()


class Behaviour:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.drop_first = False
        self.corrupt = False
        self.fail_503 = 0
        self.throttle = 0  # 429s with Retry-After: 7 to send first
        self.token_required = False


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "backoff", lambda attempt, response=None: None)


@pytest.fixture
def server() -> Iterator[tuple[str, Behaviour]]:
    behaviour = Behaviour()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            behaviour.requests.append(("GET", self.path, dict(self.headers)))
            if self.path.startswith("/token"):
                auth = self.headers.get("Authorization", "")
                if auth != "Basic " + base64.b64encode(b"alice:s3cret").decode():
                    self.send_response(401)
                    self.end_headers()
                    return
                self._send(200, b'{"token": "T-123"}')
                return
            if behaviour.token_required and self.headers.get("Authorization") != "Bearer T-123":
                self.send_response(401)
                realm = f"http://{self.headers['Host']}/token"
                self.send_header("WWW-Authenticate",
                                 f'Bearer realm="{realm}",service="test",scope="repository:r:pull"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if behaviour.fail_503:
                behaviour.fail_503 -= 1
                self._send(503, b"busy")
                return
            if behaviour.throttle:
                behaviour.throttle -= 1
                self.send_response(429)
                self.send_header("Retry-After", "7")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = 0
            if rng := self.headers.get("Range"):
                start = int(rng.split("=")[1].rstrip("-"))
            body = BLOB[start:]
            if behaviour.corrupt:
                body = b"\xff" + body[1:]
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if behaviour.drop_first:
                behaviour.drop_first = False
                self.wfile.write(body[: len(body) * 2 // 3])
                self.wfile.flush()
                self.connection.shutdown(2)  # the connection drops mid-blob
                return
            self.wfile.write(body)

        def _send(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_address[1]}", behaviour
    httpd.shutdown()


def fetch(client: RegistryClient) -> bytes:
    buffer = bytearray(len(BLOB))

    def write(offset: int, chunk: bytes) -> None:
        buffer[offset : offset + len(chunk)] = chunk

    client.fetch_blob("r", DIGEST, len(BLOB), write)
    return bytes(buffer)


Setup = Callable[[Behaviour], None]


def test_dropped_connection_resumes_with_range(server: tuple[str, Behaviour]) -> None:
    host, behaviour = server
    behaviour.drop_first = True
    assert fetch(RegistryClient(host)) == BLOB
    ranges = [h.get("Range") for _, _, h in behaviour.requests]
    assert ranges[0] is None and ranges[1] is not None and ranges[1].startswith("bytes=")


def test_corrupt_bytes_are_refused(server: tuple[str, Behaviour]) -> None:
    host, behaviour = server
    behaviour.corrupt = True
    with pytest.raises(IntegrityError, match=DIGEST):
        fetch(RegistryClient(host))


def test_transient_503_is_retried_then_succeeds(server: tuple[str, Behaviour]) -> None:
    host, behaviour = server
    behaviour.fail_503 = 2
    assert fetch(RegistryClient(host)) == BLOB
    assert len(behaviour.requests) == 3


def test_a_429_is_retried_after_the_servers_retry_after(server: tuple[str, Behaviour],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    host, behaviour = server
    behaviour.throttle = 2
    waits: list[float] = []
    monkeypatch.setattr(client_module, "backoff", lambda attempt, response=None: waits.append(
        retry_delay(attempt, response)))
    assert fetch(RegistryClient(host)) == BLOB
    assert waits == [7.0, 7.0]  # what the server asked for, not the usual 0.25 s, 0.5 s


@pytest.mark.parametrize(("header", "low", "high"), [
    ("3", 3.0, 3.0), ("0", 0.0, 0.0), ("100000", 60.0, 60.0), ("soon", 0.125, 0.25), ("", 0.125, 0.25),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0, 0.0),  # a date in the past: at once
])
def test_retry_after_is_read_as_seconds_or_a_date_and_capped(header: str, low: float, high: float) -> None:
    import requests

    response = requests.Response()
    response.headers["Retry-After"] = header
    assert low <= retry_delay(1, response) <= high


def test_persistent_503_gives_up_after_bounded_retries(server: tuple[str, Behaviour]) -> None:
    host, behaviour = server
    behaviour.fail_503 = 100
    with pytest.raises(Exception, match=r"503|busy"):
        fetch(RegistryClient(host, retries=2))
    assert len(behaviour.requests) == 3


def test_bearer_token_flow_with_basic_credentials(server: tuple[str, Behaviour]) -> None:
    host, behaviour = server
    behaviour.token_required = True
    assert fetch(RegistryClient(host, credentials=Credentials("alice", "s3cret"))) == BLOB
    token_requests = [p for _, p, _ in behaviour.requests if p.startswith("/token")]
    assert token_requests and "scope=repository%3Ar%3Apull" in token_requests[0]


def test_wrong_credentials_are_a_clear_auth_error(server: tuple[str, Behaviour]) -> None:
    host, behaviour = server
    behaviour.token_required = True
    with pytest.raises(AuthError, match="refused access"):
        fetch(RegistryClient(host, credentials=Credentials("alice", "wrong")))


def test_nothing_listening_is_unreachable() -> None:
    from bundler.site.registry_process import free_port

    with pytest.raises(UnreachableError, match="cannot reach registry"):
        RegistryClient(f"127.0.0.1:{free_port()}", retries=1).ping()


@pytest.mark.parametrize(("header", "expected"), [
    # Docker Hub's, as the distribution token-auth spec shows it: a comma inside the quoted scope
    ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
     'scope="repository:samalba/my-app:pull,push"',
     ("https://auth.docker.io/token", "registry.docker.io", "repository:samalba/my-app:pull,push")),
    # the scheme in any case, spaces around commas, a bare token value, two scopes
    ('bearer realm="https://h/token", service=site , scope="repository:a:pull repository:b:pull,push"',
     ("https://h/token", "site", "repository:a:pull repository:b:pull,push")),
    ('Bearer realm="https://h/\\"q\\""', ('https://h/"q"', None, None)),  # an escaped quote
    ('Basic realm="registry"', None),  # not a token flow: answered with the account, not parsed here
    ('Bearer service="no-realm"', None),  # nowhere to ask
    ("", None),
])
def test_a_bearer_challenge_is_read_as_the_token_flow_defines_it(
        header: str, expected: tuple[str, str | None, str | None] | None) -> None:
    challenge = client_module._bearer_challenge(header)
    assert (None if challenge is None else (challenge.realm, challenge.service, challenge.scope)) == expected
