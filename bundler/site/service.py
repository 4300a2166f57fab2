"""`site up`, `site down`, `site status`: the site's background services and their health.

`site up` starts, in the background, the HTTPS service (the registry's token server, Git server
and update cache: the Python application on a unix socket, then its front, nginx, which terminates
TLS and faces the network: site/front.py), then the embedded registry (the Distribution binary
when it is installed, else the `registry:2` image through the local Docker engine) with TLS from the site CA and token
authentication. Each records what it started under DIR/run and logs under DIR/logs, and `site up`
returns once every service answers its health check; when one fails, it stops what it started and
says which one failed and why. `site down` stops exactly what `site up` started. Running `site up`
again (after a reboot, say) starts only what is not running, and upgrades a site made by an older
bundler (token authentication, a pull-only client account) without changing the client password.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import requests

from bundler import tools, yamltext
from bundler.errors import BundlerError, UnreachableError
from bundler.fsutil import atomic_write, make_dirs, own_like_parent
from bundler.site import figures, tokens
from bundler.site.auth import upgrade_credentials
from bundler.site.config import LOG_DIR, REGISTRY_DIR, REGISTRY_STORAGE, RUN_DIR, SITE_FILE, SiteConfig, load_site
from bundler.site.front import (
    FrontRule,
    app_socket,
    front_command,
    front_config,
    front_config_file,
    low_port,
    registry_socket,
    write_config,
)
from bundler.site.identity import ensure_site_key
from bundler.site.pki import PKI_DIR, ensure_token_signer
from bundler.site.registry_process import registry_binary, registry_config

REGISTRY_IMAGE = "registry:2"


def _get(url: str, site: SiteConfig, timeout: float) -> int | None:
    try:
        return requests.get(url, verify=str(site.ca_file), timeout=timeout).status_code
    except requests.RequestException:
        return None


def http_healthy(site: SiteConfig, timeout: float = 2.0) -> bool:
    """The HTTPS service answers through its front (TLS, nginx, the application behind it)."""
    return _get(f"{site.http_url}/healthz", site, timeout) == 200


def _socket_answers(path: Path, url: str, statuses: tuple[bytes, ...], timeout: float) -> bool:
    """A service behind the front answers `url` on its unix socket with one of `statuses`."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(b"GET " + url.encode() + b" HTTP/1.0\r\nHost: site\r\n\r\n")
            return sock.recv(64)[9:12] in statuses
    except OSError:
        return False


def app_healthy(site: SiteConfig, timeout: float = 2.0) -> bool:
    """The application answers on its unix socket (before the front is started in front of it)."""
    return _socket_answers(app_socket(site), "/healthz", (b"200",), timeout)


def registry_process_healthy(site: SiteConfig, timeout: float = 2.0) -> bool:
    """The embedded registry answers on its unix socket (401: it wants a token)."""
    return _socket_answers(registry_socket(site), "/v2/", (b"200", b"401"), timeout)


def registry_healthy(site: SiteConfig, timeout: float = 2.0) -> bool:
    if site.embedded_registry:  # answers /v2/ with 401 (it wants credentials) when it is up
        return _get(f"{site.registry.url}/v2/", site, timeout) in (200, 401)
    try:
        site.registry_client(jobs=1).ping()
        return True
    except BundlerError:
        return False


# --- processes and containers we started --------------------------------------------------------


SYNC_SETTINGS = "hub-sync.json"  # written by `site sync --service`: site up then runs the sync service


def site_marker(site: SiteConfig) -> bytes:
    """What the command line of a service of this site holds: the site's directory."""
    return str(site.directory.resolve()).encode()


@dataclass(frozen=True)
class Service:
    """One of the site's background processes: its name (its pid file run/NAME.pid, its log
    logs/NAME.log, its key in the health figures), what messages call it, what its command line
    holds (a recorded pid that no longer holds it is another process), and how it answers."""

    name: str
    label: str
    marker: Callable[[SiteConfig], bytes]
    healthy: Callable[[SiteConfig, float], bool]

    def pid_file(self, site: SiteConfig) -> Path:
        return site.directory / RUN_DIR / f"{self.name}.pid"

    def log(self, site: SiteConfig) -> Path:
        return site.directory / LOG_DIR / f"{self.name}.log"

    def running_pid(self, site: SiteConfig) -> int | None:
        """The recorded pid, if that process is alive and is still this site's service."""
        try:
            pid = int(self.pid_file(site).read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if self.marker(site) in cmdline and b"zombie" not in _status(pid) else None

    def log_size(self, site: SiteConfig) -> int:
        try:
            return self.log(site).stat().st_size
        except OSError:
            return 0

    def spawn(self, site: SiteConfig, argv: list[str], env: dict[str, str] | None = None,
              as_owner: bool = True) -> subprocess.Popen[bytes]:
        make_dirs(site.directory / RUN_DIR, 0o700)
        make_dirs(site.directory / LOG_DIR)
        with open(self.log(site), "ab") as log:
            own_like_parent(self.log(site))
            owner = _site_owner(site) if as_owner else None
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True, env=env, user=owner[0] if owner else None,
                                       group=owner[1] if owner else None, extra_groups=[] if owner else None)
        self.pid_file(site).write_text(str(process.pid))
        return process

    def stop(self, site: SiteConfig) -> bool:
        pid = self.running_pid(site)
        self.pid_file(site).unlink(missing_ok=True)
        if pid is None:
            return False
        # each service leads its own session (see spawn): signal the group, so helpers it started go too
        try:
            kill = os.killpg if os.getpgid(pid) == pid else os.kill
            kill(pid, signal.SIGTERM)
        except ProcessLookupError:  # it ended meanwhile
            return True
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists() or b"zombie" in _status(pid):
                return True
            time.sleep(0.1)
        kill(pid, signal.SIGKILL)
        return True

    def wait(self, site: SiteConfig, process: subprocess.Popen[bytes] | None, wait: float, url: str,
             log_from: int = 0, healthy: Callable[[SiteConfig, float], bool] | None = None) -> None:
        """Until it answers (`healthy`, default its own check) or `wait` seconds pass; if it stops, or
        never answers, raise naming it and why (its log's last word)."""
        check = healthy or self.healthy
        deadline = time.monotonic() + wait
        log = self.log(site)
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                self.pid_file(site).unlink(missing_ok=True)
                reason = failure_reason(log, log_from)
                hint = f"look at its log: {log}; nothing was left running"
                if "address already in use" in reason.lower():  # the front binds both ports: say which one
                    key = "registry.listen" if site.registry.listen and site.registry.listen in reason \
                        else "http.listen"
                    hint = (f"another program uses that address: stop it, or change {key} in "
                            f"{site.directory / SITE_FILE}; nothing was left running")
                raise BundlerError(f"the site's {self.label} service stopped at start: {reason}", hint=hint)
            if check(site, 0.5):
                return
            time.sleep(0.1)
        raise UnreachableError(f"the site's {self.label} service did not answer on {url} within {wait:.0f} s: "
                               f"{failure_reason(log, log_from)}",
                               hint=f"look at its log: {log}; a slow machine may need longer: "
                                    f"`bundler site up {site.directory} --wait 120`")


def _status(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/status").read_bytes().lower()
    except OSError:
        return b""


def registry_environment() -> dict[str, str]:
    """The registry's environment: ours without AWS_* variables. Its S3 driver reads them, and with
    AWS_CA_BUNDLE set (Debian's machines set it) it panics at start (LoadCustomCABundleError: the
    driver's HTTP client transport is of an unsupported type): site.yaml's storage section is the
    one place its S3 settings come from."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}


def _site_owner(site: SiteConfig) -> tuple[int, int] | None:
    """Root starting an installed site's services (`site install` gave the site its own user) starts
    them as that user (uid, gid; no other groups), as the systemd unit does; None: as the caller."""
    owner = site.directory.stat()
    if os.geteuid() != 0 or owner.st_uid == 0:
        return None
    return owner.st_uid, owner.st_gid


MSG_RE = re.compile(r'msg="((?:[^"\\]|\\.)*)"')


def failure_reason(log: Path, offset: int = 0) -> str:
    """Why a service stopped, from what it logged since `offset`: the registry's last fatal or
    error message (logrus `msg="..."`), a Go panic's message, a Python traceback's last line, else
    the last line."""
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            lines = [line.strip() for line in f.read()[-64 << 10:].decode(errors="replace").splitlines()]
    except OSError:
        return "no log"
    lines = [line for line in lines if line and "still could not bind()" not in line]  # nginx's last word
    for line in reversed(lines):
        if "level=fatal" in line or "level=error" in line or "level=panic" in line:
            match = MSG_RE.search(line)
            return match.group(1).replace('\\"', '"') if match else line[:300]
    panic = next((line for line in lines if line.startswith("panic: ")), None)  # the goroutine dump follows it
    if panic is not None:
        return panic[:300]
    return lines[-1][:300] if lines else "no output"


def _sync_running(site: SiteConfig, timeout: float = 0.0) -> bool:
    return SYNC.running_pid(site) is not None


APP = Service("http", "http application", site_marker, app_healthy)  # on its unix socket, behind the front
FRONT = Service("front", "https front (nginx)", site_marker, http_healthy)  # TLS, every port
REGISTRY = Service("registry", "registry", lambda site: b"serve", registry_process_healthy)  # on its unix socket
SYNC = Service("sync", "hub sync", site_marker, _sync_running)  # `site sync --service`: takes releases from a hub


# --- the embedded registry -----------------------------------------------------------------------


def _registry_config_file(site: SiteConfig) -> Path:
    """Write the registry's configuration: it listens on its unix socket behind the front (which holds
    its port, with TLS from the site CA) and takes tokens from the HTTPS service."""
    assert site.registry.listen is not None
    root = site.directory / REGISTRY_DIR
    token_cert, _ = ensure_token_signer(site.directory)
    token = {"realm": site.token_realm, "service": tokens.SERVICE, "issuer": tokens.ISSUER,
             "rootcertbundle": str(token_cert.resolve())}
    config = registry_config((root / "storage").resolve(), str(registry_socket(site)), token=token,
                             driver=site.storage_driver())
    path = root / "config.yml"
    make_dirs(root / "storage")
    atomic_write(path, yamltext.dump(config, sort_keys=True).encode(), mode=0o600)  # it may hold object storage keys
    (root / "htpasswd").unlink(missing_ok=True)  # an older site's basic auth: no longer read
    return path


def _container_file(site: SiteConfig) -> Path:
    return site.directory / RUN_DIR / "registry.container"


def _registry_config_changed(site: SiteConfig, config: Path) -> bool:
    """The running registry read another configuration (an older bundler's htpasswd one, say)."""
    try:
        return (site.directory / RUN_DIR / "registry.config").read_bytes() != config.read_bytes()
    except OSError:
        return True


def _start_registry(site: SiteConfig, wait: float, stale: bool) -> bool:
    """Start the embedded registry unless it runs with the current configuration; True if started."""
    config = site.directory / REGISTRY_DIR / "config.yml"
    if not stale and registry_process_healthy(site, 0.5):
        return False
    _stop_registry(site)  # an upgrade restarts it on the new configuration; one that hangs is replaced
    registry_socket(site).unlink(missing_ok=True)  # left by one that was killed: a bind would fail on it
    binary = registry_binary() if site.registry.runtime != "docker" else None
    if binary is None and site.registry.runtime == "binary":
        raise BundlerError("site.yaml asks for the registry binary, and none is installed",
                           hint="apt-get install docker-registry, or set registry.runtime to docker or auto")
    make_dirs(site.directory / RUN_DIR, 0o700)
    (site.directory / RUN_DIR / "registry.config").write_bytes(config.read_bytes())
    offset = REGISTRY.log_size(site)
    process = None
    if binary is not None:
        process = REGISTRY.spawn(site, [binary, "serve", str(config.resolve())], env=registry_environment())
    else:
        _start_registry_container(site, config)
    try:
        REGISTRY.wait(site, process, wait, str(registry_socket(site)), offset)
    except BaseException:
        _stop_registry(site)  # one that never answered is not left running
        raise
    return True


def _start_registry_container(site: SiteConfig, config: Path) -> None:
    """No registry binary here: the `registry:2` image through the local Docker engine."""
    try:
        import docker

        client = docker.from_env()
        client.images.get(REGISTRY_IMAGE)
    except Exception as exc:  # no engine, or no image: say which, and what to do
        raise BundlerError(f"cannot run the embedded registry: no registry binary, and the Docker engine "
                           f"cannot run {REGISTRY_IMAGE} ({exc})",
                           hint="`apt-get install docker-registry`, or load the registry:2 image into Docker") from None
    root = (site.directory / REGISTRY_DIR).resolve()
    pki = (site.directory / PKI_DIR).resolve()
    sockets = registry_socket(site).parent
    owner = site.directory.stat()
    container = client.containers.run(
        REGISTRY_IMAGE, ["serve", "/etc/bundler/config.yml"], detach=True,
        network_mode="host" if site.registry.storage else "none",  # it listens on no port: object storage only
        entrypoint=["/bin/registry"],  # in the upstream image and in the one the tests build
        user=f"{owner.st_uid}:{owner.st_gid}",  # the site's owner, as the front's workers, who connect to it
        volumes={str(root): {"bind": str(root), "mode": "rw"}, str(pki): {"bind": str(pki), "mode": "ro"},
                 str(sockets): {"bind": str(sockets), "mode": "rw"},
                 str(config.resolve()): {"bind": "/etc/bundler/config.yml", "mode": "ro"}},
        name=f"bundler-site-registry-{os.getpid()}", restart_policy={"Name": "unless-stopped"})
    _container_file(site).parent.mkdir(exist_ok=True)
    _container_file(site).write_text(container.id)


def _stop_registry(site: SiteConfig) -> bool:
    stopped = REGISTRY.stop(site)
    record = _container_file(site)
    if record.exists():
        try:
            import docker

            container = docker.from_env().containers.get(record.read_text().strip())
            container.stop(timeout=10)
            container.remove()
            stopped = True
        except Exception:  # already gone
            pass
        record.unlink()
    return stopped


# --- up, down, status ------------------------------------------------------------------------------


def site_up(directory: Path, app: Sequence[str], sync: Sequence[str], wait: float = 30.0,
            rules: Sequence[FrontRule] = ()) -> SiteConfig:
    """Start what is not running: the HTTPS application first (`app`: its command, the site's
    directory added; the registry's token server; `rules`: what the content kinds' services ask of its
    front), then the registry on its unix socket, then the front, which holds every port, and the hub
    sync (`sync`: its command, the site's directory added) when `site sync --service` asked for it.
    If one fails, stop what this call started and raise, naming it and why."""
    site = load_site(directory)
    upgraded = upgrade_credentials(site.directory)
    ensure_site_key(site.directory)  # a site made before site keys gets one (its receipts are signed)
    stale = site.embedded_registry and _registry_config_changed(site, _registry_config_file(site))
    if stale:
        _stop_registry(site)  # an older site's registry held the port the front takes now
    started: list[Callable[[], object]] = []
    here = str(site.directory.resolve())
    try:
        config = front_config(site, rules)
        running = all(service.running_pid(site) is not None for service in (APP, FRONT)) \
            and http_healthy(site) and _front_config_unchanged(site, config)
        if not running or upgraded:  # the token server must read new accounts and keys
            _stop_https(site)
            offset = APP.log_size(site)
            process = APP.spawn(site, [*app, here])
            started.append(lambda: _stop_https(site))
            APP.wait(site, process, wait, str(app_socket(site)), offset)
        if site.embedded_registry and _start_registry(site, wait, stale):
            started.append(lambda: _stop_registry(site))
        if not running or upgraded:
            write_config(site, config)
            offset = FRONT.log_size(site)
            front = FRONT.spawn(site, front_command(site), as_owner=not low_port(site))  # workers: `user`
            FRONT.wait(site, front, wait, site.http_url, offset)
        if site.embedded_registry:
            REGISTRY.wait(site, None, wait, site.registry.url, healthy=registry_healthy)  # through the front
        if (site.directory / SYNC_SETTINGS).exists() and SYNC.running_pid(site) is None:
            # `site sync DIR --service` was run: the site takes its releases from the hub on its own
            SYNC.spawn(site, [*sync, here])
        figures.write_health(site, {"http": True, "registry": registry_healthy(site)})
    except BaseException:
        for stop in reversed(started):
            stop()
        raise
    return site


def supervise(directory: Path, stop: threading.Event, interval: float = 5.0, misses: int = 3) -> None:
    """`site up --foreground` (what the systemd unit runs): after `site up`, check every service each
    `interval` seconds; raise once one has failed `misses` checks in a row (systemd then restarts the
    unit), return when `stop` is set."""
    site = load_site(directory)
    watched = [(APP, http_healthy), *([(REGISTRY, registry_healthy)] if site.embedded_registry else []),
               *([(SYNC, _sync_running)] if (site.directory / SYNC_SETTINGS).exists() else [])]
    failed = {service.name: 0 for service, _ in watched}
    while not stop.wait(interval):
        for service, healthy in watched:  # each through the way its clients reach it (the front)
            failed[service.name] = 0 if healthy(site, 2.0) else failed[service.name] + 1
            if failed[service.name] >= misses:
                log = service.log(site)
                raise UnreachableError(f"the site's {service.name} service stopped answering: {failure_reason(log)}",
                                       hint=f"full log: {log}")


def collect_registry_garbage(site: SiteConfig, wait: float = 30.0) -> None:
    """Distribution's garbage collector over the embedded registry's storage, with the registry
    stopped for the pass (a collection beside a running registry can delete a blob an upload is
    linking) and started again after it when it was running. It frees blobs no manifest references."""
    local = site.directory / REGISTRY_STORAGE / "docker/registry/v2/repositories"
    if not site.registry.storage and not local.is_dir():
        return  # nothing was ever pushed (a site of Git and updates only): the collector fails on that
    restart = site.directory / RUN_DIR / "gc-restart"  # an empty file: creating it needs no free block
    if registry_healthy(site, 0.5):
        restart.touch()
    _stop_registry(site)
    config = _registry_config_file(site)
    binary = registry_binary() if site.registry.runtime != "docker" else None
    if binary is not None:
        proc = tools.run([binary, "garbage-collect", config.resolve()], timeout=tools.local_timeout(),
                         env=registry_environment(), inherit=False)
        if proc.returncode != 0:
            raise BundlerError(f"the registry's garbage collector failed: {tools.last_words(proc, 300)}",
                               hint="run `bundler site prune` again; nothing a client pulls was removed")
    else:
        import docker

        root = (site.directory / REGISTRY_DIR).resolve()
        docker.from_env().containers.run(
            REGISTRY_IMAGE, ["garbage-collect", "/etc/bundler/config.yml"], entrypoint=["/bin/registry"],
            remove=True, network_mode="none", volumes={str(root): {"bind": str(root), "mode": "rw"},
                                                      str(config.resolve()): {"bind": "/etc/bundler/config.yml",
                                                                              "mode": "ro"}})
    if restart.exists():
        _start_registry(site, wait, stale=False)
        restart.unlink()


def resume_after_garbage_collection(site: SiteConfig, wait: float = 30.0) -> None:
    """A collection was interrupted with the registry stopped: start it again as it was."""
    restart = site.directory / RUN_DIR / "gc-restart"
    if restart.exists() and site.embedded_registry and not registry_healthy(site, 0.5):
        _start_registry(site, wait, stale=False)


def _stop_https(site: SiteConfig) -> bool:
    """The front first (it stops taking connections), then the application behind it."""
    front = FRONT.stop(site)
    return APP.stop(site) or front


def _front_config_unchanged(site: SiteConfig, config: str) -> bool:
    """The running front read this configuration (a site an older bundler started had no registry
    port behind it)."""
    try:
        return front_config_file(site).read_text() == config
    except OSError:
        return False


def site_down(directory: Path) -> bool:
    """Stop what `site up` started; False when nothing was running."""
    site = load_site(directory)
    stopped = SYNC.stop(site)
    stopped = _stop_https(site) or stopped
    if site.embedded_registry:
        stopped = _stop_registry(site) or stopped
    return stopped
