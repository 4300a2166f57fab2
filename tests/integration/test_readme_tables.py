"""The site technician page's tables (docs/technician.md) are what the program prints: every row is
reproduced here with the real command, and its message, exit code and "what to do" (the printed
hint) must match the row.

A row is `| `MESSAGE` [CODE] | WHAT TO DO |`, one or more messages a row. In a message, `...` stands
for any text and NAME / VERSION for one word; in WHAT TO DO, `/srv/site` stands for the site the
command ran on. A new row needs a producer below, or this test fails naming it.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bundler.oci.client import RegistryClient
from bundler.site.registry_process import free_port
from devtools.gitrepo import git, new_repo
from devtools.samples import push_samples
from tests.attack_cases import ATTACKS, GOOD, KEYS
from tests.conftest import Keys, Registry, Run, distinct_ports, small_tmpfs

DOCS = Path(__file__).parents[2] / "docs"
TECHNICIAN = DOCS / "technician.md"  # the site technician's page: its message tables
REVIEWER = DOCS / "security-reviewer.md"  # the security reviewer's page: the problem codes


@dataclass(frozen=True)
class Row:
    messages: tuple[str, ...]
    code: int
    todo: str

    def matches(self, message: str, text: str) -> bool:
        """The program's error line shows MESSAGE (with its wildcards)."""
        return re.search(wildcards(message), text) is not None

    def says_to_do(self, hint: str, site: Path | None) -> bool:
        """The program's hint is this row's WHAT TO DO (backticks aside)."""
        todo = self.todo.replace("`", "")
        if site is not None:
            todo = todo.replace("/srv/site", str(site))
        return re.fullmatch(wildcards(todo), hint.replace("`", "")) is not None


def wildcards(text: str) -> str:
    pattern = re.escape(text).replace(re.escape("..."), ".*")
    return pattern.replace("NAME", r"\S+").replace("VERSION", r"\S+")


def technician_rows() -> list[Row]:
    text = TECHNICIAN.read_text()
    section = text[:text.index("\n## Each command in detail")]  # the three commands (and the hub), every row
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        found = re.fullmatch(r"(.*)\[(\d)\]", cells[0]) if len(cells) == 2 else None
        if found:
            messages = tuple(re.findall(r"`([^`]+)`", found.group(1)))
            rows.append(Row(messages, int(found.group(2)), cells[1]))
    return rows


@dataclass
class Produced:
    run: Run
    site: Path | None = None  # the site the command ran on (it stands for /srv/site in the row)


@dataclass
class World:
    """What the producers share: a source registry with sample images and a Git repository, bundles
    built from them, the signed attack assets, and a registry the sites import into."""
    cli: Callable[..., Run]
    keys: Keys
    work: Path
    target: Registry
    v1: Path
    v2_delta: Path
    split: Path
    rewritten: Path
    small_disk: Path

    def site(self, name: str, *trust: Path, threshold: int = 1, embedded: bool = False) -> Path:
        directory = self.work / "sites" / name
        if directory.exists():
            shutil.rmtree(directory)
        keys: list[str | Path] = []
        for key in trust or (self.keys.release.pub,):
            keys += ["--trust-key", key]
        registry_port, http_port = distinct_ports(2)  # two free_port() calls can return one port twice
        where = (["--registry-listen", f"127.0.0.1:{registry_port}"] if embedded
                 else ["--registry", self.target.url])
        r = self.cli("site", "init", "--as-root", directory, *keys, "--threshold", str(threshold), *where,
                     "--http-listen", f"127.0.0.1:{http_port}")
        assert r.code == 0, r.err
        return directory

    def asset_site(self, name: str, *trust: str, runs_good: bool = False) -> Path:
        site = self.site(name, *(KEYS / f"{key}.pub" for key in trust or ("release",)), threshold=len(trust) or 1)
        if runs_good:
            assert self.cli("import", GOOD, "--site", site).code == 0
        return site

    def imported(self, bundle: Path, site: Path, *extra: str) -> Produced:
        return Produced(self.cli("import", bundle, "--site", site, *extra), site)


@pytest.fixture(scope="module")
def world(registry_factory: Callable[[], Registry], keys: Keys,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    work = tmp_path_factory.mktemp("tables")
    source = registry_factory()
    refs = list(push_samples(RegistryClient(source.host)).refs)[:2]
    repo = new_repo(work / "config", "app.yaml", "replicas: 1\n")

    def build(version: str, output: str, *extra: str | Path) -> Path:
        images = "".join(f"    - {ref}\n" for ref in refs)
        profile = work / f"profile-{version}.yaml"
        profile.write_text(f"apiVersion: bundler/v1\nkind: Profile\nmetadata: {{name: store, version: {version}}}\n"
                           f"spec:\n  images:\n{images}  repos:\n    - {{url: config, name: config}}\n")
        r = subprocess.run([sys.executable, "-m", "bundler.cli", "build", str(profile), "-o", output, "--key",
                            str(keys.release.key), *map(str, extra)], cwd=work, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return work / output

    v1 = build("1.0.0", "v1.bundle.tar")
    v2_delta = build("2.0.0", "v2.bundle.tar", "--since", v1)
    split = build("1.0.0", "split.bundle.tar", "--split-size", "1M")
    git("commit", "-q", "--amend", "-m", "one, rewritten", cwd=repo)
    rewritten = build("3.0.0", "v3.bundle.tar")

    with small_tmpfs(work / "small-disk") as mount:
        yield World(lambda *a, **k: cli_run(work, *a, **k), keys, work, registry_factory(), v1, v2_delta, split,
                    rewritten, mount)


def cli_run(cwd: Path, *args: str | Path, env: dict[str, str] | None = None) -> Run:
    p = subprocess.run([sys.executable, "-m", "bundler.cli", *map(str, args)], capture_output=True, text=True,
                       cwd=cwd, timeout=600, env={**os.environ, **(env or {})})
    return Run(p.returncode, p.stdout, p.stderr)


def copy_without(bundle: Path, out: Path) -> Path:
    """A copy of a bundle with its largest payload member left out (every other member as it was)."""
    with tarfile.open(bundle) as src:
        members = src.getmembers()
        largest = max((m for m in members if m.name.startswith("oci/blobs/")), key=lambda m: m.size)
        with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dst:
            for member in members:
                if member.name != largest.name:
                    dst.addfile(member, src.extractfile(member))
    return out


# ---- producers: one per message; each runs the real command that prints it ----

def already_a_site(w: World) -> Produced:
    site = w.site("twice")
    return Produced(w.cli("site", "init", "--as-root", site, "--trust-key", w.keys.release.pub), site)


def no_trust_key(w: World) -> Produced:
    return Produced(w.cli("site", "init", "--as-root", w.work / "sites" / "keyless"))


def not_a_pem_key(w: World) -> Produced:
    (w.work / "release.txt").write_text("this is not a key\n")
    return Produced(w.cli("site", "init", "--as-root", w.work / "sites" / "notpem", "--trust-key",
                          w.work / "release.txt"))


def interpreter_closed(w: World) -> Produced:
    """As root without --as-root: the test venv's interpreter lives under /root, closed to the site's user."""
    return Produced(w.cli("site", "init", w.work / "sites" / "closed", "--trust-key", w.keys.release.pub))


def port_taken(service: str) -> Callable[[World], Produced]:
    def produce(w: World) -> Produced:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            busy = f"127.0.0.1:{s.getsockname()[1]}"
            site = w.work / "sites" / f"busy-{service}"
            listen = {"registry": ["--registry-listen", busy, "--http-listen", f"127.0.0.1:{free_port()}"],
                      "http": ["--registry-listen", f"127.0.0.1:{free_port()}", "--http-listen", busy]}[service]
            assert w.cli("site", "init", "--as-root", site, "--trust-key", w.keys.release.pub, *listen).code == 0
            return Produced(w.cli("site", "up", site), site)
    return produce


def tools_dir(w: World, name: str, registry_script: str | None) -> dict[str, str]:
    """A PATH with the tools `site up` uses but no registry binary (or a registry that never
    answers), and no Docker engine."""
    bin_dir = w.work / name
    bin_dir.mkdir(exist_ok=True)
    for tool in ("git", "openssl"):
        if path := shutil.which(tool):
            (bin_dir / tool).unlink(missing_ok=True)
            (bin_dir / tool).symlink_to(path)
    if registry_script is not None:
        script = bin_dir / "registry"
        script.write_text(registry_script)
        script.chmod(0o755)
    return {"PATH": str(bin_dir), "DOCKER_HOST": f"unix://{w.work}/no-docker.sock"}


def no_registry_binary(w: World) -> Produced:
    site = w.site("nobinary", embedded=True)
    return Produced(w.cli("site", "up", site, env=tools_dir(w, "bin-without-registry", None)), site)


def service_never_answers(w: World) -> Produced:
    site = w.site("silent", embedded=True)
    env = tools_dir(w, "bin-silent-registry", f"#!/bin/sh\n{shutil.which('sleep')} 30\n")  # alive, never listening
    produced = Produced(w.cli("site", "up", site, "--wait", "2", env=env), site)
    assert not (site / "run" / "registry.pid").exists()  # the silent registry was stopped, not left behind
    return produced


def damaged_payload(w: World) -> Produced:
    return w.imported(ATTACKS / "payload-byte-flipped.bundle.tar", w.asset_site("flipped"))


def missing_payload(w: World) -> Produced:
    return w.imported(copy_without(GOOD, w.work / "missing.bundle.tar"), w.asset_site("missing"))


def unsigned(w: World) -> Produced:
    return w.imported(ATTACKS / "unsigned.bundle.tar", w.asset_site("unsigned"))


def below_threshold(w: World) -> Produced:
    return w.imported(ATTACKS / "below-threshold.bundle.tar", w.asset_site("two", "release", "security"))


def expired(w: World) -> Produced:
    return w.imported(ATTACKS / "expired.bundle.tar", w.asset_site("expired"))


def rollback(w: World) -> Produced:
    return w.imported(ATTACKS / "rollback-older-version.bundle.tar", w.asset_site("rollback", runs_good=True))


def same_version(w: World) -> Produced:
    return w.imported(ATTACKS / "same-version-different-content.bundle.tar", w.asset_site("same", runs_good=True))


def tag_claimed(w: World) -> Produced:
    return w.imported(ATTACKS / "other-name-same-tag.bundle.tar", w.asset_site("claimed", runs_good=True))


def rewritten_history(w: World) -> Produced:
    site = w.site("rewritten")
    assert w.cli("import", w.v1, "--site", site).code == 0
    return w.imported(w.rewritten, site)


def delta_without_base(w: World) -> Produced:
    return w.imported(w.v2_delta, w.site("nobase"))


def split_copy(w: World, name: str) -> Path:
    directory = w.work / name
    directory.mkdir()
    for part in w.work.glob("split.bundle.tar*"):
        shutil.copy(part, directory / part.name)
    return directory / "split.bundle.tar.parts.json"


def damaged_part(w: World) -> Produced:
    index = split_copy(w, "damaged-part")
    with open(index.parent / "split.bundle.tar.part-002", "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 1]))
    return w.imported(index, w.site("damagedpart"))


def missing_part(w: World) -> Produced:
    index = split_copy(w, "missing-part")
    (index.parent / "split.bundle.tar.part-002").unlink()
    return w.imported(index, w.site("missingpart"))


def bad_parts(w: World) -> Produced:
    index = split_copy(w, "bad-parts")
    (index.parent / "split.bundle.tar.part-001").unlink()
    (index.parent / "split.bundle.tar.part-002").unlink()
    return w.imported(index, w.site("badparts"))


def import_running(w: World) -> Produced:
    site = w.site("locked")
    (site / "run").mkdir(exist_ok=True)
    with open(site / "run" / "import.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.write("pid 1234, importing other.bundle.tar, since 2026-01-01T00:00:00+00:00")
        lock.flush()
        return w.imported(w.v1, site)


def disk_full(w: World) -> Produced:
    site = w.small_disk / "site"
    assert w.cli("site", "init", "--as-root", site, "--trust-key", w.keys.release.pub,
                 "--registry", w.target.url).code == 0
    return w.imported(w.v1, site)


def registry_down(w: World) -> Produced:
    return w.imported(w.v1, w.site("notup", embedded=True))


PRODUCERS: dict[str, Callable[[World], Produced]] = {
    "... exists: ... is already a site": already_a_site,
    "site init needs at least one --trust-key PUB": no_trust_key,
    "...: not a PEM public key": not_a_pem_key,
    "the site's user ... cannot run bundler with ...": interpreter_closed,
    "the site's https front (nginx) service stopped at start: nginx: [emerg] bind() to ... failed "
    "(98: Address already in use)": port_taken("registry"),  # the front holds both ports
    "no registry binary, and the Docker engine cannot run registry:2": no_registry_binary,
    "... did not answer ... within ... s": service_never_answers,
    "bundle ... refused: ...sha256 is ..., bundle.json says ...": damaged_payload,
    "...missing from the bundle": missing_payload,
    "... the bundle is unsigned": unsigned,
    "...the policy needs 2 of: ...": below_threshold,
    "the bundle expired at ...": expired,
    "rollback refused: the site runs NAME VERSION ...": rollback,
    "... claims the same version with different content": same_version,
    "refused: tag ... was set by NAME VERSION; ...": tag_claimed,
    "...would move a tag or rewrite history: refs/heads/main ...": rewritten_history,
    "this delta builds on NAME VERSION, and the site lacks: ...": delta_without_base,
    "part NAME is damaged": damaged_part,
    "part NAME of this split bundle is missing": missing_part,
    "... parts of this split bundle are bad (...): part NAME is missing; ...": bad_parts,
    "another import is running on this site (pid ...)": import_running,
    "not enough disk space for this import: it writes ...; ... is free": disk_full,
    "the site's registry does not answer ...": registry_down,
}

ROWS = technician_rows()
CASES = [(row, message) for row in ROWS for message in row.messages]


def test_the_tables_are_found() -> None:
    assert len(ROWS) >= 15 and all(row.messages for row in ROWS)


def test_every_problem_code_is_documented() -> None:
    """The codes `verify --json` prints are the reviewer page's table of problem codes, no more, no less."""
    from bundler import problems

    codes = {value for name, value in vars(problems).items() if name.isupper() and isinstance(value, str)}
    text = REVIEWER.read_text()
    table = text[text.index("Problem codes"):]
    table = table[:table.index("\n\n", table.index("|"))]
    documented = set(re.findall(r"^\| `([a-z-]+)` \|", table, re.M))
    assert documented == codes


@pytest.mark.parametrize(("row", "message"), CASES, ids=[message for _, message in CASES])
def test_a_row_is_what_the_program_prints(row: Row, message: str, world: World) -> None:
    produce = PRODUCERS.get(message)
    assert produce is not None, f"technician page row `{message}` has no producer in this test: add one"
    produced = produce(world)
    err = produced.run.err
    assert produced.run.code == row.code, f"exit {produced.run.code}, the page says [{row.code}]: {err}"
    lines = err.splitlines()
    assert lines and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert row.matches(message, lines[0]), f"the page says `{message}`, the program printed: {lines[0]}"
    hints = [line.removeprefix("hint: ") for line in lines if line.startswith("hint: ")]
    assert len(hints) == 1 and row.says_to_do(hints[0], produced.site), \
        f"the page says what to do: {row.todo!r}; the program's hint: {hints}"
