"""Two-person rule end to end: release engineering builds and signs, the site needs security too."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bundler.oci.client import RegistryClient
from devtools.samples import push_samples
from tests.attack_cases import forge_json_member
from tests.conftest import Keys, Registry, Run


def test_release_alone_is_refused_and_a_countersignature_admits_it(
        cli: Callable[..., Run], registry_factory: Callable[[], Registry], keys: Keys, tmp_path: Path) -> None:
    source, site = registry_factory(), registry_factory()
    samples = push_samples(RegistryClient(source.host))
    (tmp_path / "profile.yaml").write_text(samples.profile())
    assert cli("build", "profile.yaml", "-o", "b.bundle.tar", "--key", keys.release.key).code == 0
    init = cli("site", "init", "--as-root", "site", "--registry", site.url, "--trust-key", keys.release.pub,
               "--trust-key", keys.security.pub, "--threshold", "2")
    assert init.code == 0, init.err

    refused = cli("import", "b.bundle.tar", "--site", "site")
    assert refused.code == 3 and "the policy needs 2 of: release, security" in refused.err
    assert "hint: it lacks a signature this trust policy requires: send it back to be signed" in refused.err
    assert site.catalog() == [] and not (tmp_path / "site" / "state.json").exists()

    assert cli("sign", "b.bundle.tar", "--key", keys.security.key).code == 0
    imported = cli("import", "b.bundle.tar", "--site", "site", "--json")
    assert imported.code == 0, imported.err
    assert json.loads(imported.out)["added"]["images"] == len(samples.refs)
    status = json.loads(cli("site", "status", "site", "--json").out)
    assert len(status["bundles"]) == 1 and len(status["bundles"][0]["signers"]) == 2
    assert sorted(status["bundles"][0]["signed_by"]) == ["release", "security"]  # named, as verify names them


def sha256_of(path: Path) -> str:
    import hashlib

    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def test_a_split_bundle_is_countersigned_in_place_and_imported_by_a_two_of_two_site(
        cli: Callable[..., Run], registry_factory: Callable[[], Registry], keys: Keys, tmp_path: Path) -> None:
    source, site = registry_factory(), registry_factory()
    samples = push_samples(RegistryClient(source.host))
    (tmp_path / "profile.yaml").write_text(samples.profile())
    built = cli("build", "profile.yaml", "-o", "s.bundle.tar", "--key", keys.release.key, "--split-size", "1M")
    assert built.code == 0, built.err
    parts = sorted(tmp_path.glob("s.bundle.tar.part-*"))
    assert len(parts) > 2
    before = {p.name: sha256_of(p) for p in parts}

    signed = cli("sign", parts[1], "--key", keys.security.key)  # any part names the set, like the index
    assert signed.code == 0, signed.err
    after = {p.name: sha256_of(p) for p in sorted(tmp_path.glob("s.bundle.tar.part-*"))}
    changed = [name for name in before if after.get(name) != before[name]]
    assert changed == [parts[-1].name]  # only the last part, where signatures.json lives
    index = json.loads((tmp_path / "s.bundle.tar.parts.json").read_text())
    assert all(p["sha256"] == sha256_of(tmp_path / p["file"]) for p in index["parts"])

    both = cli("verify", "s.bundle.tar.parts.json", "--key", keys.release.pub, "--key", keys.security.pub,
               "--threshold", "2", "--json")
    assert both.code == 0 and json.loads(both.out)["verified"], both.out + both.err
    assert cli("site", "init", "--as-root", "site", "--registry", site.url, "--trust-key", keys.release.pub,
               "--trust-key", keys.security.pub, "--threshold", "2").code == 0
    imported = cli("import", "s.bundle.tar.parts.json", "--site", "site", "--json")
    assert imported.code == 0, imported.err
    assert json.loads(imported.out)["added"]["images"] == len(samples.refs)
    again = cli("sign", "s.bundle.tar.parts.json", "--key", keys.security.key)
    assert again.code == 1 and "already signed by key" in again.err


def test_sign_refuses_a_bundle_whose_payload_changed(
        cli: Callable[..., Run], registry_factory: Callable[[], Registry], keys: Keys, tmp_path: Path) -> None:
    from tests.integration.test_refusals import tamper_layer

    samples = push_samples(RegistryClient(registry_factory().host))
    (tmp_path / "profile.yaml").write_text(samples.profile())
    assert cli("build", "profile.yaml", "-o", "b.bundle.tar", "--key", keys.release.key).code == 0
    name = tamper_layer(tmp_path / "b.bundle.tar")
    before = sha256_of(tmp_path / "b.bundle.tar")
    refused = cli("sign", "b.bundle.tar", "--key", keys.security.key)
    assert refused.code == 3 and "does not verify, not signing it" in refused.err and name in refused.err
    assert sha256_of(tmp_path / "b.bundle.tar") == before


def test_sign_checks_the_signatures_already_there_when_given_their_keys(
        cli: Callable[..., Run], registry_factory: Callable[[], Registry], keys: Keys, tmp_path: Path) -> None:
    import base64

    samples = push_samples(RegistryClient(registry_factory().host))
    (tmp_path / "profile.yaml").write_text(samples.profile())
    assert cli("build", "profile.yaml", "-o", "b.bundle.tar", "--key", keys.release.key).code == 0
    # a forger replaces release's signature with bytes of their own, under release's key id
    def forge(doc: dict[str, Any]) -> None:
        doc["signatures"][0]["signature"] = base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01").decode()

    forged = forge_json_member(tmp_path / "b.bundle.tar", tmp_path / "forged.bundle.tar", "signatures.json", forge)
    before = sha256_of(forged)
    refused = cli("sign", forged, "--key", keys.security.key, "--check-key", keys.release.pub)
    assert refused.code == 3 and "does not match bundle.json" in refused.err and sha256_of(forged) == before

    unknown = cli("sign", "b.bundle.tar", "--key", keys.security.key, "--check-key", keys.stranger.pub)
    assert unknown.code == 3 and "whose public key was not given" in unknown.err

    good = cli("sign", "b.bundle.tar", "--key", keys.security.key, "--check-key", keys.release.pub)
    assert good.code == 0 and "not checked" not in good.err, good.err
    third = cli("sign", "b.bundle.tar", "--key", keys.stranger.key)
    assert third.code == 0 and "were not checked (give their keys with --check-key)" in third.err
