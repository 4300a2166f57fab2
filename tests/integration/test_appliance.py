"""The site appliance as a technician meets it: init, up, import everything, status; the cluster's
view through containerd; a reboot; two technicians at once; credentials; a disk that is too small."""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bundler.oci.client import RegistryClient
from devtools import charts
from devtools.gitrepo import new_repo
from devtools.packages import build_deb
from tests.conftest import Keys, Registry, Run, SiteFactory, listen_options, missing
from tests.helpers import build_engine_image, containerd, credentials, registry_session, skopeo_digest


@dataclass
class Everything:
    bundle: Path
    engine_image: str  # docker.io/... : its original name
    digest: str


@pytest.fixture(scope="module")
def everything(registry_factory: Callable[[], Registry], docker_client: Any, keys: Keys,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Everything]:
    """One signed bundle with an image from a registry, one from the Docker engine, a chart, a repo and a .deb."""
    work = tmp_path_factory.mktemp("everything")
    source = registry_factory()
    from devtools import images as im

    im.push_image(RegistryClient(source.host), "apps/api", "2.0", [im.random_layer(2_000_000, 31)])
    tag = f"bundler-test/appliance:{uuid.uuid4().hex[:8]}"
    build_engine_image(docker_client, tag, "hello from the appliance")
    repo = new_repo(work / "gitops", "app.yaml", "kind: ConfigMap\n")
    build_deb(work, "edge-agent")
    chart_repo = work / "charts"
    chart_repo.mkdir()
    charts.write_index(chart_repo, [charts.package(chart_repo, "webapp", "1.0.0")])
    with charts.serve(chart_repo) as url:
        (work / "profile.yaml").write_text(f"""apiVersion: bundler/v1
kind: Profile
metadata: {{name: store, version: 1.0.0}}
spec:
  images:
    - {source.host}/apps/api:2.0
    - docker-daemon:{tag}
  charts:
    - {{repo: {url}, name: webapp, version: 1.0.0}}
  repos:
    - {{url: {repo}, name: gitops}}
  updates:
    - {{path: edge-agent_1.0.0_all.deb, approve: [line-1]}}
""")
        r = subprocess.run([sys.executable, "-m", "bundler.cli", "build", "profile.yaml", "-o", "store.bundle.tar",
                            "--key", str(keys.release.key)], cwd=work, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    info = json.loads(subprocess.run([sys.executable, "-m", "bundler.cli", "inspect", "store.bundle.tar", "--json"],
                                     cwd=work, capture_output=True, text=True, check=True).stdout)
    engine = next(i for i in info["images"] if "appliance" in i["ref"])
    docker_client.images.remove(tag, force=True)
    yield Everything(work / "store.bundle.tar", f"docker.io/{tag}", engine["digest"])


@pytest.fixture
def site(make_site: SiteFactory) -> Path:
    return make_site("site", "--group", "line-1")


def status(cli: Callable[..., Run], site: Path, code: int = 0) -> dict[str, Any]:
    """`site status --json`: exit 0 when every service answers, 4 when one does not (JSON either way)."""
    r = cli("site", "status", site, "--json")
    assert r.code == code, r.err
    return dict(json.loads(r.out))


def test_a_fresh_site_takes_everything_and_survives_a_reboot(
        everything: Everything, site: Path, cli: Callable[..., Run]) -> None:
    early = cli("import", everything.bundle, "--site", site)  # the technician forgot step 2
    assert early.code == 4 and f"bundler site up {site}" in early.err
    up = cli("site", "up", site)
    assert up.code == 0, up.err
    imported = cli("import", everything.bundle, "--site", site)
    assert imported.code == 0, imported.err
    assert "2 images added" in imported.out and "1 charts added" in imported.out and "1 updates added" in imported.out

    info = status(cli, site)
    assert {name: s["healthy"] for name, s in info["services"].items()} == {"registry": True, "git": True,
                                                                          "updates": True}
    assert [(b["name"], b["version"]) for b in info["bundles"]] == [("store", "1.0.0")]
    assert (site / "cluster" / "registries.yaml").exists()
    assert (site / "cluster" / "flux" / "kustomization.yaml").exists()

    assert cli("site", "down", site).code == 0
    assert not any(s["healthy"] for s in status(cli, site, code=4)["services"].values())
    assert cli("site", "up", site).code == 0  # the reboot
    assert all(s["healthy"] for s in status(cli, site)["services"].values())
    again = cli("import", everything.bundle, "--site", site)
    assert again.code == 0 and "already imported" in again.out
    registry = status(cli, site)["services"]["registry"]["url"]
    session = registry_session(site, credentials(site), "repository:charts/webapp:pull")
    r = session.get(f"{registry}/v2/charts/webapp/tags/list", timeout=10)
    assert r.status_code == 200 and r.json()["tags"] == ["1.0.0"]


def test_containerd_pulls_by_the_original_name_from_the_site(
        everything: Everything, site: Path, cli: Callable[..., Run], tmp_path: Path) -> None:
    if shutil.which("containerd") is None:
        missing("containerd")
    assert cli("site", "up", site).code == 0
    assert cli("import", everything.bundle, "--site", site).code == 0
    hosts_dir = site / "cluster" / "certs.d"
    assert (hosts_dir / "docker.io" / "hosts.toml").exists()
    with containerd() as ctr:
        # the node's credential as k3s gives it to containerd's CRI: the pull account of registries.yaml
        auth = next(iter(yaml.safe_load((site / "cluster" / "registries.yaml").read_text())["configs"].values()))
        pull = subprocess.run([*ctr, "images", "pull", "--hosts-dir", str(hosts_dir), "--user",
                               f"{auth['auth']['username']}:{auth['auth']['password']}", f"{everything.engine_image}"],
                              capture_output=True, text=True, timeout=120)
        assert pull.returncode == 0, pull.stdout + pull.stderr
        listed = subprocess.run([*ctr, "images", "ls"], capture_output=True, text=True, check=True).stdout
        line = next(line for line in listed.splitlines() if line.startswith(everything.engine_image))
        assert everything.digest in line


def test_the_cluster_credential_pulls_and_cannot_push_or_delete(everything: Everything, site: Path,
                                                                 cli: Callable[..., Run], skopeo: str,
                                                                 tmp_path: Path) -> None:
    assert cli("site", "up", site).code == 0
    assert cli("import", everything.bundle, "--site", site).code == 0
    registry = status(cli, site)["services"]["registry"]["url"]
    host = registry.removeprefix("https://")
    manifest = f"{registry}/v2/charts/webapp/manifests/1.0.0"
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    cluster = yaml.safe_load((site / "cluster" / "registries.yaml").read_text())["configs"][host]["auth"]
    node = (cluster["username"], cluster["password"])  # what every cluster node holds
    assert node == credentials(site)

    anonymous = registry_session(site, None, "repository:charts/webapp:pull")
    assert anonymous.get(manifest, headers=accept, timeout=10).status_code == 401
    assert registry_session(site, ("site", "guess"), "repository:charts/webapp:pull").headers["X-Token-Status"] == "401"
    pull = registry_session(site, node, "repository:charts/webapp:pull")
    r = pull.get(manifest, headers=accept, timeout=10)
    assert r.status_code == 200
    digest = r.headers["Docker-Content-Digest"]

    # the node asks for push and delete too: the token it gets does not carry them, the registry refuses
    greedy = registry_session(site, node, "repository:charts/webapp:pull,push,delete")
    assert greedy.post(f"{registry}/v2/charts/webapp/blobs/uploads/", timeout=10).status_code in (401, 403)
    assert greedy.put(manifest, data=r.content, timeout=10,
                      headers={"Content-Type": r.headers["Content-Type"]}).status_code in (401, 403)
    assert greedy.delete(f"{registry}/v2/charts/webapp/manifests/{digest}", timeout=10).status_code in (401, 403)
    assert pull.get(manifest, headers=accept, timeout=10).headers["Docker-Content-Digest"] == digest

    # skopeo, an independent client, with the node's credential: reads, and cannot overwrite a tag
    certs = tmp_path / "certs"
    certs.mkdir()
    shutil.copy(site / "pki" / "ca.pem", certs / "ca.crt")
    creds = ":".join(node)
    image = f"docker://{host}/{everything.engine_image}"
    assert skopeo_digest(skopeo, image.removeprefix("docker://"), certs, creds) == everything.digest
    overwrite = subprocess.run([skopeo, "copy", "--src-cert-dir", str(certs), "--dest-cert-dir", str(certs),
                                "--src-creds", creds, "--dest-creds", creds, "--format", "v2s2", image,
                                image.rsplit(":", 1)[0] + ":latest"], capture_output=True, text=True)
    assert overwrite.returncode != 0 and "denied" in overwrite.stderr
    assert pull.get(manifest, headers=accept, timeout=10).headers["Docker-Content-Digest"] == digest
    # the import account (never given out) can: that is what `bundler import` uses
    importer = registry_session(site, credentials(site, "import-credentials.json"),
                                "repository:charts/webapp:pull,push")
    assert importer.post(f"{registry}/v2/charts/webapp/blobs/uploads/", timeout=10).status_code == 202


def test_a_second_import_while_one_runs_is_refused_naming_the_holder(
        everything: Everything, site: Path, cli: Callable[..., Run]) -> None:
    assert cli("site", "up", site).code == 0
    (site / "run").mkdir(exist_ok=True)
    with open(site / "run" / "import.lock", "w") as held:  # a technician's import, still running
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("pid 4242, importing store.bundle.tar, since 2026-11-27T10:00:00+00:00")
        held.flush()
        refused = cli("import", everything.bundle, "--site", site)
    assert refused.code == 1 and "another import is running on this site (pid 4242" in refused.err
    assert not (site / "state.json").exists()

    # two at once for real: the site ends consistent, whoever won
    commands = [[sys.executable, "-m", "bundler.cli", "import", str(everything.bundle), "--site", str(site)]] * 2
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
    outcomes = [(p.wait(300), p.stderr.read() if p.stderr else "") for p in procs]
    assert any(code == 0 for code, _ in outcomes)
    assert all(code == 0 or "another import is running" in err for code, err in outcomes)
    assert [b["version"] for b in status(cli, site)["bundles"]] == ["1.0.0"]
    assert cli("import", everything.bundle, "--site", site).out.startswith("store 1.0.0 is already imported")


def test_dry_run_prints_the_plan_and_changes_nothing(everything: Everything, site: Path,
                                                     cli: Callable[..., Run]) -> None:
    assert cli("site", "up", site).code == 0
    r = cli("import", everything.bundle, "--site", site, "--dry-run", "--json")
    assert r.code == 0, r.err
    plan = json.loads(r.out)["plan"]
    assert len(plan["add_artifacts"]) == 3 and plan["add_updates"] == ["edge-agent 1.0.0"]
    assert any("gitops: refs/heads/main (new)" in m for m in plan["move_refs"])
    assert not (site / "state.json").exists() and not list((site / "git").iterdir())


def test_a_disk_that_is_too_small_is_refused_before_anything_is_written(
        everything: Everything, small_disk: Path, cli: Callable[..., Run], make_site: SiteFactory) -> None:
    site = make_site(small_disk / "site", "--group", "line-1")
    try:
        assert cli("site", "up", site).code == 0
        def content() -> list[str]:  # everything but logs and the run directory (pids, the import lock)
            return sorted(str(p.relative_to(site)) for p in site.rglob("*") if not {"logs", "run"} & set(p.parts))

        before = content()
        refused = cli("import", everything.bundle, "--site", site)
        assert refused.code == 1, refused.out + refused.err
        assert "not enough disk space for this import" in refused.err and "is free" in refused.err
        assert content() == before
    finally:
        cli("site", "down", site)




def test_the_embedded_registry_runs_in_the_docker_engine_where_asked(
        docker_client: Any, cli: Callable[..., Run], keys: Keys, tmp_path: Path) -> None:
    """Where no registry binary is installed, `site up` runs registry:2 through the Docker engine."""
    from devtools.registry_image import ensure_registry_image

    ensure_registry_image(docker_client)
    site = tmp_path / "site"
    r = cli("site", "init", "--as-root", site, "--trust-key", keys.release.pub, "--registry-runtime", "docker",
            *listen_options())
    assert r.code == 0, r.err
    try:
        up = cli("site", "up", site)
        assert up.code == 0, up.err
        container = (site / "run" / "registry.container").read_text().strip()
        assert docker_client.containers.get(container).status == "running"
        assert status(cli, site)["services"]["registry"]["healthy"]
    finally:
        assert cli("site", "down", site).code == 0
    import docker.errors

    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(container)
