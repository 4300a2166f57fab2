"""A site that seeds a registry it does not run, as a Harbor project: a real Distribution registry with
its own CA (TLS) and an account (basic auth), the site given `--registry https://HOST/edge` with
`--registry-ca` and `--registry-credentials`. Everything lands under `edge/`, skopeo pulls it by the
prefixed name with the same digest, a re-import is a no-op, the cluster files rewrite to the prefix;
a wrong CA and an account the registry refuses are exit 4 with a hint, before a blob is sent."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import pytest
import yaml

from bundler.oci.client import Credentials, RegistryClient
from bundler.site.pki import CA_CERT, PKI_DIR, SERVER_CERT, SERVER_KEY, create_pki
from bundler.site.registry_process import RegistryProcess, start_registry
from devtools import images as im
from tests.conftest import Keys, Registry, Run, SiteFactory
from tests.helpers import containerd

USER, PASSWORD = "robot$edge+import", "s3cret-robot"


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[RegistryProcess, Path]]:
    """The registry the site seeds: TLS from its own CA, an account in htpasswd."""
    work = tmp_path / "hub"
    create_pki(work, "hub", [], ["127.0.0.1"])
    pki = work / PKI_DIR
    htpasswd = work / "htpasswd"
    htpasswd.write_bytes(USER.encode() + b":" + bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)) + b"\n")
    registry = start_registry(work / "registry", htpasswd=htpasswd, tls=(pki / SERVER_CERT, pki / SERVER_KEY),
                              ca_file=pki / CA_CERT)
    try:
        yield registry, pki / CA_CERT
    finally:
        registry.stop()


def account(path: Path, password: str = PASSWORD) -> Path:
    path.write_text(json.dumps({"username": USER, "password": password}))
    os.chmod(path, 0o600)
    return path


def test_a_site_seeds_a_project_of_a_registry_it_does_not_run(
        hub: tuple[RegistryProcess, Path], registry: Registry, cli: Callable[..., Run], keys: Keys,
        make_site: SiteFactory, skopeo: str, tmp_path: Path) -> None:
    target, ca = hub
    digest, _ = im.push_image(RegistryClient(registry.host), "store/pos", "1.0", [im.random_layer(300_000, 7)],
                              oci=True)
    (tmp_path / "store.yaml").write_text(
        "apiVersion: bundler/v1\nkind: Profile\nmetadata: {name: store, version: 1.0.0}\n"
        f"spec:\n  images:\n    - {registry.host}/store/pos:1.0\n")
    assert cli("build", tmp_path / "store.yaml", "-o", tmp_path / "s.tar", "--key", keys.release.key).code == 0

    loose = tmp_path / "loose.json"
    loose.write_text(json.dumps({"username": USER, "password": PASSWORD}))
    os.chmod(loose, 0o644)
    refused = cli("site", "init", tmp_path / "never", "--registry", f"{target.url}/edge", "--trust-key",
                  keys.release.pub, "--registry-credentials", loose)
    assert refused.code == 2 and "chmod 600" in refused.err and not (tmp_path / "never" / "site.yaml").exists()

    site = make_site("site", "--registry-ca", ca, "--registry-credentials", account(tmp_path / "robot.json"),
                     registry=f"{target.url}/edge")
    assert (site / "registry-credentials.json").stat().st_mode & 0o777 == 0o600
    imported = cli("import", tmp_path / "s.tar", "--site", site, "--json")
    assert imported.code == 0, imported.err
    where = f"{target.address}/edge/{registry.host.replace(':', '_')}/store/pos:1.0"
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "ca.crt").write_bytes(ca.read_bytes())
    seen = subprocess.run([skopeo, "inspect", "--cert-dir", str(certs), "--creds", f"{USER}:{PASSWORD}",
                           f"docker://{where}"], capture_output=True, text=True)
    assert seen.returncode == 0, seen.stderr
    assert json.loads(seen.stdout)["Digest"] == digest
    again = cli("import", tmp_path / "s.tar", "--site", site)
    assert again.code == 0 and "already imported" in again.out

    registries = yaml.safe_load((site / "cluster" / "registries.yaml").read_text())
    mirror = registries["mirrors"][registry.host]
    assert mirror["rewrite"] == {"^(.*)$": f"edge/{registry.host.replace(':', '_')}/$1"}
    assert registries["configs"][target.address]["tls"]["ca_file"] == str((site / "pki" / "registry-ca.pem").resolve())
    toml = (site / "cluster" / "certs.d" / registry.host / "hosts.toml").read_text()
    assert f"/v2/edge/{registry.host.replace(':', '_')}" in toml
    with containerd() as ctr:  # a node pulls by the original name, through the rewritten mirror
        pulled = subprocess.run([*ctr, "images", "pull", "--hosts-dir", str(site / "cluster" / "certs.d"),
                                 "--user", f"{USER}:{PASSWORD}", f"{registry.host}/store/pos:1.0"],
                                capture_output=True, text=True, timeout=120)
        assert pulled.returncode == 0, pulled.stdout + pulled.stderr
        listed = subprocess.run([*ctr, "images", "ls"], capture_output=True, text=True, check=True).stdout
        assert any(line.startswith(f"{registry.host}/store/pos:1.0") and digest in line for line in listed.splitlines())

    exported = cli("site", "export", site, "--k3s", tmp_path / "preload")
    assert exported.code == 0, exported.err
    archive = tmp_path / "preload" / "store-1.0.0.tar"
    assert (tmp_path / "preload" / "store-1.0.0.txt").read_text() == f"{registry.host}/store/pos:1.0\n"
    with containerd() as ctr:  # a node that starts before any registry answers: its agent images directory
        loaded = subprocess.run([*ctr, "images", "import", str(archive)], capture_output=True, text=True, timeout=120)
        assert loaded.returncode == 0, loaded.stdout + loaded.stderr
        listed = subprocess.run([*ctr, "images", "ls"], capture_output=True, text=True, check=True).stdout
        assert any(line.startswith(f"{registry.host}/store/pos:1.0") and digest in line for line in listed.splitlines())

    # the system's trust store does not know the hub's CA: exit 4, naming --registry-ca
    blind = make_site("blind", "--registry-credentials", account(tmp_path / "robot-2.json"),
                      registry=f"{target.url}/edge")
    untrusted = cli("import", tmp_path / "s.tar", "--site", blind)
    assert untrusted.code == 4 and "certificate does not verify" in untrusted.err and "--registry-ca" in untrusted.err

    # an account the registry refuses: exit 4 before a blob is sent
    client = RegistryClient(target.address, plain_http=False, ca_file=str(ca),
                            credentials=Credentials(USER, PASSWORD))
    before = client.request("GET", "/v2/_catalog", repo="").json()["repositories"]
    # everything under the project, the import's quarantine too (a robot account pushes nowhere else)
    assert sorted(before) == sorted(["edge/bundler/quarantine", f"edge/{registry.host.replace(':', '_')}/store/pos"])
    denied = make_site("denied", "--registry-ca", ca, "--registry-credentials",
                       account(tmp_path / "robot-3.json", "wrong"), registry=f"{target.url}/other")
    refused_push = cli("import", tmp_path / "s.tar", "--site", denied)
    assert refused_push.code == 4 and "refuses the site's account" in refused_push.err, refused_push.err
    assert "--registry-credentials" in refused_push.err
    catalog = client.request("GET", "/v2/_catalog", repo="").json()["repositories"]
    assert catalog == before  # nothing under other/
