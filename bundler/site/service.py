"""`site up`, `site down`, `site status`: the site's background services and their health.

`site up` starts the HTTPS service (Git server) as a detached process, records its pid under
DIR/run, logs under DIR/logs, and returns once it answers its health check. `site down` stops
exactly what `site up` started (the recorded pid, if it is still that service).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from bundler.errors import BundlerError, UnreachableError
from bundler.site.config import SiteConfig, SiteState, load_site
from bundler.site.updates import APT_KEY, ASC_KEY, UPDATES_DIR

RUN_DIR, LOG_DIR = "run", "logs"
HTTP_PID, HTTP_LOG = "http.pid", "http.log"


def _pid_file(site: SiteConfig) -> Path:
    return site.directory / RUN_DIR / HTTP_PID


def _running_pid(site: SiteConfig) -> int | None:
    """The recorded pid, if that process is alive and is this site's service."""
    try:
        pid = int(_pid_file(site).read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    if b"bundler.site.server" in cmdline and str(site.directory.resolve()).encode() in cmdline:
        return pid
    return None


def http_healthy(site: SiteConfig, timeout: float = 2.0) -> bool:
    try:
        r = requests.get(f"{site.http_url}/healthz", verify=str(site.ca_file), timeout=timeout)
        return r.status_code == 200
    except requests.RequestException:
        return False


def site_up(directory: Path, wait: float = 20.0) -> SiteConfig:
    site = load_site(directory)
    if _running_pid(site) is not None and http_healthy(site):
        return site
    (site.directory / RUN_DIR).mkdir(exist_ok=True)
    (site.directory / LOG_DIR).mkdir(exist_ok=True)
    with open(site.directory / LOG_DIR / HTTP_LOG, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "bundler.site.server", str(site.directory.resolve())],
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    _pid_file(site).write_text(str(process.pid))
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = (site.directory / LOG_DIR / HTTP_LOG).read_text(errors="replace").strip().splitlines()[-3:]
            _pid_file(site).unlink(missing_ok=True)
            raise BundlerError(f"the site's HTTPS service exited at start: {' / '.join(tail)}",
                               hint=f"is {site.http_listen} free? (site.yaml http.listen); log: {LOG_DIR}/{HTTP_LOG}")
        if http_healthy(site, timeout=0.5):
            return site
        time.sleep(0.1)
    raise UnreachableError(f"the site's HTTPS service did not answer on {site.http_url} within {wait:.0f} s",
                           hint=f"see {site.directory / LOG_DIR / HTTP_LOG}")


def site_down(directory: Path) -> bool:
    """Stop the service `site up` started; False when it was not running."""
    site = load_site(directory)
    pid = _running_pid(site)
    if pid is None:
        _pid_file(site).unlink(missing_ok=True)  # a stale record, if any
        return False
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if not Path(f"/proc/{pid}").exists() or b"zombie" in _status(pid):
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
    _pid_file(site).unlink(missing_ok=True)
    return True


def _status(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/status").read_bytes().lower()
    except OSError:
        return b""


def site_status(directory: Path) -> dict[str, Any]:
    site = load_site(directory)
    try:
        site.registry_client(jobs=1).ping()
        registry_healthy = True
    except BundlerError:
        registry_healthy = False
    healthy = http_healthy(site)
    return {
        "services": {
            "registry": {"url": site.registry_url, "healthy": registry_healthy},
            "git": {"url": f"{site.http_url}/git/", "healthy": healthy, "push": site.allow_push},
            "updates": {"url": f"{site.http_url}/updates/", "healthy": healthy,
                        "apt_url": f"{site.http_url}/updates/apt", "rpm_url": f"{site.http_url}/updates/rpm",
                        "apt_key_file": str(site.directory / UPDATES_DIR / APT_KEY),
                        "rpm_key_url": f"{site.http_url}/updates/keys/{ASC_KEY}", "groups": list(site.groups)},
        },
        "ca_file": str(site.ca_file), "credentials_file": str(site.credentials_file),
        "bundles": SiteState.load(site.directory).bundles,
    }
