"""A site that seeds a registry it does not run, as a Harbor project: a real Distribution registry with
its own CA (TLS) and token authentication, its token server granting a robot account pull and push
under `edge/` only (as Harbor's core does for a project's robot account; a small HTTP server here,
with bundler's token signing), the site given `--registry https://HOST/edge` with `--registry-ca` and
`--registry-credentials`. Everything lands under `edge/`, skopeo pulls it by the prefixed name with
the same digest, containerd by the original name through the rewritten hosts.toml, a re-import is a
no-op, a delta imports; a wrong CA, a project the account may not push to and an account the token
server refuses are exit 4 with a hint, before a blob is sent."""

from __future__ import annotations

import base64
import http.server
import json
import os
import subprocess
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from bundler.oci.client import RegistryClient
from bundler.site import tokens
from bundler.site.pki import CA_CERT, PKI_DIR, SERVER_CERT, SERVER_KEY, create_pki, ensure_token_signer, load_token_key
from bundler.site.registry_process import RegistryProcess, start_registry
from devtools import images as im
from tests.conftest import Keys, Registry, Run, SiteFactory
from tests.helpers import containerd, skopeo_digest

USER, PASSWORD = "robot$edge+import", "s3cret-robot"


class ProjectTokens(http.server.BaseHTTPRequestHandler):
    """A registry token server with projects: the robot account gets pull and push on `edge/...`
    only, nothing elsewhere (no catalog, no other project); wrong credentials get 401."""

    key: ec.EllipticCurvePrivateKey

    def do_GET(self) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self.send_response(401)
            self.end_headers()
            return
        access = []
        for text in " ".join(query.get("scope", [])).split():
            scope = tokens.Scope.parse(text)
            if scope is not None and scope.type == "repository" and scope.name.startswith("edge/"):
                access.append({"type": "repository", "name": scope.name,
                               "actions": sorted(set(scope.actions) & {"pull", "push"})})
        body = json.dumps({"token": tokens.issue_token(self.key, USER, access)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[RegistryProcess, Path]]:
    """The registry the site seeds: TLS from its own CA, tokens from a server with projects."""
    work = tmp_path / "hub"
    create_pki(work, "hub", [], ["127.0.0.1"])
    pki = work / PKI_DIR
    cert, _ = ensure_token_signer(work)
    handler = type("Tokens", (ProjectTokens,), {"key": load_token_key(work)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    token = {"realm": f"http://127.0.0.1:{server.server_address[1]}/service/token", "service": tokens.SERVICE,
             "issuer": tokens.ISSUER, "rootcertbundle": str(cert)}
    registry = start_registry(work / "registry", tls=(pki / SERVER_CERT, pki / SERVER_KEY), ca_file=pki / CA_CERT,
                              token=token)
    try:
        yield registry, pki / CA_CERT
    finally:
        registry.stop()
        server.shutdown()


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
    refused = cli("site", "init", "--as-root", tmp_path / "never", "--registry", f"{target.url}/edge", "--trust-key",
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
    assert skopeo_digest(skopeo, where, certs, f"{USER}:{PASSWORD}") == digest
    again = cli("import", tmp_path / "s.tar", "--site", site)
    assert again.code == 0 and "already imported" in again.out

    # a delta (v2 --since v1) imports onto the project: only its new layer travels
    new_digest, _ = im.push_image(RegistryClient(registry.host), "store/pos", "2.0",
                                  [im.random_layer(300_000, 7), im.random_layer(200_000, 8)], oci=True)
    (tmp_path / "store-2.yaml").write_text((tmp_path / "store.yaml").read_text().replace("1.0.0", "2.0.0")
                                           .replace("pos:1.0", "pos:2.0"))
    delta = cli("build", tmp_path / "store-2.yaml", "-o", tmp_path / "d.tar", "--key", keys.release.key,
                "--since", tmp_path / "s.tar")
    assert delta.code == 0, delta.err
    assert cli("import", tmp_path / "d.tar", "--site", site).code == 0
    assert skopeo_digest(skopeo, where.replace(":1.0", ":2.0"), certs, f"{USER}:{PASSWORD}") == new_digest

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
    archive = tmp_path / "preload" / "store-2.0.0.tar"  # the release the site runs: the delta's
    assert (tmp_path / "preload" / "store-2.0.0.txt").read_text() == f"{registry.host}/store/pos:2.0\n"
    with containerd() as ctr:  # a node that starts before any registry answers: its agent images directory
        loaded = subprocess.run([*ctr, "images", "import", str(archive)], capture_output=True, text=True, timeout=120)
        assert loaded.returncode == 0, loaded.stdout + loaded.stderr
        listed = subprocess.run([*ctr, "images", "ls"], capture_output=True, text=True, check=True).stdout
        assert any(line.startswith(f"{registry.host}/store/pos:2.0") and new_digest in line
                   for line in listed.splitlines())

    # a rewrite rule: the source registry under a path of the site's choosing, pulled by the original name
    mirrored = make_site("mirrored", "--registry-ca", ca, "--registry-credentials", account(tmp_path / "robot-5.json"),
                         "--rewrite", f"{registry.host}/*=mirror/*", registry=f"{target.url}/edge")
    assert cli("import", tmp_path / "s.tar", "--site", mirrored).code == 0
    assert skopeo_digest(skopeo, f"{target.address}/edge/mirror/store/pos:1.0", certs, f"{USER}:{PASSWORD}") == digest
    with containerd() as ctr:
        pulled = subprocess.run([*ctr, "images", "pull", "--hosts-dir", str(mirrored / "cluster" / "certs.d"),
                                 "--user", f"{USER}:{PASSWORD}", f"{registry.host}/store/pos:1.0"],
                                capture_output=True, text=True, timeout=120)
        assert pulled.returncode == 0, pulled.stdout + pulled.stderr

    # the system's trust store does not know the hub's CA: exit 4, naming --registry-ca
    blind = make_site("blind", "--registry-credentials", account(tmp_path / "robot-2.json"),
                      registry=f"{target.url}/edge")
    untrusted = cli("import", tmp_path / "s.tar", "--site", blind)
    assert untrusted.code == 4 and "certificate does not verify" in untrusted.err and "--registry-ca" in untrusted.err

    # an account the registry refuses: exit 4 before a blob is sent
    stored = target.storage / "docker" / "registry" / "v2" / "repositories"
    before = sorted(str(p.parent.relative_to(stored)) for p in stored.rglob("_layers"))
    # everything under the project, the import's quarantine too (a robot account pushes nowhere else)
    assert before == sorted(["edge/bundler/quarantine", "edge/mirror/store/pos",
                             f"edge/{registry.host.replace(':', '_')}/store/pos"])
    other = make_site("other", "--registry-ca", ca, "--registry-credentials", account(tmp_path / "robot-3.json"),
                      registry=f"{target.url}/other")
    no_right = cli("import", tmp_path / "s.tar", "--site", other)
    assert no_right.code == 4 and "takes no push to other/" in no_right.err and "push right" in no_right.err
    denied = make_site("denied", "--registry-ca", ca, "--registry-credentials",
                       account(tmp_path / "robot-4.json", "wrong"), registry=f"{target.url}/edge")
    refused_account = cli("import", tmp_path / "s.tar", "--site", denied)
    assert refused_account.code == 4 and "refuses the site's account" in refused_account.err, refused_account.err
    assert "--registry-credentials" in refused_account.err
    after = sorted(str(p.parent.relative_to(stored)) for p in stored.rglob("_layers"))
    assert after == before  # the refused ones sent nothing, other/ included
