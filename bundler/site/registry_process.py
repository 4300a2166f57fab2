"""Run the CNCF Distribution registry binary (`registry` or Debian's `docker-registry`) on this host.

Used by the demo and the tests today, and by `bundler site up` for the embedded site registry.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from bundler import yamltext
from bundler.errors import BundlerError, UnreachableError
from bundler.jsontypes import Doc

BINARIES = ("registry", "docker-registry")


def registry_binary() -> str | None:
    for name in BINARIES:
        if path := shutil.which(name):
            return path
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def registry_config(storage: Path, address: str, htpasswd: Path | None = None,
                    tls: tuple[Path, Path] | None = None, token: dict[str, str] | None = None,
                    driver: Doc | None = None) -> Doc:
    """A Distribution registry configuration: filesystem storage (or `driver`: another storage
    driver's section, {"s3": {...}}), listening on `address` (host:port, or a unix socket's absolute
    path), optional TLS, and optional auth: htpasswd (basic), or `token` (auth.token: realm, service,
    issuer, rootcertbundle)."""
    http: Doc = {"addr": address, "net": "unix" if address.startswith("/") else "tcp"}
    if tls is not None:
        http["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
    config: Doc = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {**(driver or {"filesystem": {"rootdirectory": str(storage)}}), "delete": {"enabled": True}},
        "http": http,
    }
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": "bundler", "path": str(htpasswd)}}
    elif token is not None:
        config["auth"] = {"token": token}
    return config


@dataclass
class RegistryProcess:
    """A running Distribution registry: its URL, listen address, storage and process."""
    url: str
    address: str
    storage: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wait_until_answers(url: str, seconds: float = 20.0, process: subprocess.Popen[bytes] | None = None,
                       ca_file: Path | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise BundlerError(f"the registry for {url} exited with status {process.returncode}")
        try:
            answer = requests.get(f"{url}/v2/", timeout=1, verify=str(ca_file) if ca_file else True)
            if answer.status_code in (200, 401):
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise UnreachableError(f"registry {url} did not answer within {seconds:.0f} s")


def start_registry(directory: Path, host: str = "127.0.0.1", port: int | None = None,
                   htpasswd: Path | None = None, tls: tuple[Path, Path] | None = None,
                   ca_file: Path | None = None, token: dict[str, str] | None = None) -> RegistryProcess:
    """Start a registry storing under DIRECTORY/storage; return once /v2/ answers.

    With `htpasswd` (bcrypt entries), the registry asks for basic auth on every request, with `token`
    for a token from that token server; with `tls` (certificate, key) it serves HTTPS (`ca_file`:
    what checks its certificate while waiting).
    """
    binary = registry_binary()
    if binary is None:
        raise BundlerError("no registry binary found (registry or docker-registry)",
                           hint="apt-get install docker-registry")
    directory.mkdir(parents=True, exist_ok=True)
    storage = directory / "storage"
    address = f"{host}:{port or free_port(host)}"
    config = directory / "config.yml"
    config.write_text(yamltext.dump(registry_config(storage, address, htpasswd, tls, token), sort_keys=True))
    log = open(directory / "registry.log", "ab")  # noqa: SIM115 - the child keeps it
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    url = f"{'https' if tls else 'http'}://{address}"
    try:
        wait_until_answers(url, process=process, ca_file=ca_file)
    except BaseException:
        process.kill()
        raise
    return RegistryProcess(url, address, storage, process)
