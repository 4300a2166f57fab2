from __future__ import annotations

import pytest

from bundler.oci.reference import ImageReference, ReferenceError, is_loopback, site_path

D = "sha256:" + "b" * 64

GOOD = [
    ("nginx", "docker.io", "library/nginx", "latest", None),
    ("nginx:1.25", "docker.io", "library/nginx", "1.25", None),
    ("bitnami/redis:7", "docker.io", "bitnami/redis", "7", None),
    ("localhost:5000/app", "localhost:5000", "app", "latest", None),
    ("localhost/app:1", "localhost", "app", "1", None),
    ("127.0.0.1:5000/a/b/c:v1.0_rc-2", "127.0.0.1:5000", "a/b/c", "v1.0_rc-2", None),
    (f"ghcr.io/org/app@{D}", "ghcr.io", "org/app", None, D),
    (f"ghcr.io/org/app:2@{D}", "ghcr.io", "org/app", "2", D),
    ("[::1]:5000/app:1", "[::1]:5000", "app", "1", None),
    ("registry.example.com/a__b/c-d/e.f:x", "registry.example.com", "a__b/c-d/e.f", "x", None),
]


@pytest.mark.parametrize(("text", "host", "repo", "tag", "digest"), GOOD)
def test_parse(text: str, host: str, repo: str, tag: str | None, digest: str | None) -> None:
    ref = ImageReference.parse(text)
    assert (ref.host, ref.repository, ref.tag, ref.digest) == (host, repo, tag, digest)
    assert ImageReference.parse(str(ref)) == ref


@pytest.mark.parametrize("text", ["", " nginx", "Nginx", "nginx:", "nginx@sha256:abc", "a//b", "-a/b",
                                  "nginx@md5:" + "a" * 32, "ex ample.com/a", "a/b:c:d", "host:99999999/a"])
def test_rejects(text: str) -> None:
    with pytest.raises(ReferenceError):
        ImageReference.parse(text)


def test_site_path_turns_the_port_into_a_path_component() -> None:
    assert site_path("localhost:5000", "app") == "localhost_5000/app"
    assert ImageReference.parse("nginx").site_repository == "docker.io/library/nginx"
    assert ImageReference.parse("[::1]:5000/app").site_repository == "1_5000/app"  # still a valid path


@pytest.mark.parametrize(("host", "loopback"), [("localhost:5000", True), ("127.0.0.1", True), ("127.9.8.7:1", True),
                                                 ("[::1]:5000", True), ("10.0.0.1:5000", False),
                                                 ("registry.local", False), ("127.0.0.1.example.com", False)])
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
