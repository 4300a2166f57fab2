"""Credentials for source registries, against a real Distribution registry with htpasswd (basic) auth:
from environment variables named in the profile, from the Docker config file, and a clear refusal."""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import pytest

from bundler.oci.client import Credentials, RegistryClient
from bundler.site.registry_process import RegistryProcess, start_registry
from devtools import images as im
from tests.conftest import Run, missing

USER, PASSWORD = "builder", "correct horse"


@pytest.fixture(scope="module")
def private_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    if shutil.which("docker-registry") is None and shutil.which("registry") is None:
        missing("the docker-registry binary")
    work = tmp_path_factory.mktemp("private")
    htpasswd = work / "htpasswd"
    htpasswd.write_bytes(USER.encode() + b":" + bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)) + b"\n")
    registry = start_registry(work / "registry", htpasswd=htpasswd)
    client = RegistryClient(registry.address, credentials=Credentials(USER, PASSWORD))
    im.push_image(client, "team/tool", "1.0", [im.random_layer(200_000, seed=9)])
    yield registry
    registry.stop()


def write_profile(tmp_path: Path, host: str, registries: str = "") -> None:
    (tmp_path / "profile.yaml").write_text(
        "apiVersion: bundler/v1\nkind: Profile\nmetadata: {name: private, version: 1.0.0}\nspec:\n"
        f"{registries}  images:\n    - {host}/team/tool:1.0\n")


def test_credentials_from_environment_variables(private_registry: RegistryProcess, cli: Callable[..., Run],
                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = private_registry.address
    write_profile(tmp_path, host, f"  registries:\n    - host: {host}\n      usernameEnv: REG_U\n"
                                  "      passwordEnv: REG_P\n")
    monkeypatch.setenv("REG_U", USER)
    monkeypatch.setenv("REG_P", PASSWORD)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    r = cli("build", "profile.yaml", "-o", "p.bundle.tar")
    assert r.code == 0, r.err
    assert cli("inspect", "p.bundle.tar").code == 0


def test_credentials_from_the_docker_config(private_registry: RegistryProcess, cli: Callable[..., Run],
                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = private_registry.address
    config_dir = tmp_path / "docker"
    config_dir.mkdir()
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (config_dir / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config_dir))
    write_profile(tmp_path, host)
    r = cli("build", "profile.yaml", "-o", "p.bundle.tar")
    assert r.code == 0, r.err


def test_missing_credentials_are_a_clear_error(private_registry: RegistryProcess, cli: Callable[..., Run],
                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    write_profile(tmp_path, private_registry.address)
    r = cli("build", "profile.yaml")
    assert r.code == 1
    assert "refused access to team/tool (401 unauthorized)" in r.err and "docker login" in r.err
    assert "Traceback" not in r.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["profile.yaml"]


def test_unset_credential_variable_is_a_usage_error(private_registry: RegistryProcess, cli: Callable[..., Run],
                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = private_registry.address
    monkeypatch.delenv("REG_U_UNSET", raising=False)
    write_profile(tmp_path, host, f"  registries:\n    - host: {host}\n      usernameEnv: REG_U_UNSET\n"
                                  "      passwordEnv: REG_P_UNSET\n")
    r = cli("build", "profile.yaml")
    assert r.code == 2 and "REG_U_UNSET is not set" in r.err


def test_credentials_from_a_docker_credential_helper(private_registry: RegistryProcess, cli: Callable[..., Run],
                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`credHelpers` in the Docker config: the `docker-credential-<name>` program answers `get`, as
    docker login's helpers (pass, secretservice, ecr-login) do."""
    host = private_registry.address
    config_dir, bin_dir = tmp_path / "docker", tmp_path / "bin"
    config_dir.mkdir()
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-bundlertest"
    answer = json.dumps({"ServerURL": host, "Username": USER, "Secret": PASSWORD})
    helper.write_text(f"#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\necho '{answer}'\n")
    helper.chmod(0o755)
    (config_dir / "config.json").write_text(json.dumps({"credHelpers": {host: "bundlertest"}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config_dir))
    write_profile(tmp_path, host)
    r = cli("build", "profile.yaml", "-o", "p.bundle.tar", env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert r.code == 0, r.err
