"""Real services for the tests: Distribution registries, the Docker engine, skopeo, and the CLI itself.

A registry comes from testcontainers when a Docker engine answers (registry:2, built locally when it
cannot be pulled), else from the registry binary on loopback. Under CI=true a missing service is a
failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

import bundler.kinds  # noqa: F401 - registers the content kinds with the format, as the CLI does
from bundler.site.registry_process import free_port, start_registry, wait_until_answers

IN_CI = os.environ.get("CI") == "true"
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")


def missing(what: str) -> None:
    """A service the test needs is not here: fail in CI, skip on a developer's machine."""
    if IN_CI:
        pytest.fail(f"{what} is required under CI=true (see .ci/run)")
    pytest.skip(f"{what} not available")


@dataclass
class Registry:
    url: str
    host: str  # 127.0.0.1:PORT

    def catalog(self) -> list[str]:
        """Repositories with content; bundler's quarantine repository (blobs waiting for the rest of
        an import, never tagged, emptied at the end of each import) is left out."""
        from bundler.site.tokens import QUARANTINE

        names = requests.get(f"{self.url}/v2/_catalog", timeout=10).json()["repositories"] or []
        return [name for name in names if name != QUARANTINE]


def _docker_client() -> Any | None:
    try:
        import docker

        client = docker.from_env(timeout=120)
        client.ping()
        return client
    except Exception:
        return None


@pytest.fixture(scope="session")
def docker_client() -> Any:
    client = _docker_client()
    if client is None:
        missing("a Docker engine")
    return client


@pytest.fixture(scope="session")
def registry_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], Registry]]:
    """Start as many registries as a test needs; all stop at the end of the session."""
    stops: list[Callable[[], None]] = []
    engine = _docker_client()
    image = None
    if engine is not None:
        from devtools.registry_image import ensure_registry_image

        image = ensure_registry_image(engine)
    elif shutil.which("docker-registry") is None and shutil.which("registry") is None:
        missing("a registry (Docker engine or the docker-registry binary)")

    def start() -> Registry:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        if image is not None:
            from testcontainers.core.container import DockerContainer

            container = (DockerContainer(image).with_kwargs(network_mode="host")
                         .with_env("REGISTRY_HTTP_ADDR", f"127.0.0.1:{port}"))
            container.start()
            stops.append(container.stop)
            wait_until_answers(url)
        else:
            process = start_registry(tmp_path_factory.mktemp("registry"), port=port)
            stops.append(process.stop)
        return Registry(url, f"127.0.0.1:{port}")

    yield start
    for stop in stops:
        stop()


@pytest.fixture
def registry(registry_factory: Callable[[], Registry]) -> Registry:
    return registry_factory()


@pytest.fixture(scope="session")
def skopeo() -> str:
    path = shutil.which("skopeo")
    if path is None:
        missing("skopeo")
    return str(path)


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., Run]:
    """Run the real `bundler` command (a subprocess: exit codes, stdout and stderr as a user sees them)."""

    def run(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> Run:
        p = subprocess.run([sys.executable, "-m", "bundler.cli", *map(str, args)], capture_output=True,
                           text=True, cwd=cwd or tmp_path, timeout=600, env={**os.environ, **(env or {})})
        return Run(p.returncode, p.stdout, p.stderr)

    return run


def distinct_ports(count: int) -> list[int]:
    """`count` different free loopback ports (each held until all are chosen)."""
    held = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in held:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in held]
    finally:
        for s in held:
            s.close()


def listen_options() -> list[str]:
    """`site init`'s --registry-listen and --http-listen on two different free loopback ports."""
    registry, http = distinct_ports(2)
    return ["--registry-listen", f"127.0.0.1:{registry}", "--http-listen", f"127.0.0.1:{http}"]


@dataclass
class SiteFactory:
    """`make_site(...)`: a site made by the real `site init`, trusting the release key, on free
    loopback ports (or `registry`: an existing registry's URL), started when `up`; every site it made
    is stopped at the end of the test."""

    cli: Callable[..., Run]
    keys: Keys
    tmp_path: Path
    made: list[Path]

    def __call__(self, name: str | Path = "site", *options: str | Path, registry: str | None = None,
                 up: bool = False) -> Path:
        directory = self.tmp_path / name  # an absolute `name` is where it is
        http_port, registry_port = distinct_ports(2)  # two free_port() calls can return one port twice
        where = ["--registry", registry] if registry else ["--registry-listen", f"127.0.0.1:{registry_port}"]
        r = self.cli("site", "init", "--as-root", directory, "--trust-key", self.keys.release.pub, *where,
                     "--http-listen", f"127.0.0.1:{http_port}", *options)
        assert r.code == 0, r.err
        self.made.append(directory)
        if up:
            started = self.cli("site", "up", directory)
            assert started.code == 0, started.err
        return directory


@pytest.fixture
def make_site(cli: Callable[..., Run], keys: Keys, tmp_path: Path) -> Iterator[SiteFactory]:
    factory = SiteFactory(cli, keys, tmp_path, [])
    yield factory
    for directory in factory.made:
        cli("site", "down", directory)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration needs real services: marked, so `-m integration` and
    `-m "not integration"` (make integration, make unit) mean what they say."""
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)


@dataclass(frozen=True)
class KeyPair:
    key: Path
    pub: Path


@dataclass(frozen=True)
class Keys:
    release: KeyPair
    security: KeyPair
    stranger: KeyPair  # a valid key nobody trusts


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    """Key pairs made by the real `keygen` code (unencrypted: tests set no BUNDLER_KEY_PASSWORD)."""
    from bundler.keyfiles import keygen

    directory = tmp_path_factory.mktemp("keys")
    pairs = {}
    for name in ("release", "security", "stranger"):
        key, pub, _ = keygen(directory / name)
        pairs[name] = KeyPair(key, pub)
    return Keys(**pairs)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "small-disk") as mount:
        yield mount


@contextmanager
def small_tmpfs(mount: Path, size: str = "4m") -> Iterator[Path]:
    """A 4 MiB disk (a tmpfs) at `mount`, for what happens when the site's disk is full."""
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        if IN_CI:
            pytest.fail(f"cannot mount a small tmpfs for the disk test: {done.stderr!r}")
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
