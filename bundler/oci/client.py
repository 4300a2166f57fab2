"""The one place that speaks HTTP to OCI registries.

Credentials come from the Docker config through docker-py's public auth API (inline auths,
credsStore and credHelpers); oras-py parses auth challenges. Their request paths do not fit our
rules, so this adapter adds: a timeout on every request; retries with bounded backoff for idempotent
requests only (a blob push is retried as a whole, in a new upload session: content-addressed, so
idempotent); per-repository bearer tokens; blobs streamed in both directions, never held in memory;
every downloaded byte hashed on the way and checked against its digest; cross-repository mounts.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from http.cookiejar import DefaultCookiePolicy
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import requests

from bundler.errors import BundlerError, IntegrityError, NotFoundError, UnreachableError
from bundler.names import digest_of, sha256_digest
from bundler.oci import media
from bundler.oci.reference import DEFAULT_HOST, DOCKER_HUB_API_HOST, is_loopback
from bundler.retry import CONNECT_TIMEOUT, READ_TIMEOUT, RETRIES, RETRY_STATUS, backoff, short

CHUNK = 1 << 20


@dataclass(frozen=True)
class Credentials:
    """A registry account: user name and password."""
    username: str
    password: str


class AuthError(BundlerError):
    """The registry refused our credentials (or we had none)."""


def docker_config_path() -> Path:
    """Where Docker keeps credentials: $DOCKER_CONFIG/config.json, else ~/.docker/config.json."""
    directory = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
    return Path(directory) / "config.json"


def docker_config_auth(host: str) -> str | None:
    """The base64 `user:password` the Docker config holds for `host`: inline auths, `credsStore`
    and `credHelpers` (the `docker-credential-*` helpers), resolved by docker-py's public auth API."""
    from docker import auth  # start-up cost: docker-py imports its whole client; only when a registry asks

    try:
        config = auth.load_config(str(docker_config_path()))
        found = auth.resolve_authconfig(config, registry=None if host == DEFAULT_HOST else host)
    except Exception:  # a broken config or helper: no credentials, and the 401 says what to do
        return None
    entry = {str(k).lower(): v for k, v in (found or {}).items()}  # helpers say Username, inline auths username
    if not entry.get("username") or entry.get("password") is None:
        return None
    return base64.b64encode(f"{entry['username']}:{entry['password']}".encode()).decode()


class _Body:
    """A request body of known length, sent in 1 MiB chunks (requests sets Content-Length from len())."""

    def __init__(self, chunks: Callable[[], Iterator[bytes]], size: int) -> None:
        self._chunks, self._size = chunks, size

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks()


class Pushed(StrEnum):
    """How a blob reached a repository: mounted from another (no bytes sent), or uploaded."""
    MOUNTED = "mounted"
    UPLOADED = "uploaded"


class RegistryClient:
    """A client for one registry host. Thread-safe: workers share it and its connection pool."""

    def __init__(
        self,
        host: str,
        *,
        credentials: Credentials | None = None,
        plain_http: bool | None = None,
        ca_file: str | None = None,
        pool_size: int = 16,
        retries: int = RETRIES,
        writer: bool = False,
        bearer: str | None = None,
        receive_buffer: int | None = None,
    ) -> None:
        self.host = host
        api_host = DOCKER_HUB_API_HOST if host == DEFAULT_HOST else host  # Docker Hub answers elsewhere
        use_http = is_loopback(host) if plain_http is None else plain_http
        self.base_url = f"{'http' if use_http else 'https'}://{api_host}"
        self.retries = retries
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
        # a rate-limited download reads no more at a time than the kernel holds: what a lost power drops is small
        self.chunk = CHUNK if receive_buffer is None else max(16 << 10, min(CHUNK, receive_buffer))
        if receive_buffer is not None:  # a rate-limited download: the kernel buffers no more ahead than this
            from urllib3.connection import HTTPConnection

            adapter.init_poolmanager(4, pool_size, socket_options=[
                *HTTPConnection.default_socket_options, (socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)])
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        # passed with every request: requests lets REQUESTS_CA_BUNDLE override a session's verify
        self.verify: str | bool = ca_file or True
        self.session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        self.session.headers["User-Agent"] = "bundler"
        self._basic: str | None = None
        if credentials is not None:
            self._basic = base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()
        self._basic_loaded = credentials is not None
        self._tokens: dict[str, str] = {}
        self._bearer = bearer  # a registry token given up front (a credentials file's `token`): sent every time
        # a writer (an import) pushes to the repositories it reads: ask for both in the first token,
        # not a pull token and then, at the first push, another round trip for a push one
        self._writer = writer
        self._use_basic = False
        self._lock = threading.Lock()

    # --- requests, retries, auth ------------------------------------------------------------------

    def _basic_auth(self) -> str | None:
        with self._lock:
            if not self._basic_loaded:
                self._basic = docker_config_auth(self.host)
                self._basic_loaded = True
            return self._basic

    def _auth_header(self, repo: str) -> dict[str, str]:
        with self._lock:
            token = self._tokens.get(repo) or self._bearer
        if token:
            return {"Authorization": f"Bearer {token}"}
        if self._use_basic and (basic := self._basic_auth()):
            return {"Authorization": f"Basic {basic}"}
        return {}

    def _authenticate(self, response: requests.Response, repo: str) -> bool:
        """Answer a 401 challenge; True when a retry with new credentials makes sense."""
        challenge = response.headers.get("WWW-Authenticate", "")
        scheme = challenge.split(" ", 1)[0].lower()
        basic = self._basic_auth()
        if scheme == "basic":
            if basic is None or self._use_basic:
                return False
            self._use_basic = True
            return True
        h = _bearer_challenge(challenge)
        if h is None:
            return False
        scopes = [s for s in (h.scope or "").split(" ") if s]
        if self._writer:
            scopes = [f"repository:{repo}:pull,push" if s == f"repository:{repo}:pull" else s for s in scopes]
        token = self._fetch_token(h.realm, h.service, scopes)
        if not token:
            return False
        with self._lock:
            self._tokens[repo] = token
        return True

    def _fetch_token(self, realm: str, service: str | None, scopes: list[str]) -> str | None:
        """Ask the token service (with our credentials, when we have some) for a token for `scopes`."""
        basic = self._basic_auth()
        params = ([("service", service)] if service else []) + [("scope", s) for s in scopes]
        headers = {"Authorization": f"Basic {basic}"} if basic else {}
        try:
            r = self.session.get(realm, params=params, headers=headers, timeout=(CONNECT_TIMEOUT, 30),
                                 verify=self.verify)
        except requests.RequestException as exc:
            raise UnreachableError(f"cannot reach the token service {realm}: {exc}") from None
        try:
            body = r.json() if r.status_code == 200 else {}
        except ValueError:
            body = {}
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        return str(token) if token else None

    def authorize(self, repos: Iterable[str], actions: str, shared: dict[str, str] | None = None) -> None:
        """Get tokens for many repositories up front, 50 to a token, instead of a 401 and a token round
        trip at each repository's first request. `shared`: repository -> actions every token also
        carries (a repository blobs are mounted from). Nothing happens on a registry without tokens."""
        try:  # the bare challenge (request() would answer it)
            r = self.session.get(f"{self.base_url}/v2/", timeout=(CONNECT_TIMEOUT, READ_TIMEOUT), verify=self.verify)
        except requests.RequestException:
            return  # the requests themselves will say what is wrong
        h = _bearer_challenge(r.headers.get("WWW-Authenticate", "")) if r.status_code == 401 else None
        if h is None:
            return
        names = list(dict.fromkeys(repos))
        extra = [f"repository:{name}:{acts}" for name, acts in (shared or {}).items()]
        for i in range(0, len(names), 50):
            batch = names[i:i + 50]
            token = self._fetch_token(h.realm, h.service, [f"repository:{n}:{actions}" for n in batch] + extra)
            if token:
                with self._lock:
                    self._tokens.update({name: token for name in [*batch, *(shared or {})]})
                    self._tokens.setdefault("", token)  # the base endpoint (/v2/, a ping) takes any token

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        repo: str,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        data: Any = None,
        stream: bool = False,
        idempotent: bool = True,
    ) -> requests.Response:
        url = path_or_url if "://" in path_or_url else self.base_url + path_or_url
        attempts = self.retries + 1 if idempotent else 1
        authenticated = False
        attempt = 0
        while True:
            attempt += 1
            all_headers = {**self._auth_header(repo), **(headers or {})}
            try:
                response = self.session.request(
                    method, url, headers=all_headers, params=params, data=data, stream=stream,
                    timeout=(CONNECT_TIMEOUT, READ_TIMEOUT), allow_redirects=True, verify=self.verify,
                )
            except requests.exceptions.SSLError as exc:
                raise UnreachableError(
                    f"registry {self.base_url}: its certificate does not verify ({short(exc)})",
                    hint="give its CA certificate (site init --registry-ca FILE, or the system's trust store)",
                ) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt < attempts:
                    backoff(attempt)
                    continue
                raise UnreachableError(
                    f"cannot reach registry {self.base_url} ({method} {urlsplit(url).path}): {short(exc)}",
                    hint="check that the registry address is right and that it is running",
                ) from None
            if response.status_code == 401 and not authenticated:
                authenticated = True
                response.close()
                if self._authenticate(response, repo):
                    attempt -= 1
                    continue
            if response.status_code in RETRY_STATUS and attempt < attempts:
                response.close()
                backoff(attempt, response)
                continue
            if response.status_code == 401:
                raise AuthError(
                    f"registry {self.host} refused access to {repo} (401 unauthorized)",
                    hint="run `docker login` for it, or name usernameEnv/passwordEnv in spec.registries",
                )
            return response

    # --- manifests ------------------------------------------------------------------------------

    def get_manifest(self, repo: str, reference: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest); the digest is checked when the reference is one."""
        r = self.request("GET", f"/v2/{repo}/manifests/{reference}", repo=repo, headers={"Accept": media.ACCEPT})
        if r.status_code == 404:
            raise NotFoundError(
                f"{self.host}/{repo}:{reference} not found ({_error_text(r)})",
                hint="check the image name and tag (or digest) in the profile",
            )
        _expect(r, (200,), f"fetching manifest {self.host}/{repo}:{reference}")
        data = r.content
        if len(data) > media.MAX_MANIFEST_BYTES:
            raise IntegrityError(f"manifest {self.host}/{repo}:{reference} is larger than 4 MiB")
        digest = sha256_digest(data)
        expected = reference if reference.startswith("sha256:") else r.headers.get("Docker-Content-Digest")
        if expected and expected != digest:
            raise IntegrityError(
                f"manifest {self.host}/{repo}:{reference}: expected digest {expected}, received {digest}"
            )
        try:
            media_type = media.media_type_of(data, r.headers.get("Content-Type"))
        except media.ManifestError as exc:
            raise BundlerError(f"{self.host}/{repo}:{reference}: {exc}") from None
        return data, media_type, digest

    def referrers(self, repo: str, digest: str) -> bytes | None:
        """The OCI 1.1 referrers API's index for `digest`, or None where the registry does not offer
        it (a 404 or 405: Distribution 2.8 and most registries today; use the fallback tag then)."""
        r = self.request("GET", f"/v2/{repo}/referrers/{digest}", repo=repo, headers={"Accept": media.OCI_INDEX})
        if r.status_code in (400, 404, 405):
            return None
        _expect(r, (200,), f"listing referrers of {self.host}/{repo}@{digest}")
        if len(r.content) > media.MAX_MANIFEST_BYTES or not r.headers.get("Content-Type", "").startswith(
                media.OCI_INDEX):
            return None
        return r.content

    def head_manifest(self, repo: str, reference: str) -> str | None:
        r = self.request("HEAD", f"/v2/{repo}/manifests/{reference}", repo=repo, headers={"Accept": media.ACCEPT})
        if r.status_code == 404:
            return None
        _expect(r, (200,), f"checking manifest {self.host}/{repo}:{reference}")
        return r.headers.get("Docker-Content-Digest")

    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> None:
        r = self.request("PUT", f"/v2/{repo}/manifests/{reference}", repo=repo, data=data,
                         headers={"Content-Type": media_type})
        _expect(r, (200, 201), f"pushing manifest {self.host}/{repo}:{reference}")

    # --- blobs ----------------------------------------------------------------------------------

    def blob_exists(self, repo: str, digest: str) -> bool:
        r = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", repo=repo)
        if r.status_code == 404:
            return False
        _expect(r, (200,), f"checking blob {digest} in {self.host}/{repo}")
        return True

    def fetch_blob(self, repo: str, digest: str, size: int, write: Callable[[int, bytes], None],
                   progress: Callable[[int], None] = lambda n: None, have: Any = None, start: int = 0) -> None:
        """Stream a blob to `write(offset, chunk)`, hashing as it passes; resume with Range after a drop.
        `start` bytes are held already (a download resumed later), hashed into `have` (a sha256)."""
        hasher = have if have is not None else hashlib.sha256()
        offset = start
        failures = 0
        while True:
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            r = self.request("GET", f"/v2/{repo}/blobs/{digest}", repo=repo, headers=headers, stream=True)
            if r.status_code == 404:
                raise NotFoundError(f"blob {digest} of {self.host}/{repo} not found on the registry")
            _expect(r, (200, 206), f"fetching blob {digest} from {self.host}/{repo}")
            if offset and r.status_code == 200:  # the server ignored Range: start over
                hasher, offset = hashlib.sha256(), 0
            try:
                for chunk in r.iter_content(self.chunk):
                    if offset + len(chunk) > size:
                        raise IntegrityError(
                            f"blob {digest} from {self.host}/{repo} is larger than its manifest says ({size} bytes)"
                        )
                    hasher.update(chunk)
                    write(offset, chunk)
                    offset += len(chunk)
                    progress(len(chunk))
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                failures += 1
                if failures > self.retries:
                    raise UnreachableError(
                        f"lost the connection to {self.base_url} fetching {digest} {failures} times: {short(exc)}"
                    ) from None
                backoff(failures)
                continue
            finally:
                r.close()
            break
        actual = digest_of(hasher)
        if offset != size or actual != digest:
            raise IntegrityError(
                f"blob from {self.host}/{repo} does not match its descriptor: expected {digest} ({size} bytes), "
                f"received {actual} ({offset} bytes)",
                hint="the source registry served corrupt data; try again or check the registry's storage",
            )

    def push_blob(self, repo: str, digest: str, size: int, chunks: Callable[[], Iterator[bytes]],
                  mount_from: Iterable[str] = ()) -> Pushed:
        """Put a blob in `repo`: mounted from another repository, or uploaded from `chunks()`."""
        for source in mount_from:
            r = self.request("POST", f"/v2/{repo}/blobs/uploads/", repo=repo,
                             params={"mount": digest, "from": source}, idempotent=False)
            if r.status_code == 201:
                return Pushed.MOUNTED
            if r.status_code == 202:
                return self._upload(repo, digest, size, chunks, r)  # the registry opened a session instead
        return self._upload(repo, digest, size, chunks, None)

    def _upload(self, repo: str, digest: str, size: int, chunks: Callable[[], Iterator[bytes]],
                started: requests.Response | None) -> Pushed:
        for attempt in range(1, self.retries + 2):
            try:
                r = started or self.request("POST", f"/v2/{repo}/blobs/uploads/", repo=repo, idempotent=False)
                started = None
                _expect(r, (202,), f"starting an upload to {self.host}/{repo}")
                location = urljoin(r.url, r.headers["Location"])
                sep = "&" if urlsplit(location).query else "?"
                put = self.request("PUT", f"{location}{sep}{urlencode({'digest': digest})}", repo=repo,
                                   data=_Body(chunks, size), idempotent=False,
                                   headers={"Content-Type": "application/octet-stream"})
                if put.status_code in RETRY_STATUS and attempt <= self.retries:
                    backoff(attempt, put)
                    continue
                if put.status_code == 400 and "DIGEST_INVALID" in (text := _error_text(put)):
                    put.close()  # the registry hashed the bytes and they are not this blob: nothing was stored
                    raise IntegrityError(f"blob {digest}: the registry {self.host} refused it ({text})")
                _expect(put, (201,), f"uploading blob {digest} to {self.host}/{repo}")
                return Pushed.UPLOADED
            except UnreachableError:
                if attempt > self.retries:
                    raise
                backoff(attempt)
        raise UnreachableError(f"could not upload {digest} to {self.host}/{repo}")  # pragma: no cover

    def push_refusal(self, repo: str) -> str | None:
        """Why the registry would not take a push to `repo`, or None: it opened an upload (cancelled
        at once, nothing stored). A project that does not exist, an account without the push right."""
        try:
            r = self.request("POST", f"/v2/{repo}/blobs/uploads/", repo=repo, idempotent=False)
        except AuthError as exc:
            return exc.message
        if r.status_code == 202:
            location = urljoin(r.url, r.headers.get("Location", ""))
            r.close()
            with contextlib.suppress(BundlerError):
                self.request("DELETE", location, repo=repo).close()
            return None
        why = f"{r.status_code} {_error_text(r)}".strip()
        r.close()
        return why

    def unlink_blob(self, repo: str, digest: str) -> bool:
        """Remove `repo`'s link to a blob (the blob stays for other repositories); False where the
        registry does not allow deletes, the account may not delete there (a robot account with pull
        and push only), or there was no such link."""
        try:
            r = self.request("DELETE", f"/v2/{repo}/blobs/{digest}", repo=repo)
        except AuthError:
            return False
        r.close()
        return r.status_code == 202

    def delete_manifest(self, repo: str, digest: str) -> bool:
        """Delete a manifest by digest (and every tag on it); False when it was not there."""
        r = self.request("DELETE", f"/v2/{repo}/manifests/{digest}", repo=repo)
        r.close()
        if r.status_code == 404:
            return False
        _expect(r, (202,), f"deleting manifest {self.host}/{repo}@{digest}")
        return True

    def list_tags(self, repo: str) -> list[str]:
        tags: list[str] = []
        url: str | None = f"/v2/{repo}/tags/list?n=1000"
        while url:
            r = self.request("GET", url, repo=repo)
            if r.status_code == 404:
                raise NotFoundError(f"{self.host}/{repo} not found (no tags)")
            _expect(r, (200,), f"listing the tags of {self.host}/{repo}")
            tags += r.json().get("tags") or []
            link = r.headers.get("Link", "")
            url = link[link.find("<") + 1 : link.find(">")] if 'rel="next"' in link else None
        return tags

    def ping(self) -> None:
        """Fail early and clearly when the registry does not answer the distribution API."""
        r = self.request("GET", "/v2/", repo="")
        if r.status_code not in (200, 401):
            raise UnreachableError(f"{self.base_url}/v2/ answered {r.status_code}: not an OCI registry?")


@dataclass(frozen=True)
class Challenge:
    """A `WWW-Authenticate: Bearer realm="...",service="...",scope="..."` challenge (the distribution
    token-auth flow): where to ask for a token, for which service and scopes."""
    realm: str
    service: str | None
    scope: str | None


# an auth-param (RFC 9110 11.2): name=token or name="quoted string" (\\-escapes), comma-separated
_AUTH_PARAM = re.compile(r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*(?:,|$)')


def _bearer_challenge(header: str) -> Challenge | None:
    """The Bearer challenge in a WWW-Authenticate header, or None (another scheme, or no realm)."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    params: dict[str, str] = {}
    for match in _AUTH_PARAM.finditer(rest):
        quoted, bare = match.group(2), match.group(3)
        params.setdefault(match.group(1).lower(), re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare)
    realm = params.get("realm")
    return Challenge(realm, params.get("service"), params.get("scope")) if realm else None


def _error_text(r: requests.Response) -> str:
    try:
        errors = r.json().get("errors") or []
        return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors) or f"HTTP {r.status_code}"
    except (ValueError, AttributeError, TypeError):  # not the registry's JSON error shape
        return f"HTTP {r.status_code}"


def _expect(r: requests.Response, ok: tuple[int, ...], doing: str) -> None:
    if r.status_code not in ok:
        text = _error_text(r)
        r.close()
        raise BundlerError(f"{doing}: {text}")
