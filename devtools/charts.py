"""Chart repositories for the tests and the demo: charts packaged with `tar`, an index.yaml, and a
real HTTP server on loopback; and an OCI chart pushed the way `helm push` stores one."""

from __future__ import annotations

import functools
import hashlib
import json
import re
import shlex
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from bundler.oci.client import RegistryClient


def package(workdir: Path, name: str, version: str, values: Any = None,
            dependencies: list[dict[str, str]] | None = None, annotations: dict[str, str] | None = None,
            app_version: str = "1.0") -> Path:
    """Write a chart directory and package it as NAME-VERSION.tgz in `workdir` (as `tar czf` would, with
    fixed times and owners: the same chart is the same bytes)."""
    source = workdir / "src" / f"{name}-{version}"
    chart = source / name
    (chart / "templates").mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"apiVersion": "v2", "name": name, "version": version, "appVersion": app_version,
                            "description": f"{name} for the tests", "type": "application"}
    if dependencies:
        meta["dependencies"] = dependencies
    if annotations:
        meta["annotations"] = annotations
    (chart / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    (chart / "values.yaml").write_text(yaml.safe_dump(values or {}, sort_keys=False))
    (chart / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  chart: " + name + "\n")
    archive = workdir / f"{name}-{version}.tgz"
    tar = f"tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - -C {shlex.quote(str(source))}"
    subprocess.run(f"{tar} {shlex.quote(name)} | gzip -n > {shlex.quote(str(archive))}", shell=True, check=True)
    return archive


def write_index(repo_dir: Path, archives: list[Path], digests: dict[str, str] | None = None) -> None:
    """index.yaml as `helm repo index` writes it: entries by name, each with version, urls, digest."""
    entries: dict[str, list[dict[str, Any]]] = {}
    for archive in archives:
        name, version = re.fullmatch(r"(.+?)-(v?\d.*)", archive.name.removesuffix(".tgz")).groups()  # type: ignore[union-attr]
        digest = (digests or {}).get(archive.name) or hashlib.sha256(archive.read_bytes()).hexdigest()
        entries.setdefault(name, []).append({"apiVersion": "v2", "name": name, "version": version,
                                             "urls": [archive.name], "digest": digest})
    (repo_dir / "index.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "entries": entries}))


@contextmanager
def serve(directory: Path, port: int = 0) -> Iterator[str]:
    """Serve a directory over HTTP on loopback (a free port unless given); yields its URL."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), functools.partial(Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def push_oci_chart(client: RegistryClient, repo: str, archive: Path) -> str:
    """Push a chart as `helm push` does (config = Chart.yaml as JSON, one chart layer); return its digest."""
    import io
    import tarfile

    tgz = archive.read_bytes()
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/Chart.yaml"))
        meta = yaml.safe_load(tar.extractfile(member).read())  # type: ignore[union-attr]
    config = json.dumps(meta, separators=(",", ":")).encode()
    for blob in (config, tgz):
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        client.push_blob(repo, digest, len(blob), lambda b=blob: iter([b]))
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json",
                   "digest": "sha256:" + hashlib.sha256(config).hexdigest(), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
                    "digest": "sha256:" + hashlib.sha256(tgz).hexdigest(), "size": len(tgz)}],
        "annotations": {"org.opencontainers.image.title": meta["name"],
                        "org.opencontainers.image.version": meta["version"],
                        "org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
    }).encode()
    client.put_manifest(repo, str(meta["version"]), manifest, "application/vnd.oci.image.manifest.v1+json")
    return "sha256:" + hashlib.sha256(manifest).hexdigest()
