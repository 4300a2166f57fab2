"""Supply chain across the gap: an image's cosign signature (keyed, made here with `cryptography` in
cosign's published format), attestation (DSSE), SBOM and an OCI 1.1 referrer (with its fallback
tag) travel with it to the site under the same tags and digests; `spec.imagePolicy` refuses at
build what its keys did not sign, the site's image keys refuse it at import with nothing published;
the bundle's CycloneDX SBOM validates with the CycloneDX library and is signed like any payload."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bundler.oci import media
from bundler.oci.client import RegistryClient
from bundler.oci.reference import ImageReference
from bundler.site.config import load_site
from devtools import images as im
from tests.conftest import Keys, Registry, Run, SiteFactory
from tests.helpers import (
    EMPTY,
    EMPTY_CONFIG,
    SCAN_TYPE,
    SIGNATURE,
    cosign_manifest,
    credentials,
    push_blob,
    push_manifest,
    registry_session,
    sign,
)


def public_pem(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


@dataclass
class Source:
    registry: Registry
    signed: str  # host/repo:tag of an image signed by the cosign key, with .att, .sbom and a referrer
    digest: str
    tags: dict[str, str]  # tag -> digest of what travels with it
    referrer: str
    other_signed: str  # signed by another key
    unsigned: str
    cosign_pub: Path
    other_pub: Path
    key: ec.EllipticCurvePrivateKey


@pytest.fixture(scope="module")
def source(registry_factory: Callable[[], Registry], tmp_path_factory: pytest.TempPathFactory) -> Source:
    registry = registry_factory()
    client = RegistryClient(registry.host)
    work = tmp_path_factory.mktemp("cosign")
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    digest, _ = im.push_image(client, "team/api", "1.0", [im.random_layer(200_000, 71)], oci=True)
    tags = {f"sha256-{digest[7:]}.sig": sign(client, registry.host, "team/api", digest, key)}
    statement = json.dumps({"_type": "https://in-toto.io/Statement/v1", "predicateType": "https://slsa.dev/provenance/v1",
                            "subject": [{"name": "team/api", "digest": {"sha256": digest[7:]}}], "predicate": {}})
    envelope = json.dumps({"payloadType": "application/vnd.in-toto+json",
                           "payload": base64.b64encode(statement.encode()).decode(),
                           "signatures": [{"keyid": "", "sig": base64.b64encode(b"not checked here").decode()}]})
    att = cosign_manifest(client, "team/api", [("application/vnd.dsse.envelope.v1+json", envelope.encode(),
                                                {SIGNATURE: "", "predicateType": "https://slsa.dev/provenance/v1"})])
    tags[f"sha256-{digest[7:]}.att"] = push_manifest(client, "team/api", f"sha256-{digest[7:]}.att", att)[0]
    image_sbom = json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1, "components": []}).encode()
    sbom = cosign_manifest(client, "team/api", [("application/vnd.cyclonedx+json", image_sbom, {})])
    tags[f"sha256-{digest[7:]}.sbom"] = push_manifest(client, "team/api", f"sha256-{digest[7:]}.sbom", sbom)[0]
    push_blob(client, "team/api", EMPTY)
    manifest = client.get_manifest("team/api", digest)[0]
    scan = {"schemaVersion": 2, "mediaType": media.OCI_MANIFEST, "artifactType": SCAN_TYPE, "config": EMPTY_CONFIG,
            "layers": [{"mediaType": "application/json", **push_blob(client, "team/api", b'{"critical": 0}')}],
            "subject": {"mediaType": media.OCI_MANIFEST, "digest": digest, "size": len(manifest)}}
    referrer, size = push_manifest(client, "team/api", None, scan)
    fallback = {"schemaVersion": 2, "mediaType": media.OCI_INDEX,
                "manifests": [{"mediaType": media.OCI_MANIFEST, "digest": referrer, "size": size,
                               "artifactType": SCAN_TYPE}]}
    tags[f"sha256-{digest[7:]}"] = push_manifest(client, "team/api", f"sha256-{digest[7:]}", fallback)[0]

    other_digest, _ = im.push_image(client, "team/worker", "1.0", [im.random_layer(100_000, 72)], oci=True)
    sign(client, registry.host, "team/worker", other_digest, other)
    im.push_image(client, "team/cron", "1.0", [im.random_layer(100_000, 73)], oci=True)
    return Source(registry, f"{registry.host}/team/api:1.0", digest, tags, referrer,
                  f"{registry.host}/team/worker:1.0", f"{registry.host}/team/cron:1.0",
                  public_pem(key, work / "cosign.pub"), public_pem(other, work / "other.pub"), key)


def profile(directory: Path, images: list[str], policy: str = "") -> Path:
    path = directory / "profile.yaml"
    path.write_text("apiVersion: bundler/v1\nkind: Profile\nmetadata: {name: chain, version: 1.0.0}\n"
                    "spec:\n  images:\n" + "".join(f"    - {ref}\n" for ref in images) + policy)
    return path


def build(cli: Callable[..., Run], keys: Keys, path: Path, output: Path) -> Run:
    return cli("build", path, "-o", output, "--key", keys.release.key, cwd=path.parent)


def test_signatures_attestations_sboms_and_referrers_travel_and_are_found_on_the_site(
        cli: Callable[..., Run], keys: Keys, source: Source, skopeo: str, tmp_path: Path) -> None:
    host = source.registry.host
    policy = f"  imagePolicy:\n    - images: '{host}/team/*'\n      keys: [{source.cosign_pub}]\n"
    built = build(cli, keys, profile(tmp_path, [source.signed], policy), tmp_path / "chain.bundle.tar")
    assert built.code == 0, built.err

    info = json.loads(cli("inspect", tmp_path / "chain.bundle.tar", "--json").out)
    (image,) = info["images"]
    assert {e["tag"]: e["digest"] for e in image["extras"]} == source.tags
    text = cli("inspect", tmp_path / "chain.bundle.tar").out
    assert f"+ signature sha256-{source.digest[7:]}.sig" in text and f"+ referrers sha256-{source.digest[7:]}" in text
    assert "inspect checks none of them" in text  # a reviewer is told what was and was not checked

    site = tmp_path / "site"
    init = cli("site", "init", "--as-root", site, "--trust-key", keys.release.pub, "--image-key", source.cosign_pub,
               "--image-scope", f"{host}/team/*", "--registry-listen", f"127.0.0.1:{free_port()}",
               "--http-listen", f"127.0.0.1:{free_port()}")
    assert init.code == 0, init.err
    assert cli("site", "up", site).code == 0
    try:
        imported = cli("import", tmp_path / "chain.bundle.tar", "--site", site)
        assert imported.code == 0, imported.err
        assert "4 signatures, attestations, SBOMs or referrers added" in imported.out

        repo = ImageReference.parse(source.signed).site_repository
        session = registry_session(site, credentials(site), f"repository:{repo}:pull")
        base = f"{status_url(cli, site)}/v2/{repo}"
        for tag, digest in source.tags.items():  # the same tags, the same digests: cosign, Kyverno, Flux find them
            r = session.head(f"{base}/manifests/{tag}", headers={"Accept": media.ACCEPT}, timeout=10)
            assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == digest, tag
        fallback = session.get(f"{base}/manifests/sha256-{source.digest[7:]}", headers={"Accept": media.OCI_INDEX},
                               timeout=10).json()
        assert [(m["digest"], m["artifactType"]) for m in fallback["manifests"]] == [(source.referrer, SCAN_TYPE)]
        r = session.get(f"{base}/manifests/{source.referrer}", headers={"Accept": media.OCI_MANIFEST}, timeout=10)
        assert r.status_code == 200 and r.json()["subject"]["digest"] == source.digest

        certs = tmp_path / "certs"  # skopeo reads the fallback index the same
        certs.mkdir()
        (certs / "ca.crt").write_bytes((site / "pki" / "ca.pem").read_bytes())
        user, password = credentials(site)
        raw = subprocess.run([skopeo, "inspect", "--raw", "--cert-dir", str(certs), "--creds", f"{user}:{password}",
                              f"docker://{base.removeprefix('https://').replace('/v2/', '/', 1)}:sha256-"
                              f"{source.digest[7:]}"], capture_output=True, check=True).stdout
        assert im.sha(raw) == source.tags[f"sha256-{source.digest[7:]}"]
        kept = site / "sbom" / "chain-1.0.0.cdx.json"
        assert kept.read_bytes() == cli_bytes(cli, "inspect", tmp_path / "chain.bundle.tar", "--sbom")

        # re-signed upstream: carried by another bundle name, refused (the .sig tag is chain's); carried
        # by chain's next release, the tag moves
        resigned = sign(RegistryClient(host), host, "team/api", source.digest, source.key)  # a new signature
        for name, version, code in (("chain-audit", "1.0.0", 3), ("chain", "1.1.0", 0)):
            (tmp_path / name / version).mkdir(parents=True)
            again = profile(tmp_path / name / version, [source.signed]).read_text()
            (tmp_path / name / version / "profile.yaml").write_text(
                again.replace("name: chain,", f"name: {name},").replace("version: 1.0.0", f"version: {version}"))
            bundle = tmp_path / name / version / "b.bundle.tar"
            assert build(cli, keys, tmp_path / name / version / "profile.yaml", bundle).code == 0
            moved = cli("import", bundle, "--site", site)
            assert moved.code == code, moved.err
            r = session.head(f"{base}/manifests/sha256-{source.digest[7:]}.sig", headers={"Accept": media.ACCEPT},
                             timeout=10)
            assert r.headers["Docker-Content-Digest"] == (resigned if code == 0 else source.tags[
                f"sha256-{source.digest[7:]}.sig"])
    finally:
        cli("site", "down", site)


def cli_bytes(cli: Callable[..., Run], *args: str | Path) -> bytes:
    r = cli(*args)
    assert r.code == 0, r.err
    return r.out.encode()


def status_url(cli: Callable[..., Run], site: Path) -> str:
    return str(json.loads(cli("site", "status", site, "--json").out)["services"]["registry"]["url"])


def free_port() -> int:
    from bundler.site.registry_process import free_port as port

    return port()


@pytest.mark.parametrize(("which", "has"), [("unsigned", "no signature"),
                                            ("other_signed", "a signature by other keys")])
def test_image_policy_refuses_at_build_what_its_keys_did_not_sign(
        cli: Callable[..., Run], keys: Keys, source: Source, tmp_path: Path, which: str, has: str) -> None:
    ref = getattr(source, which)
    policy = f"  imagePolicy:\n    - images: '{source.registry.host}/team/*'\n      keys: [{source.cosign_pub}]\n"
    r = build(cli, keys, profile(tmp_path, [source.signed, ref], policy), tmp_path / "b.bundle.tar")
    assert r.code == 3, r.err
    assert f"{ref} matches" in r.err and has in r.err and "needs one by cosign" in r.err
    assert source.signed not in r.err.split("error:", 1)[1].split("hint:")[0]  # the signed one passes
    assert not (tmp_path / "b.bundle.tar").exists()


def test_the_site_refuses_an_image_its_keys_did_not_sign_and_publishes_nothing(
        cli: Callable[..., Run], keys: Keys, source: Source, registry: Registry, tmp_path: Path) -> None:
    built = build(cli, keys, profile(tmp_path, [source.other_signed]), tmp_path / "w.bundle.tar")
    assert built.code == 0, built.err  # no imagePolicy in the profile: the build carries it
    site = tmp_path / "site"
    assert cli("site", "init", "--as-root", site, "--registry", registry.url, "--trust-key", keys.release.pub,
               "--image-key", source.cosign_pub).code == 0
    checked = cli("verify", tmp_path / "w.bundle.tar", "--site", site, "--json")
    assert checked.code == 3
    assert [p["code"] for p in json.loads(checked.out)["problems"]] == ["image-unsigned"]
    refused = cli("import", tmp_path / "w.bundle.tar", "--site", site)
    assert refused.code == 3, refused.err
    assert f"{source.other_signed} matches * and has a signature by other keys" in refused.err
    assert "sign them" in refused.err
    assert registry.catalog() == []  # nothing published, not even a blob in the quarantine
    assert not (site / "state.json").exists() or json.loads((site / "state.json").read_text())["bundles"] == []


def test_the_bundle_sbom_validates_lists_every_component_and_is_signed(
        cli: Callable[..., Run], keys: Keys, source: Source, tmp_path: Path) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    bundle = tmp_path / "s.bundle.tar"
    assert build(cli, keys, profile(tmp_path, [source.signed, source.unsigned]), bundle).code == 0
    text = cli_bytes(cli, "inspect", bundle, "--sbom").decode()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    sbom = json.loads(text)
    info = json.loads(cli("inspect", bundle, "--json").out)
    listed = {c["purl"].split("@")[1].split("?")[0].replace("%3A", ":"): c for c in sbom["components"]}
    for image in info["images"]:
        component = listed[image["digest"]]
        assert component["type"] == "container" and component["purl"].startswith("pkg:oci/")
        assert component["hashes"] == [{"alg": "SHA-256", "content": image["digest"][7:]}]
    carried = [c for c in sbom["components"] if {"name": "bundler:kind", "value": "image-sbom"} in c["properties"]]
    assert [c["hashes"][0]["content"] for c in carried] == [source.tags[f"sha256-{source.digest[7:]}.sbom"][7:]]
    assert sbom["metadata"]["component"]["name"] == "chain" and sbom["metadata"]["component"]["version"] == "1.0.0"

    tampered = tmp_path / "t.bundle.tar"  # one byte of the SBOM changed, bundle.json and signatures kept
    with tarfile.open(bundle) as src, tarfile.open(tampered, "w", format=tarfile.PAX_FORMAT) as out:
        for member in src.getmembers():
            data = src.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "sbom.cdx.json":
                data = data.replace(b'"chain"', b'"chaim"', 1)
            out.addfile(member, io.BytesIO(data))
    checked = cli("verify", tampered, "--key", keys.release.pub, "--json")
    assert checked.code == 3
    assert [(p["code"], p["subject"]) for p in json.loads(checked.out)["problems"]] == \
        [("digest-mismatch", "sbom.cdx.json")]
    shown = cli("inspect", tampered, "--sbom")
    assert shown.code == 3 and "sbom.cdx.json: sha256 is" in shown.err


@pytest.mark.parametrize("where", ["spec", "image"])
def test_extras_false_leaves_them_behind(cli: Callable[..., Run], keys: Keys, source: Source, tmp_path: Path,
                                         where: str) -> None:
    path = profile(tmp_path, [f"{{ref: {source.signed}, extras: false}}" if where == "image" else source.signed],
                   "  extras: false\n" if where == "spec" else "")
    assert build(cli, keys, path, tmp_path / "x.bundle.tar").code == 0
    (image,) = json.loads(cli("inspect", tmp_path / "x.bundle.tar", "--json").out)["images"]
    assert image["digest"] == source.digest and image["extras"] == []


def site_signature(client: RegistryClient, repo: str, digest: str, key: ec.EllipticCurvePrivateKey) -> str | None:
    """The digest of the cosign signature the registry serves for image `digest`, if it verifies with
    `key` as cosign checks it (the simple-signing payload names the image; the ECDSA signature over it)."""
    tag = f"sha256-{digest[7:]}.sig"
    if client.head_manifest(repo, tag) is None:
        return None
    data, _, sig_digest = client.get_manifest(repo, tag)
    layer = json.loads(data)["layers"][0]
    chunks: list[bytes] = []
    client.fetch_blob(repo, layer["digest"], layer["size"], lambda _, chunk: chunks.append(chunk))
    payload = b"".join(chunks)
    assert json.loads(payload)["critical"]["image"]["docker-manifest-digest"] == digest
    key.public_key().verify(base64.b64decode(layer["annotations"][SIGNATURE]), payload, ec.ECDSA(hashes.SHA256()))
    return sig_digest


def test_an_images_signature_belongs_to_its_product_and_prune_keeps_a_kept_images_signature(
        cli: Callable[..., Run], keys: Keys, source: Source, registry: Registry, tmp_path: Path) -> None:
    """Another product's bundle carrying the same image with another signature is refused before
    anything moves, naming the owner, and the product's signature still verifies on the site. The
    product re-signs in a later release, then ships the image without signatures; a prune keeping
    only that last release keeps the image's signature (the one its tag points at) valid."""
    client = RegistryClient(source.registry.host)
    host = source.registry.host
    digest, _ = im.push_image(client, "team/pos", "1.0", [im.random_layer(50_000, 81)], oci=True)
    other = ec.generate_private_key(ec.SECP256R1())
    ref = f"{host}/team/pos:1.0"

    def release(name: str, version: str, key: ec.EllipticCurvePrivateKey | None, extras: bool = True) -> Path:
        if key is not None:
            sign(client, host, "team/pos", digest, key)  # the source's signature tag moves to a new one
        work = tmp_path / f"{name}-{version}"
        work.mkdir()
        (work / "profile.yaml").write_text(
            f"apiVersion: bundler/v1\nkind: Profile\nmetadata: {{name: {name}, version: {version}}}\n"
            f"spec:\n  images:\n    - {{ref: {ref}, extras: {'true' if extras else 'false'}}}\n")
        assert build(cli, keys, work / "profile.yaml", work / "b.bundle.tar").code == 0
        return work / "b.bundle.tar"

    pos_1 = release("pos", "1.0.0", source.key)
    evil = release("evil", "1.0.0", other)  # the same image, signed by someone else
    pos_2 = release("pos", "2.0.0", source.key)  # the product re-signs
    pos_3 = release("pos", "3.0.0", None, extras=False)  # then ships the image alone
    site = tmp_path / "site"
    assert cli("site", "init", "--as-root", site, "--registry", registry.url, "--trust-key", keys.release.pub).code == 0
    target, repo = RegistryClient(registry.host), f"{host.replace(':', '_')}/team/pos"
    assert cli("import", pos_1, "--site", site).code == 0
    first = site_signature(target, repo, digest, source.key)
    assert first is not None

    checked = cli("verify", evil, "--site", site, "--json")
    assert checked.code == 3 and "name-owned" in {p["code"] for p in json.loads(checked.out)["problems"]}
    refused = cli("import", evil, "--site", site)
    assert refused.code == 3 and f"sha256-{digest[7:]}.sig" in refused.err and "belongs to pos 1.0.0" in refused.err
    assert site_signature(target, repo, digest, source.key) == first  # the product's, still valid

    for bundle in (pos_2, pos_3):
        imported = cli("import", bundle, "--site", site)
        assert imported.code == 0, imported.err
    second = site_signature(target, repo, digest, source.key)
    assert second is not None and second != first  # the re-signed one
    pruned = cli("site", "prune", site, "--keep", "1")
    assert pruned.code == 0, pruned.err
    assert site_signature(target, repo, digest, source.key) == second  # the kept image keeps its signature
    assert target.head_manifest(repo, first) is None  # the first signature, which nothing points at, went


def release(cli: Callable[..., Run], keys: Keys, directory: Path, name: str, version: str, images: list[str]) -> Path:
    """A bundle of `images` under bundle name `name`, release `version`."""
    directory.mkdir(parents=True)
    (directory / "profile.yaml").write_text(
        f"apiVersion: bundler/v1\nkind: Profile\nmetadata: {{name: {name}, version: {version}}}\n"
        "spec:\n  images:\n" + "".join(f"    - {ref}\n" for ref in images))
    built = build(cli, keys, directory / "profile.yaml", directory / "b.bundle.tar")
    assert built.code == 0, built.err
    return directory / "b.bundle.tar"


def test_a_tag_shipped_unchanged_by_another_bundle_name_stays_its_first_owners(
        cli: Callable[..., Run], keys: Keys, registry: Registry, make_site: SiteFactory, tmp_path: Path) -> None:
    """Product B ships product A's tag at A's digest: it imports, and A keeps the tag; B's next release
    cannot move it; A's next release does."""
    client = RegistryClient(registry.host)
    im.push_image(client, "shared/base", "1.0", [im.random_layer(100_000, 81)], oci=True)
    ref = f"{registry.host}/shared/base:1.0"
    site = make_site(up=True)
    key = f"{ImageReference.parse(ref).site_repository}:1.0"

    def owner() -> str:
        return str(json.loads((site / "state.json").read_text())["tags"][key]["name"])

    assert cli("import", release(cli, keys, tmp_path / "a1", "product-a", "1.0.0", [ref]), "--site", site).code == 0
    shipped = cli("import", release(cli, keys, tmp_path / "b1", "product-b", "1.0.0", [ref]), "--site", site)
    assert shipped.code == 0, shipped.err
    assert owner() == "product-a"
    moved, _ = im.push_image(client, "shared/base", "1.0", [im.random_layer(100_000, 82)], oci=True)
    takeover = cli("import", release(cli, keys, tmp_path / "b2", "product-b", "1.1.0", [ref]), "--site", site)
    assert takeover.code == 3 and f"tag {key} was set by product-a 1.0.0" in takeover.err, takeover.err
    assert owner() == "product-a"
    follows = cli("import", release(cli, keys, tmp_path / "a2", "product-a", "1.1.0", [ref]), "--site", site)
    assert follows.code == 0, follows.err
    assert owner() == "product-a"
    assert load_site(site).registry_client(1).head_manifest(key.rpartition(":")[0], "1.0") == moved


def test_a_hand_over_moves_the_tags_derived_from_its_image_and_a_prune_leaves_none_behind(
        cli: Callable[..., Run], keys: Keys, source: Source, make_site: SiteFactory, tmp_path: Path) -> None:
    """After `site hand-over REPO:TAG --to B`, B's release (the image re-signed upstream) imports, its
    signature included, and the old owner's pruned release leaves no tag owned by it."""
    site = make_site(up=True)
    repo = ImageReference.parse(source.signed).site_repository
    for version in ("1.0.0", "1.1.0"):
        imported = cli("import", release(cli, keys, tmp_path / f"old-{version}", "old-owner", version,
                                         [source.signed]), "--site", site)
        assert imported.code == 0, imported.err
    refused = cli("site", "hand-over", site, "git/../../x/evil.git", "--to", "new-owner")
    assert refused.code == 2 and "not a name on this site" in refused.err, refused.err
    handed = cli("site", "hand-over", site, f"{repo}:1.0", "--to", "new-owner")
    assert handed.code == 0, handed.err
    owners = {k: v["name"] for k, v in json.loads((site / "state.json").read_text())["tags"].items()}
    assert {k for k, v in owners.items() if v == "old-owner"} == set(), owners  # the .sig, .att, .sbom too
    resigned = sign(RegistryClient(source.registry.host), source.registry.host, "team/api", source.digest, source.key)
    new = release(cli, keys, tmp_path / "new", "new-owner", "1.0.0", [source.signed])
    assert cli("site", "prune", site, "--keep", "1").code == 0
    imported = cli("import", new, "--site", site)
    assert imported.code == 0, imported.err
    session = registry_session(site, credentials(site), f"repository:{repo}:pull")
    r = session.head(f"{status_url(cli, site)}/v2/{repo}/manifests/sha256-{source.digest[7:]}.sig",
                     headers={"Accept": media.ACCEPT}, timeout=10)
    assert r.headers["Docker-Content-Digest"] == resigned
