"""`bundler site prune` on the default site (embedded registry with TLS and tokens): three releases,
each with one image layer of its own and one shared, kept two; the first's own layer leaves the
registry's storage, the kept ones pull by tag and digest with skopeo, their signatures stay, an
unapproved update payload of the first goes and an approved one stays. A full disk and a kill
midway do not stop it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from bundler.oci import media
from bundler.oci.client import RegistryClient
from bundler.oci.reference import ImageReference
from devtools import images as im
from tests.conftest import Keys, Registry, Run, SiteFactory, small_tmpfs
from tests.helpers import EMPTY, EMPTY_CONFIG, SCAN_TYPE, credentials, push_blob, push_manifest, sign

MB = 1 << 20


@dataclass
class Releases:
    bundles: list[Path]
    refs: list[str]  # the image of each release
    digests: list[str]
    own_layers: list[im.Layer]  # the layer only that release's image has
    signatures: dict[str, str]  # tag -> digest of signatures and referrers indexes (releases 2 and 3)


def refer(client: RegistryClient, repo: str, digest: str) -> str:
    """A scan result referring to the image (`subject`), and the fallback-tag index listing it."""
    push_blob(client, repo, EMPTY)
    manifest = client.get_manifest(repo, digest)[0]
    scan = {"schemaVersion": 2, "mediaType": media.OCI_MANIFEST, "artifactType": SCAN_TYPE, "config": EMPTY_CONFIG,
            "layers": [{"mediaType": "application/json", **push_blob(client, repo, digest.encode())}],
            "subject": {"mediaType": media.OCI_MANIFEST, "digest": digest, "size": len(manifest)}}
    referrer, size = push_manifest(client, repo, None, scan)
    index = {"schemaVersion": 2, "mediaType": media.OCI_INDEX, "manifests": [
        {"mediaType": media.OCI_MANIFEST, "digest": referrer, "size": size, "artifactType": SCAN_TYPE}]}
    return push_manifest(client, repo, f"sha256-{digest[7:]}", index)[0]


@pytest.fixture(scope="module")
def releases(registry_factory: Callable[[], Registry], keys: Keys,
             tmp_path_factory: pytest.TempPathFactory) -> Releases:
    source = registry_factory()
    client = RegistryClient(source.host)
    work = tmp_path_factory.mktemp("prune")
    shared = im.random_layer(MB, 600)
    key = ec.generate_private_key(ec.SECP256R1())
    out = Releases([], [], [], [], {})
    for n in (1, 2, 3):
        own = im.random_layer(2 * MB, 600 + n)
        digest, _ = im.push_image(client, "store/app", f"{n}.0", [shared, own], oci=True)
        if n > 1:  # a signature, and an OCI 1.1 referrer with its fallback tag
            out.signatures[f"sha256-{digest[7:]}.sig"] = sign(client, source.host, "store/app", digest, key)
            out.signatures[f"sha256-{digest[7:]}"] = refer(client, "store/app", digest)
        (work / f"agent-{n}.bin").write_bytes(os.urandom(300_000))
        (work / f"tool-{n}.bin").write_bytes(os.urandom(200_000))
        (work / f"store-{n}.yaml").write_text(
            f"apiVersion: bundler/v1\nkind: Profile\nmetadata: {{name: store, version: {n}.0.0}}\n"
            f"spec:\n  images:\n    - {source.host}/store/app:{n}.0\n"
            f"  updates:\n    - {{path: agent-{n}.bin, name: agent, metadata: {{version: '{n}.0'}}}}\n"
            f"    - {{path: tool-{n}.bin, name: tool, metadata: {{version: '{n}.0'}}, approve: [line-1]}}\n")
        r = subprocess.run([sys.executable, "-m", "bundler.cli", "build", f"store-{n}.yaml", "-o",
                            f"store-{n}.bundle.tar", "--key", str(keys.release.key)], cwd=work,
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        out.bundles.append(work / f"store-{n}.bundle.tar")
        out.refs.append(f"{source.host}/store/app:{n}.0")
        out.digests.append(digest)
        out.own_layers.append(own)
    return out


@pytest.fixture
def site(make_site: SiteFactory) -> Path:
    return make_site("site", "--group", "line-1", up=True)


def blob_file(site: Path, digest: str) -> Path:
    return site / "registry" / "storage" / "docker" / "registry" / "v2" / "blobs" / "sha256" / digest[7:9] / \
        digest[7:] / "data"


def storage_bytes(site: Path) -> int:
    return sum(p.stat().st_size for p in (site / "registry" / "storage").rglob("*") if p.is_file())


def skopeo_pulls(skopeo: str, site: Path, ref: str, digest: str, tmp_path: Path) -> None:
    """skopeo copies the image from the site (every blob read), by tag and by digest."""
    certs = tmp_path / "certs"
    certs.mkdir(exist_ok=True)
    (certs / "ca.crt").write_bytes((site / "pki" / "ca.pem").read_bytes())
    user, password = credentials(site)
    registry = json.loads(subprocess.run([sys.executable, "-m", "bundler.cli", "site", "status", str(site), "--json"],
                                         capture_output=True, text=True).stdout)["services"]["registry"]["url"]
    repo = ImageReference.parse(ref).site_repository
    for name, target in ((f"{repo}:{ImageReference.parse(ref).tag}", "tag"), (f"{repo}@{digest}", "digest")):
        out = tmp_path / f"pulled-{digest[7:15]}-{target}"
        subprocess.run([skopeo, "copy", "--src-cert-dir", str(certs), "--src-creds", f"{user}:{password}",
                        f"docker://{registry.removeprefix('https://')}/{name}", f"oci:{out}"],
                       check=True, capture_output=True)


def import_all(cli: Callable[..., Run], site: Path, bundles: list[Path]) -> None:
    for bundle in bundles:
        r = cli("import", bundle, "--site", site)
        assert r.code == 0, r.err


def test_prune_keeps_two_releases_and_frees_the_first_ones_own_layer(
        cli: Callable[..., Run], releases: Releases, site: Path, skopeo: str, tmp_path: Path) -> None:
    config = yaml.safe_load((site / "site.yaml").read_text())
    config["retention"] = {"keep": 2, "warnPercent": 1}  # any disk is fuller than 1%: the warning shows
    (site / "site.yaml").write_text(yaml.safe_dump(config))
    import_all(cli, site, releases.bundles[:2])
    last = cli("import", releases.bundles[2], "--site", site)
    assert last.code == 0 and "warning: the site's disk is" in last.err and f"bundler site prune {site}" in last.err
    status = json.loads(cli("site", "status", site, "--json").out)["disk"]
    assert status["registry"] > 3 * 2 * MB and status["updates"] > 3 * 500_000 and status["git"] == 0
    assert status["prune"]["releases"] == ["store 1.0.0"] and status["warning"]
    assert status["prune"]["bytes_freed"]["registry"] >= len(releases.own_layers[0].data)
    shown = cli("site", "status", site)
    assert "a prune (keeping 2) would free" in shown.out and "warning: the site's disk is" in shown.err
    own = releases.own_layers[0]
    assert blob_file(site, own.digest).exists()
    before = storage_bytes(site)
    agent_1 = site / "updates" / "blobs" / json.loads(cli("inspect", releases.bundles[0], "--json").out)[
        "updates"][0]["sha256"]
    tool_1 = agent_1.parent / json.loads(cli("inspect", releases.bundles[0], "--json").out)["updates"][1]["sha256"]
    assert agent_1.exists() and tool_1.exists()

    dry = cli("site", "prune", site, "--keep", "2", "--dry-run", "--json")
    assert dry.code == 0, dry.err
    planned = json.loads(dry.out)
    assert planned["releases"] == ["store 1.0.0"]
    assert planned["bytes_freed"]["registry"] >= len(own.data)
    assert planned["updates"] == ["agent 1.0"]  # the tool is approved for line-1: it stays
    assert blob_file(site, own.digest).exists() and storage_bytes(site) == before  # nothing changed

    pruned = cli("site", "prune", site, "--keep", "2")
    assert pruned.code == 0, pruned.err
    assert "pruned releases (keeping 2 of each name): store 1.0.0" in pruned.out
    assert not blob_file(site, own.digest).exists()
    assert before - storage_bytes(site) >= len(own.data)
    assert not agent_1.exists() and tool_1.exists()
    for ref, digest in zip(releases.refs[1:], releases.digests[1:], strict=True):
        skopeo_pulls(skopeo, site, ref, digest, tmp_path)
    client = site_client(site)
    repo = ImageReference.parse(releases.refs[0]).site_repository
    assert client.head_manifest(repo, "1.0") is None and client.head_manifest(repo, releases.digests[0]) is None
    for tag, digest in releases.signatures.items():  # signatures and referrers of the kept releases stay
        assert client.head_manifest(repo, tag) == digest
        if not tag.endswith(".sig"):  # the fallback index, and each referrer it lists, by digest
            for referrer in media.index_children(client.get_manifest(repo, tag)[0]):
                assert client.head_manifest(repo, referrer.digest) == referrer.digest
    state = json.loads((site / "state.json").read_text())
    assert [b["status"] for b in state["bundles"]] == ["pruned", "done", "done"]
    assert cli("site", "status", site).code == 0
    again = cli("site", "prune", site, "--keep", "2", "--json")
    assert again.code == 0 and json.loads(again.out)["releases"] == []


def site_client(site: Path) -> RegistryClient:
    from bundler.site.config import load_site

    return load_site(site).registry_client(2)


def test_prune_succeeds_on_a_full_disk_and_frees_space(
        cli: Callable[..., Run], make_site: SiteFactory, releases: Releases, tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", "100m") as disk:
        site = make_site(disk / "site", "--group", "line-1", up=True)
        try:  # stopped before the disk goes
            import_all(cli, site, releases.bundles[:2])
            filler = disk / "filler"
            with open(filler, "wb") as f:  # the disk is full now
                try:
                    while True:
                        f.write(b"\0" * (1 << 16))
                        f.flush()
                except OSError:
                    pass
            assert os.statvfs(disk).f_bavail == 0
            r = cli("site", "prune", site, "--keep", "1")
            assert r.code == 0, r.err
            assert os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize >= len(releases.own_layers[0].data)
            assert not blob_file(site, releases.own_layers[0].digest).exists()
            assert site_client(site).head_manifest(ImageReference.parse(releases.refs[1]).site_repository,
                                                   "2.0") == releases.digests[1]
        finally:
            cli("site", "down", site)


def test_a_prune_killed_midway_and_run_again_leaves_every_kept_image_pullable(
        cli: Callable[..., Run], releases: Releases, site: Path, skopeo: str, tmp_path: Path) -> None:
    import_all(cli, site, releases.bundles)
    proc = subprocess.Popen([sys.executable, "-m", "bundler.cli", "site", "prune", str(site), "--keep", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    marker = site / "run" / "gc-restart"  # made just before the registry stops for the collector
    deadline = time.monotonic() + 60
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert marker.exists(), "the kill came after the collector"
    r = cli("site", "prune", site, "--keep", "1")
    assert r.code == 0, r.err
    assert cli("site", "status", site).code == 0  # the registry is back
    skopeo_pulls(skopeo, site, releases.refs[2], releases.digests[2], tmp_path)
    assert not blob_file(site, releases.own_layers[0].digest).exists()
    assert not blob_file(site, releases.own_layers[1].digest).exists()


def test_what_a_killed_import_was_copying_is_freed_by_a_prune_and_by_the_next_import(
        cli: Callable[..., Run], releases: Releases, site: Path) -> None:
    """An import killed while it copied a blob into the site's own registry storage leaves the
    partial file (`registry/incoming/<hex>.<pid>.partial`: a 9 GiB model's, say): a prune counts
    and frees it; so does the next import, before it writes its own."""
    import_all(cli, site, releases.bundles[:1])
    incoming = site / "registry" / "incoming"

    def killed_import_left(size: int) -> Path:
        left = incoming / f"{'ab' * 32}.{999_999}.partial"
        left.write_bytes(os.urandom(size))
        return left

    left = killed_import_left(3 * MB)
    dry = cli("site", "prune", site, "--dry-run", "--json")
    assert dry.code == 0, dry.err
    planned = json.loads(dry.out)
    assert planned["leftovers"]["partial files"] == [left.name] and planned["bytes_freed"]["leftovers"] >= 3 * MB
    assert left.exists()  # a dry run changes nothing
    pruned = cli("site", "prune", site)
    assert pruned.code == 0, pruned.err
    assert not left.exists()

    left = killed_import_left(MB)
    imported = cli("import", releases.bundles[1], "--site", site)
    assert imported.code == 0, imported.err
    assert not left.exists() and not list(incoming.iterdir())
