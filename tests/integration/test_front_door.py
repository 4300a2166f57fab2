"""The site's front door under attack, as a hostile client on the store network would try it (here on
loopback addresses other than the real client's): silent sockets, slowloris, bodies of lying
lengths, on both of the site's ports. Throughout, a client with credentials gets a registry token,
clones the Git repository and downloads an approved payload, each within 2 s, a node pulls an image
within 5 s, and the site's processes stay small. Bounded: a fixed number of connections for a fixed
time (BUNDLER_ATTACK_SECONDS, default 25), loopback only, all stopped at the end."""

from __future__ import annotations

import asyncio
import hashlib
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

from bundler.oci.client import RegistryClient
from bundler.oci.reference import ImageReference
from bundler.site.front import HEADER_TIMEOUT
from devtools.gitrepo import new_repo
from devtools.samples import push_samples
from tests.conftest import Keys, Registry, Run, distinct_ports

ATTACK_SECONDS = int(os.environ.get("BUNDLER_ATTACK_SECONDS", "25"))  # > two header deadlines: attackers reconnect
# TCP connections to the registry's port from one address, opened once, sending nothing. The issue's
# figure is 20,000 (BUNDLER_ATTACK_SILENT=20000, run by hand with BUNDLER_ATTACK_SECONDS=60); the suite
# shows the same mechanism with 10,000: this sandbox lets a process hold 20,000 descriptors, so each of
# nginx's two workers takes at most ~19,900, and when one worker takes nearly all of 20,000 the rest
# wait in the kernel's queue, not in nginx (seen once in a fresh-clone run).
SILENT_ONCE = int(os.environ.get("BUNDLER_ATTACK_SILENT", "10000"))
HOST = "127.0.0.1"


@dataclass
class Site:
    directory: Path
    port: int
    token: str  # an enrolled update client's
    payload: str  # an approved payload's URL
    registry_port: int
    image: str  # host:port/repository:tag of an image on the site

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
def site(tmp_path_factory: pytest.TempPathFactory, keys: Keys,
         registry_factory: Callable[[], Registry]) -> Iterator[Site]:
    """The default site (embedded registry, TLS, token auth) holding an image, a Git repository and
    an approved update, and an enrolled client of its group."""
    work = tmp_path_factory.mktemp("front")
    source = registry_factory()
    image = next(ref for ref in push_samples(RegistryClient(source.host)).refs if ref.endswith("app-a:1.0"))

    def cli(*args: str | Path) -> Run:
        p = subprocess.run([sys.executable, "-m", "bundler.cli", *map(str, args)], capture_output=True, text=True,
                           cwd=work, timeout=600)
        return Run(p.returncode, p.stdout, p.stderr)

    repo = new_repo(work / "config", "deploy.yaml")
    (work / "agent.bin").write_bytes(os.urandom(2 << 20))
    profile = work / "site.yaml"
    profile.write_text("apiVersion: bundler/v1\nkind: Profile\nmetadata: {name: store, version: 1.0.0}\n"
                       f"spec:\n  images:\n    - {image}\n"
                       f"  repos:\n    - url: {repo}\n      name: config\n      refs: [main]\n"
                       "  updates:\n    - path: agent.bin\n      approve: [line-1]\n")
    assert cli("build", profile, "-o", "store.bundle.tar", "--key", keys.release.key).code == 0
    directory, (port, registry_port) = work / "site", distinct_ports(2)
    r = cli("site", "init", "--as-root", directory, "--trust-key", keys.release.pub, "--group", "line-1",
            "--registry-listen", f"{HOST}:{registry_port}", "--http-listen", f"{HOST}:{port}")
    assert r.code == 0, r.err
    assert cli("site", "up", directory).code == 0
    try:
        imported = cli("import", "store.bundle.tar", "--site", directory)
        assert imported.code == 0, imported.err
        enrolled = cli("updates", "enroll", "pos-1", "--group", "line-1", "--site", directory, "--json")
        token = json.loads(enrolled.out)["token"]
        on_site = f"{HOST}:{registry_port}/{ImageReference.parse(image).site_repository}:1.0"
        yield Site(directory, port, token, f"https://{HOST}:{port}/updates/files/agent.bin", registry_port, on_site)
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

    async def connect(self, source: str, tls: bool, port: int | None = None
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(asyncio.open_connection(
            HOST, port or self.site.port, local_addr=(source, 0), ssl=self.context if tls else None,
            server_hostname=HOST if tls else None), 10)

    async def keep(self, kind: str, source: str, body: Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                                               object], port: int | None = None) -> None:
        while not self.stop.is_set():
            try:
                reader, writer = await self.connect(source, tls=kind != "silent", port=port)
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
        tasks += [self.keep("slowloris", f"127.0.1.{1 + i % 8}", self.drip_headers,
                            port=self.site.registry_port if i % 2 else None) for i in range(self.slowloris)]
        tasks += [self.keep("lying", f"127.0.2.{1 + i % 4}", self.lie_about_length) for i in range(self.lying)]
        await asyncio.gather(*tasks, return_exceptions=True)

    def __enter__(self) -> Attack:
        self.holders = [subprocess.Popen(  # each process has its own descriptors: 20,000 need two here
            [sys.executable, "-c", f"from {__name__} import hold_silent; hold_silent({self.site.registry_port}, "
                                   f"{SILENT_ONCE // SILENT_HOLDERS})"],
            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2]) for _ in range(SILENT_HOLDERS)]
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(30)

    def silent_once(self) -> tuple[int, list[float], dict[str, int]]:
        """How many silent connections the holders opened, how long each stayed open until the front
        dropped it, and why any did not open (waits for the holders: they end once all are gone)."""
        opened, lifetimes, failures = 0, [], dict[str, int]()
        for holder in self.holders:
            out, _ = holder.communicate(timeout=60)
            report = json.loads(out)
            opened += report["opened"]
            lifetimes += report["lifetimes"]
            failures.update(report["failures"])
        return opened, lifetimes, failures


SILENT_HOLDERS = 2


def hold_silent(port: int, count: int, source: str = "127.0.0.9", patience: float = 40.0) -> None:
    """Open `count` plain TCP connections to `port` from `source` within a second or so (500 at a time,
    as a flood arrives), send nothing, and print (JSON) how many opened and how long each stayed open
    before the server closed it."""
    import resource
    import select

    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    poll, started, lifetimes, failures = select.epoll(), {}, [], {}
    sockets = {}

    def watch(seconds: float) -> None:
        for fd, events in poll.poll(seconds):
            sock = sockets[fd]
            if fd not in started and events & select.EPOLLOUT and not sock.getsockopt(socket.SOL_SOCKET,
                                                                                        socket.SO_ERROR):
                started[fd] = time.monotonic()  # connected
                poll.modify(sock, select.EPOLLIN | select.EPOLLRDHUP)
            elif events & (select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR):
                if fd in started:
                    lifetimes.append(time.monotonic() - started[fd])
                else:
                    failures["refused"] = failures.get("refused", 0) + 1
                poll.unregister(sock)
                sock.close()
                del sockets[fd]

    for n in range(count):
        if n % 500 == 499:
            watch(0.05)
        sock = socket.socket()
        sock.setblocking(False)
        try:
            sock.bind((source, 0))
            sock.connect_ex((HOST, port))
        except OSError as exc:
            failures[exc.strerror or str(exc)] = failures.get(exc.strerror or str(exc), 0) + 1
            sock.close()
            continue
        sockets[sock.fileno()] = sock
        poll.register(sock, select.EPOLLOUT | select.EPOLLIN | select.EPOLLRDHUP)
    deadline = time.monotonic() + patience
    while sockets and time.monotonic() < deadline:
        watch(1.0)
    lifetimes += [patience] * sum(fd in started for fd in sockets)  # never dropped
    print(json.dumps({"opened": len(started), "lifetimes": lifetimes, "failures": failures}))


def timed(action: Callable[[], bool]) -> tuple[float, bool]:
    started = time.monotonic()
    ok = action()
    return time.monotonic() - started, ok


def test_pulls_tokens_git_and_payloads_answer_throughout_an_attack_on_both_ports(
        site: Site, tmp_path: Path, skopeo: str) -> None:
    user, password = site.credentials()
    clone_url = f"https://{user}:{password}@{HOST}:{site.port}/git/config.git"
    expected_payload = (Path(site.directory).parent / "agent.bin").read_bytes()
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "ca.crt").write_bytes(Path(site.ca).read_bytes())

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

    def pull(n: list[int] = [0]) -> bool:  # noqa: B006 - a counter for fresh directories
        """A node's pull with the cluster's account: every blob fetched and checked by skopeo."""
        n[0] += 1
        done = subprocess.run([skopeo, "copy", "-q", "--src-cert-dir", str(certs), "--src-creds",
                               f"{user}:{password}", f"docker://{site.image}", f"dir:{tmp_path / f'pull-{n[0]}'}"],
                              capture_output=True, timeout=10)
        return done.returncode == 0

    actions = (("token", token, 2.0), ("clone", clone, 2.0), ("payload", payload, 2.0), ("pull", pull, 5.0))
    for _, action, _ in actions:  # all answer before the attack
        assert timed(action)[1]
    before = site_rss_mib(site)
    seen: dict[str, list[float]] = {name: [] for name, _, _ in actions}
    rss = []
    with Attack(site) as attack:
        deadline = time.monotonic() + ATTACK_SECONDS
        time.sleep(2)  # the attackers are connected
        while time.monotonic() < deadline:
            for name, action, _ in actions:
                took, ok = timed(action)
                assert ok, f"{name} failed during the attack"
                seen[name].append(took)
            rss.append(site_rss_mib(site))
            time.sleep(0.5)
        opened = dict(attack.opened)
    opened["silent_once"], dropped, failures = attack.silent_once()
    worst = {name: max(times) for name, times in seen.items()}
    print(f"worst during the attack: {worst}; connections opened: {opened}; silent-once connections dropped: "
          f"{len(dropped)} after at most {max(dropped, default=0):.1f} s; site RSS {before:.0f} MiB before, "
          f"{max(rss):.0f} MiB at most")
    assert opened["silent"] >= 50 and opened["slowloris"] >= 200 and opened["lying"] >= 20  # the attack ran
    assert opened["silent_once"] >= SILENT_ONCE * 0.95, (opened, failures)
    assert max(dropped) < HEADER_TIMEOUT + 5, sorted(dropped)[-10:]  # each one dropped at the header deadline
    assert all(len(times) >= 5 for times in seen.values())
    assert all(worst[name] < limit for name, _, limit in actions), worst
    assert max(rss) < 400, rss


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


def test_the_registry_listens_on_no_port_of_its_own_and_its_port_is_the_fronts(site: Site) -> None:
    """Distribution's own listener has no connection deadlines: no client may reach it."""
    registry_pid = int((site.directory / "run" / "registry.pid").read_text())
    inodes = {os.readlink(f"/proc/{registry_pid}/fd/{fd}") for fd in os.listdir(f"/proc/{registry_pid}/fd")}
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                listening.add(f"socket:[{fields[9]}]")
    assert not inodes & listening  # the registry has no TCP listener
    socket_dir = (site.directory / "run")
    assert (socket_dir / "registry.sock").is_socket() and socket_dir.stat().st_mode & 0o077 == 0
    answer = requests.get(f"https://{HOST}:{site.registry_port}/v2/", verify=site.ca, timeout=5)
    assert answer.status_code == 401 and answer.headers["Server"] == "nginx"
    assert "Bearer" in answer.headers["WWW-Authenticate"]


def test_blobs_come_through_the_front_only_with_a_token_for_their_repository(site: Site) -> None:
    """The front answers a layer's GET from the registry's storage only when the registry says yes to
    it: no token, a 401 with the challenge; a repository that does not hold it, the registry's 404;
    else the bytes of that digest, whole or by range."""
    user, password = site.credentials()
    repo, _, tag = site.image.split("/", 1)[1].rpartition(":")
    base = f"https://{HOST}:{site.registry_port}/v2"

    def token(repository: str) -> dict[str, str]:
        r = requests.get(f"{site.url}/token", params={"service": "bundler-site",
                                                      "scope": f"repository:{repository}:pull"},
                         auth=(user, password), verify=site.ca, timeout=5)
        return {"Authorization": f"Bearer {r.json()['token']}"}

    manifest = requests.get(f"{base}/{repo}/manifests/{tag}", headers={
        **token(repo), "Accept": "application/vnd.oci.image.manifest.v1+json,"
                                 "application/vnd.docker.distribution.manifest.v2+json"}, verify=site.ca, timeout=5)
    layer = manifest.json()["layers"][-1]
    url = f"{base}/{repo}/blobs/{layer['digest']}"
    anonymous = requests.get(url, verify=site.ca, timeout=5)
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Bearer realm=")
    whole = requests.get(url, headers=token(repo), verify=site.ca, timeout=10)
    assert whole.status_code == 200 and whole.headers["Docker-Content-Digest"] == layer["digest"]
    assert "sha256:" + hashlib.sha256(whole.content).hexdigest() == layer["digest"]
    part = requests.get(url, headers={**token(repo), "Range": "bytes=10-19"}, verify=site.ca, timeout=10)
    assert part.status_code == 206 and part.content == whole.content[10:20]
    elsewhere = requests.get(f"{base}/another/repository/blobs/{layer['digest']}", headers=token("another/repository"),
                             verify=site.ca, timeout=5)
    assert elsewhere.status_code == 404 and elsewhere.json()["errors"][0]["code"] == "BLOB_UNKNOWN"
    head = requests.head(url, headers=token(repo), verify=site.ca, timeout=5)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == layer["size"]
