"""Keyless image signatures across the gap, judged offline with no network: images signed by the
tests' own Sigstore instance (tests/sigstore_lab.py) as cosign v3 signs them (a Sigstore bundle as an
OCI referrer, found through the referrers fallback tag); a profile's keyless rule takes the right
identity at build and refuses another, naming why; a site that pins the trusted root takes the right
identity and refuses another at import with nothing published."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bundler.oci.client import RegistryClient
from devtools import images as im
from tests.conftest import Keys, Registry, Run
from tests.helpers import cosign_manifest, push_manifest
from tests.sigstore_lab import GITHUB, SLSA_PROVENANCE, WORKFLOW, Fault, Instance, attach, write_root

IDENTITY = r"https://github\.com/acme/.+"
HOSTED = "https://github.com/actions/runner/github-hosted"


def provenance(builder: str, repository: str = "https://github.com/acme/pos") -> dict[str, object]:
    """SLSA provenance v1 as GitHub's generator writes it (the fields a rule may name)."""
    return {"buildDefinition": {"buildType": "https://actions.github.io/buildtypes/workflow/v1",
                                "externalParameters": {"workflow": {"ref": "refs/heads/main", "repository": repository,
                                                                    "path": ".github/workflows/release.yml"}}},
            "runDetails": {"builder": {"id": builder}}}


@dataclass
class Signed:
    registry: Registry
    lab: Instance
    root: Path
    good: str  # signed keyless by acme's release workflow
    evil: str  # signed keyless by another repository's workflow
    stale: str  # signed by acme with a certificate that had expired when the log took it
    built: str  # signed by acme, with SLSA provenance from GitHub's hosted runners
    rogue: str  # signed by acme, with SLSA provenance from a self-hosted runner


@pytest.fixture(scope="module")
def signed(registry_factory: Callable[[], Registry], tmp_path_factory: pytest.TempPathFactory) -> Signed:
    registry = registry_factory()
    client = RegistryClient(registry.host)
    lab = Instance()
    root = write_root(lab, tmp_path_factory.mktemp("keyless") / "trusted_root.json")
    refs = []
    for seed, (repo, made, builder) in enumerate([
            ("team/api", {}, None),
            ("team/evil", {"subject": "https://github.com/evil/pos/.github/workflows/release.yml@refs/heads/main"},
             None),
            ("team/stale", {"fault": Fault(expired_at_signing=True)}, None),
            ("team/built", {}, HOSTED),
            ("team/rogue", {}, "https://github.com/acme/runners/self-hosted")]):
        digest, _ = im.push_image(client, repo, "1.0", [im.random_layer(60_000, 180 + seed)], oci=True)
        bundles = [lab.attest(digest, **made)]  # type: ignore[arg-type]
        if builder is not None:
            bundles.append(lab.attest(digest, SLSA_PROVENANCE, provenance(builder)))
        attach(client, repo, digest, bundles)
        refs.append(f"{registry.host}/{repo}:1.0")
    return Signed(registry, lab, root, *refs)


def profile(directory: Path, images: list[str], policy: str = "") -> Path:
    path = directory / "profile.yaml"
    path.write_text("apiVersion: bundler/v1\nkind: Profile\nmetadata: {name: keyless, version: 1.0.0}\n"
                    "spec:\n  images:\n" + "".join(f"    - {ref}\n" for ref in images) + policy)
    return path


def keyless_policy(signed: Signed, root: bool = True, builder: str | None = None) -> str:
    attestations = (f"      attestations:\n        - {{predicateType: '{SLSA_PROVENANCE}', builder: '{builder}', "
                    "repository: 'https://github.com/acme/.+'}\n") if builder else ""
    return (f"  imagePolicy:\n    - images: '{signed.registry.host}/team/*'\n      keyless: {{issuer: '{GITHUB}', "
            f"subject: '{IDENTITY}'}}\n" + attestations + (f"  trustedRoot: {signed.root}\n" if root else ""))


def build(cli: Callable[..., Run], keys: Keys, path: Path) -> Run:
    return cli("build", path, "-o", path.parent / "b.bundle.tar", "--key", keys.release.key, cwd=path.parent)


def test_a_keyless_rule_takes_the_right_identity_at_build_and_refuses_another_naming_why(
        cli: Callable[..., Run], keys: Keys, signed: Signed, tmp_path: Path) -> None:
    taken = build(cli, keys, profile(tmp_path, [signed.good], keyless_policy(signed)))
    assert taken.code == 0, taken.err
    refused = build(cli, keys, profile(tmp_path, [signed.good, signed.evil, signed.stale], keyless_policy(signed)))
    assert refused.code == 3, refused.err
    said = refused.err.split("hint:")[0]
    assert f"{signed.evil} matches" in said and "a keyless signature that does not hold" in said
    assert "https://github.com/evil/pos" in said and "whom the rule does not name" in said
    assert f"{signed.stale} matches" in said and "not valid at validation time" in said
    assert f"{signed.good} matches" not in said
    unrooted = build(cli, keys, profile(tmp_path, [signed.good], keyless_policy(signed, root=False)))
    assert unrooted.code == 2 and "spec.trustedRoot" in unrooted.err, unrooted.err


def test_a_site_that_pins_the_root_takes_the_right_identity_and_refuses_another_publishing_nothing(
        cli: Callable[..., Run], keys: Keys, signed: Signed, registry: Registry, tmp_path: Path) -> None:
    site = tmp_path / "site"
    made = cli("site", "init", "--as-root", site, "--registry", registry.url, "--trust-key", keys.release.pub,
               "--image-identity", f"{GITHUB}={IDENTITY}", "--trusted-root", signed.root)
    assert made.code == 0, made.err
    assert (site / "trust" / "sigstore-trusted-root.json").read_bytes() == signed.root.read_bytes()  # pinned
    (tmp_path / "evil").mkdir()
    evil = build(cli, keys, profile(tmp_path / "evil", [signed.evil]))  # no policy at build: the site judges
    assert evil.code == 0, evil.err
    checked = cli("verify", tmp_path / "evil" / "b.bundle.tar", "--site", site, "--json")
    assert checked.code == 3 and [p["code"] for p in json.loads(checked.out)["problems"]] == ["image-unsigned"]
    assert [(j["image"], j["signer"]) for j in json.loads(checked.out)["judged"]] == [(signed.evil, None)]
    refused = cli("import", tmp_path / "evil" / "b.bundle.tar", "--site", site)
    assert refused.code == 3 and "https://github.com/evil/pos" in refused.err, refused.err
    assert registry.catalog() == []  # nothing published
    (tmp_path / "good").mkdir()
    assert build(cli, keys, profile(tmp_path / "good", [signed.good])).code == 0
    judged = json.loads(cli("verify", tmp_path / "good" / "b.bundle.tar", "--site", site, "--json").out)["judged"]
    assert [(j["image"], j["signer"], j["rule"]) for j in judged] == [(signed.good, f"{GITHUB} {WORKFLOW}", ["*"])]
    imported = cli("import", tmp_path / "good" / "b.bundle.tar", "--site", site)
    assert imported.code == 0, imported.err
    assert any(repo.endswith("team/api") for repo in registry.catalog())

    # what was judged, signed with the receipt, and shown by the fleet
    assert cli("site", "receipt", site, "-o", tmp_path / "r.json").code == 0
    receipt = json.loads((tmp_path / "r.json").read_text())
    [verdict] = receipt["image_verdicts"]
    assert verdict["image"] == signed.good and verdict["release"] == "keyless 1.0.0"
    assert verdict["signer"] == f"{GITHUB} https://github.com/acme/pos/.github/workflows/release.yml@refs/heads/main"
    assert verdict["root"] == "sha256:" + hashlib.sha256(signed.root.read_bytes()).hexdigest()
    assert verdict["rule"] == ["*"]
    fleet = ("--fleet", tmp_path / "fleet")
    assert cli("fleet", "enroll", site / "site.pub", *fleet).code == 0
    assert cli("fleet", "add", tmp_path / "r.json", *fleet).code == 0
    shown = json.loads(cli("fleet", "status", "--json", *fleet).out)
    assert shown["sites"][0]["image_verdicts"] == receipt["image_verdicts"]


def test_an_identity_without_a_trusted_root_is_refused_at_site_init(cli: Callable[..., Run], keys: Keys,
                                                                    registry: Registry, tmp_path: Path) -> None:
    made = cli("site", "init", "--as-root", tmp_path / "s", "--registry", registry.url, "--trust-key", keys.release.pub,
               "--image-identity", f"{GITHUB}={IDENTITY}")
    assert made.code == 2 and "--trusted-root" in made.err, made.err
    assert not (tmp_path / "s" / "site.yaml").exists()


def test_a_rule_that_asks_for_provenance_takes_an_allowed_builder_and_refuses_another_naming_the_rule(
        cli: Callable[..., Run], keys: Keys, signed: Signed, tmp_path: Path) -> None:
    policy = keyless_policy(signed, builder=r"https://github\.com/actions/runner/github-hosted")
    taken = build(cli, keys, profile(tmp_path, [signed.built], policy))
    assert taken.code == 0, taken.err
    refused = build(cli, keys, profile(tmp_path, [signed.built, signed.rogue, signed.good], policy))
    assert refused.code == 3, refused.err
    said = refused.err.split("hint:")[0]
    assert f"{signed.rogue} matches" in said
    assert "whose builder is 'https://github.com/acme/runners/self-hosted'" in said
    assert f"needs an attestation of {SLSA_PROVENANCE} with builder" in said  # the rule, named
    assert f"{signed.good} matches" in said and f"no attestation of {SLSA_PROVENANCE}" in said
    assert f"{signed.built} matches" not in said


def test_a_site_that_requires_provenance_refuses_a_self_hosted_build_at_import(
        cli: Callable[..., Run], keys: Keys, signed: Signed, registry: Registry, tmp_path: Path) -> None:
    site = tmp_path / "site"
    made = cli("site", "init", "--as-root", site, "--registry", registry.url, "--trust-key", keys.release.pub,
               "--image-identity", f"{GITHUB}={IDENTITY}", "--trusted-root", signed.root,
               "--require-provenance", r"https://github\.com/actions/runner/.*")
    assert made.code == 0, made.err
    (tmp_path / "rogue").mkdir()
    assert build(cli, keys, profile(tmp_path / "rogue", [signed.rogue])).code == 0
    refused = cli("import", tmp_path / "rogue" / "b.bundle.tar", "--site", site)
    assert refused.code == 3 and "self-hosted" in refused.err, refused.err
    assert registry.catalog() == []
    (tmp_path / "built").mkdir()
    assert build(cli, keys, profile(tmp_path / "built", [signed.built])).code == 0
    assert cli("import", tmp_path / "built" / "b.bundle.tar", "--site", site).code == 0


def test_a_signed_bundle_carrying_a_new_trusted_root_rotates_the_sites_and_an_unsigned_one_cannot(
        cli: Callable[..., Run], keys: Keys, signed: Signed, registry: Registry, tmp_path: Path) -> None:
    """A new Sigstore instance (its own CA and log): an image it signed is refused against the root the
    site pins; a bundle carrying the new root (the profile's spec.trustedRoot), signed per the site's
    policy, replaces the pinned root and its image is taken; the same bundle signed by a stranger
    changes nothing."""
    site = tmp_path / "site"
    assert cli("site", "init", "--as-root", site, "--registry", registry.url, "--trust-key", keys.release.pub,
               "--image-identity", f"{GITHUB}={IDENTITY}", "--trusted-root", signed.root).code == 0
    pinned = site / "trust" / "sigstore-trusted-root.json"
    lab = Instance()
    new_root = write_root(lab, tmp_path / "next-root.json")
    client = RegistryClient(signed.registry.host)
    digest, _ = im.push_image(client, "team/next", "1.0", [im.random_layer(60_000, 191)], oci=True)
    attach(client, "team/next", digest, [lab.attest(digest)])
    image = f"{signed.registry.host}/team/next:1.0"

    (tmp_path / "old").mkdir()
    assert build(cli, keys, profile(tmp_path / "old", [image])).code == 0
    refused = cli("import", tmp_path / "old" / "b.bundle.tar", "--site", site)
    assert refused.code == 3 and "keyless signature that does not hold" in refused.err, refused.err

    carrying = profile(tmp_path, [image], f"  trustedRoot: {new_root}\n")
    stranger = cli("build", carrying, "-o", tmp_path / "s.bundle.tar", "--key", keys.stranger.key, cwd=tmp_path)
    assert stranger.code == 0, stranger.err
    assert cli("import", tmp_path / "s.bundle.tar", "--site", site).code == 3  # not signed per the site's policy
    assert pinned.read_bytes() == signed.root.read_bytes()  # nothing moved
    assert registry.catalog() == []

    assert build(cli, keys, carrying).code == 0
    rotated = cli("import", tmp_path / "b.bundle.tar", "--site", site)
    assert rotated.code == 0, rotated.err
    assert "trusted root was rotated" in rotated.err and "signed per this site's trust policy" in rotated.err
    assert pinned.read_bytes() == new_root.read_bytes()
    assert any(repo.endswith("team/next") for repo in registry.catalog())


def test_cosign_v2s_keyless_tag_scheme_is_judged_too_and_one_without_its_log_entry_is_refused(
        cli: Callable[..., Run], keys: Keys, signed: Signed, tmp_path: Path) -> None:
    """cosign v2's keyless `.sig` (the certificate and the log's signed entry timestamp in the layer's
    annotations): taken for the right identity; without its log entry, refused: no log proof."""
    client = RegistryClient(signed.registry.host)
    refs = []
    for seed, (repo, fault) in enumerate([("team/legacy", Fault()), ("team/unlogged", Fault(no_proof=True))]):
        digest, _ = im.push_image(client, repo, "1.0", [im.random_layer(40_000, 211 + seed)], oci=True)
        payload, notes = signed.lab.sign_tag_scheme(digest, fault=fault)
        manifest = cosign_manifest(client, repo, [("application/vnd.dev.cosign.simplesigning.v1+json", payload, notes)])
        push_manifest(client, repo, f"sha256-{digest[7:]}.sig", manifest)
        refs.append(f"{signed.registry.host}/{repo}:1.0")
    taken = build(cli, keys, profile(tmp_path, refs[:1], keyless_policy(signed)))
    assert taken.code == 0, taken.err
    refused = build(cli, keys, profile(tmp_path, refs, keyless_policy(signed)))
    assert refused.code == 3 and f"{refs[1]} matches" in refused.err and "no log proof" in refused.err, refused.err
    assert f"{refs[0]} matches" not in refused.err


def test_cosign_v2s_keyless_provenance_in_the_tag_scheme_meets_a_rule_and_another_builders_does_not(
        cli: Callable[..., Run], keys: Keys, signed: Signed, tmp_path: Path) -> None:
    client = RegistryClient(signed.registry.host)
    refs = []
    for seed, (repo, builder) in enumerate([("team/v2built", HOSTED),
                                            ("team/v2rogue", "https://github.com/acme/runners/self-hosted")]):
        digest, _ = im.push_image(client, repo, "1.0", [im.random_layer(40_000, 221 + seed)], oci=True)
        payload, notes = signed.lab.sign_tag_scheme(digest)
        push_manifest(client, repo, f"sha256-{digest[7:]}.sig", cosign_manifest(client, repo, [
            ("application/vnd.dev.cosign.simplesigning.v1+json", payload, notes)]))
        envelope, att = signed.lab.attest_tag_scheme(digest, SLSA_PROVENANCE, provenance(builder))
        push_manifest(client, repo, f"sha256-{digest[7:]}.att", cosign_manifest(client, repo, [
            ("application/vnd.dsse.envelope.v1+json", envelope, att)]))
        refs.append(f"{signed.registry.host}/{repo}:1.0")
    policy = keyless_policy(signed, builder=r"https://github\.com/actions/runner/github-hosted")
    assert build(cli, keys, profile(tmp_path, refs[:1], policy)).code == 0
    refused = build(cli, keys, profile(tmp_path, refs, policy))
    assert refused.code == 3 and f"{refs[1]} matches" in refused.err and "self-hosted" in refused.err, refused.err
    assert f"{refs[0]} matches" not in refused.err
