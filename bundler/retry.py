"""Timeouts and bounded retries for every HTTP request bundler makes (registries, chart repositories)."""

from __future__ import annotations

import datetime as dt
import email.utils
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


MAX_RETRY_AFTER = 60.0  # seconds: a server asking for longer is waited on this long, then asked again


def retry_delay(attempt: int, response: requests.Response | None = None) -> float:
    """The one retry policy: the server's `Retry-After` (seconds or an HTTP date; 429 and 503 send
    it) when it gives one, at most MAX_RETRY_AFTER; else exponential with jitter, capped: 0.25 s,
    0.5 s, 1 s, ... 8 s."""
    text = response.headers.get("Retry-After", "").strip() if response is not None else ""
    if text:
        try:
            if text.isdigit():
                wait = float(text)
            else:
                wait = (email.utils.parsedate_to_datetime(text) - dt.datetime.now(dt.UTC)).total_seconds()
            return min(max(wait, 0.0), MAX_RETRY_AFTER)
        except (TypeError, ValueError, OverflowError):
            pass  # not a delay we can read: the usual backoff
    return float(min(0.25 * 2 ** (attempt - 1), 8.0) * (0.5 + random.random() / 2))


def backoff(attempt: int, response: requests.Response | None = None) -> None:
    time.sleep(retry_delay(attempt, response))


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
                    backoff(attempt, r)
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
                        backoff(failures, r)
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
