"""Images end to end on real services: source registry -> bundle -> site registry, read back by skopeo."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

from bundler.oci.client import RegistryClient
from bundler.oci.reference import ImageReference
from devtools.samples import SampleSet, push_samples
from tests.conftest import Keys, Registry, Run, SiteFactory


def site_ref(site: Registry, ref: str) -> str:
    parsed = ImageReference.parse(ref)
    suffix = f":{parsed.tag}" if parsed.tag else f"@{parsed.digest}"
    return f"{site.host}/{parsed.site_repository}{suffix}"


def skopeo_raw(skopeo: str, image: str) -> bytes:
    return subprocess.run([skopeo, "inspect", "--raw", "--tls-verify=false", f"docker://{image}"],
                          check=True, capture_output=True).stdout


def build(cli: Callable[..., Run], tmp_path: Path, samples: SampleSet, key: Path | None = None) -> Path:
    (tmp_path / "profile.yaml").write_text(samples.profile())
    bundle = tmp_path / "demo.bundle.tar"
    r = cli("build", "profile.yaml", "-o", bundle, *(("--key", key) if key else ()))
    assert r.code == 0, r.err
    return bundle


def test_round_trip_keeps_every_digest(cli: Callable[..., Run], registry_factory: Callable[[], Registry],
                                       skopeo: str, keys: Keys, tmp_path: Path, make_site: SiteFactory) -> None:
    source, site = registry_factory(), registry_factory()
    samples = push_samples(RegistryClient(source.host))
    bundle = build(cli, tmp_path, samples, keys.release.key)

    verified = cli("verify", bundle, "--key", keys.release.pub, "--json")
    assert verified.code == 0, verified.err
    assert json.loads(verified.out)["verified"] is True

    info = json.loads(cli("inspect", bundle, "--json").out)
    assert {i["ref"]: i["digest"] for i in info["images"]} == {
        str(ImageReference.parse(ref)): digest for ref, digest in samples.refs.items()}

    make_site(registry=site.url)
    imported = cli("import", bundle, "--site", "site", "--json")
    assert imported.code == 0, imported.err
    first = json.loads(imported.out)
    assert first["added"]["images"] == len(samples.refs)
    # the base layer app-a and app-b share went over the wire once (the second repository mounts it)
    assert first["bytes_sent"] <= samples.unique_bytes

    for ref, digest in samples.refs.items():
        raw = skopeo_raw(skopeo, site_ref(site, ref))
        assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest, ref
    assert sorted(site.catalog()) == sorted({ImageReference.parse(r).site_repository for r in samples.refs})
    # the multi-arch index came whole: both platforms' manifests are there by digest
    multi = next(r for r in samples.refs if "multi" in r)
    children = json.loads(skopeo_raw(skopeo, site_ref(site, multi)))["manifests"]
    assert {c["platform"]["architecture"] for c in children} == {"amd64", "arm64"}

    again = cli("import", bundle, "--site", "site", "--json")
    assert again.code == 0, again.err
    result = json.loads(again.out)
    assert result["already_imported"] is True and result["bytes_sent"] == 0


def test_shared_layers_are_stored_once(cli: Callable[..., Run], registry: Registry, tmp_path: Path) -> None:
    samples = push_samples(RegistryClient(registry.host))
    bundle = build(cli, tmp_path, samples)
    size = bundle.stat().st_size
    assert samples.unique_bytes <= size <= samples.unique_bytes * 1.01, (size, samples.unique_bytes)


def test_oci_directory_is_a_layout_skopeo_reads(cli: Callable[..., Run], registry: Registry, skopeo: str,
                                               tmp_path: Path) -> None:
    samples = push_samples(RegistryClient(registry.host))
    bundle = build(cli, tmp_path, samples)
    unpacked = tmp_path / "unpacked"
    with tarfile.open(bundle) as tar:
        tar.extractall(unpacked, filter="data")  # the test reads the layout as a user would
    for ref, digest in samples.refs.items():
        out = tmp_path / f"copy-{digest[7:19]}"
        subprocess.run([skopeo, "copy", "--all", "--preserve-digests", "-q", f"oci:{unpacked}/oci:{ref}",
                        f"dir:{out}"], check=True, capture_output=True)
        # skopeo read the image's own manifest out of the layout, byte for byte
        manifests = {hashlib.sha256(p.read_bytes()).hexdigest() for p in out.glob("*manifest.json")}
        assert digest.split(":")[1] in manifests, ref


def test_platform_subset_makes_a_smaller_index(cli: Callable[..., Run], registry: Registry, tmp_path: Path) -> None:
    samples = push_samples(RegistryClient(registry.host))
    multi = next(r for r in samples.refs if "multi" in r)
    (tmp_path / "profile.yaml").write_text(
        "apiVersion: bundler/v1\nkind: Profile\nmetadata: {name: arm, version: 1.0.0}\n"
        f"spec:\n  images:\n    - ref: {multi}\n      platforms: [linux/arm64]\n")
    r = cli("build", "profile.yaml", "-o", "arm.bundle.tar")
    assert r.code == 0, r.err
    image = json.loads(cli("inspect", "arm.bundle.tar", "--json").out)["images"][0]
    assert image["platforms"] == ["linux/arm64"]
    assert image["digest"] != samples.refs[multi]
