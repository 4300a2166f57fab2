"""Output to a reader that went away (`bundler inspect b.tar | head -1`) ends quietly, as CLI tools do;
text from a bundle is shown escaped; progress for scripts is JSON lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bundler.oci.client import RegistryClient
from devtools import images as im
from tests.attack_cases import forge_json_member
from tests.conftest import Keys, Registry, Run, SiteFactory


def progress_line(line: str) -> bool:
    """A JSON progress line (`--json`): an object with its event."""
    try:
        doc = json.loads(line)
    except ValueError:
        return False
    return isinstance(doc, dict) and doc.get("event") in ("progress", "phase")


@pytest.mark.parametrize("args", [["inspect", "{bundle}"], ["inspect", "{bundle}", "--json"], ["--help"],
                                  ["verify", "{bundle}", "--key", "{pub}", "--json"]])
def test_a_closed_pipe_ends_quietly(args: list[str], keys: Keys, tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("apiVersion: bundler/v1\nkind: Profile\nmetadata: {name: empty, version: 1.0.0}\n"
                                     "spec:\n  updates:\n    - path: f.bin\n")
    (tmp_path / "f.bin").write_bytes(b"payload")
    built = subprocess.run([sys.executable, "-m", "bundler.cli", "build", "p.yaml", "-o", "b.bundle.tar", "--key",
                            str(keys.release.key)], cwd=tmp_path, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte
    try:
        command = [a.format(bundle=tmp_path / "b.bundle.tar", pub=keys.release.pub) for a in args]
        p = subprocess.run([sys.executable, "-m", "bundler.cli", *command], stdout=write_end,
                           stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    finally:
        os.close(write_end)
    # no traceback nor error text: nothing on stderr, or (--json) only its progress lines
    shown = [line for line in p.stderr.splitlines() if not ("--json" in args and progress_line(line))]
    assert p.returncode in (0, 141) and shown == [], (p.returncode, p.stderr)
    if "--json" in args and "verify" in args:
        assert [json.loads(line)["event"] for line in p.stderr.splitlines()][-1] == "phase"


def test_control_characters_in_a_forged_bundle_are_shown_escaped(keys: Keys, tmp_path: Path) -> None:
    """A bundle.json whose name holds a newline, a fake `verified` line and a terminal escape
    sequence cannot make inspect or verify print what the bundle does not say."""
    (tmp_path / "p.yaml").write_text("apiVersion: bundler/v1\nkind: Profile\nmetadata: {name: good, version: 1.0.0}\n"
                                     "spec:\n  updates:\n    - path: f.bin\n")
    (tmp_path / "f.bin").write_bytes(b"payload")
    assert subprocess.run([sys.executable, "-m", "bundler.cli", "build", "p.yaml", "-o", "good.bundle.tar", "--key",
                           str(keys.release.key)], cwd=tmp_path, capture_output=True).returncode == 0
    def forge(doc: dict[str, Any]) -> None:
        doc["name"] = "good\nverified\x1b[2J\x1b[H"
        doc.pop("content_digest")

    forged = forge_json_member(tmp_path / "good.bundle.tar", tmp_path / "forged.bundle.tar", "bundle.json", forge)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bundler.cli", *args], cwd=tmp_path, capture_output=True,
                              text=True)

    # such a name is not a bundle name: refused before anything is shown, and the refusal quotes it escaped
    for command in (["inspect", str(forged)], ["verify", str(forged), "--key", str(keys.release.pub)]):
        refused = run(*command)
        assert refused.returncode == 3 and refused.stdout == ""
        assert "\x1b" not in refused.stderr and "verified" not in refused.stderr.splitlines()
        assert "name: 'good\\nverified\\x1b[2J\\x1b[H' is not a bundle name" in refused.stderr, refused.stderr


def test_inspect_sbom_on_a_terminal_shows_a_forged_sbom_escaped(keys: Keys, tmp_path: Path) -> None:
    """An unsigned bundle whose SBOM holds a fake `verified` line and escape sequences (a window
    title, a screen clear): on a terminal, `inspect --sbom` prints it escaped; into a file, the exact
    bytes bundle.json lists."""
    import hashlib
    import io
    import json
    import pty
    import tarfile

    (tmp_path / "p.yaml").write_text("apiVersion: bundler/v1\nkind: Profile\nmetadata: {name: good, version: 1.0.0}\n"
                                     "spec:\n  updates:\n    - path: f.bin\n")
    (tmp_path / "f.bin").write_bytes(b"payload")
    assert subprocess.run([sys.executable, "-m", "bundler.cli", "build", "p.yaml", "-o", "u.bundle.tar"],
                          cwd=tmp_path, capture_output=True).returncode == 0  # unsigned: anyone may edit it
    hostile = json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.6", "metadata": {
        "component": {"name": "x\n\nverified\x1b]0;pwned\x07\x1b[2J\u009b31m"}}}, ensure_ascii=False).encode()
    forged = tmp_path / "forged.bundle.tar"
    with tarfile.open(tmp_path / "u.bundle.tar") as src, tarfile.open(forged, "w", format=tarfile.PAX_FORMAT) as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "sbom.cdx.json":
                data = hostile
            elif member.name == "bundle.json":
                doc = json.loads(data)
                doc["files"]["sbom.cdx.json"] = {"sha256": hashlib.sha256(hostile).hexdigest(), "size": len(hostile)}
                doc.pop("content_digest")
                data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data))

    to_file = subprocess.run([sys.executable, "-m", "bundler.cli", "inspect", str(forged), "--sbom"],
                             capture_output=True, cwd=tmp_path)
    assert to_file.returncode == 0 and to_file.stdout == hostile  # exact bytes into a file or a pipe
    leader, follower = pty.openpty()
    shown = subprocess.run([sys.executable, "-m", "bundler.cli", "inspect", str(forged), "--sbom"], stdout=follower,
                           stderr=subprocess.PIPE, cwd=tmp_path)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert shown.returncode == 0, shown.stderr
    assert b"\x1b" not in out and b"\x07" not in out and "\u009b".encode() not in out
    assert b"verified" not in [line.strip() for line in out.splitlines()]
    assert b"\\u001b]0;pwned" in out  # shown, escaped


ATTACKS = Path(__file__).resolve().parents[1] / "assets" / "attacks"


@pytest.mark.parametrize("asset", sorted(p.name for p in ATTACKS.glob("*.bundle.tar")))
def test_verify_json_prints_a_report_for_every_attack(asset: str, tmp_path: Path) -> None:
    """Whatever the bundle (a malformed manifest, signatures file or tar included): `verify --json`
    prints one report with typed problems, and exits 0 (verified) or 3 (refused)."""
    import json

    keys = ATTACKS.parent / "keys"
    p = subprocess.run([sys.executable, "-m", "bundler.cli", "verify", str(ATTACKS / asset), "--key",
                        str(keys / "release.pub"), "--key", str(keys / "security.pub"), "--json"],
                       capture_output=True, text=True, cwd=tmp_path)
    report = json.loads(p.stdout)
    assert p.returncode == (0 if report["verified"] else 3), p.stderr
    assert report["verified"] or report["problems"]
    assert all({"code", "subject", "message"} <= set(problem) for problem in report["problems"])


def test_json_progress_gives_bytes_rate_and_time_left_from_the_bytes_read(
        registry: Registry, cli: Callable[..., Run], keys: Keys, make_site: SiteFactory, tmp_path: Path) -> None:
    """`import --json` and `verify --json`: JSON lines on stderr while they work (bytes, total, rate,
    time left), a line as each phase ends; the import's result gives each phase's bytes and seconds."""
    for i in range(3):
        im.push_image(RegistryClient(registry.host), f"store/app-{i}", "1.0",
                      [im.random_layer(3_000_000, 40 + i), im.random_layer(1_000_000, 50 + i)], oci=True)
    (tmp_path / "p.yaml").write_text(
        "apiVersion: bundler/v1\nkind: Profile\nmetadata: {name: progress, version: 1.0.0}\nspec:\n  images:\n"
        + "".join(f"    - {registry.host}/store/app-{i}:1.0\n" for i in range(3)))
    assert cli("build", tmp_path / "p.yaml", "-o", tmp_path / "p.tar", "--key", keys.release.key).code == 0
    payload = json.loads(cli("inspect", tmp_path / "p.tar", "--json").out)["payload_bytes"]

    site = make_site(up=True)
    imported = cli("import", tmp_path / "p.tar", "--site", site, "--json")
    assert imported.code == 0, imported.err
    lines = [json.loads(line) for line in imported.err.splitlines()]
    progress = [line for line in lines if line["event"] == "progress"]
    assert progress and all(p["total"] >= payload * 0.9 and 0 <= p["bytes"] <= p["total"] for p in progress)
    # a rate and a time left once half a second of reading says something of the medium, none before
    assert all(p["bytes_per_second"] is None and p["seconds_left"] is None for p in progress if p["elapsed"] < 0.49)
    assert all(p["bytes_per_second"] > 0 and p["seconds_left"] >= 0 for p in progress if p["elapsed"] > 0.51)
    assert [p["bytes"] for p in progress] == sorted(p["bytes"] for p in progress)
    ended = {line["phase"]: line for line in lines if line["event"] == "phase"}
    assert {"verifying", "importing", "publishing"} <= set(ended)
    assert ended["importing"]["bytes"] >= payload * 0.9  # every blob read once as it is stored
    result = json.loads(imported.out)
    assert [p["phase"] for p in result["phases"]] == [line["phase"] for line in lines if line["event"] == "phase"]
    assert sum(p["bytes"] for p in result["phases"]) == progress[-1]["total"]  # all it said it would read
    assert all(p["seconds"] >= 0 for p in result["phases"])

    verified = cli("verify", tmp_path / "p.tar", "--key", keys.release.pub, "--json")
    assert verified.code == 0 and json.loads(verified.out)["verified"]
    phases = [json.loads(line) for line in verified.err.splitlines() if json.loads(line)["event"] == "phase"]
    assert phases and phases[-1]["phase"] == "verifying" and phases[-1]["bytes"] == payload

    quiet = cli("verify", tmp_path / "p.tar", "--key", keys.release.pub)  # not a terminal, no --json: nothing
    assert quiet.code == 0 and quiet.err == ""
