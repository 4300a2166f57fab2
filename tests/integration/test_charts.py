"""Helm charts end to end: a classic chart repository (files made with `tar`, served over loopback
HTTP) and an OCI chart, through a bundle into the site registry, with the images charts declare."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from bundler.oci.client import RegistryClient
from bundler.oci.reference import ImageReference
from devtools import charts
from devtools.samples import SampleSet, push_samples
from tests.conftest import Keys, Registry, Run, SiteFactory
from tests.helpers import run_bounded

HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"


@dataclass
class ChartWorld:
    source: Registry
    samples: SampleSet
    repo_url: str
    repo_dir: Path
    archives: dict[str, Path]


@pytest.fixture(scope="module")
def world(registry_factory: Callable[[], Registry], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartWorld]:
    source = registry_factory()
    samples = push_samples(RegistryClient(source.host))
    repo_dir = tmp_path_factory.mktemp("chart-repo")
    with charts.serve(repo_dir) as url:
        host = source.host
        archives = {f"cache-{v}": charts.package(repo_dir, "cache", v) for v in ("0.9.0", "1.1.0", "1.4.2", "2.0.0")}
        values = {
            "image": f"{host}/demo/hello:1.0",  # the string form
            "worker": {"image": {"registry": host, "repository": "demo/app-a", "tag": "1.0"}},  # the map form
            "sidecar": {"repository": "library/not-a-registry-path", "enabled": False},  # no tag/registry: not an image
        }
        annotation = yaml.safe_dump([{"name": "b", "image": f"{host}/demo/app-b:1.0"}])
        for version in ("1.0.0", "1.2.0", "1.3.0", "2.0.0"):
            archives[f"webapp-{version}"] = charts.package(
                repo_dir, "webapp", version, values=values, annotations={"artifacthub.io/images": annotation},
                dependencies=[{"name": "cache", "version": "^1.1.0", "repository": url}])
        charts.write_index(repo_dir, list(archives.values()))
        yield ChartWorld(source, samples, url, repo_dir, archives)


def profile(world: ChartWorld, charts_yaml: str) -> str:
    return ("apiVersion: bundler/v1\nkind: Profile\nmetadata: {name: charts, version: 1.0.0}\n"
            f"spec:\n  charts:\n{charts_yaml}")


def manifest_of(site: Registry, repo: str, tag: str) -> tuple[dict[str, object], str]:
    r = requests.get(f"{site.url}/v2/{repo}/manifests/{tag}", timeout=10,
                     headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 200, (repo, tag, r.text)
    return r.json(), "sha256:" + hashlib.sha256(r.content).hexdigest()


def test_repository_chart_with_range_dependencies_and_images(
        world: ChartWorld, registry: Registry, cli: Callable[..., Run], keys: Keys, tmp_path: Path,
        make_site: SiteFactory) -> None:
    (tmp_path / "profile.yaml").write_text(profile(world, f"""\
    - repo: {world.repo_url}
      name: webapp
      version: ">=1.0.0 <2.0.0"
      dependencies: true
      images: auto
"""))
    built = cli("build", "profile.yaml", "-o", "c.bundle.tar", "--key", keys.release.key)
    assert built.code == 0, built.err
    host = world.source.host
    line = next(x for x in built.out.splitlines() if x.startswith("chart webapp 1.3.0 declares images: "))
    assert set(line.split(": ", 1)[1].split(", ")) == {f"{host}/demo/{n}:1.0" for n in ("hello", "app-a", "app-b")}

    info = json.loads(cli("inspect", "c.bundle.tar", "--json").out)
    assert {(c["name"], c["version"]) for c in info["charts"]} == {("webapp", "1.3.0"), ("cache", "1.4.2")}
    webapp = next(c for c in info["charts"] if c["name"] == "webapp")
    assert webapp["source"] == world.repo_url
    assert sorted(webapp["images"]) == sorted(f"{host}/demo/{n}:1.0" for n in ("hello", "app-a", "app-b"))
    bundled = {i["ref"] for i in info["images"]}
    assert {f"{host}/demo/{n}:1.0" for n in ("hello", "app-a", "app-b")} <= bundled

    make_site(registry=registry.url)
    imported = cli("import", "c.bundle.tar", "--site", "site", "--json")
    assert imported.code == 0, imported.err
    assert json.loads(imported.out)["added"]["charts"] == 2

    for name, version in (("webapp", "1.3.0"), ("cache", "1.4.2")):
        manifest, _ = manifest_of(registry, f"charts/{name}", version)
        assert manifest["config"]["mediaType"] == HELM_CONFIG  # type: ignore[index]
        layer = manifest["layers"][0]  # type: ignore[index]
        assert layer["mediaType"] == HELM_CHART
        original = world.archives[f"{name}-{version}"].read_bytes()
        assert layer["digest"] == "sha256:" + hashlib.sha256(original).hexdigest()
        blob = requests.get(f"{registry.url}/v2/charts/{name}/blobs/{layer['digest']}", timeout=10).content
        assert blob == original
    for image in ("hello", "app-a", "app-b"):
        repo = ImageReference.parse(f"{host}/demo/{image}:1.0").site_repository
        assert repo in registry.catalog()
    flux = yaml.safe_load((tmp_path / "site" / "cluster" / "flux" / "helm-repository.yaml").read_text())
    assert flux["kind"] == "HelmRepository" and flux["spec"] == {
        "type": "oci", "interval": "10m", "url": f"oci://{registry.host}/charts", "insecure": True}


def test_oci_chart_round_trips_with_the_same_digest(world: ChartWorld, registry: Registry, cli: Callable[..., Run],
                                                    keys: Keys, tmp_path: Path, make_site: SiteFactory) -> None:
    archive = charts.package(tmp_path, "ocichart", "0.3.1")
    digest = charts.push_oci_chart(RegistryClient(world.source.host), "helm/ocichart", archive)
    (tmp_path / "profile.yaml").write_text(profile(world, f"    - ref: oci://{world.source.host}/helm/ocichart:0.3.1\n"))
    assert cli("build", "profile.yaml", "-o", "o.bundle.tar", "--key", keys.release.key).code == 0
    make_site(registry=registry.url)
    imported = cli("import", "o.bundle.tar", "--site", "site")
    assert imported.code == 0, imported.err
    _, site_digest = manifest_of(registry, "charts/ocichart", "0.3.1")
    assert site_digest == digest


def test_no_matching_version_lists_what_there_is(world: ChartWorld, cli: Callable[..., Run], tmp_path: Path) -> None:
    (tmp_path / "profile.yaml").write_text(profile(world, f"""\
    - repo: {world.repo_url}
      name: webapp
      version: "~3.1"
"""))
    r = cli("build", "profile.yaml")
    assert r.code == 2
    assert "no version of chart webapp" in r.err and "matches ~3.1; available: 2.0.0, 1.3.0, 1.2.0, 1.0.0" in r.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["profile.yaml"]


def bad_repo(tmp_path: Path, index: bytes | None = None, archive: Path | None = None,
             digest: str | None = None) -> Path:
    repo = tmp_path / "bad-repo"
    repo.mkdir()
    archive = archive or charts.package(repo, "thing", "1.0.0")
    if archive.parent != repo:
        archive = archive.rename(repo / archive.name)
    charts.write_index(repo, [archive], {archive.name: digest} if digest else None)
    if index is not None:
        (repo / "index.yaml").write_bytes(index)
    return repo


@pytest.mark.parametrize(("case", "message"), [
    ("invalid-index", "index.yaml is not a valid chart index"),
    ("digest-mismatch", "index.yaml says " + "0" * 64),
    ("path-traversal", "contains an unsafe path '../../etc/cron.d/evil'"),
])
def test_bad_chart_sources_are_refused(case: str, message: str, cli: Callable[..., Run], tmp_path: Path) -> None:
    if case == "invalid-index":
        repo = bad_repo(tmp_path, index=b"entries: [this, is, not, a, mapping\n")
    elif case == "digest-mismatch":
        repo = bad_repo(tmp_path, digest="0" * 64)
    else:
        evil = tmp_path / "thing-1.0.0.tgz"
        with tarfile.open(evil, "w:gz") as tar:
            for name, data in (("thing/Chart.yaml", b"apiVersion: v2\nname: thing\nversion: 1.0.0\n"),
                               ("../../etc/cron.d/evil", b"* * * * * root sh\n")):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        repo = bad_repo(tmp_path, archive=evil)
    with charts.serve(repo) as url:
        (tmp_path / "profile.yaml").write_text(
            "apiVersion: bundler/v1\nkind: Profile\nmetadata: {name: bad, version: 1.0.0}\n"
            f"spec:\n  charts:\n    - {{repo: {url}, name: thing, version: 1.0.0}}\n")
        r = cli("build", "profile.yaml")
    assert r.code == 3, r.err
    assert message in r.err and "Traceback" not in r.err
    assert not list(tmp_path.glob("*.bundle.tar")) and not list(tmp_path.glob(".*partial"))


def test_chart_versions_from_the_wild_resolve_as_helm_resolves_them(
        registry: Registry, keys: Keys, cli: Callable[..., Run], tmp_path: Path, make_site: SiteFactory) -> None:
    """cert-manager publishes `v1.14.4`; others `1.2` or `2.0.0-rc.1`; an index may hold junk."""
    repo = tmp_path / "repo"
    repo.mkdir()
    charts.write_index(repo, [charts.package(repo, "cert-manager", v) for v in ("v1.14.3", "v1.14.4", "1.2",
                                                                                 "2.0.0-rc.1")])
    index = yaml.safe_load((repo / "index.yaml").read_text())
    index["entries"]["cert-manager"].append({**index["entries"]["cert-manager"][0], "version": "latest"})
    (repo / "index.yaml").write_text(yaml.safe_dump(index))

    def build(version: str, output: str) -> Run:
        (tmp_path / "profile.yaml").write_text(
            "apiVersion: bundler/v1\nkind: Profile\nmetadata: {name: wild, version: 1.0.0}\nspec:\n  charts:\n"
            f"    - {{repo: {url}, name: cert-manager, version: \"{version}\"}}\n")
        return cli("build", "profile.yaml", "-o", output, "--key", keys.release.key)

    with charts.serve(repo) as url:
        picked = {}
        for i, wanted in enumerate(("1.14.4", "v1.14.x", "~1.2", ">=2.0.0-rc.0")):
            r = build(wanted, f"wild-{i}.bundle.tar")
            assert r.code == 0, r.err
            picked[wanted] = json.loads(cli("inspect", f"wild-{i}.bundle.tar", "--json").out)["charts"][0]["version"]
        none = build("~3.0", "none.bundle.tar")
    assert picked == {"1.14.4": "v1.14.4", "v1.14.x": "v1.14.4", "~1.2": "1.2", ">=2.0.0-rc.0": "2.0.0-rc.1"}
    assert none.code == 2 and "available: 2.0.0-rc.1, v1.14.4, v1.14.3, 1.2; not versions: 'latest'" in none.err

    make_site(registry=registry.url)
    r = cli("import", "wild-0.bundle.tar", "--site", "site")
    assert r.code == 0, r.err
    # tagged as Helm tags it (the version as published), so `helm pull --version v1.14.4` finds it
    assert RegistryClient(registry.host).list_tags("charts/cert-manager") == ["v1.14.4"]


ALIAS_BOMB = ("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
              + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 10)))


@pytest.mark.parametrize("where", ["Chart.yaml", "values.yaml", "index.yaml"])
def test_a_yaml_alias_bomb_in_a_chart_is_refused_at_once(where: str, cli: Callable[..., Run],
                                                          tmp_path: Path) -> None:
    """A few hundred bytes whose aliases expand to 10^10 values (Helm's reader refuses such aliasing):
    the build is refused, naming the chart and the file, within 200 MB and a 20 s CPU cap (an
    expansion would be killed at the cap, not finish)."""
    chart = {"Chart.yaml": ALIAS_BOMB + "keywords: *a9\napiVersion: v2\nname: thing\nversion: 1.0.0\n",
             "values.yaml": ALIAS_BOMB + "images: *a9\n"}
    evil = tmp_path / "thing-1.0.0.tgz"
    with tarfile.open(evil, "w:gz") as tar:
        for name in ("Chart.yaml", "values.yaml"):
            data = (chart[name] if name == where else
                    {"Chart.yaml": "apiVersion: v2\nname: thing\nversion: 1.0.0\n", "values.yaml": "{}\n"}[name])
            info = tarfile.TarInfo(f"thing/{name}")
            info.size = len(data.encode())
            tar.addfile(info, io.BytesIO(data.encode()))
    repo = bad_repo(tmp_path, archive=evil)
    if where == "index.yaml":
        (repo / "index.yaml").write_text(ALIAS_BOMB + "apiVersion: v1\nentries: {thing: *a9}\n")
    with charts.serve(repo) as url:
        (tmp_path / "profile.yaml").write_text(
            "apiVersion: bundler/v1\nkind: Profile\nmetadata: {name: bad, version: 1.0.0}\n"
            f"spec:\n  charts:\n    - {{repo: {url}, name: thing, version: 1.0.0, images: auto}}\n")
        code, err, peak = run_bounded([sys.executable, "-m", "bundler.cli", "build", "profile.yaml"], tmp_path,
                                      cpu_seconds=20)
    assert code == 3, err
    assert where in err and "alias" in err and "Traceback" not in err, err
    assert 0 < peak < 200 * 1024  # KiB: the build's process never grew past 200 MB
    assert not list(tmp_path.glob("*.bundle.tar"))
