"""Image references: parse and normalise them as Docker and containerd do.

`nginx` is `docker.io/library/nginx:latest`; a reference may carry a tag, a digest, or both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_HOST = "docker.io"
DOCKER_HUB_API_HOST = "registry-1.docker.io"
DAEMON_PREFIX = "docker-daemon:"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_HOST_RE = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:]+\])(?::[0-9]{1,5})?$"
)
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_LOOPBACK_RE = re.compile(r"^(?:localhost|127(?:\.[0-9]{1,3}){3}|\[::1\])(?::[0-9]+)?$")


class ReferenceError(ValueError):
    """A string that is not a valid image reference; the message says which part is wrong."""


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and [::1] (with or without a port): plain HTTP by default."""
    return bool(_LOOPBACK_RE.match(host))


def check_digest(value: str) -> str:
    if not DIGEST_RE.match(value):
        raise ReferenceError(f"digest {value!r} is not sha256:<64 lowercase hex digits>")
    return value


@dataclass(frozen=True)
class ImageReference:
    """A registry image: host, repository path, and a tag and/or a digest."""

    host: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> ImageReference:
        if not text or text != text.strip():
            raise ReferenceError(f"image reference {text!r} is empty or has surrounding spaces")
        rest, digest = text, None
        if "@" in rest:
            rest, digest = rest.split("@", 1)
            check_digest(digest)
        host = DEFAULT_HOST
        first, sep, remainder = rest.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
            host, rest = first, remainder
            if not _HOST_RE.match(host):
                raise ReferenceError(f"registry host {host!r} in {text!r} is not a valid host[:port]")
        tag = None
        last_slash = rest.rfind("/")
        colon = rest.rfind(":")
        if colon > last_slash:
            rest, tag = rest[:colon], rest[colon + 1 :]
            if not _TAG_RE.match(tag):
                raise ReferenceError(f"tag {tag!r} in {text!r} is not a valid tag")
        if not _PATH_RE.match(rest):
            raise ReferenceError(
                f"repository {rest!r} in {text!r} is not valid: lowercase letters, digits and "
                "separators (. _ __ -) between path components"
            )
        if host == DEFAULT_HOST and "/" not in rest:
            rest = f"library/{rest}"
        if tag is None and digest is None:
            tag = "latest"
        return cls(host=host, repository=rest, tag=tag, digest=digest)

    @property
    def name(self) -> str:
        return f"{self.host}/{self.repository}"

    @property
    def site_repository(self) -> str:
        """Where the site keeps this image: the source host becomes the first path component."""
        return site_path(self.host, self.repository)

    def with_digest(self, digest: str) -> ImageReference:
        return ImageReference(self.host, self.repository, self.tag, digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def site_path(host: str, repository: str) -> str:
    """`localhost:5000`, `app` -> `localhost_5000/app`: a port would not be a valid path component."""
    safe_host = re.sub(r"_+", "_", host.lower().replace("[", "").replace("]", "").replace(":", "_")).strip("_")
    return f"{safe_host}/{repository}"


@dataclass(frozen=True)
class DaemonReference:
    """An image in the local Docker engine: `docker-daemon:NAME:TAG`."""

    image: ImageReference

    @classmethod
    def parse(cls, text: str) -> DaemonReference:
        if not text.startswith(DAEMON_PREFIX):
            raise ReferenceError(f"{text!r} does not start with {DAEMON_PREFIX}")
        inner = ImageReference.parse(text[len(DAEMON_PREFIX) :])
        if inner.digest:
            raise ReferenceError(f"{text!r}: a docker-daemon image is named by NAME:TAG, not by digest")
        return cls(inner)

    def __str__(self) -> str:
        return f"{DAEMON_PREFIX}{self.image}"


def parse_any(text: str) -> ImageReference | DaemonReference:
    if text.startswith(DAEMON_PREFIX):
        return DaemonReference.parse(text)
    return ImageReference.parse(text)


def checked_ref(value: str) -> str:
    """`value` when it is an image reference (a name rule for untrusted input); ReferenceError otherwise."""
    ImageReference.parse(value)
    return value


def optional_digest(value: str) -> str:
    return check_digest(value) if value else value
