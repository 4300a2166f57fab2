"""Timeouts and bounded retries for every HTTP request bundler makes (registries, chart repositories)."""

from __future__ import annotations

import hashlib
import random
import time
from pathlib import Path

import requests

from bundler.errors import NotFoundError, UnreachableError

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 120.0
RETRIES = 4
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def backoff(attempt: int) -> None:
    """Exponential with jitter, capped: 0.25 s, 0.5 s, 1 s, ... 8 s."""
    time.sleep(min(0.25 * 2 ** (attempt - 1), 8.0) * (0.5 + random.random() / 2))


def short(exc: Exception) -> str:
    """The part of a requests exception a person needs."""
    text = str(exc)
    for marker in ("Connection refused", "timed out", "Name or service not known", "Connection reset"):
        if marker in text:
            return marker.lower()
    return text[:200]


def get_bytes(session: requests.Session, url: str, limit: int, what: str, retries: int = RETRIES) -> bytes:
    """GET a small document (an index, an archive) whole; idempotent, so retried with backoff."""
    for attempt in range(1, retries + 2):
        try:
            with session.get(url, stream=True, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT)) as r:
                if r.status_code in RETRY_STATUS and attempt <= retries:
                    backoff(attempt)
                    continue
                if r.status_code == 404:
                    raise NotFoundError(f"{what} not found: {url} (404)")
                if r.status_code != 200:
                    raise UnreachableError(f"{what}: {url} answered HTTP {r.status_code}")
                data = bytearray()
                for chunk in r.iter_content(1 << 20):
                    data += chunk
                    if len(data) > limit:
                        raise UnreachableError(f"{what}: {url} is larger than {limit >> 20} MiB; refusing it")
                return bytes(data)
        except (requests.ConnectionError, requests.Timeout) as exc:
            if attempt > retries:
                raise UnreachableError(f"cannot reach {url} ({what}): {short(exc)}",
                                       hint="check the URL and that the server is up") from None
            backoff(attempt)
    raise UnreachableError(f"cannot fetch {url} ({what})")  # pragma: no cover


def download_file(session: requests.Session, url: str, target: Path, what: str,
                  retries: int = RETRIES) -> tuple[str, int]:
    """Stream a URL to `target`, hashing as it passes; resume with Range after a drop. (sha256 hex, size)."""
    hasher, size = hashlib.sha256(), 0
    failures = 0
    with open(target, "wb") as out:
        while True:
            headers = {"Range": f"bytes={size}-"} if size else {}
            try:
                with session.get(url, headers=headers, stream=True, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT)) as r:
                    if r.status_code == 404:
                        raise NotFoundError(f"{what} not found: {url} (404)")
                    if r.status_code in RETRY_STATUS and failures < retries:
                        failures += 1
                        backoff(failures)
                        continue
                    if r.status_code not in (200, 206):
                        raise UnreachableError(f"{what}: {url} answered HTTP {r.status_code}")
                    if size and r.status_code == 200:  # the server ignored Range: start over
                        out.seek(0)
                        out.truncate()
                        hasher, size = hashlib.sha256(), 0
                    for chunk in r.iter_content(1 << 20):
                        hasher.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
                return hasher.hexdigest(), size
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                failures += 1
                if failures > retries:
                    raise UnreachableError(f"cannot fetch {url} ({what}): {short(exc)}",
                                           hint="check the URL and that the server is up") from None
                backoff(failures)
