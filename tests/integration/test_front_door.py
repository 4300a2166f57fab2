"""The site's front door under attack, as a hostile client on the store network would try it (here on
loopback addresses other than the real client's): silent sockets, slowloris, bodies of lying
lengths. Throughout, a client with credentials gets a registry token, clones the Git repository and
downloads an approved payload, each within 2 s, and the site's processes stay small. Bounded: a
fixed number of connections for a fixed time, loopback only, all stopped at the end."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from bundler.site.registry_process import free_port
from devtools.gitrepo import new_repo
from tests.conftest import Keys, Run

ATTACK_SECONDS = 25  # longer than two of the front's header deadlines (10 s): attackers reconnect
HOST = "127.0.0.1"


@dataclass
class Site:
    directory: Path
    port: int
    token: str  # an enrolled update client's
    payload: str  # an approved payload's URL

    @property
    def ca(self) -> str:
        return str(self.directory / "pki" / "ca.pem")

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.port}"

    def credentials(self) -> tuple[str, str]:
        doc = json.loads((self.directory / "credentials.json").read_text())
        return doc["username"], doc["password"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Iterator[Site]:
    """The default site (embedded registry, TLS, token auth) holding a Git repository and an
    approved update, and an enrolled client of its group."""
    work = tmp_path_factory.mktemp("front")

    def cli(*args: str | Path) -> Run:
        p = subprocess.run([sys.executable, "-m", "bundler.cli", *map(str, args)], capture_output=True, text=True,
                           cwd=work, timeout=600)
        return Run(p.returncode, p.stdout, p.stderr)

    repo = new_repo(work / "config", "deploy.yaml")
    (work / "agent.bin").write_bytes(os.urandom(2 << 20))
    profile = work / "site.yaml"
    profile.write_text("apiVersion: bundler/v1\nkind: Profile\nmetadata: {name: store, version: 1.0.0}\n"
                       f"spec:\n  repos:\n    - url: {repo}\n      name: config\n      refs: [main]\n"
                       "  updates:\n    - path: agent.bin\n      approve: [line-1]\n")
    assert cli("build", profile, "-o", "store.bundle.tar", "--key", keys.release.key).code == 0
    directory, port = work / "site", free_port()
    r = cli("site", "init", directory, "--trust-key", keys.release.pub, "--group", "line-1",
            "--registry-listen", f"{HOST}:{free_port()}", "--http-listen", f"{HOST}:{port}")
    assert r.code == 0, r.err
    assert cli("site", "up", directory).code == 0
    try:
        imported = cli("import", "store.bundle.tar", "--site", directory)
        assert imported.code == 0, imported.err
        enrolled = cli("updates", "enroll", "pos-1", "--group", "line-1", "--site", directory, "--json")
        token = json.loads(enrolled.out)["token"]
        yield Site(directory, port, token, f"https://{HOST}:{port}/updates/files/agent.bin")
    finally:
        cli("site", "down", directory)


def site_rss_mib(site: Site) -> float:
    """Resident memory of every process of the site (the application, nginx's master and workers,
    the registry), in MiB."""
    pids = {int(p.read_text()) for p in (site.directory / "run").glob("*.pid")}
    children = subprocess.run(["pgrep", "-P", ",".join(map(str, pids))], capture_output=True, text=True).stdout
    total = 0
    for pid in pids | {int(p) for p in children.split()}:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return total / 1024


@dataclass
class Attack:
    """Hostile connections from other loopback addresses, kept up (reconnecting) until stopped."""

    site: Site
    silent: int = 50
    slowloris: int = 200
    lying: int = 20
    opened: dict[str, int] = field(default_factory=lambda: {"silent": 0, "slowloris": 0, "lying": 0})
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.context = ssl.create_default_context(cafile=self.site.ca)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.run()), daemon=True)

    async def connect(self, source: str, tls: bool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(asyncio.open_connection(
            HOST, self.site.port, local_addr=(source, 0), ssl=self.context if tls else None,
            server_hostname=HOST if tls else None), 10)

    async def keep(self, kind: str, source: str, body: Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                                               object]) -> None:
        while not self.stop.is_set():
            try:
                reader, writer = await self.connect(source, tls=kind != "silent")
                self.opened[kind] += 1
                try:
                    await body(reader, writer)  # type: ignore[misc]
                finally:
                    writer.close()
            except (TimeoutError, OSError, ssl.SSLError, ConnectionError):
                await asyncio.sleep(0.2)

    async def closed_within(self, reader: asyncio.StreamReader, seconds: float) -> bool:
        """True once the server answered or closed (then this connection is done)."""
        try:
            await asyncio.wait_for(reader.read(200), seconds)
            return True
        except TimeoutError:
            return False

    async def hold_silent(self, reader: asyncio.StreamReader, _: asyncio.StreamWriter) -> None:
        while not self.stop.is_set() and not await self.closed_within(reader, 0.5):
            pass  # sends nothing; waits to be dropped

    async def drip_headers(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"GET /token HTTP/1.1\r\nHost: site\r\n")
        while not self.stop.is_set():
            writer.write(b"X")  # one header byte every 5 s
            await writer.drain()
            for _ in range(10):
                if self.stop.is_set() or await self.closed_within(reader, 0.5):
                    return

    async def lie_about_length(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        path = b"/token" if self.opened["lying"] % 2 else b"/updates/api/report"
        writer.write(b"POST " + path + b" HTTP/1.1\r\nHost: site\r\nContent-Length: -1\r\n\r\n")
        chunk = b"a=" + b"x" * (256 << 10)
        while not self.stop.is_set() and not reader.at_eof():
            writer.write(chunk)
            try:
                await asyncio.wait_for(writer.drain(), 2)
            except (TimeoutError, OSError, ConnectionError):
                return

    async def run(self) -> None:
        tasks = [self.keep("silent", f"127.0.0.{2 + i % 4}", self.hold_silent) for i in range(self.silent)]
        tasks += [self.keep("slowloris", f"127.0.1.{1 + i % 8}", self.drip_headers) for i in range(self.slowloris)]
        tasks += [self.keep("lying", f"127.0.2.{1 + i % 4}", self.lie_about_length) for i in range(self.lying)]
        await asyncio.gather(*tasks, return_exceptions=True)

    def __enter__(self) -> Attack:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(30)


def timed(action: Callable[[], bool]) -> tuple[float, bool]:
    started = time.monotonic()
    ok = action()
    return time.monotonic() - started, ok


def test_tokens_git_and_payloads_answer_within_2_s_throughout_an_attack(site: Site, tmp_path: Path) -> None:
    user, password = site.credentials()
    clone_url = f"https://{user}:{password}@{HOST}:{site.port}/git/config.git"
    expected_payload = (Path(site.directory).parent / "agent.bin").read_bytes()

    def token() -> bool:
        r = requests.get(f"{site.url}/token", params={"service": "bundler-site", "scope": "repository:x/y:pull"},
                         auth=(user, password), verify=site.ca, timeout=5)
        return r.status_code == 200 and "token" in r.json()

    def clone(n: list[int] = [0]) -> bool:  # noqa: B006 - a counter for fresh directories
        n[0] += 1
        target = tmp_path / f"clone-{n[0]}"
        done = subprocess.run(["git", "clone", "-q", clone_url, str(target)], capture_output=True, timeout=10,
                              env={**os.environ, "GIT_SSL_CAINFO": site.ca, "GIT_TERMINAL_PROMPT": "0"})
        return done.returncode == 0 and (target / "deploy.yaml").exists()

    def payload() -> bool:
        r = requests.get(site.payload, headers={"Authorization": f"Bearer {site.token}"}, verify=site.ca, timeout=5)
        return r.status_code == 200 and r.content == expected_payload

    for action in (token, clone, payload):  # all answer before the attack
        assert timed(action)[1]
    before = site_rss_mib(site)
    seen: dict[str, list[float]] = {"token": [], "clone": [], "payload": []}
    rss = []
    with Attack(site) as attack:
        deadline = time.monotonic() + ATTACK_SECONDS
        time.sleep(2)  # the attackers are connected
        while time.monotonic() < deadline:
            for name, action in (("token", token), ("clone", clone), ("payload", payload)):
                took, ok = timed(action)
                assert ok, f"{name} failed during the attack"
                seen[name].append(took)
            rss.append(site_rss_mib(site))
            time.sleep(0.5)
        opened = dict(attack.opened)
    worst = {name: max(times) for name, times in seen.items()}
    print(f"worst during the attack: {worst}; connections opened: {opened}; site RSS {before:.0f} MiB before, "
          f"{max(rss):.0f} MiB at most")
    assert opened["silent"] >= 50 and opened["slowloris"] >= 200 and opened["lying"] >= 20  # the attack ran
    assert all(len(times) >= 10 for times in seen.values())
    assert all(took < 2.0 for took in worst.values()), worst
    assert max(rss) < 300, rss


def test_a_1_gib_body_without_credentials_is_refused_at_once_and_costs_no_memory(site: Site) -> None:
    before = site_rss_mib(site)
    context = ssl.create_default_context(cafile=site.ca)
    statuses = []
    for length in ("1073741824", "-1", None):  # too large, negative, missing (chunked)
        with socket.create_connection((HOST, site.port), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname=HOST) as conn:
            header = f"Content-Length: {length}" if length else "Transfer-Encoding: chunked"
            conn.sendall(f"POST /token HTTP/1.1\r\nHost: site\r\n{header}\r\n\r\n".encode())
            started, sent = time.monotonic(), 0
            conn.settimeout(0.05)
            response = b""
            while sent < 1 << 30 and not response and time.monotonic() - started < 20:
                try:
                    conn.sendall(b"x" * (1 << 20))
                    sent += 1 << 20
                    response = conn.recv(200)
                except TimeoutError:
                    continue
                except OSError:  # the front closed the connection after its answer
                    break
            if not response:
                conn.settimeout(5)
                try:
                    response = conn.recv(200)
                except OSError:
                    response = b""
            statuses.append((response.split(b" ")[1].decode() if response.startswith(b"HTTP/") else "closed", sent))
    after = site_rss_mib(site)
    print(f"statuses {statuses}; site RSS {before:.0f} MiB before, {after:.0f} MiB after")
    assert [s for s, _ in statuses] == ["413", "400", "411"], statuses
    assert all(sent < 64 << 20 for _, sent in statuses)  # answered at once: far less than the 1 GiB was taken
    assert after < before + 20


def test_the_pull_account_cannot_read_the_quarantine(site: Site) -> None:
    user, password = site.credentials()
    r = requests.get(f"{site.url}/token", params={"service": "bundler-site",
                                                  "scope": "repository:bundler/quarantine:pull,push"},
                     auth=(user, password), verify=site.ca, timeout=5)
    assert r.status_code == 200
    claims = json.loads(_b64(r.json()["token"].split(".")[1]))
    assert claims["access"] == []
    fine = requests.get(f"{site.url}/token", params={"service": "bundler-site", "scope": "repository:x/y:pull"},
                        auth=(user, password), verify=site.ca, timeout=5)
    assert json.loads(_b64(fine.json()["token"].split(".")[1]))["access"][0]["actions"] == ["pull"]


def _b64(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_a_hundred_viewers_of_the_status_page_all_see_the_true_health(site: Site) -> None:
    """100 viewers at once (each from its own loopback address, as from its own machine), 500 loads."""
    from concurrent.futures import ThreadPoolExecutor

    import urllib3

    user, password = site.credentials()
    headers = urllib3.make_headers(basic_auth=f"{user}:{password}")
    viewers = [urllib3.PoolManager(source_address=(f"127.0.3.{1 + i}", 0), ca_certs=site.ca, cert_reqs="REQUIRED",
                                   timeout=30, retries=False) for i in range(100)]

    def view(n: int) -> tuple[float, str]:
        started = time.monotonic()
        r = viewers[n % 100].request("GET", f"{site.url}/", headers=headers)
        assert r.status == 200, r.status
        return time.monotonic() - started, r.data.decode()

    with ThreadPoolExecutor(100) as pool:
        loads = list(pool.map(view, range(500)))
    times = sorted(t for t, _ in loads)
    p95 = times[int(len(times) * 0.95)]
    print(f"500 loads by 100 viewers: p50 {times[len(times) // 2] * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
          f"max {times[-1] * 1000:.0f} ms")
    for _, text in loads:
        assert "NOT answering" not in text and text.count(">healthy<") == 3
    # the truth, not a constant: with the registry stopped, the next health check says so
    registry_pid = int((site.directory / "run" / "registry.pid").read_text())
    os.kill(registry_pid, 19)  # SIGSTOP: the registry stops answering
    try:
        deadline = time.monotonic() + 40
        text = ""
        while time.monotonic() < deadline and "NOT answering" not in text:
            time.sleep(1)
            text = view(0)[1]
        assert "NOT answering" in text and text.count(">healthy<") == 2
    finally:
        os.kill(registry_pid, 18)  # SIGCONT


def test_site_status_on_the_default_site_prints_no_library_warnings(site: Site) -> None:
    """What the demo showed: urllib3's "Connection pool is full" lines on a technician's terminal."""
    for args in (["site", "status", str(site.directory)], ["site", "status", str(site.directory), "--json"]):
        shown = subprocess.run([sys.executable, "-m", "bundler.cli", *args], capture_output=True, text=True,
                               timeout=120)
        assert shown.returncode == 0, shown.stderr
        assert shown.stderr == "", shown.stderr
