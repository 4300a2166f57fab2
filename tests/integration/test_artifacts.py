"""OCI artifacts (`spec.artifacts`): a local model file and a directory packed as `oras push` packs
them, and an upstream artifact copied with its manifest digest, travel through build, verify and
import into the default site; a consumer fetches every byte with the distribution API. A delta
carries only the changed model; a file title that climbs out of the pull directory is refused. A
model packed `as: image` is pulled by containerd by its name and its files read from the snapshot."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
import yaml

from bundler.kinds import KINDS
from bundler.oci.client import RegistryClient
from bundler.oci.reference import ImageReference
from tests.conftest import Keys, Registry, Run, SiteFactory, missing
from tests.helpers import containerd, crd_schema, credentials, registry_session

TITLE = "org.opencontainers.image.title"
EMPTY = b"{}"
EMPTY_CONFIG = {"mediaType": "application/vnd.oci.empty.v1+json",
                "digest": "sha256:" + hashlib.sha256(EMPTY).hexdigest(), "size": 2}
MODEL_TYPE = "application/vnd.acme.model.v1"
FLUX_TYPE = "application/vnd.cncf.flux.config.v1+json"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_artifact(client: RegistryClient, repo: str, tag: str, files: dict[str, bytes],
                  artifact_type: str = FLUX_TYPE) -> str:
    """An OCI 1.1 artifact in a source registry, as `oras push` makes one; returns its digest."""
    layers = []
    for blob in (EMPTY, *files.values()):
        client.push_blob(repo, sha(blob), len(blob), lambda blob=blob: iter([blob]))
    for title, data in files.items():
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(data),
                       "size": len(data), "annotations": {TITLE: title}})
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "artifactType": artifact_type, "config": EMPTY_CONFIG, "layers": layers,
                           "annotations": {"org.opencontainers.image.created": "2026-11-01T00:00:00Z"}}).encode()
    client.put_manifest(repo, tag, manifest, "application/vnd.oci.image.manifest.v1+json")
    return sha(manifest)


def profile(directory: Path, version: str, artifacts: str) -> Path:
    path = directory / f"models-{version}.yaml"
    path.write_text(f"apiVersion: bundler/v1\nkind: Profile\nmetadata: {{name: models, version: {version}}}\n"
                    f"spec:\n  artifacts:\n{artifacts}")
    return path


def build(cli: Callable[..., Run], keys: Keys, path: Path, output: Path, *extra: str) -> Run:
    return cli("build", path, "-o", output, "--key", keys.release.key, *extra, cwd=path.parent)


@pytest.fixture(scope="module")
def source(registry_factory: Callable[[], Registry]) -> Registry:
    return registry_factory()


@pytest.fixture
def models(tmp_path: Path) -> dict[str, bytes]:
    """A model file and a directory of two (one in a subdirectory), on this machine."""
    files = {"order-accuracy.onnx": os.urandom(3 << 20), "vision/labels.txt": b"cup\nplate\nfork\n",
             "vision/weights/int8.bin": os.urandom(1 << 20)}
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    return files


@pytest.fixture
def running_site(make_site: SiteFactory) -> Path:
    """The default site: `site init` + `site up` (embedded registry with TLS and token auth)."""
    return make_site("site", "--group", "line-1", up=True)


def fetch(site: Path, ref: str, accept: str = "application/vnd.oci.image.manifest.v1+json"
          ) -> tuple[requests.Session, str, dict[str, Any], str]:
    """(session, base URL of the repository, manifest, its digest) from the site registry, with the
    cluster's pull account, the way any OCI client does it."""
    repo = ImageReference.parse(ref).site_repository
    session = registry_session(site, credentials(site), f"repository:{repo}:pull")
    base = f"{status_url(site)}/v2/{repo}"
    r = session.get(f"{base}/manifests/{ImageReference.parse(ref).tag}", headers={"Accept": accept}, timeout=10)
    assert r.status_code == 200, r.text
    return session, base, r.json(), sha(r.content)


def node_reads(site: Path, ref: str, platform: str, directory: str, tmp_path: Path) -> dict[str, str]:
    """What a node sees of an image-packed model: containerd pulls `ref` for `platform` by its original
    name through the site's mirror (the cluster's pull account), unpacks and mounts the snapshot
    read-only; the digest of each file under `directory`, by its path there."""
    user, password = credentials(site)
    with containerd() as ctr:
        pulled = subprocess.run([*ctr, "images", "pull", "--snapshotter", "native", "--platform", platform,
                                 "--hosts-dir", str(site / "cluster" / "certs.d"), "--user", f"{user}:{password}",
                                 ref], capture_output=True, text=True, timeout=120)
        assert pulled.returncode == 0, pulled.stdout + pulled.stderr
        mount = tmp_path / f"mounted-{platform.replace('/', '-')}"
        mount.mkdir()
        mounted = subprocess.run([*ctr, "images", "mount", "--snapshotter", "native", "--platform", platform,
                                  "--rw=false", ref, str(mount)], capture_output=True, text=True, timeout=60)
        assert mounted.returncode == 0, mounted.stdout + mounted.stderr
        try:
            return {str(p.relative_to(mount / directory)): sha(p.read_bytes())
                    for p in (mount / directory).rglob("*") if p.is_file()}
        finally:
            subprocess.run([*ctr, "images", "unmount", str(mount)], capture_output=True, timeout=60)


def status_url(site: Path) -> str:
    """The site registry's URL, as `site status --json` gives it."""
    r = subprocess.run([sys.executable, "-m", "bundler.cli", "site", "status", str(site), "--json"],
                       capture_output=True, text=True)
    return str(json.loads(r.stdout)["services"]["registry"]["url"])


def test_models_and_an_upstream_artifact_round_trip_into_the_default_site(
        cli: Callable[..., Run], keys: Keys, source: Registry, models: dict[str, bytes], running_site: Path,
        skopeo: str, tmp_path: Path) -> None:
    config = b'{"kind": "Kustomization", "resources": ["app.yaml"]}\n'
    upstream_digest = push_artifact(RegistryClient(source.host), "flux/store-config", "v7", {"config.json": config})
    path = profile(tmp_path, "1.0.0", f"""    - path: ./order-accuracy.onnx
      repository: registry.example.com/models/order-accuracy
      tag: "1.3"
      artifactType: {MODEL_TYPE}
    - path: ./vision
      repository: registry.example.com/models/vision
      tag: "2.0"
      artifactType: {MODEL_TYPE}
      mediaType: application/vnd.acme.model.layer.v1
    - ref: {source.host}/flux/store-config:v7
""")
    built = build(cli, keys, path, tmp_path / "models.bundle.tar")
    assert built.code == 0, built.err
    assert "3 artifacts" in built.out
    assert cli("verify", tmp_path / "models.bundle.tar", "--key", keys.release.pub).code == 0

    info = json.loads(cli("inspect", tmp_path / "models.bundle.tar", "--json").out)
    listed = {a["ref"]: a for a in info["artifacts"]}
    assert set(listed) == {"registry.example.com/models/order-accuracy:1.3", "registry.example.com/models/vision:2.0",
                           f"{source.host}/flux/store-config:v7"}
    assert [f["title"] for f in listed["registry.example.com/models/vision:2.0"]["files"]] == \
        ["labels.txt", "weights/int8.bin"]
    assert listed[f"{source.host}/flux/store-config:v7"]["digest"] == upstream_digest
    text = cli("inspect", tmp_path / "models.bundle.tar").out
    assert "artifacts (3):" in text and "weights/int8.bin" in text

    imported = cli("import", tmp_path / "models.bundle.tar", "--site", running_site)
    assert imported.code == 0, imported.err
    assert "3 artifacts added" in imported.out

    # a consumer fetches every file, byte for byte, with the distribution API (what `oras pull` does)
    for ref, expected in (("registry.example.com/models/order-accuracy:1.3",
                           {"order-accuracy.onnx": models["order-accuracy.onnx"]}),
                          ("registry.example.com/models/vision:2.0",
                           {"labels.txt": models["vision/labels.txt"],
                            "weights/int8.bin": models["vision/weights/int8.bin"]})):
        session, base, manifest, digest = fetch(running_site, ref)
        assert digest == listed[ref]["digest"]
        assert manifest["artifactType"] == MODEL_TYPE and manifest["config"] == EMPTY_CONFIG
        got = {}
        for layer in manifest["layers"]:
            blob = session.get(f"{base}/blobs/{layer['digest']}", timeout=30)
            assert blob.status_code == 200 and sha(blob.content) == layer["digest"]
            got[layer["annotations"][TITLE]] = blob.content
        assert got == expected
    vision = fetch(running_site, "registry.example.com/models/vision:2.0")[2]
    assert {layer["mediaType"] for layer in vision["layers"]} == {"application/vnd.acme.model.layer.v1"}

    session, base, manifest, digest = fetch(running_site, f"{source.host}/flux/store-config:v7")
    assert digest == upstream_digest  # copied unchanged, like `oras copy`
    certs = tmp_path / "certs"  # skopeo, an independent reader, sees the same bytes
    certs.mkdir()
    (certs / "ca.crt").write_bytes((running_site / "pki" / "ca.pem").read_bytes())
    user, password = credentials(running_site)
    raw = subprocess.run([skopeo, "inspect", "--raw", "--cert-dir", str(certs), "--creds", f"{user}:{password}",
                          f"docker://{base.removeprefix('https://').replace('/v2/', '/', 1)}:v7"],
                         capture_output=True, check=True).stdout
    assert sha(raw) == upstream_digest
    assert session.get(f"{base}/blobs/{manifest['layers'][0]['digest']}", timeout=10).content == config

    # a Flux OCIRepository per artifact, valid by the source-controller CRD, named in the kustomization
    flux = running_site / "cluster" / "flux"
    resources = yaml.safe_load((flux / "kustomization.yaml").read_text())["resources"]
    sources = [yaml.safe_load((flux / name).read_text()) for name in resources if name.startswith("oci-")]
    assert len(sources) == 3
    schema = crd_schema("ocirepositories", "v1")
    registry = status_url(running_site).removeprefix("https://")
    by_url = {}
    for doc in sources:
        jsonschema.Draft7Validator(schema).validate(doc)
        assert doc["spec"]["secretRef"] == {"name": "site-registry"}
        assert doc["spec"]["certSecretRef"] == {"name": "site-ca"}
        by_url[doc["spec"]["url"]] = doc["spec"]
    model_repo = ImageReference.parse("registry.example.com/models/order-accuracy:1.3").site_repository
    model = by_url[f"oci://{registry}/{model_repo}"]
    assert model["ref"] == {"tag": "1.3"}
    assert model["layerSelector"] == {"mediaType": "application/vnd.oci.image.layer.v1.tar", "operation": "copy"}
    with pytest.raises(jsonschema.ValidationError):  # the schema does check
        jsonschema.Draft7Validator(schema).validate({**sources[0], "spec": {**sources[0]["spec"], "url": "https://x"}})

    again = cli("import", tmp_path / "models.bundle.tar", "--site", running_site)
    assert again.code == 0 and "already imported" in again.out


def test_a_delta_carries_only_the_changed_model_and_diff_names_it(
        cli: Callable[..., Run], keys: Keys, registry: Registry, models: dict[str, bytes], tmp_path: Path,
        make_site: SiteFactory) -> None:
    artifacts = f"""    - path: ./vision
      repository: registry.example.com/models/vision
      tag: "{{tag}}"
      artifactType: {MODEL_TYPE}
"""
    v1 = build(cli, keys, profile(tmp_path, "1.0.0", artifacts.format(tag="2.0")), tmp_path / "v1.bundle.tar")
    assert v1.code == 0, v1.err
    changed = os.urandom(1 << 20)
    (tmp_path / "vision/weights/int8.bin").write_bytes(changed)
    v2 = build(cli, keys, profile(tmp_path, "2.0.0", artifacts.format(tag="2.1")), tmp_path / "v2.bundle.tar",
               "--since", str(tmp_path / "v1.bundle.tar"))
    assert v2.code == 0, v2.err

    delta = json.loads(cli("inspect", tmp_path / "v2.bundle.tar", "--manifest").out)
    carried = {path[len("oci/blobs/"):].replace("/", ":") for path in delta["files"]}
    assert sha(changed) in carried  # the new model file travels
    assert sha(models["vision/weights/int8.bin"]) not in carried and sha(models["vision/labels.txt"]) not in carried
    assert f"oci/blobs/sha256/{sha(models['vision/labels.txt'])[7:]}" in delta["requires"]  # the site has it
    assert os.path.getsize(tmp_path / "v2.bundle.tar") < (1 << 20) + (200 << 10)

    d = json.loads(cli("diff", tmp_path / "v1.bundle.tar", tmp_path / "v2.bundle.tar", "--json").out)
    assert d["artifacts"]["added"] == ["registry.example.com/models/vision:2.1"]
    assert d["artifacts"]["removed"] == ["registry.example.com/models/vision:2.0"]
    assert "+ artifact registry.example.com/models/vision:2.1" in cli("diff", tmp_path / "v1.bundle.tar",
                                                                      tmp_path / "v2.bundle.tar").out

    site = make_site(registry=registry.url)
    early = cli("import", tmp_path / "v2.bundle.tar", "--site", site)
    assert early.code == 3 and "the site lacks" in early.err  # the delta needs v1's files
    for bundle in ("v1", "v2"):
        r = cli("import", tmp_path / f"{bundle}.bundle.tar", "--site", site)
        assert r.code == 0, r.err
    client = RegistryClient(registry.host)
    repo = ImageReference.parse("registry.example.com/models/vision:2.1").site_repository
    data, _, _ = client.get_manifest(repo, "2.1")
    layers = {layer["annotations"][TITLE]: layer["digest"] for layer in json.loads(data)["layers"]}
    assert layers == {"labels.txt": sha(models["vision/labels.txt"]), "weights/int8.bin": sha(changed)}
    for digest in layers.values():
        assert client.blob_exists(repo, digest)


def test_an_artifact_whose_file_title_climbs_out_is_refused_at_build(
        cli: Callable[..., Run], keys: Keys, source: Registry, tmp_path: Path) -> None:
    push_artifact(RegistryClient(source.host), "flux/evil", "1", {"../../etc/cron.d/evil": b"* * * * * root sh\n"})
    path = profile(tmp_path, "1.0.0", f"    - ref: {source.host}/flux/evil:1\n")
    r = build(cli, keys, path, tmp_path / "evil.bundle.tar")
    assert r.code == 3, r.err
    assert "../../etc/cron.d/evil" in r.err and "not a relative file name inside the artifact" in r.err
    assert not (tmp_path / "evil.bundle.tar").exists()


def test_a_container_image_listed_as_an_artifact_is_refused(
        cli: Callable[..., Run], keys: Keys, source: Registry, tmp_path: Path) -> None:
    from devtools import images as im

    im.push_image(RegistryClient(source.host), "apps/web", "1", [im.random_layer(1000, 5)])
    r = build(cli, keys, profile(tmp_path, "1.0.0", f"    - ref: {source.host}/apps/web:1\n"), tmp_path / "b.tar")
    assert r.code == 2 and "is a container image" in r.err and "spec.images" in r.err


@pytest.mark.parametrize(("item", "message"), [
    ("    - path: ./m.onnx\n      repository: r.example.com/m\n      tag: '1'\n",
     "missing required key 'artifactType'"),
    ("    - ref: r.example.com/m:1\n      path: ./m.onnx\n", "needs either ref"),
    ("    - ref: r.example.com/m:1\n      tag: '2'\n", "tag goes with path"),
    ("    - path: ./m.onnx\n      repository: r.example.com/m\n      tag: '1'\n      artifactType: model\n",
     "is not a media type"),
    ("    - path: ./m.onnx\n      repository: r.example.com/m\n      tag: 'a b'\n      artifactType: a/b\n",
     "is not a tag"),
])
def test_artifact_profile_errors_name_the_line(item: str, message: str, tmp_path: Path) -> None:
    from bundler.errors import ProfileError
    from bundler.profile import parse_profile

    text = "apiVersion: bundler/v1\nkind: Profile\nmetadata: {name: m, version: 1.0.0}\nspec:\n  artifacts:\n" + item
    with pytest.raises(ProfileError) as caught:
        parse_profile(text, "p.yaml", kinds=KINDS)
    assert message in caught.value.message and "p.yaml:" in caught.value.message


def test_a_model_packed_as_an_image_is_mounted_from_containerds_snapshot(
        cli: Callable[..., Run], keys: Keys, running_site: Path, skopeo: str, tmp_path: Path) -> None:
    if shutil.which("containerd") is None:
        missing("containerd")
    files = {"order-accuracy.onnx": os.urandom(3 << 20), "labels.txt": b"cup\nplate\n",
             "encoder/weights-int8.bin": os.urandom(65 << 20)}  # past 64 MiB: a layer of its own
    for name, data in files.items():
        (tmp_path / "model" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "model" / name).write_bytes(data)
    path = profile(tmp_path, "1.0.0", """    - path: ./model
      repository: registry.example.com/models/order-accuracy
      tag: "8.1"
      as: image
      platforms: [linux/amd64]
""")
    built = build(cli, keys, path, tmp_path / "m.bundle.tar")
    assert built.code == 0, built.err
    again = build(cli, keys, path, tmp_path / "m-again.bundle.tar")  # the same files, the same image
    first, second = (json.loads(cli("inspect", tmp_path / name, "--json").out)["artifacts"][0]
                     for name in ("m.bundle.tar", "m-again.bundle.tar"))
    assert again.code == 0 and first["digest"] == second["digest"]
    assert first["form"] == "image" and first["directory"] == "/models"
    assert {f["title"]: f["digest"] for f in first["files"]} == {name: sha(data) for name, data in files.items()}
    shown = cli("inspect", tmp_path / "m.bundle.tar")
    assert "packed as an image, files under /models" in shown.out
    assert cli("verify", tmp_path / "m.bundle.tar", "--key", keys.release.pub).code == 0

    imported = cli("import", tmp_path / "m.bundle.tar", "--site", running_site)
    assert imported.code == 0, imported.err
    _, _, manifest, digest = fetch(running_site, "registry.example.com/models/order-accuracy:8.1")
    assert digest == first["digest"]
    assert [layer["mediaType"] for layer in manifest["layers"]] == ["application/vnd.oci.image.layer.v1.tar"] * 2
    assert not list((running_site / "cluster" / "flux").glob("oci-*.yaml"))  # mounted by nodes, not fetched by Flux

    read = node_reads(running_site, "registry.example.com/models/order-accuracy:8.1", "linux/amd64", "models",
                      tmp_path)
    assert read == {name: sha(data) for name, data in files.items()}

    # the next release changes a small file: its delta carries the small files' layer, not the large one
    (tmp_path / "model" / "labels.txt").write_bytes(b"cup\nplate\nfork\n")
    (tmp_path / "models-1.1.0.yaml").write_text(path.read_text().replace("1.0.0", "1.1.0").replace('"8.1"', '"8.2"'))
    delta = build(cli, keys, tmp_path / "models-1.1.0.yaml", tmp_path / "m-delta.bundle.tar",
                  "--since", str(tmp_path / "m.bundle.tar"))
    assert delta.code == 0, delta.err
    carried = json.loads(cli("inspect", tmp_path / "m-delta.bundle.tar", "--manifest").out)
    big = f"oci/blobs/sha256/{manifest['layers'][1]['digest'][7:]}"  # the 65 MiB file's own layer
    assert big in carried["requires"] and big not in carried["files"]
    assert os.path.getsize(tmp_path / "m-delta.bundle.tar") < 8 << 20
    assert cli("import", tmp_path / "m-delta.bundle.tar", "--site", running_site).code == 0
    _, _, manifest_2, _ = fetch(running_site, "registry.example.com/models/order-accuracy:8.2")
    assert manifest_2["layers"][1] == manifest["layers"][1] and manifest_2["layers"][0] != manifest["layers"][0]

    # the directory climbs out, artifactType with an image: refused at build, naming the line
    bad = profile(tmp_path, "1.0.1", """    - path: ./model
      repository: registry.example.com/models/order-accuracy
      tag: "8.2"
      as: image
      directory: /models/../etc
      artifactType: application/vnd.acme.model
""")
    refused = build(cli, keys, bad, tmp_path / "bad.bundle.tar")
    assert refused.code != 0 and "must not hold . or .." in refused.err and "goes with as: artifact" in refused.err
    assert not (tmp_path / "bad.bundle.tar").exists()


def test_a_model_image_for_two_platforms_is_an_index_over_the_same_layers(
        cli: Callable[..., Run], keys: Keys, running_site: Path, tmp_path: Path) -> None:
    """An arm64 node's containerd picks its own manifest from the index and mounts the same files."""
    if shutil.which("containerd") is None:
        missing("containerd")
    files = {"model.onnx": os.urandom(1 << 20), "labels.txt": b"cup\n"}
    for name, data in files.items():
        (tmp_path / "model" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "model" / name).write_bytes(data)
    path = profile(tmp_path, "1.0.0", """    - path: ./model
      repository: registry.example.com/models/tiny
      tag: "1"
      as: image
      directory: /srv/model
      platforms: [linux/amd64, linux/arm64]
""")
    built = build(cli, keys, path, tmp_path / "m.bundle.tar")
    assert built.code == 0, built.err
    assert cli("import", tmp_path / "m.bundle.tar", "--site", running_site).code == 0
    session, base, index, _ = fetch(running_site, "registry.example.com/models/tiny:1",
                                    accept="application/vnd.oci.image.index.v1+json")
    assert [(m["platform"]["os"], m["platform"]["architecture"]) for m in index["manifests"]] == [
        ("linux", "amd64"), ("linux", "arm64")]
    layers = [session.get(f"{base}/manifests/{m['digest']}", headers={"Accept": m["mediaType"]},
                          timeout=10).json()["layers"] for m in index["manifests"]]
    assert layers[0] == layers[1]  # one set of layers, carried and stored once

    assert node_reads(running_site, "registry.example.com/models/tiny:1", "linux/arm64", "srv/model", tmp_path) == {
        name: sha(data) for name, data in files.items()}
