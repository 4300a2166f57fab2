"""OS and VM updates end to end: real packages -> bundle -> the site's update cache -> real clients
(apt-get with signature checking on, dnf with gpgcheck), resumable downloads, client reports."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from bundler.kinds.updates.cache import CLIENT_APT_KEYRING, CLIENT_CA, CLIENT_RPM_KEY
from bundler.site.registry_process import free_port
from devtools import charts
from devtools.packages import build_deb, build_rpm
from tests.conftest import Keys, Registry, Run


@dataclass
class UpdateSite:
    directory: Path
    status: dict[str, object]

    @property
    def ca(self) -> str:
        return str(self.directory / "pki" / "ca.pem")

    def service(self, key: str) -> str:
        return str(self.status["services"]["updates"][key])  # type: ignore[index]


def write_profile(tmp_path: Path, version: str, entries: str) -> Path:
    path = tmp_path / f"updates-{version}.yaml"
    path.write_text(f"apiVersion: bundler/v1\nkind: Profile\nmetadata: {{name: os, version: {version}}}\n"
                    f"spec:\n  updates:\n{entries}")
    return path


@pytest.fixture
def site(tmp_path: Path, registry: Registry, keys: Keys, cli: Callable[..., Run]) -> Iterator[UpdateSite]:
    directory = tmp_path / "site"
    r = cli("site", "init", "--as-root", directory, "--registry", registry.url, "--trust-key", keys.release.pub,
            "--http-listen", f"127.0.0.1:{free_port()}", "--group", "line-1", "--group", "line-2")
    assert r.code == 0, r.err
    assert cli("site", "up", directory).code == 0
    yield UpdateSite(directory, json.loads(cli("site", "status", directory, "--json").out))
    cli("site", "down", directory)


def apt(site: UpdateSite, state: Path, *args: str, client: dict[str, Any] | None = None,
        group: str = "line-1") -> subprocess.CompletedProcess[str]:
    """apt-get against a private configuration: only the site's repository, signed-by the site key,
    with the sources line and auth.conf `updates enroll` printed (`client`: its --json; the keyring
    at the site's path instead of the client's)."""
    client = client or enrolled(site, f"apt-{state.name}", group)
    for d in ("lists/partial", "cache/archives/partial", "etc"):
        (state / d).mkdir(parents=True, exist_ok=True)
    (state / "status").touch()
    (state / "etc" / "sources.list").write_text(
        client["apt"]["sources"].replace(CLIENT_APT_KEYRING, site.service("apt_key_file")) + "\n")
    (state / "etc" / "auth.conf").write_text(client["apt"]["auth_conf"] + "\n")
    (state / "etc" / "auth.conf").chmod(0o600)
    options = [f"Dir::Etc::SourceList={state}/etc/sources.list", "Dir::Etc::SourceParts=/nonexistent",
               f"Dir::Etc::netrc={state}/etc/auth.conf", "Dir::Etc::netrcparts=/nonexistent",
               f"Dir::State::Lists={state}/lists", f"Dir::Cache={state}/cache", f"Dir::State::status={state}/status",
               f"Acquire::https::CaInfo={site.ca}", "Debug::NoLocking=1", "APT::Sandbox::User=root"]
    command = ["apt-get"] + [arg for option in options for arg in ("-o", option)] + list(args)
    return subprocess.run(command, cwd=state, capture_output=True, text=True)


def test_apt_sees_exactly_the_approved_package_and_notices_tampering(
        site: UpdateSite, keys: Keys, cli: Callable[..., Run], tmp_path: Path) -> None:
    build_deb(tmp_path, "edge-agent")
    build_deb(tmp_path, "edge-debug-tools")
    profile = write_profile(tmp_path, "1.0.0", "    - path: edge-agent_1.0.0_all.deb\n"
                                                 "    - path: edge-debug-tools_1.0.0_all.deb\n")
    assert cli("build", profile, "-o", "u.bundle.tar", "--key", keys.release.key).code == 0
    imported = cli("import", "u.bundle.tar", "--site", site.directory, "--json")
    assert imported.code == 0, imported.err
    assert json.loads(imported.out)["added"]["updates"] == 2
    approved = cli("updates", "approve", "edge-agent", "--group", "line-1", "--site", site.directory)
    assert approved.code == 0, approved.err

    state = tmp_path / "apt"
    update = apt(site, state, "update")
    assert update.returncode == 0, update.stderr
    assert "NO_PUBKEY" not in update.stderr and "not signed" not in update.stderr
    got = apt(site, state, "download", "edge-agent")
    assert got.returncode == 0, got.stderr
    downloaded = state / "edge-agent_1.0.0_all.deb"
    assert downloaded.read_bytes() == (tmp_path / "edge-agent_1.0.0_all.deb").read_bytes()
    hidden = apt(site, state, "download", "edge-debug-tools")
    assert hidden.returncode != 0 and "Unable to locate package edge-debug-tools" in hidden.stderr

    # someone edits the served index on disk (both forms apt may fetch): the signed Release catches it
    index = site.directory / "updates" / "published" / "apt" / "dists" / "line-1" / "main" / "binary-amd64"
    edited = (index / "Packages").read_bytes().replace(b"edge-agent", b"edge-agenX")
    (index / "Packages").write_bytes(edited)
    (index / "Packages.gz").write_bytes(gzip.compress(edited, mtime=0))
    tampered = apt(site, tmp_path / "apt-again", "update")
    assert tampered.returncode != 0, tampered.stdout
    assert "Hash Sum mismatch" in tampered.stderr or "unexpected size" in tampered.stderr, tampered.stderr


def test_a_vm_image_download_resumes_midway_with_range(site: UpdateSite, keys: Keys, cli: Callable[..., Run],
                                                       tmp_path: Path) -> None:
    image = tmp_path / "edge-vm-2.1.qcow2"
    with open(image, "wb") as f:
        for _ in range(200):
            f.write(os.urandom(1 << 20))
    expected = hashlib.sha256(image.read_bytes()).hexdigest()
    profile = write_profile(tmp_path, "1.0.0", f"    - path: {image.name}\n      sha256: {expected}\n"
                                               "      approve: [line-1]\n")  # only approved payloads are served
    assert cli("build", profile, "-o", "vm.bundle.tar", "--key", keys.release.key).code == 0
    assert cli("import", "vm.bundle.tar", "--site", site.directory).code == 0
    listed = json.loads(cli("updates", "list", "--site", site.directory, "--json").out)["updates"]
    assert listed[0]["kind"] == "vm-image"

    url = f"{site.service('url')}files/{image.name}"
    partial = tmp_path / "download.part"
    auth = bearer(enroll(cli, site, "vm-host", "line-1"))
    with requests.get(url, stream=True, verify=site.ca, timeout=30, headers=auth) as r:
        assert r.status_code == 200 and r.headers["X-Checksum-Sha256"] == expected
        with open(partial, "wb") as out:
            for chunk in r.iter_content(1 << 20):
                out.write(chunk)
                if out.tell() >= 90 << 20:
                    break  # the stick is pulled
    have = partial.stat().st_size
    with requests.get(url, headers={"Range": f"bytes={have}-", **auth}, stream=True, verify=site.ca,
                      timeout=30) as r:
        assert r.status_code == 206 and r.headers["Content-Range"] == f"bytes {have}-{(200 << 20) - 1}/{200 << 20}"
        with open(partial, "ab") as out:
            for chunk in r.iter_content(1 << 20):
                out.write(chunk)
    digest = hashlib.sha256()
    with open(partial, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    assert digest.hexdigest() == expected
    # a Range of absurd numbers: not satisfiable (RFC 9110), and the size to resume from is given
    huge = requests.head(url, headers={"Range": f"bytes={'9' * 5000}-", **auth}, verify=site.ca, timeout=30)
    assert huge.status_code == 416 and huge.headers["Content-Range"] == f"bytes */{200 << 20}"


def test_client_reports_and_what_they_lack(site: UpdateSite, keys: Keys, cli: Callable[..., Run],
                                           tmp_path: Path) -> None:
    build_deb(tmp_path, "edge-agent")
    build_deb(tmp_path, "edge-agent", "1.1.0")
    profile = write_profile(tmp_path, "1.0.0",
                            "    - path: edge-agent_1.0.0_all.deb\n      approve: [line-1]\n"
                            "    - path: edge-agent_1.1.0_all.deb\n      approve: [line-1, line-9]\n")
    assert cli("build", profile, "-o", "u.bundle.tar", "--key", keys.release.key).code == 0
    imported = cli("import", "u.bundle.tar", "--site", site.directory)
    assert imported.code == 0 and "'line-9', which this site does not have" in imported.err
    api = site.service("url") + "api/"
    token = enroll(cli, site, "pos-7", "line-1")
    approved = requests.get(api + "groups/line-1/approved", verify=site.ca, timeout=10, headers=bearer(token)).json()
    assert sorted(u["version"] for u in approved["updates"]) == ["1.0.0", "1.1.0"]
    report = {"client": "pos-7", "group": "line-1", "installed": ["edge-agent=1.0.0"]}
    accepted = requests.post(api + "report", json=report, verify=site.ca, timeout=10, headers=bearer(token))
    assert accepted.status_code == 200
    bad = requests.post(api + "report", json={"installed": "edge-agent"}, verify=site.ca, timeout=10,
                        headers=bearer(token))
    assert bad.status_code == 400
    status = json.loads(cli("updates", "status", "--site", site.directory, "--json").out)
    (client,) = status["clients"]
    assert client["client"] == "pos-7" and client["reported_at"]
    assert [(u["name"], u["version"]) for u in client["lacking"]] == [("edge-agent", "1.1.0")]


def test_bad_update_input(site: UpdateSite, keys: Keys, cli: Callable[..., Run], tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    build_deb(served, "edge-agent")
    corrupt = tmp_path / "broken_1.0_all.deb"
    corrupt.write_bytes((served / "edge-agent_1.0.0_all.deb").read_bytes()[:300])
    with charts.serve(served) as url:
        wrong = write_profile(tmp_path, "1.0.0",
                              f"    - url: {url}/edge-agent_1.0.0_all.deb\n      sha256: {'a' * 64}\n")
        r = cli("build", wrong)
        assert r.code == 3 and f"the profile says {'a' * 64}" in r.err and "Traceback" not in r.err
    r = cli("build", write_profile(tmp_path, "1.0.1", f"    - path: {corrupt.name}\n"))
    assert r.code == 3 and "is not a valid .deb package" in r.err
    assert not list(tmp_path.glob("*.bundle.tar")) and not list(tmp_path.glob(".bundler-staging-*"))

    approvals = site.directory / "updates" / "approvals.json"
    before = approvals.read_bytes() if approvals.exists() else b""
    missing = cli("updates", "approve", "no-such-update", "--group", "line-1", "--site", site.directory)
    assert missing.code == 2 and "no update named 'no-such-update'" in missing.err
    build_deb(tmp_path, "edge-agent")
    assert cli("build", write_profile(tmp_path, "1.0.2", "    - path: edge-agent_1.0.0_all.deb\n"),
               "-o", "u.bundle.tar", "--key", keys.release.key).code == 0
    assert cli("import", "u.bundle.tar", "--site", site.directory).code == 0
    unknown = cli("updates", "approve", "edge-agent", "--group", "line-99", "--site", site.directory)
    assert unknown.code == 2 and "unknown group 'line-99'" in unknown.err and "line-1, line-2" in unknown.err
    assert (approvals.read_bytes() if approvals.exists() else b"") in (before, b"{}")


def dnf(site: UpdateSite, root: Path, package_key: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """dnf against a private configuration: only the .repo file `updates enroll` printed for a line-1
    client (its name and token; gpgcheck and repo_gpgcheck on), the site's key and CA at the site's
    paths, with the package vendor's key added to gpgkey as its comment says."""
    (root / "etc").mkdir(parents=True, exist_ok=True)
    printed = enrolled(site, f"dnf-{root.name}", "line-1")["dnf"]["repo"]
    assert "repo_gpgcheck=1" in printed and "username=dnf-" in printed
    repo = printed.replace(CLIENT_RPM_KEY, str(site.directory / "updates" / "site-key.asc")).replace(CLIENT_CA, site.ca)
    (root / "etc" / "site.repo").write_text(re.sub(r"(?m)^(gpgkey=.*)$", rf"\1 file://{package_key}", repo))
    (root / "etc" / "dnf.conf").write_text(f"[main]\nreposdir={root}/etc\ncachedir={root}/cache\n"
                                          f"logdir={root}/log\npersistdir={root}/persist\n")
    command = ["dnf", "-y", "-c", str(root / "etc" / "dnf.conf"), f"--installroot={root}/installroot",
               "--setopt=reposdir=" + str(root / "etc"), "--releasever=1", *args]
    done = subprocess.run(command, capture_output=True, text=True, cwd=root,
                          env={**os.environ, "GNUPGHOME": str(root / "gnupg")})
    for keyring in root.rglob("pubring"):  # librepo's keyring for repo_gpgcheck: its gpg-agent outlives dnf
        if keyring.is_dir():
            subprocess.run(["gpgconf", "--homedir", str(keyring), "--kill", "gpg-agent"], capture_output=True)
    return done


def signed_rpm(tmp_path: Path) -> tuple[Path, Path]:
    """An .rpm built with rpmbuild and signed by a vendor key (what dnf's gpgcheck checks)."""
    home = tmp_path / "vendor-gnupg"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback", "--passphrase", ""]
    subprocess.run([*gpg, "--quick-gen-key", "Edge Vendor <vendor@example.com>", "rsa3072", "sign", "never"],
                   check=True, capture_output=True)
    key = tmp_path / "vendor.asc"
    key.write_bytes(subprocess.run([*gpg, "--armor", "--export"], check=True, capture_output=True).stdout)
    package = build_rpm(tmp_path, "edge-agent")
    subprocess.run(["rpmsign", "--define", f"__gpg {shutil.which('gpg')}", "--define", f"_gpg_path {home}",
                    "--define", "_gpg_name Edge Vendor",
                    "--define", "_gpg_sign_cmd_extra_args --batch --pinentry-mode loopback --passphrase ''",
                    "--addsign", str(package)], check=True, capture_output=True,
                   env={**os.environ, "GNUPGHOME": str(home)})
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True)
    return package, key


def test_dnf_installs_an_approved_rpm_with_gpg_checks(site: UpdateSite, keys: Keys, cli: Callable[..., Run],
                                                      tmp_path: Path) -> None:
    package, vendor_key = signed_rpm(tmp_path)
    shutil.copy(package, tmp_path / package.name)
    profile = write_profile(tmp_path, "1.0.0", f"    - path: {package.name}\n")
    assert cli("build", profile, "-o", "r.bundle.tar", "--key", keys.release.key).code == 0
    assert cli("import", "r.bundle.tar", "--site", site.directory).code == 0
    assert cli("updates", "approve", "edge-agent", "--group", "line-1", "--site", site.directory).code == 0
    root = tmp_path / "dnf"
    result = dnf(site, root, vendor_key, "install", "--downloadonly", "--destdir", str(root / "downloads"),
                 "edge-agent")
    assert result.returncode == 0, result.stdout + result.stderr
    (downloaded,) = (root / "downloads").glob("edge-agent-1.0.0-1*.rpm")
    assert downloaded.read_bytes() == package.read_bytes()
    assert "Importing GPG key" in result.stdout + result.stderr  # the repository's signature was checked

    repomd = next((site.directory / "updates" / "published" / "rpm" / "line-1" / "repodata").glob("repomd.xml"))
    repomd.write_text(repomd.read_text().replace("<revision>", "<revision>1"))  # tampered metadata
    again = dnf(site, tmp_path / "dnf-again", vendor_key, "install", "--downloadonly", "--destdir",
                str(tmp_path / "dnf-again" / "downloads"), "edge-agent")
    assert again.returncode != 0, again.stdout


def test_re_import_restores_a_payload_the_cache_lost(site: UpdateSite, keys: Keys, cli: Callable[..., Run],
                                                      tmp_path: Path) -> None:
    build_deb(tmp_path, "edge-agent")
    profile = write_profile(tmp_path, "1.0.0", "    - path: edge-agent_1.0.0_all.deb\n")
    assert cli("build", profile, "-o", "u.bundle.tar", "--key", keys.release.key).code == 0
    assert cli("import", "u.bundle.tar", "--site", site.directory).code == 0
    (blob,) = (site.directory / "updates" / "blobs").iterdir()
    blob.unlink()  # a disk problem, an overeager clean-up
    again = cli("import", "u.bundle.tar", "--site", site.directory, "--json")
    assert again.code == 0, again.err
    assert json.loads(again.out)["added"]["updates"] == 1 and blob.exists()


def test_an_approval_waits_for_the_site_files_lock_and_loses_nothing(site: UpdateSite, keys: Keys,
                                                                      cli: Callable[..., Run], tmp_path: Path) -> None:
    """`updates approve` changes approvals.json only under the site's files lock (which an import's
    publication holds too), so a decision made during an import is neither lost nor overwritten."""
    from bundler.site.journal import files_lock

    build_deb(tmp_path, "edge-agent")
    build_deb(tmp_path, "edge-tools")
    profile = write_profile(tmp_path, "1.0.0", "    - path: edge-agent_1.0.0_all.deb\n"
                                               "    - path: edge-tools_1.0.0_all.deb\n      approve: [line-2]\n")
    assert cli("build", profile, "-o", "u.bundle.tar", "--key", keys.release.key).code == 0
    assert cli("import", "u.bundle.tar", "--site", site.directory).code == 0
    approvals = site.directory / "updates" / "approvals.json"
    before = approvals.read_bytes()
    with files_lock(site.directory):  # what an import holds while it publishes
        waiting = subprocess.Popen([sys.executable, "-m", "bundler.cli", "updates", "approve", "edge-agent",
                                    "--group", "line-1", "--site", str(site.directory)], cwd=tmp_path,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        assert waiting.poll() is None and approvals.read_bytes() == before  # it waits, it wrote nothing
    _, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err
    decided = json.loads(approvals.read_text())
    assert list(decided["line-1"].values()) == ["approved"] and list(decided["line-2"].values()) == ["approved"]


def enrolled(site: UpdateSite, client: str, group: str) -> dict[str, Any]:
    """`bundler updates enroll CLIENT --group GROUP --json`: the token and the client's configuration."""
    r = subprocess.run([sys.executable, "-m", "bundler.cli", "updates", "enroll", client, "--group", group,
                        "--site", str(site.directory), "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    config: dict[str, Any] = json.loads(r.stdout)
    return config


def enroll(cli: Callable[..., Run], site: UpdateSite, client: str, group: str) -> str:
    r = cli("updates", "enroll", client, "--group", group, "--site", site.directory, "--json")
    assert r.code == 0, r.err
    return str(json.loads(r.out)["token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_clients_are_enrolled_and_only_approved_payloads_are_served(
        site: UpdateSite, keys: Keys, cli: Callable[..., Run], tmp_path: Path) -> None:
    for version in ("1.9", "1.10", "1.11"):  # 1.10 is newer than 1.9 (version order, not string order)
        (tmp_path / f"v{version}").mkdir()
        (tmp_path / f"v{version}" / "agent.bin").write_bytes(f"agent {version}\n".encode())
    profile = write_profile(tmp_path, "1.0.0", "".join(
        f"    - path: v{v}/agent.bin\n      name: agent\n      metadata: {{version: '{v}'}}\n"
        + ("      approve: [line-1]\n" if v != "1.11" else "") for v in ("1.9", "1.10", "1.11")))
    assert cli("build", profile, "-o", "a.bundle.tar", "--key", keys.release.key).code == 0
    assert cli("import", "a.bundle.tar", "--site", site.directory).code == 0
    digests = {e["version"]: e["sha256"] for e in
               json.loads(cli("updates", "list", "--site", site.directory, "--json").out)["updates"]}
    url = site.service("url")

    # by file name: the newest approved (1.10; 1.11 is not approved), by version order
    line1 = bearer(enroll(cli, site, "till-1", "line-1"))
    r = requests.get(f"{url}files/agent.bin", verify=site.ca, timeout=10, headers=line1)
    assert r.status_code == 200 and r.content == b"agent 1.10\n"
    assert requests.get(f"{url}blobs/sha256/{digests['1.11']}", verify=site.ca, timeout=10,
                        headers=line1).status_code == 404
    assert cli("updates", "decline", "agent=1.10", "--group", "line-1", "--site", site.directory).code == 0
    assert requests.get(f"{url}files/agent.bin", verify=site.ca, timeout=10, headers=line1).content == b"agent 1.9\n"
    assert requests.get(f"{url}blobs/sha256/{digests['1.10']}", verify=site.ca, timeout=10,
                        headers=line1).status_code == 404

    # an enrolled client of line-2 gets what line-2 approved: nothing yet
    token = enroll(cli, site, "till-2", "line-2")
    assert requests.get(f"{url}files/agent.bin", verify=site.ca, timeout=10, headers=bearer(token)).status_code == 404
    assert requests.get(f"{url}files/agent.bin", verify=site.ca, timeout=10,
                        headers=bearer("not-a-token")).status_code == 401

    # reports: an enrolled client's token, for itself only, bounded
    api = f"{url}api/report"
    assert requests.post(api, json={"client": "till-2", "group": "line-2", "installed": []}, verify=site.ca,
                         timeout=10).status_code == 401  # no token
    assert requests.post(api, json={"installed": []}, verify=site.ca, timeout=10,
                         headers=bearer("forged")).status_code == 401
    assert requests.post(api, json={"client": "pos-1", "installed": []}, verify=site.ca, timeout=10,
                         headers=bearer(token)).status_code == 403  # another client's name
    assert requests.post(api, json={"group": "line-1", "installed": []}, verify=site.ca, timeout=10,
                         headers=bearer(token)).status_code == 403  # another group
    assert claimed_length(site, token, 2 << 20) == 413  # refused on its header, the body never read
    chunked = requests.post(api, data=iter([b'{"installed": []}']), verify=site.ca, timeout=10, headers=bearer(token))
    assert chunked.status_code == 411  # no valid Content-Length
    ok = requests.post(api, json={"installed": ["agent=1.9"]}, verify=site.ca, timeout=10, headers=bearer(token))
    assert ok.status_code == 200 and ok.json() == {"recorded": True, "client": "till-2", "group": "line-2"}
    again = enroll(cli, site, "till-2", "line-2")  # a new token replaces the old one
    assert requests.post(api, json={"installed": []}, verify=site.ca, timeout=10,
                         headers=bearer(token)).status_code == 401
    assert requests.post(api, json={"installed": []}, verify=site.ca, timeout=10,
                         headers=bearer(again)).status_code == 200
    assert cli("updates", "enroll", "../x", "--group", "line-1", "--site", site.directory).code == 2
    assert cli("updates", "enroll", "pos-9", "--group", "line-9", "--site", site.directory).code == 2


def test_a_group_is_a_boundary(site: UpdateSite, keys: Keys, cli: Callable[..., Run], tmp_path: Path) -> None:
    """A group's indexes, approvals and payloads go to its enrolled clients only: anonymous readers
    get 401 on every group path, another group's client 404; apt configured as `updates enroll`
    prints reads its own group with signature checking on. `updates.anonymous: true` opens them."""
    build_deb(tmp_path, "edge-agent")
    build_deb(tmp_path, "edge-debug-tools")
    profile = write_profile(tmp_path, "1.0.0", "    - path: edge-agent_1.0.0_all.deb\n      approve: [line-1]\n"
                                               "    - path: edge-debug-tools_1.0.0_all.deb\n      approve: [line-2]\n")
    assert cli("build", profile, "-o", "u.bundle.tar", "--key", keys.release.key).code == 0
    assert cli("import", "u.bundle.tar", "--site", site.directory).code == 0
    # declined for line-1, approved for line-2: line-1's client must not have it by any path
    assert cli("updates", "decline", "edge-debug-tools", "--group", "line-1", "--site", site.directory).code == 0
    listing = json.loads(cli("updates", "list", "--site", site.directory, "--json").out)["updates"]
    listed = {e["name"]: e for e in listing}
    debug = listed["edge-debug-tools"]
    url = site.service("url")
    paths = [f"files/{debug['file']}", f"blobs/sha256/{debug['sha256']}", f"apt/pool/{debug['sha256']}/{debug['file']}",
             "api/groups/line-2/approved", "apt/dists/line-2/InRelease", "apt/dists/line-2/main/binary-amd64/Packages",
             "api/groups/line-1/approved", "apt/dists/line-1/InRelease", "rpm/line-2/repodata/repomd.xml"]
    for path in paths:
        assert requests.get(url + path, verify=site.ca, timeout=10).status_code == 401, path
        assert requests.head(url + path, verify=site.ca, timeout=10).status_code == 401, path
    line1, line2 = enrolled(site, "pos-1", "line-1"), enrolled(site, "pos-2", "line-2")
    for path in paths[:6] + paths[-1:]:  # line-2's payload, index and approvals
        assert requests.get(url + path, verify=site.ca, timeout=10,
                            headers=bearer(line1["token"])).status_code == 404, path
        got = requests.get(url + path, verify=site.ca, timeout=10, headers=bearer(line2["token"]))
        assert got.status_code == 200, path
    assert requests.get(url + paths[0], verify=site.ca, timeout=10,
                        headers=bearer(line2["token"])).content == (tmp_path / debug["file"]).read_bytes()
    assert requests.get(url + paths[0], verify=site.ca, timeout=10, auth=("pos-2", line2["token"])).status_code == 200
    assert requests.get(url + paths[0], verify=site.ca, timeout=10, auth=("pos-1", line2["token"])).status_code == 401
    assert requests.get(url + "keys/apt-key.gpg", verify=site.ca, timeout=10).status_code == 200  # public keys

    own, other = apt(site, tmp_path / "apt-1", "update", client=line1), apt(site, tmp_path / "apt-2", "update",
                                                                          client=line2)
    assert own.returncode == 0 and other.returncode == 0, own.stderr + other.stderr
    assert apt(site, tmp_path / "apt-1", "download", "edge-agent", client=line1).returncode == 0
    assert apt(site, tmp_path / "apt-1", "download", "edge-debug-tools", client=line1).returncode != 0
    assert apt(site, tmp_path / "apt-2", "download", "edge-debug-tools", client=line2).returncode == 0
    stranger = dict(line1, apt={**line1["apt"], "auth_conf": line1["apt"]["auth_conf"].replace(line1["token"], "x")})
    refused = apt(site, tmp_path / "apt-x", "update", client=stranger)
    assert refused.returncode != 0 or "401" in refused.stdout + refused.stderr

    # anonymous reading is a site setting, off by default
    config = site.directory / "site.yaml"
    config.write_text(config.read_text().replace("updates:\n", "updates:\n  anonymous: true\n"))
    assert cli("site", "down", site.directory).code == 0 and cli("site", "up", site.directory).code == 0
    assert requests.get(url + paths[0], verify=site.ca, timeout=10).status_code == 200


def test_slow_clients_cannot_hold_the_service(site: UpdateSite) -> None:
    """50 connections that send half a request and stall (slowloris) leave /healthz answering."""
    import socket
    import ssl
    import time

    host, port = site.service("url").split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(site.ca))
    stalled = []
    for _ in range(50):
        raw = socket.create_connection((host, int(port)), timeout=5)
        conn = context.wrap_socket(raw, server_hostname=host)
        conn.sendall(b"POST /updates/api/report HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{")
        stalled.append(conn)
    try:
        started = time.monotonic()
        r = requests.get(site.service("url").split("/updates/")[0] + "/healthz", verify=site.ca, timeout=5)
        assert r.status_code == 200 and r.text == "ok\n"
        assert time.monotonic() - started < 5
    finally:
        for conn in stalled:
            conn.close()


def claimed_length(site: UpdateSite, token: str, length: int) -> int:
    """The status of a report whose Content-Length claims `length` bytes (a few sent)."""
    import http.client
    import ssl

    host, port = site.service("url").split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), timeout=10,
                                       context=ssl.create_default_context(cafile=str(site.ca)))
    try:
        conn.putrequest("POST", "/updates/api/report")
        conn.putheader("Authorization", f"Bearer {token}")
        conn.putheader("Content-Length", str(length))
        conn.endheaders(b"{}")
        return conn.getresponse().status
    finally:
        conn.close()


def test_two_rpms_of_one_file_name_are_both_served(site: UpdateSite, keys: Keys, cli: Callable[..., Run],
                                                   tmp_path: Path) -> None:
    """A vendor's rebuild of the same version: same file name, other bytes. Both import (state done),
    both approvals publish, and dnf reads the repository."""
    first = build_rpm(tmp_path / "a", "edge-agent")
    time.sleep(1.1)  # another build time: other bytes under the same file name
    second = build_rpm(tmp_path / "b", "edge-agent")
    assert first.name == second.name and first.read_bytes() != second.read_bytes()
    for n, package in enumerate((first, second)):
        shutil.copy(package, tmp_path / f"v{n}.rpm")
    profile = write_profile(tmp_path, "1.0.0", f"    - path: a/rpmbuild/RPMS/noarch/{first.name}\n"
                                               "      approve: [line-1]\n"
                                               f"    - path: b/rpmbuild/RPMS/noarch/{second.name}\n"
                                               "      approve: [line-1]\n")
    assert cli("build", profile, "-o", "r.bundle.tar", "--key", keys.release.key).code == 0
    imported = cli("import", "r.bundle.tar", "--site", site.directory)
    assert imported.code == 0, imported.err
    state = json.loads((site.directory / "state.json").read_text())
    assert [b["status"] for b in state["bundles"]] == ["done"]
    assert cli("updates", "decline", "edge-agent", "--group", "line-2", "--site", site.directory).code == 0
    published = site.directory / "updates" / "published" / "rpm" / "line-1" / "pool"
    assert sorted(p.read_bytes() for p in published.glob("*/*.rpm")) == sorted([first.read_bytes(),
                                                                               second.read_bytes()])


def test_a_download_by_file_name_belongs_to_the_product_that_first_brought_it(
        site: UpdateSite, keys: Keys, cli: Callable[..., Run], tmp_path: Path) -> None:
    """Another product's bundle with a higher `firmware.bin` and a pre-approval is refused before
    anything moves, naming the owner; the owner's download by name stays; a hand-over is deliberate."""
    for product, version in (("store-pos", "1.0"), ("store-scale", "9.9")):
        (tmp_path / product).mkdir()
        (tmp_path / product / "firmware.bin").write_bytes(f"{product} firmware {version}\n".encode())
        (tmp_path / f"{product}.yaml").write_text(
            f"apiVersion: bundler/v1\nkind: Profile\nmetadata: {{name: {product}, version: 1.0.0}}\nspec:\n"
            f"  updates:\n    - path: {product}/firmware.bin\n      metadata: {{version: '{version}'}}\n"
            "      approve: [line-1]\n")
        assert cli("build", f"{product}.yaml", "-o", f"{product}.bundle.tar", "--key", keys.release.key).code == 0
    assert cli("import", "store-pos.bundle.tar", "--site", site.directory).code == 0
    token = enroll(cli, site, "pos-1", "line-1")
    url = f"{site.service('url')}files/firmware.bin"

    def served() -> bytes:
        r = requests.get(url, verify=site.ca, timeout=10, headers=bearer(token))
        assert r.status_code == 200
        return r.content

    assert served() == b"store-pos firmware 1.0\n"
    catalog = (site.directory / "updates" / "catalog.json").read_bytes()
    refused = cli("import", "store-scale.bundle.tar", "--site", site.directory, "--json")
    assert refused.code == 3 and "files/firmware.bin belongs to store-pos" in refused.err, refused.err
    checked = cli("verify", "store-scale.bundle.tar", "--site", site.directory, "--json")
    assert checked.code == 3 and "name-owned" in {p["code"] for p in json.loads(checked.out)["problems"]}
    assert served() == b"store-pos firmware 1.0\n"  # still the owner's, for enrolled clients too
    assert (site.directory / "updates" / "catalog.json").read_bytes() == catalog  # nothing moved

    assert "bundler site hand-over" in refused.err and "files/firmware.bin --to store-scale" in refused.err
    handed = cli("site", "hand-over", site.directory, "files/firmware.bin", "--to", "store-scale")
    assert handed.code == 0 and "from store-pos to store-scale" in handed.out, handed.err
    (recorded,) = json.loads(cli("site", "status", site.directory, "--json").out)["handovers"]
    assert {k: recorded[k] for k in ("subject", "from", "to")} == {
        "subject": "files/firmware.bin", "from": "store-pos", "to": "store-scale"}
    assert cli("import", "store-scale.bundle.tar", "--site", site.directory).code == 0
    assert served() == b"store-scale firmware 9.9\n"
