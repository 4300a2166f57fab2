"""The site's services as a technician runs them: `site up` that fails half-way stops what it started
and says why; `site status` exits 4 when a service is down; an older site is upgraded by `site up`
without breaking the cluster's credential."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import pytest
import requests
import yaml

from bundler.site.registry_process import free_port
from tests.conftest import Keys, Registry, Run, distinct_ports, listen_options


def init(cli: Callable[..., Run], directory: Path, keys: Keys, registry_port: int, http_port: int,
         *more: str) -> None:
    r = cli("site", "init", "--as-root", directory, "--trust-key", keys.release.pub,
            "--registry-listen", f"127.0.0.1:{registry_port}", "--http-listen", f"127.0.0.1:{http_port}", *more)
    assert r.code == 0, r.err
    assert f"images go to https://127.0.0.1:{registry_port};" in r.out, r.out  # the URL, as the README shows it


def alive(site: Path) -> list[str]:
    """The services whose recorded process still runs."""
    running = []
    for pid_file in (site / "run").glob("*.pid"):
        try:
            os.kill(int(pid_file.read_text()), 0)
            running.append(pid_file.stem)
        except (OSError, ValueError):
            pass
    return running


def assert_runs_as(site: Path, uid: int) -> None:
    """Every process of the site's services (nginx's master and workers, the application, the
    registry and its threads) runs as `uid`: real, effective, saved and file system ids."""
    import subprocess

    for name in ("http", "front", "registry"):
        pid = int((site / "run" / f"{name}.pid").read_text())
        family = [pid] + [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                                          text=True).stdout.split()]
        for member in family:
            uids = next(line for line in Path(f"/proc/{member}/status").read_text().splitlines()
                        if line.startswith("Uid:")).split()[1:]
            assert set(uids) == {str(uid)}, (name, member, uids)


@pytest.fixture
def occupied() -> Iterator[int]:
    """A loopback port something else listens on (and never answers TLS)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_site_up_failing_on_the_registry_port_stops_every_service_and_says_why(
        cli: Callable[..., Run], keys: Keys, tmp_path: Path, occupied: int) -> None:
    """The front holds the registry's port too: it is the one that cannot bind it."""
    site = tmp_path / "site"
    http_port = free_port()
    init(cli, site, keys, occupied, http_port)
    up = cli("site", "up", site)
    assert up.code != 0
    assert "the site's https front (nginx) service stopped at start" in up.err, up.err
    assert f"127.0.0.1:{occupied}" in up.err and "address already in use" in up.err.lower()
    assert f"change registry.listen in {site}/site.yaml" in up.err
    assert "Traceback" not in up.err and "level=" not in up.err
    assert alive(site) == []
    with socket.socket() as s:  # the HTTPS service that did start is gone: its port is free again
        s.bind(("127.0.0.1", http_port))
    status = cli("site", "status", site, "--json")
    assert status.code == 4 and not any(s["healthy"] for s in json.loads(status.out)["services"].values())


def test_site_up_failing_on_the_https_service_starts_no_registry(
        cli: Callable[..., Run], keys: Keys, tmp_path: Path, occupied: int) -> None:
    site = tmp_path / "site"
    registry_port = free_port()
    init(cli, site, keys, registry_port, occupied)
    up = cli("site", "up", site)
    assert up.code != 0 and "the site's https front (nginx) service" in up.err, up.err
    assert "Address already in use" in up.err, up.err
    assert alive(site) == []
    with socket.socket() as s:
        s.bind(("127.0.0.1", registry_port))


def test_site_status_exits_4_while_a_service_is_down(cli: Callable[..., Run], keys: Keys, tmp_path: Path) -> None:
    site = tmp_path / "site"
    init(cli, site, keys, *distinct_ports(2))
    try:
        assert cli("site", "up", site).code == 0
        healthy = cli("site", "status", site, "--json")
        assert healthy.code == 0, healthy.err
        info = json.loads(healthy.out)
        for key in ("ca_file", "credentials_file"):
            assert Path(info[key]).is_absolute() and Path(info[key]).exists()
        assert Path(info["services"]["updates"]["apt_key_file"]).is_absolute()

        os.kill(int((site / "run" / "registry.pid").read_text()), signal.SIGKILL)  # the registry dies
        time.sleep(0.3)
        down = cli("site", "status", site, "--json")
        assert down.code == 4
        services = json.loads(down.out)["services"]
        assert not services["registry"]["healthy"] and services["git"]["healthy"]
        text = cli("site", "status", site)
        assert text.code == 4 and "NOT answering" in text.out and f"bundler site up {site}" in text.err
        assert cli("site", "up", site).code == 0  # starts only the registry again
        assert cli("site", "status", site).code == 0
    finally:
        cli("site", "down", site)


def test_site_up_upgrades_an_older_site_and_the_cluster_credential_still_pulls(
        cli: Callable[..., Run], keys: Keys, tmp_path: Path) -> None:
    """A site made by the previous bundler: one account (scrypt in users.json, bcrypt htpasswd for the
    registry) that the cluster holds. After `site up` that password still pulls, and no longer pushes."""
    site = tmp_path / "site"
    init(cli, site, keys, *distinct_ports(2))
    client = json.loads((site / "credentials.json").read_text())
    # turn it into the older layout: no import account, no token key, an htpasswd registry
    import base64
    import hashlib

    from bundler.site.auth import SCRYPT

    salt = os.urandom(16)
    digest = hashlib.scrypt(client["password"].encode(), salt=salt, dklen=32, **SCRYPT)
    (site / "users.json").write_text(json.dumps(
        {client["username"]: f"scrypt${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"}))
    (site / "import-credentials.json").unlink()
    for name in ("token.pem", "token.key"):
        (site / "pki" / name).unlink()
    htpasswd = site / "registry" / "htpasswd"
    htpasswd.parent.mkdir(exist_ok=True)
    htpasswd.write_bytes(client["username"].encode() + b":" + bcrypt.hashpw(client["password"].encode(),
                                                                            bcrypt.gensalt(4)) + b"\n")
    from bundler.site.config import load_site
    from bundler.site.registry_process import registry_binary, registry_config

    config = load_site(site)
    assert config.registry.listen is not None and registry_binary() is not None
    old = registry_config(site / "registry" / "storage", config.registry.listen, htpasswd,
                          (site / "pki" / "server.pem", site / "pki" / "server.key"))
    (site / "registry" / "config.yml").write_text(yaml.safe_dump(old))
    import subprocess

    (site / "logs").mkdir(exist_ok=True)
    old_registry = subprocess.Popen([registry_binary() or "", "serve", str(site / "registry" / "config.yml")],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (site / "run").mkdir(exist_ok=True)
    (site / "run" / "registry.pid").write_text(str(old_registry.pid))
    ca = str(site / "pki" / "ca.pem")
    for _ in range(100):
        try:
            if requests.get(f"{config.registry.url}/v2/", auth=(client["username"], client["password"]), verify=ca,
                            timeout=2).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.1)
    try:
        up = cli("site", "up", site)
        assert up.code == 0, up.err
        assert old_registry.wait(10) is not None  # restarted on the token configuration
        assert json.loads((site / "credentials.json").read_text()) == client  # the cluster's password is unchanged
        assert (site / "import-credentials.json").exists() and not htpasswd.exists()
        challenge = requests.get(f"{config.registry.url}/v2/", verify=ca, timeout=5)
        assert challenge.status_code == 401 and challenge.headers["WWW-Authenticate"].startswith("Bearer ")
        realm = f"{config.http_url}/token"
        scope = "repository:docker.io/library/app:pull,push"
        token = requests.get(realm, params={"service": "bundler-site", "scope": scope},
                             auth=(client["username"], client["password"]), verify=ca, timeout=5)
        assert token.status_code == 200
        claims = json.loads(base64.urlsafe_b64decode(token.json()["token"].split(".")[1] + "=="))
        assert claims["access"] == [{"type": "repository", "name": "docker.io/library/app", "actions": ["pull"]}]
        bearer = {"Authorization": f"Bearer {token.json()['token']}"}
        assert requests.get(f"{config.registry.url}/v2/", headers=bearer, verify=ca, timeout=5).status_code == 200
        push = requests.post(f"{config.registry.url}/v2/docker.io/library/app/blobs/uploads/", headers=bearer,
                             verify=ca, timeout=5)
        assert push.status_code in (401, 403)
        assert cli("site", "up", site).code == 0  # a second run changes nothing and starts nothing new
    finally:
        cli("site", "down", site)
        if old_registry.poll() is None:
            old_registry.kill()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user can reach (pytest's own is root's alone), and an interpreter every user
    can run bundler with: a venv of Debian's python3 seeing this checkout and its dependencies (the
    test venv's interpreter may live under /root). The site users made in it are removed after."""
    import shutil
    import subprocess
    import sysconfig
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="bundler-install-", dir="/var/tmp"))
    base.chmod(0o755)
    system = Path("/usr/bin/python3")
    assert system.exists(), "Debian's python3 is needed (a fresh Debian machine has it)"
    subprocess.run([str(system), "-m", "venv", "--without-pip", str(base / "venv")], check=True)
    (site_packages,) = (base / "venv" / "lib").glob("python3*/site-packages")
    (site_packages / "bundler-checkout.pth").write_text(
        f"{sysconfig.get_paths()['purelib']}\n{Path(__file__).resolve().parents[2]}\n")
    try:
        yield base
    finally:
        import pwd

        subprocess.run(["pkill", "-TERM", "-f", str(base)], capture_output=True)
        time.sleep(1)
        for account in pwd.getpwall():  # the site users made here: their home is their site, under base
            if Path(account.pw_dir).is_relative_to(base):  # (not every user made meanwhile: tests run in parallel)
                subprocess.run(["userdel", account.pw_name], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def unique(shared_dir: Path, name: str) -> str:
    """A site name (and so a system user, bundler-NAME) no other test, and no other run of this suite on
    the machine, uses at the same time: users are machine-wide."""
    return f"{name}-{shared_dir.name.rsplit('-', 1)[1]}"


def systemd_split(line: str) -> list[str]:
    """An Exec line's words as systemd reads them: quotes and C escapes (shlex), then `%%` and `$$`."""
    import shlex

    return [word.replace("%%", "%").replace("$$", "$") for word in shlex.split(line)]


def test_site_install_one_unit_per_site_name_paths_as_systemd_reads_them_services_as_the_sites_user(
        cli: Callable[..., Run], keys: Keys, shared_dir: Path) -> None:
    import pwd
    import shutil
    import subprocess

    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze is needed (Debian package systemd; .ci/run installs it)"
    python = str(shared_dir / "venv" / "bin" / "python")
    name_a, name_b, name_odd = (unique(shared_dir, name) for name in ("store-a", "store-b", "store-odd"))
    sites = {name_a: shared_dir / "a" / "site", name_b: shared_dir / "b" / "site",
             name_odd: shared_dir / "odd dir 100%" / "site"}
    for name, directory in sites.items():
        directory.parent.mkdir(mode=0o755)
        init(cli, directory, keys, *distinct_ports(2), "--name", name)
    units = shared_dir / "units"
    for name in (name_a, name_b):  # two sites whose directories share a last name: two units
        r = cli("site", "install", sites[name], "--unit-dir", units, "--python", python)
        assert r.code == 0, r.err
    assert sorted(p.name for p in units.iterdir()) == [f"bundler-site-{n}.service" for n in (name_a, name_b)]
    first = (units / f"bundler-site-{name_a}.service").read_text()
    twin = shared_dir / "c" / "site"
    twin.parent.mkdir(mode=0o755)
    init(cli, twin, keys, *distinct_ports(2), "--name", name_a)
    refused = cli("site", "install", twin, "--unit-dir", units, "--python", python)
    assert refused.code == 2 and f"already runs site {name_a} at {sites[name_a]}" in refused.err, refused.err
    assert (units / f"bundler-site-{name_a}.service").read_text() == first  # never silently replaced

    odd = sites[name_odd]
    r = cli("site", "install", odd, "--unit-dir", units, "--python", python)
    assert r.code == 0, r.err
    unit = units / f"bundler-site-{name_odd}.service"
    verify = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert verify.returncode == 0 and name_odd not in verify.stderr, verify.stderr
    text = unit.read_text()
    start = systemd_split(next(line for line in text.splitlines() if line.startswith("ExecStart="))[10:])
    assert start == [python, "-m", "bundler.cli", "site", "up", str(odd.resolve()), "--foreground"]
    assert systemd_split(next(line for line in text.splitlines() if line.startswith("ReadWritePaths="))[15:]) \
        == [str(odd.resolve())]
    assert f"User=bundler-{name_odd}" in text and "NoNewPrivileges=yes" in text and "ProtectSystem=strict" in text
    security = subprocess.run([analyze, "security", "--offline=true", str(unit)], capture_output=True, text=True)
    level = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", security.stdout + security.stderr)
    assert level is not None and float(level.group(1)) < 2.0, security.stdout[-500:]  # systemd's "OK" band

    account = pwd.getpwnam(f"bundler-{name_odd}")
    assert (odd / "users.json").stat().st_uid == account.pw_uid  # the site's files are its user's
    service = subprocess.Popen(["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups",
                                *start], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(150):
            if cli("site", "status", odd).code == 0:
                break
            time.sleep(0.2)
        assert cli("site", "status", odd).code == 0, service.stderr.read() if service.poll() is not None else ""
        assert_runs_as(odd, account.pw_uid)
        service.send_signal(signal.SIGTERM)  # systemctl stop
        assert service.wait(30) == 0 and alive(odd) == []
    finally:
        if service.poll() is None:
            service.kill()


def test_site_install_writes_a_unit_systemd_accepts_and_its_command_keeps_the_site_up(
        cli: Callable[..., Run], keys: Keys, shared_dir: Path) -> None:
    import shutil
    import subprocess

    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is needed (Debian package systemd; .ci/run installs it)")
    name = unique(shared_dir, "store-7")
    site = shared_dir / "store-7"
    init(cli, site, keys, *distinct_ports(2), "--name", name)
    units = shared_dir / "units"
    r = cli("site", "install", site, "--unit-dir", units, "--python", str(shared_dir / "venv" / "bin" / "python"))
    assert r.code == 0, r.err
    unit = units / f"bundler-site-{name}.service"
    assert f"systemctl enable --now {unit.name}" in r.out
    verify = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert verify.returncode == 0 and f"bundler-site-{name}" not in verify.stderr, verify.stderr
    broken = shared_dir / "broken.service"  # the check is real: systemd names what it cannot use
    broken.write_text(unit.read_text().replace("Restart=on-failure", "Restart=sometimes"))
    complaint = subprocess.run([analyze, "verify", str(broken)], capture_output=True, text=True).stderr
    assert "restart specifier" in complaint

    text = unit.read_text()
    assert "Restart=on-failure" in text and "WantedBy=multi-user.target" in text
    start = systemd_split(next(line for line in text.splitlines() if line.startswith("ExecStart="))[10:])
    assert start[-2:] == [str(site.resolve()), "--foreground"]
    service = subprocess.Popen([*start, "--check-interval", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        for _ in range(150):
            if cli("site", "status", site).code == 0:
                break
            time.sleep(0.2)
        assert cli("site", "status", site).code == 0
        os.kill(int((site / "run" / "registry.pid").read_text()), signal.SIGKILL)  # the registry crashes
        assert service.wait(30) == 4  # systemd restarts the unit on this exit
        assert "the site's registry service stopped answering" in (service.stderr.read() if service.stderr else "")
        assert alive(site) == []  # the unit's process stopped the rest on its way out

        again = subprocess.Popen(start, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(150):
            if cli("site", "status", site).code == 0:
                break
            time.sleep(0.2)
        again.send_signal(signal.SIGTERM)  # systemctl stop
        assert again.wait(30) == 0 and alive(site) == []
    finally:
        if service.poll() is None:
            service.kill()
        cli("site", "down", site)


def test_a_site_install_that_fails_its_checks_changes_nothing(
        cli: Callable[..., Run], keys: Keys, shared_dir: Path) -> None:
    """The interpreter lives where the site's user cannot run it (the test venv's, under /root): the
    install is refused before it makes the user, gives it the site or writes the unit."""
    import pwd
    import sys

    name = unique(shared_dir, "store-9")
    site = shared_dir / "store-9"
    init(cli, site, keys, *distinct_ports(2), "--name", name)
    owners = {p: p.stat().st_uid for p in [site, *site.rglob("*")]}
    units = shared_dir / "units"
    refused = cli("site", "install", site, "--unit-dir", units, "--python", str(Path(sys.executable).resolve()))
    assert refused.code == 2 and "cannot run bundler" in refused.err, refused.err
    with pytest.raises(KeyError):
        pwd.getpwnam(f"bundler-{name}")
    assert {p: p.stat().st_uid for p in [site, *site.rglob("*")]} == owners
    assert not units.exists() or not list(units.iterdir())


def test_a_site_made_by_root_runs_no_process_as_root(
        cli: Callable[..., Run], keys: Keys, shared_dir: Path, registry: Registry, skopeo: str,
        tmp_path: Path) -> None:
    """`site init` as root gives the site its own user; `site up` as root then starts nginx (master and
    workers), the application and the registry as that user, and an import by root still lands where
    they read it: a node pulls the image."""
    import pwd
    import subprocess

    from bundler.oci.client import RegistryClient
    from devtools import images as im

    python = str(shared_dir / "venv" / "bin" / "python")

    def shared(*args: str | Path) -> Run:  # bundler as an interpreter every user can run
        done = subprocess.run([python, "-m", "bundler.cli", *map(str, args)], capture_output=True, text=True,
                              cwd=shared_dir, timeout=300)
        return Run(done.returncode, done.stdout, done.stderr)

    refused = cli("site", "init", tmp_path / "closed", "--trust-key", keys.release.pub)  # the test venv is root's
    assert refused.code == 2 and "cannot run bundler" in refused.err and "--as-root" in refused.err, refused.err
    assert not (tmp_path / "closed").exists()

    im.push_image(RegistryClient(registry.host), "store/pos", "1.0", [im.random_layer(300_000, 91)])
    (shared_dir / "p.yaml").write_text("apiVersion: bundler/v1\nkind: Profile\nmetadata: {name: pos, version: 1.0.0}\n"
                                       f"spec:\n  images:\n    - {registry.host}/store/pos:1.0\n")
    assert shared("build", "p.yaml", "-o", "p.tar", "--key", keys.release.key).code == 0
    site = shared_dir / "store-11"
    name = unique(shared_dir, "store-11")
    made = shared("site", "init", site, "--trust-key", keys.release.pub, "--name", name,
                  *listen_options())
    assert made.code == 0, made.err
    account = pwd.getpwnam(f"bundler-{name}")
    assert site.stat().st_uid == account.pw_uid and (site / "credentials.json").stat().st_uid == account.pw_uid
    up = shared("site", "up", site)
    assert up.code == 0, up.err
    try:
        assert_runs_as(site, account.pw_uid)
        imported = shared("import", "p.tar", "--site", site)
        registry_log = site / "logs" / "registry.log"  # a registry's 500 says why only there
        assert imported.code == 0, imported.err + (registry_log.read_text()[-3000:] if registry_log.exists() else "")
        certs = shared_dir / "certs"
        certs.mkdir()
        (certs / "ca.crt").write_bytes((site / "pki" / "ca.pem").read_bytes())
        user, password = json.loads((site / "credentials.json").read_text()).values()
        registry_url = yaml.safe_load((site / "site.yaml").read_text())["registry"]["url"].removeprefix("https://")
        pulled = subprocess.run([skopeo, "copy", "-q", "--src-cert-dir", str(certs), "--src-creds",
                                 f"{user}:{password}", f"docker://{registry_url}/127.0.0.1_{registry.host.split(':')[1]}"
                                 "/store/pos:1.0", f"dir:{shared_dir / 'pulled'}"], capture_output=True, text=True)
        assert pulled.returncode == 0, pulled.stderr
    finally:
        shared("site", "down", site)
