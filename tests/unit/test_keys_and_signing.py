"""Keys, signatures and the trust policy, through the real CLI where a user would meet them."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bundler import signing
from tests.attack_cases import ATTACKS, GOOD, KEYS
from tests.conftest import Run


def test_keygen_writes_a_p256_pair_and_never_overwrites(cli: Callable[..., Run], tmp_path: Path) -> None:
    r = cli("keygen", "ops")
    assert r.code == 0, r.err
    key, pub = tmp_path / "ops.key", tmp_path / "ops.pub"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    public = signing.load_public_key(pub.read_bytes())
    assert signing.key_id(public) in r.out
    private = signing.load_private_key(key.read_bytes(), None)
    assert signing.key_id(private.public_key()) == signing.key_id(public)
    before = key.read_bytes()
    again = cli("keygen", "ops")
    assert again.code == 2 and "never overwrites" in again.err
    assert key.read_bytes() == before


def test_keygen_encrypts_with_the_password_variable(cli: Callable[..., Run], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUNDLER_KEY_PASSWORD", "s3cret")
    assert cli("keygen", "sec").code == 0
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "sec.key").read_bytes()
    shutil.copy(GOOD, tmp_path / "b.bundle.tar")
    monkeypatch.setenv("BUNDLER_KEY_PASSWORD", "wrong")
    wrong = cli("sign", "b.bundle.tar", "--key", "sec.key")
    assert wrong.code == 2 and "password" in wrong.err and "Traceback" not in wrong.err
    monkeypatch.delenv("BUNDLER_KEY_PASSWORD")
    missing = cli("sign", "b.bundle.tar", "--key", "sec.key")
    assert missing.code == 2 and "set BUNDLER_KEY_PASSWORD" in missing.err


def test_two_person_rule_with_sign(cli: Callable[..., Run], tmp_path: Path) -> None:
    """Signed by release only: a 2-of-2 policy refuses it; after security signs, it passes."""
    bundle = tmp_path / "b.bundle.tar"
    shutil.copy(ATTACKS / "below-threshold.bundle.tar", bundle)
    two = ["--key", KEYS / "release.pub", "--key", KEYS / "security.pub", "--threshold", "2"]
    refused = cli("verify", bundle, *two)
    assert refused.code == 3 and "the policy needs 2" in refused.err
    size = bundle.stat().st_size
    signed = cli("sign", bundle, "--key", KEYS / "security.key")
    assert signed.code == 0, signed.err
    assert bundle.stat().st_size - size < 4096  # a signatures.json appended, payloads untouched
    report = json.loads(cli("verify", bundle, *two, "--json").out)
    assert report["verified"] and report["threshold_met"]
    assert sorted(s["name"] for s in report["signers"]) == ["release", "security"]
    duplicate = cli("sign", bundle, "--key", KEYS / "security.key")
    assert duplicate.code == 1 and "already signed" in duplicate.err


def test_verify_report_names_signers_and_counts(cli: Callable[..., Run]) -> None:
    r = cli("verify", GOOD, "--key", KEYS / "release.pub", "--key", KEYS / "stranger.pub", "--json")
    report = json.loads(r.out)
    assert r.code == 0
    assert {k: report[k] for k in ("name", "version", "threshold", "threshold_met", "verified")} == {
        "name": "attack", "version": "2.0.0", "threshold": 1, "threshold_met": True, "verified": True}
    assert report["file_count"] == 5 and report["total_bytes"] > 0 and report["problems"] == []
    names = {s["name"]: s["valid"] for s in report["signers"]}
    assert names == {"release": True, None: False}  # security signed too, but this policy does not trust it


def test_verify_needs_a_policy(cli: Callable[..., Run]) -> None:
    r = cli("verify", GOOD)
    assert r.code == 2 and "needs a trust policy" in r.err


def test_openssl_verifies_a_bundler_signature(cli: Callable[..., Run], tmp_path: Path) -> None:
    """The README's recipe, for real: extract, decode, `openssl dgst -sha256 -verify`."""
    bundle = tmp_path / "b.bundle.tar"
    shutil.copy(ATTACKS / "below-threshold.bundle.tar", bundle)
    assert cli("sign", bundle, "--key", KEYS / "security.key").code == 0  # a countersignature, appended
    subprocess.run(["tar", "xf", bundle, "bundle.json", "signatures.json"], cwd=tmp_path, check=True)
    entries = json.loads((tmp_path / "signatures.json").read_text())["signatures"]
    assert len(entries) == 2  # tar kept the last signatures.json: both signatures
    for name in ("release", "security"):
        keyid = signing.key_id(signing.load_public_key((KEYS / f"{name}.pub").read_bytes()))
        entry = next(e for e in entries if e["keyid"] == keyid)
        (tmp_path / "sig.der").write_bytes(base64.b64decode(entry["signature"]))
        ok = subprocess.run(["openssl", "dgst", "-sha256", "-verify", KEYS / f"{name}.pub", "-signature", "sig.der",
                             "bundle.json"], cwd=tmp_path, capture_output=True, text=True)
        assert ok.returncode == 0 and "Verified OK" in ok.stdout, ok.stderr
    (tmp_path / "bundle.json").write_bytes((tmp_path / "bundle.json").read_bytes().replace(b"3.0.0", b"3.0.1"))
    bad = subprocess.run(["openssl", "dgst", "-sha256", "-verify", KEYS / "security.pub", "-signature", "sig.der",
                          "bundle.json"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode != 0 and "Verification failure" in bad.stdout


def hostile_files(directory: Path, pub: Path) -> dict[str, Path]:
    """What an operator may name by mistake (or be handed): a FIFO with no writer, a huge file (sparse:
    no disk), a directory, and a public key with its private key pasted after it."""
    directory.mkdir()
    fifo = directory / "fifo.pub"
    os.mkfifo(fifo)
    huge = directory / "huge.pub"
    with open(huge, "wb") as f:
        f.truncate(1 << 30)
    both = directory / "both.pub"
    both.write_bytes(pub.read_bytes() + (KEYS / "release.key").read_bytes())
    return {"a FIFO": fifo, "a 1 GiB file": huge, "a directory": directory, "a private key": both}


@pytest.mark.parametrize("command", ["fleet enroll", "verify --key", "site init --trust-key"])
def test_a_key_file_that_is_not_a_small_regular_public_key_is_a_clear_error_at_once_and_nothing_is_kept(
        cli: Callable[..., Run], tmp_path: Path, command: str) -> None:
    for what, path in hostile_files(tmp_path / "bad", KEYS / "release.pub").items():
        args = {"fleet enroll": ["fleet", "enroll", path, "--fleet", tmp_path / "fleet"],
                "verify --key": ["verify", GOOD, "--key", path],
                "site init --trust-key": ["site", "init", "--as-root", tmp_path / "site", "--trust-key", path]}[command]
        started = time.monotonic()
        r = cli(*args)
        took = time.monotonic() - started
        assert r.code == 2, (what, r.code, r.err)
        assert str(path) in r.err and "Traceback" not in r.err and "unexpected" not in r.err, (what, r.err)
        assert took < 5, (what, took)  # at once: the interpreter's start is most of it
        if what == "a private key":
            assert "holds a private key" in r.err, r.err
        assert not (tmp_path / "fleet").exists() or not list((tmp_path / "fleet").rglob("*.pub"))
        assert not (tmp_path / "site").exists()


@pytest.mark.parametrize("what", ["a FIFO", "a 100 MiB file", "a directory"])
def test_registry_credentials_that_are_not_a_small_regular_file_are_a_clear_error_at_once(
        cli: Callable[..., Run], tmp_path: Path, what: str) -> None:
    path = tmp_path / "account.json"
    if what == "a FIFO":
        os.mkfifo(path, 0o600)
    elif what == "a directory":
        path.mkdir(mode=0o700)
    else:
        with open(path, "wb") as f:
            f.truncate(100 << 20)
        path.chmod(0o600)
    started = time.monotonic()
    r = cli("site", "init", "--as-root", tmp_path / "site", "--trust-key", KEYS / "release.pub",
            "--registry", "https://registry.example:5000/edge", "--registry-credentials", path)
    assert r.code == 2 and str(path) in r.err and "Traceback" not in r.err, r.err
    assert time.monotonic() - started < 5
    assert not (tmp_path / "site" / "site.yaml").exists()


def test_what_site_init_and_fleet_enroll_keep_of_a_key_is_the_parsed_public_key(
        cli: Callable[..., Run], tmp_path: Path) -> None:
    commented = tmp_path / "release.pub"
    commented.write_bytes(b"# handed over on a stick\n" + (KEYS / "release.pub").read_bytes())
    assert cli("fleet", "enroll", commented, "--fleet", tmp_path / "fleet").code == 0
    (kept,) = (tmp_path / "fleet").rglob("*.pub")
    assert kept.read_bytes() == (KEYS / "release.pub").read_bytes()  # the PEM keygen writes, the comment gone


def test_a_split_bundle_checks_with_standard_tools_as_the_readme_says(tmp_path: Path) -> None:
    """The README's split recipe: every part's sha256 as the index lists it (`sha256sum -c`), the parts
    joined in order are the bundle (`cat | tar xf`), and its bundle.json is the index's manifest digest."""
    from bundler.bundle.parent import load_manifest
    from tests.helpers import split_bundle

    bundle = tmp_path / "b.bundle.tar"
    shutil.copy(GOOD, bundle)
    index = split_bundle(bundle, 2048, load_manifest(GOOD)[1])
    doc = json.loads(index.read_text())
    sums = "".join(f"{part['sha256']}  {part['file']}\n" for part in doc["parts"])  # what `jq -r` prints
    checked = subprocess.run(["sha256sum", "-c"], input=sums, cwd=tmp_path, capture_output=True, text=True)
    assert checked.returncode == 0 and checked.stdout.count(": OK") == len(doc["parts"]) > 1
    files = " ".join(part["file"] for part in doc["parts"])
    subprocess.run(f"cat {files} | tar xf - bundle.json signatures.json", shell=True, cwd=tmp_path, check=True)
    digest = subprocess.run(["sha256sum", "bundle.json"], cwd=tmp_path, capture_output=True, text=True).stdout
    assert f"sha256:{digest.split()[0]}" == doc["manifest_digest"]
