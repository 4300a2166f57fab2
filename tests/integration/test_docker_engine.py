"""An image built in the Docker engine goes through a bundle into the site, then runs from there."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import Keys, Registry, Run, SiteFactory
from tests.helpers import build_engine_image


def test_docker_daemon_image_runs_from_the_site(docker_client: Any, registry: Registry, keys: Keys,
                                                cli: Callable[..., Run], tmp_path: Path,
        make_site: SiteFactory) -> None:
    tag = f"bundler-test/hello:{uuid.uuid4().hex[:8]}"
    message = f"hello from the engine {tag}"
    build_engine_image(docker_client, tag, message)
    (tmp_path / "profile.yaml").write_text(
        f"apiVersion: bundler/v1\nkind: Profile\nmetadata: {{name: engine, version: 0.1.0}}\n"
        f"spec:\n  images:\n    - docker-daemon:{tag}\n")
    built = cli("build", "profile.yaml", "-o", "engine.bundle.tar", "--key", keys.release.key)
    assert built.code == 0, built.err
    docker_client.images.remove(tag, force=True)  # the site is now the only place that has it

    make_site(registry=registry.url)
    imported = cli("import", "engine.bundle.tar", "--site", "site")
    assert imported.code == 0, imported.err

    site_name = f"{registry.host}/docker.io/{tag}"
    docker_client.images.pull(site_name)
    output = docker_client.containers.run(site_name, remove=True, network_mode="none")
    assert output.decode().strip() == message
    docker_client.images.remove(site_name, force=True)


def test_missing_engine_image_is_a_clear_error(docker_client: Any, cli: Callable[..., Run], tmp_path: Path) -> None:
    (tmp_path / "profile.yaml").write_text(
        "apiVersion: bundler/v1\nkind: Profile\nmetadata: {name: engine, version: 0.1.0}\n"
        "spec:\n  images:\n    - docker-daemon:bundler-test/does-not-exist:1\n")
    r = cli("build", "profile.yaml")
    assert r.code == 1
    assert "not in the local Docker engine" in r.err and "Traceback" not in r.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["profile.yaml"]
