"""`make demo`: the main job on local sample sources, start to finish, with real registries.

Starts a source registry (127.0.0.1:15000) from the Distribution binary, pushes the sample images,
makes two keys (release, security), builds and signs profiles/demo.yaml, verifies it, countersigns
it, then makes the default site a technician makes (`site init` + `site up` under .demo/site: the
embedded registry on 127.0.0.1:15001 with TLS and token auth, the HTTPS service on 127.0.0.1:15443)
that needs both signatures, imports the bundle, and prints how to pull from the site with the
cluster's (pull-only) account. `--stop` stops the site and the source registry.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from bundler.kinds import KINDS
from bundler.oci.client import RegistryClient
from bundler.oci.reference import ImageReference
from bundler.profile import load_profile
from bundler.site.registry_process import start_registry
from devtools import charts
from devtools.packages import build_deb
from devtools.samples import push_samples

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo"
PROFILE = ROOT / "profiles" / "demo.yaml"
SOURCE_PORT, SITE_PORT, CHART_PORT, GIT_PORT = 15000, 15001, 15002, 15443


def make_gitops_repo(path: Path) -> None:
    """A small GitOps repository: a deployment of the demo image, on main, tagged v1.0.0."""
    path.mkdir(parents=True)
    (path / "hello.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: hello}\nspec:\n  selector:\n"
        "    matchLabels: {app: hello}\n  template:\n    metadata: {labels: {app: hello}}\n    spec:\n"
        f"      containers:\n        - {{name: hello, image: 127.0.0.1:{SOURCE_PORT}/demo/hello:1.0}}\n")
    author = ["-c", "user.email=release@example.com", "-c", "user.name=Release Engineering"]
    for args in (["init", "-q", "-b", "main"], ["add", "."], [*author, "commit", "-qm", "hello"],
                 [*author, "tag", "-a", "v1.0.0", "-m", "first release"]):
        subprocess.run(["git", *args], cwd=path, check=True)


def stop() -> None:
    if (DEMO / "site" / "site.yaml").exists():
        subprocess.call([sys.executable, "-m", "bundler.cli", "site", "down", str(DEMO / "site")])
    for pidfile in DEMO.glob("*/pid"):
        try:
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
            print(f"stopped the registry of {pidfile.parent.name}")
        except (ProcessLookupError, ValueError):
            pass
        pidfile.unlink()


def bundler(*args: str) -> None:
    print(f"\n$ bundler {' '.join(args)}", flush=True)
    code = subprocess.call([sys.executable, "-m", "bundler.cli", *args], cwd=DEMO)
    if code != 0:
        sys.exit(f"demo failed: bundler {args[0]} exited {code}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stop", action="store_true", help="stop the demo registries")
    if parser.parse_args().stop:
        stop()
        return
    stop()
    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir()
    source = start_registry(DEMO / "source", port=SOURCE_PORT)
    (DEMO / "source" / "pid").write_text(str(source.process.pid))
    print(f"started the source registry at {source.url}")

    samples = push_samples(RegistryClient(f"127.0.0.1:{SOURCE_PORT}"))
    wanted = {str(spec.ref) for spec in load_profile(PROFILE, kinds=KINDS).items("images")}
    pushed = {str(ImageReference.parse(ref)) for ref in samples.refs}
    if wanted != pushed:
        sys.exit(f"profiles/demo.yaml and the sample images differ: {sorted(wanted ^ pushed)}")
    print(f"pushed {len(samples.refs)} sample images ({samples.unique_bytes / 1e6:.1f} MB) to the source")

    chart_repo = DEMO / "chart-repo"
    chart_repo.mkdir()
    values = {"image": {"registry": f"127.0.0.1:{SOURCE_PORT}", "repository": "demo/hello", "tag": "1.0"}}
    archives = [charts.package(chart_repo, "hello-chart", v, values=values) for v in ("0.1.0", "0.2.0", "1.0.0")]
    charts.write_index(chart_repo, archives)

    make_gitops_repo(DEMO / "gitops")
    build_deb(DEMO, "edge-agent")
    (DEMO / "models").mkdir()
    (DEMO / "models" / "order-accuracy.onnx").write_bytes(hashlib.sha256(b"demo model").digest() * 8192)

    bundle = "demo-1.0.0.bundle.tar"
    bundler("keygen", "release")  # release engineering builds and signs
    bundler("keygen", "security")  # security reviews and countersigns: a two-person rule
    with charts.serve(chart_repo, port=CHART_PORT):
        bundler("build", str(PROFILE), "-o", bundle, "--key", "release.key")
    bundler("inspect", bundle)
    bundler("verify", bundle, "--key", "release.pub")
    bundler("sign", bundle, "--key", "security.key", "--check-key", "release.pub")
    # --as-root: this checkout's interpreter may live where other users cannot run it (pyenv under /root);
    # a site made as root without it gets its own user, and every service runs as that user
    bundler("site", "init", "--as-root", "site", "--registry-listen", f"127.0.0.1:{SITE_PORT}",
            "--trust-key", "release.pub", "--trust-key", "security.pub", "--threshold", "2",
            "--http-listen", f"127.0.0.1:{GIT_PORT}", "--group", "line-1")
    bundler("site", "up", "site")
    bundler("import", bundle, "--site", "site")
    bundler("import", bundle, "--site", "site")
    bundler("site", "status", "site")
    bundler("updates", "list", "--site", "site")
    bundler("updates", "enroll", "till-1", "--group", "line-1", "--site", "site")  # prints its configuration

    site = f"127.0.0.1:{SITE_PORT}"
    hello = f"{site}/127.0.0.1_{SOURCE_PORT}/demo/hello:1.0"
    print(f"""
The site registry (TLS from the site CA, token auth) serves every image under its source name, with
the same digests, to the cluster's pull-only account in .demo/site/credentials.json:
  CREDS=site:$(jq -r .password .demo/site/credentials.json)
  mkdir -p .demo/certs && cp .demo/site/pki/ca.pem .demo/certs/ca.crt
  skopeo inspect --cert-dir .demo/certs --creds $CREDS docker://{hello}
  skopeo list-tags --cert-dir .demo/certs --creds $CREDS docker://{site}/charts/hello-chart
  cat .demo/site/cluster/registries.yaml              # for K3s: pulls docker.io/... names from the site
  cat .demo/site/cluster/flux/helm-repository.yaml    # for Flux users (and the secrets it names)
  cat .demo/site/cluster/flux/oci-*.yaml              # a Flux OCIRepository per OCI artifact (the model)
  curl --cacert .demo/site/pki/ca.pem -u $CREDS https://127.0.0.1:{GIT_PORT}/   # the site's status page
  skopeo inspect --raw --cert-dir .demo/certs --creds $CREDS \\
      docker://{site}/models.example.com/store/order-accuracy:1.3
  GIT_SSL_CAINFO=.demo/site/pki/ca.pem git clone \\
      https://$CREDS@127.0.0.1:{GIT_PORT}/git/gitops.git
  # update clients are enrolled per group (the apt, dnf and curl configuration for till-1 is printed above);
  # a group's indexes and payloads go to its enrolled clients only
The site and the source registry keep running; `make demo-stop` stops them. The bundle is .demo/{bundle}.""")


if __name__ == "__main__":
    main()
