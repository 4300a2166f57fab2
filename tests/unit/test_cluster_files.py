"""The cluster files a default site writes, checked against their clients' published schemas: the Flux
source-controller CRDs (vendored from fluxcd/source-controller config/crd/bases), the K3s
registries.yaml format, and Kubernetes Secrets with the keys Flux reads."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from cryptography import x509

from bundler.bundle.manifest import BundleManifest
from bundler.keyfiles import keygen
from bundler.kinds.charts.site import write_helm_repository
from bundler.kinds.repos.site import write_flux_git_repositories
from bundler.site.cluster import write_cluster_config
from bundler.site.state import ImportedRelease, SiteState
from tests.helpers import crd_schema, make_site

ASSETS = Path(__file__).resolve().parent.parent / "assets"
# core/v1 Secret, the fields of the Kubernetes OpenAPI definition io.k8s.api.core.v1.Secret a manifest may set
SECRET_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "metadata"],
    "properties": {
        "apiVersion": {"const": "v1"}, "kind": {"const": "Secret"},
        "metadata": {"type": "object", "required": ["name"],
                     "properties": {"name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                                    "namespace": {"type": "string"}}},
        "type": {"type": "string"}, "immutable": {"type": "boolean"},
        "data": {"type": "object", "additionalProperties": {"type": "string", "contentEncoding": "base64"}},
        "stringData": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def validate(doc: dict[str, Any], schema: dict[str, Any]) -> None:
    jsonschema.Draft7Validator(schema).validate(doc)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("cluster")
    keygen(work / "release")
    config = make_site(work / "site", None, [work / "release.pub"], 1, registry_listen="127.0.0.1:15443",
                       http_listen="127.0.0.1:18443")
    state = SiteState(config.directory / "state.json")
    state.record("store", "1.0.0", "sha256:" + "1" * 64, [], ["docker.io", "ghcr.io"])
    subprocess.run(["git", "init", "--bare", "-q", "-b", "main", str(config.directory / "git" / "gitops.git")],
                   check=True)
    write_cluster_config(config, state)
    write_helm_repository(config)
    write_flux_git_repositories(config)
    write_cluster_config(config, state)  # the kustomization lists what exists now
    return config.directory


def flux_documents(site: Path) -> dict[tuple[str, str], dict[str, Any]]:
    flux = site / "cluster" / "flux"
    resources = yaml.safe_load((flux / "kustomization.yaml").read_text())["resources"]
    docs = [d for name in resources for d in yaml.safe_load_all((flux / name).read_text()) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def secret_value(secret: dict[str, Any], key: str) -> str:
    if key in secret.get("stringData", {}):
        return str(secret["stringData"][key])
    return base64.b64decode(secret["data"][key]).decode()


def test_flux_sources_validate_against_the_source_controller_crds(site: Path) -> None:
    docs = flux_documents(site)
    helm = docs[("HelmRepository", "site-charts")]
    git = docs[("GitRepository", "gitops")]
    validate(helm, crd_schema("helmrepositories", "v1"))
    validate(git, crd_schema("gitrepositories", "v1"))
    assert helm["spec"]["type"] == "oci" and helm["spec"]["url"] == "oci://127.0.0.1:15443/charts"
    assert git["spec"]["url"] == "https://127.0.0.1:18443/git/gitops.git"
    # the schema really checks: a wrong shape is refused
    with pytest.raises(jsonschema.ValidationError):
        validate({**helm, "spec": {**helm["spec"], "secretRef": "site-registry"}}, crd_schema("helmrepositories", "v1"))
    with pytest.raises(jsonschema.ValidationError):
        validate({**helm, "spec": {**helm["spec"], "type": "git"}}, crd_schema("helmrepositories", "v1"))


def test_every_secret_a_source_names_exists_with_the_keys_flux_reads(site: Path) -> None:
    docs = flux_documents(site)
    ca = (site / "pki" / "ca.pem").read_text()
    client = json.loads((site / "credentials.json").read_text())
    for (kind, _), doc in docs.items():
        if kind == "Secret":
            jsonschema.Draft202012Validator(SECRET_SCHEMA).validate(doc)

    helm = docs[("HelmRepository", "site-charts")]["spec"]
    registry = docs[("Secret", helm["secretRef"]["name"])]
    assert registry["type"] == "kubernetes.io/dockerconfigjson"
    auths = json.loads(secret_value(registry, ".dockerconfigjson"))["auths"]["127.0.0.1:15443"]
    assert (auths["username"], auths["password"]) == (client["username"], client["password"])
    assert base64.b64decode(auths["auth"]).decode() == f"{client['username']}:{client['password']}"
    cert = docs[("Secret", helm["certSecretRef"]["name"])]
    assert secret_value(cert, "ca.crt") == ca
    x509.load_pem_x509_certificate(secret_value(cert, "ca.crt").encode())

    git = docs[("Secret", docs[("GitRepository", "gitops")]["spec"]["secretRef"]["name"])]
    assert secret_value(git, "ca.crt") == ca and "caFile" not in git.get("stringData", {})
    assert (secret_value(git, "username"), secret_value(git, "password")) == (client["username"], client["password"])


def test_k3s_registries_yaml_validates_and_rewrites_to_the_site_paths(site: Path) -> None:
    doc = yaml.safe_load((site / "cluster" / "registries.yaml").read_text())
    schema = json.loads((ASSETS / "k3s" / "registries.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(doc)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate({**doc, "configs": {"x": {"tls": {"ca": "pem"}}}})
    assert set(doc["mirrors"]) == {"docker.io", "ghcr.io"}
    for host, mirror in doc["mirrors"].items():
        assert mirror["endpoint"] == ["https://127.0.0.1:15443"]
        (pattern, replacement), = mirror["rewrite"].items()
        assert re.sub(pattern, replacement.replace("$1", r"\1"), "library/nginx") == f"{host}/library/nginx"
    config = doc["configs"]["127.0.0.1:15443"]
    assert Path(config["tls"]["ca_file"]).is_absolute() and Path(config["tls"]["ca_file"]).exists()
    client = json.loads((site / "credentials.json").read_text())
    assert config["auth"] == {"username": client["username"], "password": client["password"]}


def test_containerd_hosts_toml_is_toml_with_the_site_ca_and_no_secret(site: Path) -> None:
    import tomllib

    hosts = tomllib.loads((site / "cluster" / "certs.d" / "docker.io" / "hosts.toml").read_text())
    assert hosts["server"] == "https://registry-1.docker.io"
    (mirror, settings), = hosts["host"].items()
    assert mirror == "https://127.0.0.1:15443/v2/docker.io"
    assert settings["capabilities"] == ["pull", "resolve"] and settings["override_path"] is True
    assert Path(settings["ca"]).is_absolute() and Path(settings["ca"]).read_text().startswith("-----BEGIN")
    assert "header" not in settings  # credentials reach containerd through its CRI config, never this file


def test_rewrite_rules_put_a_source_registry_under_a_path_and_refuse_two_on_one(tmp_path: Path) -> None:
    from bundler.errors import UsageError
    from bundler.pipeline.rules import SharedTargets
    from bundler.site.sections import check_rewrites

    assert check_rewrites([("docker.io/*", "hub/*")]) == (("docker.io", "hub"),)
    for rules, message in [([("docker.io/*", "mirror/*"), ("quay.io/*", "mirror/*")], "docker.io/* and quay.io/*"),
                           ([("docker.io", "hub")], "each ending in /*"),
                           ([("docker.io/*", "Hub/*")], "each ending in /*"),
                           ([("docker.io/*", "a/*"), ("docker.io/*", "b/*")], "rewritten twice")]:
        with pytest.raises(UsageError, match=re.escape(message)):
            check_rewrites(rules)
    keygen(tmp_path / "release")
    site = make_site(tmp_path / "s", "http://127.0.0.1:5000/edge", [tmp_path / "release.pub"], 1,
                     rewrites=[("docker.io/*", "hub/*"), ("quay.io/*", "ghcr.io/*")])
    assert site.image_repository("docker.io", "library/nginx") == "edge/hub/library/nginx"
    assert site.image_repository("registry.example.com:5000", "a") == "edge/registry.example.com_5000/a"
    state = SiteState.load(site.directory)
    state.bundles.append(ImportedRelease("x", "1", "sha256:" + "1" * 64, sources=("quay.io", "ghcr.io")))
    manifest = BundleManifest("x", "2.0.0", "2026-01-01T00:00:00Z", "x.yaml", {})  # no images of its own
    found = SharedTargets(site, state).problems(manifest, "sha256:" + "0" * 64)
    assert [p.code for p in found] == ["target-shared"] and "quay.io" in found[0].message \
        and "ghcr.io" in found[0].message
