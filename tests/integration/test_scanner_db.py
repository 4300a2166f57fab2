"""A vulnerability database carried for the cluster's scanners: Trivy's database as the registry holds
it (an OCI artifact with its `trivy.db` and `metadata.json` in a tar.gz layer), made here; a profile's
maxAge refuses a stale one at build naming its date, a fresh one travels with the time it was built,
the site serves it under its name from its registry, and the receipt and the status page say its age."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from bundler import names
from bundler.kinds.artifacts.scanner_db import TRIVY_DB_LAYER
from bundler.oci import media
from bundler.oci.client import RegistryClient
from bundler.pipeline.status_page import status_page
from bundler.site.config import load_site
from tests.conftest import Keys, Registry, Run
from tests.helpers import EMPTY, push_blob, push_manifest


def trivy_db(client: RegistryClient, tag: str, built: dt.datetime) -> str:
    """A trivy-db artifact as `oras copy ghcr.io/aquasecurity/trivy-db:2` leaves it; its digest."""
    metadata = json.dumps({"Version": 2, "UpdatedAt": built.strftime("%Y-%m-%dT%H:%M:%S.123456789Z"),
                           "NextUpdate": (built + dt.timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%SZ")}).encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in (("trivy.db", b"\0bolt database" * 4000), ("metadata.json", metadata)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    config = b"{}"
    manifest = {"schemaVersion": 2, "mediaType": media.OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.aquasec.trivy.config.v1+json",
                           **push_blob(client, "aquasecurity/trivy-db", config)},
                "layers": [{"mediaType": TRIVY_DB_LAYER, **push_blob(client, "aquasecurity/trivy-db", layer),
                            "annotations": {"org.opencontainers.image.title": "db.tar.gz"}}]}
    push_blob(client, "aquasecurity/trivy-db", EMPTY)
    return push_manifest(client, "aquasecurity/trivy-db", tag, manifest)[0]


@pytest.fixture(scope="module")
def databases(registry_factory: Callable[[], Registry]) -> Registry:
    source = registry_factory()
    client = RegistryClient(source.host)
    now = dt.datetime.now(dt.UTC)
    trivy_db(client, "fresh", now - dt.timedelta(hours=2))
    trivy_db(client, "stale", now - dt.timedelta(days=10))
    return source


def test_a_stale_database_is_refused_at_build_and_a_fresh_one_is_served_with_its_age(
        cli: Callable[..., Run], keys: Keys, databases: Registry, registry: Registry, tmp_path: Path) -> None:
    def build(tag: str) -> Run:
        path = tmp_path / f"{tag}.yaml"
        path.write_text("apiVersion: bundler/v1\nkind: Profile\nmetadata: {name: scanners, version: 1.0.0}\n"
                        f"spec:\n  artifacts:\n    - ref: {databases.host}/aquasecurity/trivy-db:{tag}\n"
                        "      maxAge: 5d\n")
        return cli("build", path, "-o", tmp_path / f"{tag}.bundle.tar", "--key", keys.release.key, cwd=tmp_path)

    stale = build("stale")
    assert stale.code == 3, stale.err
    ten_days_ago = names.format_time(dt.datetime.now(dt.UTC) - dt.timedelta(days=10))[:10]
    assert f"its trivy-db was built {ten_days_ago}" in stale.err and "older than its maxAge (5 d)" in stale.err
    assert not (tmp_path / "stale.bundle.tar").exists()

    fresh = build("fresh")
    assert fresh.code == 0, fresh.err
    [entry] = json.loads(cli("inspect", tmp_path / "fresh.bundle.tar", "--json").out)["artifacts"]
    assert entry["database"] == "trivy-db"
    assert names.parse_time(entry["built"]) > dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)

    site = tmp_path / "site"
    assert cli("site", "init", "--as-root", site, "--registry", registry.url, "--trust-key", keys.release.pub).code == 0
    imported = cli("import", tmp_path / "fresh.bundle.tar", "--site", site)
    assert imported.code == 0, imported.err
    served = RegistryClient(registry.host)  # where a scanner's --db-repository points
    repo = next(r for r in registry.catalog() if r.endswith("aquasecurity/trivy-db"))
    data, _, _ = served.get_manifest(repo, "fresh")
    assert [layer.media_type for layer in media.image_blobs(data)[1:]] == [TRIVY_DB_LAYER]

    assert cli("site", "receipt", site, "-o", tmp_path / "r.json").code == 0
    [held] = json.loads((tmp_path / "r.json").read_text())["scanner_databases"]
    assert held["database"] == "trivy-db" and held["age"] == "2 h" and held["release"] == "scanners 1.0.0"
    page = status_page(load_site(site)).decode()
    assert "Vulnerability databases for the cluster" in page and "2 h" in page
