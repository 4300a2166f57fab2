"""What many test modules share (no test module imports another): the site's credentials and a
registry session as Docker's, OCI content pushed by hand (blobs, manifests, cosign signatures), an
image built by the Docker engine, the Flux CRDs' schemas."""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
import yaml
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from bundler.bundle.parts import write_index
from bundler.oci import media
from bundler.oci.client import RegistryClient
from bundler.pipeline.setup import create_site
from bundler.site.config import SiteConfig
from bundler.site.create import SiteSpec
from devtools import images as im

ASSETS = Path(__file__).resolve().parent / "assets"


def build_store_release(work: Path, version: str, images: list[str], key: Path) -> Path:
    """`store VERSION` of these images, built by the real `bundler build` into WORK and signed with KEY."""
    (work / f"{version}.yaml").write_text(
        f"apiVersion: bundler/v1\nkind: Profile\nmetadata: {{name: store, version: {version}}}\n"
        "spec:\n  images:\n" + "".join(f"    - {ref}\n" for ref in images))
    built = subprocess.run([sys.executable, "-m", "bundler.cli", "build", f"{version}.yaml", "-o",
                            f"store-{version}.bundle.tar", "--key", str(key)], cwd=work, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    return work / f"store-{version}.bundle.tar"


def make_site(directory: Path, registry_url: str | None, trust_keys: list[Path], threshold: int,
              groups: tuple[str, ...] | list[str] = (), **fields: Any) -> SiteConfig:
    """A site made in-process as `site init` makes it (as root: pytest's directories are root's
    alone); `fields` are SiteSpec's, `groups` the updates kind's option."""
    return create_site(SiteSpec(directory, trust_keys, threshold, registry_url, **fields),
                       {"groups": tuple(groups)}, as_root=True)


def credentials(site: Path, file: str = "credentials.json") -> tuple[str, str]:
    doc = json.loads((site / file).read_text())
    return doc["username"], doc["password"]


_MEASURED = ("import os, resource, subprocess, sys\n"
             "resource.setrlimit(resource.RLIMIT_CPU, (int(sys.argv[1]),) * 2)\n"
             "p = subprocess.Popen(sys.argv[2:])\n"
             "_, status, usage = os.wait4(p.pid, 0)\n"
             "sys.stderr.write(f'\\npeak-rss-kib {usage.ru_maxrss}\\n')\n"
             "sys.exit(os.waitstatus_to_exitcode(status))\n")


def run_bounded(args: list[str], cwd: Path, cpu_seconds: int = 60) -> tuple[int, str, int]:
    """A command's exit code, stderr and own peak RSS (KiB), with its CPU time capped (killed past
    it: work that runs away fails the test instead of timing it). Started by a small process of its
    own: a child's ru_maxrss starts from its parent's peak, and pytest's would hide the command's."""
    p = subprocess.run([sys.executable, "-c", _MEASURED, str(cpu_seconds), *args], cwd=cwd, capture_output=True,
                       text=True, timeout=cpu_seconds * 4)
    err, _, peak = p.stderr.rpartition("\npeak-rss-kib ")
    return p.returncode, err, int(peak) if peak.strip().isdigit() else -1


def split_bundle(bundle: Path, size: int, manifest_digest: str) -> Path:
    """Cut a finished bundle file into parts of `size` and write their index, as `build --split-size`
    leaves them (the whole file removed); returns the index."""
    data, written = bundle.read_bytes(), []
    for i, start in enumerate(range(0, len(data), size)):
        name, chunk = f"{bundle.name}.part-{i:03d}", data[start:start + size]
        (bundle.parent / name).write_bytes(chunk)
        written.append((name, len(chunk), hashlib.sha256(chunk).hexdigest()))
    bundle.unlink()
    return write_index(bundle, written, size, manifest_digest)


def skopeo_digest(skopeo: str, image: str, certs: Path, creds: str) -> str:
    """The manifest digest skopeo, an independent client, reads for `image` (a docker:// name without
    the scheme) with the CA in `certs` and `user:password`; the test fails with skopeo's message."""
    seen = subprocess.run([skopeo, "inspect", "--cert-dir", str(certs), "--creds", creds, f"docker://{image}"],
                          capture_output=True, text=True)
    assert seen.returncode == 0, seen.stderr
    return str(json.loads(seen.stdout)["Digest"])


def registry_session(site: Path, account: tuple[str, str] | None, scope: str) -> requests.Session:
    """A client of the site registry the way Docker and skopeo are: the registry's 401 names the token
    realm; the realm, asked with the account, gives a bearer token for `scope`."""
    session = requests.Session()  # verify on each request: REQUESTS_CA_BUNDLE would override session.verify
    session.request = functools.partial(session.request, verify=str(site / "pki" / "ca.pem"))  # type: ignore[method-assign]
    registry = json.loads(subprocess.run([sys.executable, "-m", "bundler.cli", "site", "status", str(site),
                                          "--json"], capture_output=True, text=True).stdout)
    challenge = session.get(f"{registry['services']['registry']['url']}/v2/", timeout=10)
    assert challenge.status_code == 401
    fields = dict(part.split("=", 1) for part in challenge.headers["WWW-Authenticate"][7:].split(","))
    realm, service = fields["realm"].strip('"'), fields["service"].strip('"')
    r = session.get(realm, params={"service": service, "scope": scope}, auth=account, timeout=10)
    if account is None or r.status_code != 200:
        session.headers["X-Token-Status"] = str(r.status_code)
        return session
    session.headers["Authorization"] = f"Bearer {r.json()['token']}"
    return session
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE = "dev.cosignproject.cosign/signature"
EMPTY = b"{}"
EMPTY_CONFIG = {"mediaType": "application/vnd.oci.empty.v1+json", "digest": im.sha(EMPTY), "size": 2}
SCAN_TYPE = "application/vnd.example.scan.v1+json"


def push_blob(client: RegistryClient, repo: str, data: bytes) -> dict[str, Any]:
    client.push_blob(repo, im.sha(data), len(data), lambda: iter([data]))
    return {"digest": im.sha(data), "size": len(data)}


def push_manifest(client: RegistryClient, repo: str, tag: str | None, doc: dict[str, Any]) -> tuple[str, int]:
    data = json.dumps(doc).encode()
    client.put_manifest(repo, tag or im.sha(data), data, doc["mediaType"])
    return im.sha(data), len(data)


def cosign_manifest(client: RegistryClient, repo: str,
                    layers: list[tuple[str, bytes, dict[str, str]]]) -> dict[str, Any]:
    """A manifest as cosign writes one: a small OCI config, then its layers with annotations."""
    config = push_blob(client, repo, b'{"architecture":"","os":"","config":{},"rootfs":{"type":"layers"}}')
    return {"schemaVersion": 2, "mediaType": media.OCI_MANIFEST,
            "config": {"mediaType": media.OCI_CONFIG, **config},
            "layers": [{"mediaType": kind, **push_blob(client, repo, data), "annotations": notes}
                       for kind, data, notes in layers]}


def sign(client: RegistryClient, host: str, repo: str, digest: str, key: ec.EllipticCurvePrivateKey) -> str:
    """A keyed cosign signature of `digest` under `sha256-<hex>.sig` (cosign's simple signing)."""
    payload = json.dumps({"critical": {"identity": {"docker-reference": f"{host}/{repo}"},
                                       "image": {"docker-manifest-digest": digest},
                                       "type": "cosign container image signature"}, "optional": None}).encode()
    signature = base64.b64encode(key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()
    doc = cosign_manifest(client, repo, [(SIMPLE_SIGNING, payload, {SIGNATURE: signature})])
    return push_manifest(client, repo, f"sha256-{digest[7:]}.sig", doc)[0]


def build_engine_image(client: Any, tag: str, message: str) -> None:
    dockerfile = f'FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT ["/bin/busybox", "echo", "{message}"]\n'
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        tar.add("/bin/busybox", arcname="busybox")
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile.encode()))
    context.seek(0)
    client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True)


def crd_schema(plural: str, version: str) -> dict[str, Any]:
    crd = yaml.safe_load((ASSETS / "flux" / f"{plural}.yaml").read_text())
    served = next(v for v in crd["spec"]["versions"] if v["name"] == version)
    return dict(served["schema"]["openAPIV3Schema"])


@contextlib.contextmanager
def containerd() -> Iterator[list[str]]:
    """A containerd of the test's own (no CRI plugin), stopped at the end; yields the `ctr` command
    that talks to it."""
    state = Path(f"/tmp/ctrd-{uuid.uuid4().hex[:8]}")  # the socket path must stay short
    state.mkdir()
    (state / "config.toml").write_text(
        f'version = 2\nroot = "{state}/root"\nstate = "{state}/state"\n'
        f'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "{state}/sock"\n')
    daemon = subprocess.Popen(["containerd", "-c", str(state / "config.toml")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if (state / "sock").exists():
                break
            time.sleep(0.1)
        yield ["ctr", "--address", str(state / "sock")]
    finally:
        daemon.terminate()
        daemon.wait(10)
        shutil.rmtree(state, ignore_errors=True)
