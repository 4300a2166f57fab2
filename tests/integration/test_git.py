"""Git snapshots end to end: a real source repository -> bundle -> the site's Git server over HTTPS
(site CA, basic auth) -> `git clone` / `git fetch` by a real git client."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bundler import signing
from bundler.bundle.manifest import BundleManifest, signatures_json
from bundler.keyfiles import load_signing_key
from bundler.site.registry_process import free_port
from tests.conftest import Keys, Registry, Run, SiteFactory, missing

AUTHOR = ["-c", "user.email=dev@example.com", "-c", "user.name=Dev"]


def git(*args: str | Path, cwd: Path, env: dict[str, str] | None = None, check: bool = True) -> str:
    p = subprocess.run(["git", *AUTHOR, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                       env={**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})})
    if check and p.returncode != 0:
        raise AssertionError(f"git {args}: {p.stderr}")
    return p.stdout.strip() + p.stderr.strip() if not check else p.stdout.strip()


def commit(repo: Path, name: str) -> str:
    (repo / name).write_text(f"{name}\n" * 50)
    git("add", name, cwd=repo)
    git("commit", "-qm", name, cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """main with a merge of `feature`, a lightweight and an annotated tag, and an unselected branch."""
    repo = tmp_path / "src"
    repo.mkdir()
    git("init", "-q", "-b", "main", cwd=repo)
    commit(repo, "base.yaml")
    git("checkout", "-qb", "feature", cwd=repo)
    commit(repo, "feature.yaml")
    git("checkout", "-q", "main", cwd=repo)
    commit(repo, "main.yaml")
    git("merge", "-q", "--no-edit", "feature", cwd=repo)
    git("tag", "v1.0", cwd=repo)
    git("tag", "-a", "v1.1", "-m", "annotated release", cwd=repo)
    git("checkout", "-qb", "experimental", cwd=repo)
    commit(repo, "experimental.yaml")
    git("checkout", "-q", "main", cwd=repo)
    return repo


def profile(tmp_path: Path, url: str | Path, version: str, refs: str = '[main, "v*"]') -> Path:
    path = tmp_path / f"profile-{version}.yaml"
    path.write_text("apiVersion: bundler/v1\nkind: Profile\n"
                    f"metadata: {{name: gitops, version: {version}}}\n"
                    f"spec:\n  repos:\n    - url: {url}\n      name: config\n      refs: {refs}\n")
    return path


@pytest.fixture
def site(make_site: SiteFactory, registry: Registry) -> Path:
    return make_site(registry=registry.url)


def clone_env(site: Path) -> dict[str, str]:
    return {"GIT_SSL_CAINFO": str(site / "pki" / "ca.pem")}


def site_url(site: Path, cli: Callable[..., Run], credentials: bool = True) -> str:
    status = json.loads(cli("site", "status", site, "--json").out)
    url = status["services"]["git"]["url"] + "config.git"
    if credentials:
        creds = json.loads(Path(status["credentials_file"]).read_text())
        url = url.replace("https://", f"https://{creds['username']}:{creds['password']}@")
    return url


def refs_of(repo: Path) -> dict[str, str]:
    lines = git("for-each-ref", "--format=%(refname) %(objectname)", cwd=repo).splitlines()
    return dict(line.split(" ") for line in lines)


def test_selected_refs_clone_from_the_site_and_a_delta_fast_forwards(
        source: Path, site: Path, keys: Keys, cli: Callable[..., Run], tmp_path: Path) -> None:
    first = cli("build", profile(tmp_path, source, "1.0.0"), "-o", "v1.bundle.tar", "--key", keys.release.key)
    assert first.code == 0, first.err
    imported = cli("import", "v1.bundle.tar", "--site", site)
    assert imported.code == 0, imported.err
    up = cli("site", "up", site)
    assert up.code == 0, up.err

    clone = tmp_path / "clone"
    git("clone", "-q", site_url(site, cli), clone, cwd=tmp_path, env=clone_env(site))
    remote = dict(line.split("\t")[::-1] for line in git("ls-remote", "origin", cwd=clone, env=clone_env(site))
                  .splitlines())
    expected = {ref: oid for ref, oid in refs_of(source).items()
                if ref in ("refs/heads/main", "refs/tags/v1.0", "refs/tags/v1.1")}
    assert {ref: remote[ref] for ref in expected} == expected  # the same ids, the annotated tag's own object too
    assert remote["refs/tags/v1.1^{}"] == expected["refs/heads/main"]
    assert "refs/heads/experimental" not in remote and "refs/heads/feature" not in remote
    assert not any(ref.startswith("refs/bundler") for ref in remote)
    assert git("rev-parse", "HEAD", cwd=clone) == expected["refs/heads/main"]

    # new commits on main: a delta against v1 carries only them
    commit(source, "more-1.yaml")
    tip = commit(source, "more-2.yaml")
    delta = cli("build", profile(tmp_path, source, "1.1.0"), "-o", "v2.bundle.tar", "--key", keys.release.key,
                "--since", "v1.bundle.tar")
    assert delta.code == 0, delta.err
    full = cli("build", profile(tmp_path, source, "1.1.0"), "-o", "v2-full.bundle.tar")
    assert full.code == 0, full.err

    def git_bundle_size(bundle: str) -> int:
        with tarfile.open(tmp_path / bundle) as tar:
            return tar.getmember("git/config.bundle").size

    assert git_bundle_size("v2.bundle.tar") < git_bundle_size("v2-full.bundle.tar")
    imported = cli("import", "v2.bundle.tar", "--site", site, "--json")
    assert imported.code == 0, imported.err
    assert json.loads(imported.out)["added"]["refs"] == 1
    git("fetch", "-q", cwd=clone, env=clone_env(site))
    git("merge", "-q", "--ff-only", "origin/main", cwd=clone)
    assert git("rev-parse", "HEAD", cwd=clone) == tip


def test_a_rewritten_main_is_refused_and_the_site_repository_is_unchanged(
        source: Path, site: Path, keys: Keys, cli: Callable[..., Run], tmp_path: Path) -> None:
    assert cli("build", profile(tmp_path, source, "1.0.0"), "-o", "v1.bundle.tar", "--key", keys.release.key).code == 0
    assert cli("import", "v1.bundle.tar", "--site", site).code == 0
    before = refs_of(site / "git" / "config.git")
    git("reset", "-q", "--hard", "HEAD~1", cwd=source)  # force-push style: main no longer contains its old tip
    commit(source, "rewritten.yaml")
    git("tag", "-d", "v1.0", cwd=source)
    git("tag", "-d", "v1.1", cwd=source)
    git("tag", "v1.0", cwd=source)  # and a tag moved
    assert cli("build", profile(tmp_path, source, "1.1.0"), "-o", "v2.bundle.tar", "--key", keys.release.key).code == 0
    refused = cli("import", "v2.bundle.tar", "--site", site)
    assert refused.code == 3
    assert "refs/heads/main" in refused.err and "refs/tags/v1.0" in refused.err and "--force-refs" in refused.err
    assert refs_of(site / "git" / "config.git") == before
    short = cli("import", "v2.bundle.tar", "--site", site, "--force-refs", "main")
    assert short.code == 2 and "name the ref in full" in short.err  # a branch or a tag? never guessed
    branch_only = cli("import", "v2.bundle.tar", "--site", site, "--force-refs", "refs/heads/main")
    assert branch_only.code == 3 and "refs/tags/v1.0" in branch_only.err  # the tag was not named: it stays
    assert refs_of(site / "git" / "config.git") == before
    forced = cli("import", "v2.bundle.tar", "--site", site, "--force-refs", "refs/heads/main",
                 "--force-refs", "config:refs/tags/v1.0")
    assert forced.code == 0, forced.err
    assert refs_of(site / "git" / "config.git")["refs/heads/main"] == git("rev-parse", "main", cwd=source)


def test_a_repository_belongs_to_the_product_that_first_published_it(
        source: Path, site: Path, keys: Keys, cli: Callable[..., Run], tmp_path: Path) -> None:
    """Another product's bundle with a repository of the same name, even one that only moves its
    refs forward, is refused before anything moves, naming the owner."""
    assert cli("build", profile(tmp_path, source, "1.0.0"), "-o", "v1.bundle.tar", "--key", keys.release.key).code == 0
    assert cli("import", "v1.bundle.tar", "--site", site).code == 0
    before = refs_of(site / "git" / "config.git")
    commit(source, "forward.yaml")  # a fast-forward of main
    other = profile(tmp_path, source, "9.0.0")
    other.write_text(other.read_text().replace("name: gitops,", "name: intruder,"))
    assert cli("build", other, "-o", "other.bundle.tar", "--key", keys.release.key).code == 0
    refused = cli("import", "other.bundle.tar", "--site", site)
    assert refused.code == 3 and "Git repository config belongs to gitops" in refused.err, refused.err
    assert refs_of(site / "git" / "config.git") == before
    assert cli("build", profile(tmp_path, source, "1.1.0"), "-o", "v2.bundle.tar", "--key", keys.release.key).code == 0
    assert cli("import", "v2.bundle.tar", "--site", site).code == 0  # its owner moves it
    assert refs_of(site / "git" / "config.git")["refs/heads/main"] == git("rev-parse", "main", cwd=source)
    # a deliberate hand-over: then the other product moves it, and only it
    assert cli("site", "hand-over", site, "git/config.git", "--to", "intruder").code == 0
    assert cli("import", "other.bundle.tar", "--site", site).code == 0
    commit(source, "later.yaml")
    assert cli("build", profile(tmp_path, source, "1.2.0"), "-o", "v3.bundle.tar", "--key", keys.release.key).code == 0
    again = cli("import", "v3.bundle.tar", "--site", site)
    assert again.code == 3 and "belongs to intruder" in again.err, again.err


def test_wrong_password_anonymous_and_push_are_refused(
        source: Path, site: Path, keys: Keys, cli: Callable[..., Run], tmp_path: Path) -> None:
    assert cli("build", profile(tmp_path, source, "1.0.0"), "-o", "v1.bundle.tar", "--key", keys.release.key).code == 0
    assert cli("import", "v1.bundle.tar", "--site", site).code == 0
    assert cli("site", "up", site).code == 0
    good = site_url(site, cli)
    anonymous = site_url(site, cli, credentials=False)
    wrong = anonymous.replace("https://", "https://site:not-the-password@")
    for url in (anonymous, wrong):
        out = git("ls-remote", url, cwd=tmp_path, env=clone_env(site), check=False)
        assert "401" in out or "Authentication failed" in out or "could not read Username" in out, out
    import requests

    status = requests.get(anonymous + "/info/refs?service=git-upload-pack", verify=clone_env(site)["GIT_SSL_CAINFO"],
                          timeout=10)
    assert status.status_code == 401
    clone = tmp_path / "clone"
    git("clone", "-q", good, clone, cwd=tmp_path, env=clone_env(site))
    commit(clone, "pushed.yaml")
    out = git("push", "origin", "main", cwd=clone, env=clone_env(site), check=False)
    assert "403" in out and "push is disabled" in out
    assert refs_of(site / "git" / "config.git")["refs/heads/main"] == refs_of(source)["refs/heads/main"]


def test_only_published_refs_are_served_smart_http_only(
        source: Path, site: Path, keys: Keys, cli: Callable[..., Run], tmp_path: Path) -> None:
    """A refused or running import leaves objects under refs/bundler/ and in packs: no client sees them."""
    import requests

    assert cli("build", profile(tmp_path, source, "1.0.0"), "-o", "v1.bundle.tar", "--key", keys.release.key).code == 0
    assert cli("import", "v1.bundle.tar", "--site", site).code == 0
    assert cli("site", "up", site).code == 0
    repo = site / "git" / "config.git"
    staged = git("rev-parse", "refs/heads/experimental", cwd=source)  # as if a refused import had staged it
    git("fetch", "-q", source, "refs/heads/experimental:refs/bundler/incoming/refs/heads/experimental", cwd=repo)
    assert git("cat-file", "-t", staged, cwd=repo) == "commit"

    remote = git("ls-remote", site_url(site, cli), cwd=tmp_path, env=clone_env(site))
    assert "refs/heads/main" in remote and "refs/bundler" not in remote and staged not in remote
    url = site_url(site, cli, credentials=False)
    creds = json.loads((site / "credentials.json").read_text())
    ca = clone_env(site)["GIT_SSL_CAINFO"]
    for path in ("/info/refs", "/objects/info/packs", "/HEAD", f"/objects/{staged[:2]}/{staged[2:]}",
                 "/info/refs?service=git-frobnicate"):
        r = requests.get(url + path, auth=(creds["username"], creds["password"]), verify=ca, timeout=10)
        assert r.status_code == 403 and "smart HTTP only" in r.text, (path, r.status_code)
        assert "refs/bundler" not in r.text
    fetched = tmp_path / "fetched"
    git("init", "-q", fetched, cwd=tmp_path)
    out = git("fetch", site_url(site, cli), staged, cwd=fetched, env=clone_env(site), check=False)
    assert "does not allow request for unadvertised object" in out, out
    # a client that asks anyway (protocol v2 would serve any object by id): upload-pack refuses it
    want = f"want {staged}\n"
    body = f"{len(want) + 4:04x}{want}0000" + "0009done\n"
    r = requests.post(url + "/git-upload-pack", data=body.encode(), auth=(creds["username"], creds["password"]),
                      headers={"Content-Type": "application/x-git-upload-pack-request", "Git-Protocol": "version=2"},
                      verify=ca, timeout=10)
    assert b"not our ref" in r.content and b"PACK" not in r.content


def test_unreachable_repository_and_missing_ref(cli: Callable[..., Run], source: Path, tmp_path: Path) -> None:
    gone = cli("build", profile(tmp_path, tmp_path / "no-such-repo", "1.0.0"))
    assert gone.code == 4 and "cannot fetch repository" in gone.err and "Traceback" not in gone.err
    missing = cli("build", profile(tmp_path, source, "1.0.0", refs="[main, release-9]"))
    assert missing.code == 2 and "no branch or tag matching 'release-9'" in missing.err
    assert "main" in missing.err and not list(tmp_path.glob("*.bundle.tar"))


def resign_with_corrupt_git_bundle(bundle: Path, key_path: Path) -> None:
    """A signer's mistake (or a stolen key): a broken git bundle whose digests and signature are all valid."""
    with tarfile.open(bundle) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]
    data = dict((m.name, d) for m, d in members)
    pack = bytearray(data["git/config.bundle"])
    pack[pack.index(b"PACK") + 40] ^= 0xFF
    manifest = json.loads(data["bundle.json"])
    manifest["files"]["git/config.bundle"] = {"sha256": hashlib.sha256(pack).hexdigest(), "size": len(pack)}
    manifest_bytes = BundleManifest.from_bytes(json.dumps(manifest).encode()).to_bytes()
    replaced = {"git/config.bundle": bytes(pack), "bundle.json": manifest_bytes,
                "signatures.json": signatures_json([signing.sign(load_signing_key(key_path), manifest_bytes)])}
    with tarfile.open(bundle, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, content in members:
            content = replaced.get(info.name, content)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))


def test_a_corrupt_git_bundle_in_a_validly_signed_bundle_changes_nothing(
        source: Path, site: Path, keys: Keys, cli: Callable[..., Run], tmp_path: Path, registry: Registry) -> None:
    assert cli("build", profile(tmp_path, source, "1.0.0"), "-o", "b.bundle.tar", "--key", keys.release.key).code == 0
    resign_with_corrupt_git_bundle(tmp_path / "b.bundle.tar", keys.release.key)
    verified = cli("verify", "b.bundle.tar", "--key", keys.release.pub)
    assert verified.code == 3 and "git/config.bundle: git cannot read it" in verified.err
    imported = cli("import", "b.bundle.tar", "--site", site)
    assert imported.code == 3 and "git/config.bundle: git cannot read it" in imported.err
    assert not (site / "git" / "config.git").exists() and not (site / "state.json").exists()
    assert registry.catalog() == []


def test_a_delta_on_a_site_without_its_base_is_refused_naming_the_parent(
        source: Path, site: Path, keys: Keys, cli: Callable[..., Run], tmp_path: Path) -> None:
    assert cli("build", profile(tmp_path, source, "1.0.0"), "-o", "v1.bundle.tar", "--key", keys.release.key).code == 0
    commit(source, "next.yaml")
    assert cli("build", profile(tmp_path, source, "1.1.0"), "-o", "v2.bundle.tar", "--key", keys.release.key,
               "--since", "v1.bundle.tar").code == 0
    for command in (["verify", "v2.bundle.tar", "--site", site], ["import", "v2.bundle.tar", "--site", site]):
        r = cli(*command)
        assert r.code == 3, r.err
        assert "builds on commits the site does not have" in r.err and "import gitops 1.0.0 first" in r.err
    assert not (site / "git" / "config.git").exists() and not (site / "state.json").exists()
    assert cli("import", "v1.bundle.tar", "--site", site).code == 0
    assert cli("import", "v2.bundle.tar", "--site", site).code == 0


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[int]:
    """A real OpenSSH server on loopback with a host key no client here knows."""
    binary = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(binary).exists():
        missing("sshd (openssh-server)")
    Path("/run/sshd").mkdir(exist_ok=True)  # its privilege separation directory
    key = tmp_path / "host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    port = free_port()
    server = subprocess.Popen([binary, "-D", "-e", "-f", "/dev/null", "-h", str(key), "-p", str(port),
                               "-o", "ListenAddress=127.0.0.1", "-o", "PidFile=none"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    yield port
    server.kill()
    server.wait()


def test_an_ssh_source_whose_host_is_not_known_fails_at_once_without_a_prompt(
        sshd: int, cli: Callable[..., Run], tmp_path: Path) -> None:
    url = f"ssh://git@127.0.0.1:{sshd}/srv/config.git"
    r = cli("build", profile(tmp_path, url, "1.0.0"), env={"HOME": str(tmp_path), "BUNDLER_REMOTE_TIMEOUT": "120"})
    assert r.code == 4, r.err
    assert f"cannot fetch repository {url}: Host key verification failed" in r.err, r.err
    assert not (tmp_path / ".ssh" / "known_hosts").exists()  # nothing was accepted on the user's behalf


def test_a_source_that_stops_answering_is_stopped_after_the_timeout(cli: Callable[..., Run], tmp_path: Path) -> None:
    """An SSH server that greets and then says nothing more (a stalled link): git would wait for ever."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def greet() -> None:
            connection, _ = listener.accept()
            connection.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
            time.sleep(30)
            connection.close()

        threading.Thread(target=greet, daemon=True).start()
        url = f"ssh://git@127.0.0.1:{port}/srv/config.git"
        r = cli("build", profile(tmp_path, url, "1.0.0"), env={"HOME": str(tmp_path), "BUNDLER_REMOTE_TIMEOUT": "3"})
    assert r.code == 4, r.err
    assert "git did not finish within 3 s and was stopped" in r.err and "Traceback" not in r.err
    assert not list(tmp_path.glob("*.bundle.tar"))
