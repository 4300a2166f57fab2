"""A site's own registry on object storage: Debian's Distribution registry with its s3 driver, on a
bucket of an S3 server the test starts (moto's server). Two sites (two hosts of one store, say) run
their registries on the same bucket: an import through one is pulled from both with skopeo, digests
equal, and nothing of it lands on the site's disk. The registry's environment is the site's own: it
starts although AWS_CA_BUNDLE is set (the s3 driver panics on it otherwise)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from bundler.oci.client import RegistryClient
from bundler.site.registry_process import free_port
from devtools import images as im
from tests.conftest import Keys, Registry, Run, SiteFactory
from tests.helpers import credentials, skopeo_digest

BUCKET = "store-7"


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[str]:
    """moto's S3 server on loopback, with one bucket."""
    import boto3

    port = free_port()
    log = open(tmp_path / "moto.log", "wb")  # noqa: SIM115 - the child keeps it
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                boto3.client("s3", endpoint_url=url, aws_access_key_id="edge", aws_secret_access_key="edge-secret",
                             region_name="us-east-1").create_bucket(Bucket=BUCKET)
                break
            except Exception:  # not listening yet
                time.sleep(0.05)
        yield url
    finally:
        server.terminate()
        server.wait(10)
        log.close()


def pull_digest(skopeo: str, site: Path, ref: str) -> str:
    """What the site's registry answers for `ref` (its CA, the cluster's pull account)."""
    registry = yaml.safe_load((site / "site.yaml").read_text())["registry"]["url"].removeprefix("https://")
    certs = site / "certs-for-skopeo"
    certs.mkdir(exist_ok=True)
    (certs / "ca.crt").write_bytes((site / "pki" / "ca.pem").read_bytes())
    user, password = credentials(site)
    return skopeo_digest(skopeo, f"{registry}/{ref}", certs, f"{user}:{password}")


def test_two_site_registries_on_one_bucket_serve_what_one_imported(
        s3: str, registry: Registry, cli: Callable[..., Run], keys: Keys, make_site: SiteFactory, skopeo: str,
        tmp_path: Path) -> None:
    digest, _ = im.push_image(RegistryClient(registry.host), "store/pos", "1.0", [im.random_layer(2_000_000, 5)],
                              oci=True)
    (tmp_path / "store.yaml").write_text(
        "apiVersion: bundler/v1\nkind: Profile\nmetadata: {name: store, version: 1.0.0}\n"
        f"spec:\n  images:\n    - {registry.host}/store/pos:1.0\n")
    assert cli("build", tmp_path / "store.yaml", "-o", tmp_path / "s.tar", "--key", keys.release.key).code == 0
    keyfile = tmp_path / "s3.json"
    keyfile.write_text(json.dumps({"accessKey": "edge", "secretKey": "edge-secret"}))
    os.chmod(keyfile, 0o600)
    storage = ["--registry-storage", f"s3://{BUCKET}/registry", "--s3-endpoint", s3, "--s3-credentials", keyfile]
    env = {**os.environ, "AWS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt"}  # as on these machines
    first = make_site("host-1", *storage)
    second = make_site("host-2", *storage)
    for site in (first, second):
        up = cli("site", "up", site, env=env)
        assert up.code == 0, up.err
    assert "secret" not in (first / "site.yaml").read_text()  # the keys stay in their 0600 file
    imported = cli("import", tmp_path / "s.tar", "--site", first)
    assert imported.code == 0, imported.err
    ref = f"{registry.host.replace(':', '_')}/store/pos:1.0"
    assert pull_digest(skopeo, first, ref) == pull_digest(skopeo, second, ref) == digest
    assert not list((first / "registry" / "storage").rglob("data"))  # nothing on the site's disk
    status = json.loads(cli("site", "status", first, "--json").out)
    assert status["services"]["registry"]["healthy"] and status["disk"]["registry"] is None

    loose = tmp_path / "loose.json"
    loose.write_text(keyfile.read_text())
    os.chmod(loose, 0o644)
    refused = cli("site", "init", "--as-root", tmp_path / "never", "--trust-key", keys.release.pub,
                  "--registry-storage",
                  f"s3://{BUCKET}", "--s3-credentials", loose)
    assert refused.code == 2 and "chmod 600" in refused.err
