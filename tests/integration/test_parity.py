"""Parity parts: a split set built with `--parity 2` imports with any two of its parts missing or
damaged (the rebuilt ones named, the site the same as a clean import's), is refused with three,
naming all three and changing nothing, verifies with `rebuilt_parts`, and stays mendable after a
countersignature rewrote its tail."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Keys, Registry, Run, SiteFactory
from tests.integration.test_delta import Versions, site_view, versions  # noqa: F401 - the module's fixture


def build_set(release: Versions, keys: Keys, out: Path, *extra: str) -> Path:
    out.mkdir()
    built = subprocess.run([sys.executable, "-m", "bundler.cli", "build", "profile-2.0.0.yaml", "-o",
                            str(out / "s.bundle.tar"), "--key", str(keys.release.key), "--split-size", "1M", *extra],
                           cwd=release.work, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    return out / "s.bundle.tar.parts.json"


@pytest.fixture(scope="module")
def parity_set(versions: Versions, keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    return build_set(versions, keys, tmp_path_factory.mktemp("parity") / "set", "--parity", "2")


def copy_set(index: Path, target: Path) -> Path:
    target.mkdir()
    for path in index.parent.iterdir():
        shutil.copy(path, target / path.name)
    return target / index.name


def spoil(path: Path, how: str) -> None:
    if how == "deleted":
        path.unlink()
    else:  # bytes flipped in the middle of the part, its size the same
        data = bytearray(path.read_bytes())
        for i in range(len(data) // 2, len(data) // 2 + 64):
            data[i] ^= 0xFF
        path.write_bytes(bytes(data))


def test_a_parity_set_lists_its_parity_parts_and_reads_like_the_whole(
        parity_set: Path, versions: Versions, keys: Keys, cli: Callable[..., Run]) -> None:  # noqa: F811
    doc = json.loads(parity_set.read_text())
    data, parity = doc["parts"], doc["parity"]["parts"]
    assert len(data) >= 5 and [p["file"] for p in parity] == ["s.bundle.tar.parity-000", "s.bundle.tar.parity-001"]
    assert all(p["size"] == data[0]["size"] for p in parity) and all(
        (parity_set.parent / p["file"]).stat().st_size == p["size"] for p in parity)
    # the data parts are the parts a build without parity writes
    plain = build_set(versions, keys, parity_set.parent.parent / "plain")
    assert [(p["file"], p["size"]) for p in json.loads(plain.read_text())["parts"]] == [
        (p["file"], p["size"]) for p in data] and "parity" not in json.loads(plain.read_text())
    verified = cli("verify", parity_set, "--key", keys.release.pub, "--json")
    assert verified.code == 0 and "rebuilt_parts" not in json.loads(verified.out)


@pytest.mark.parametrize("bad", [
    (("part-000", "deleted"), ("part-003", "deleted")),  # bundle.json's part among them
    (("part-001", "flipped"), ("part-004", "flipped")),
    (("part-000", "flipped"), ("parity-001", "deleted")),  # bundle.json damaged, one parity part gone
    (("part-002", "deleted"), ("part-005", "flipped")),
])
def test_any_two_bad_parts_are_rebuilt_and_the_site_ends_as_a_clean_import_leaves_it(
        bad: tuple[tuple[str, str], ...], parity_set: Path, versions: Versions, keys: Keys,  # noqa: F811
        registry_factory: Callable[[], Registry], cli: Callable[..., Run], make_site: SiteFactory,
        tmp_path: Path) -> None:
    clean_registry = registry_factory()
    clean = make_site("clean", "--group", "line-1", registry=clean_registry.url)
    assert cli("import", parity_set, "--site", clean).code == 0

    index = copy_set(parity_set, tmp_path / "copy")
    for suffix, how in bad:
        spoil(index.parent / f"s.bundle.tar.{suffix}", how)
    rebuilt = sorted(f"s.bundle.tar.{suffix}" for suffix, _ in bad if suffix.startswith("part-"))
    verified = cli("verify", index, "--key", keys.release.pub, "--json")
    assert verified.code == 0, verified.out + verified.err
    assert json.loads(verified.out)["rebuilt_parts"] == rebuilt
    registry = registry_factory()
    site = make_site("site", "--group", "line-1", registry=registry.url)
    imported = cli("import", index, "--site", site, "--json")
    assert imported.code == 0, imported.err
    assert json.loads(imported.out)["rebuilt_parts"] == rebuilt
    assert site_view(site, registry, versions.refs) == site_view(clean, clean_registry, versions.refs)
    assert json.loads((site / "state.json").read_text())["bundles"][0]["manifest_digest"] == json.loads(
        (clean / "state.json").read_text())["bundles"][0]["manifest_digest"]
    said = cli("import", index, "--site", make_site("again", "--group", "line-1", registry=registry_factory().url))
    assert said.code == 0 and f"rebuilt from the parity parts: {', '.join(rebuilt)}" in said.err, said.err


def test_three_bad_parts_are_refused_naming_all_three_and_nothing_changes(
        parity_set: Path, keys: Keys, registry: Registry, cli: Callable[..., Run], make_site: SiteFactory,
        tmp_path: Path) -> None:
    index = copy_set(parity_set, tmp_path / "copy")
    spoil(index.parent / "s.bundle.tar.part-001", "deleted")
    spoil(index.parent / "s.bundle.tar.part-002", "flipped")
    spoil(index.parent / "s.bundle.tar.part-004", "flipped")
    site = make_site("site", "--group", "line-1", registry=registry.url)
    refused = cli("import", index, "--site", site)
    assert refused.code == 3, refused.err
    for name, why in (("part-001", "is missing"), ("part-002", "is damaged"), ("part-004", "is damaged")):
        assert f"part s.bundle.tar.{name} {why}" in refused.err, refused.err
    assert "3 parts of this split bundle are bad (its 2 parity parts rebuild at most 2)" in refused.err
    assert registry.catalog() == [] and not (site / "state.json").exists()
    verified = cli("verify", index, "--key", keys.release.pub)
    assert verified.code == 3 and "part s.bundle.tar.part-004 is damaged" in verified.err


def test_a_countersigned_parity_set_still_rebuilds_its_parts(
        parity_set: Path, keys: Keys, cli: Callable[..., Run], tmp_path: Path) -> None:
    index = copy_set(parity_set, tmp_path / "copy")
    assert cli("sign", index, "--key", keys.security.key).code == 0  # the last part's tail rewritten
    last = json.loads(index.read_text())["parts"][-1]["file"]
    spoil(index.parent / last, "deleted")
    spoil(index.parent / "s.bundle.tar.part-000", "flipped")
    verified = cli("verify", index, "--key", keys.release.pub, "--key", keys.security.pub, "--threshold", "2",
                   "--json")
    assert verified.code == 0, verified.out + verified.err
    assert json.loads(verified.out)["rebuilt_parts"] == sorted(["s.bundle.tar.part-000", last])
    shutil.copy(parity_set.parent / "s.bundle.tar.part-000", index.parent)  # only the last part missing now
    refused = cli("sign", index, "--key", keys.stranger.key)
    assert refused.code == 3 and "not signing a set that is not whole" in refused.err, refused.err


def test_parity_needs_a_split_size(versions: Versions, cli: Callable[..., Run], tmp_path: Path) -> None:  # noqa: F811
    r = cli("build", versions.work / "profile-2.0.0.yaml", "-o", tmp_path / "b.bundle.tar", "--parity", "2")
    assert r.code == 2 and "give --split-size too" in r.err and not list(tmp_path.iterdir())


def test_a_parity_set_with_a_part_missing_publishes_to_the_hub_as_the_whole_set_does(
        parity_set: Path, registry: Registry, cli: Callable[..., Run], tmp_path: Path) -> None:
    index = copy_set(parity_set, tmp_path / "copy")
    spoil(index.parent / "s.bundle.tar.part-002", "deleted")
    hub = f"oci://{registry.host}/edge/store"
    whole = cli("publish", parity_set, hub, "--tag", "whole", "--json")
    mended = cli("publish", index, hub, "--tag", "mended", "--json")
    assert whole.code == 0 and mended.code == 0, whole.err + mended.err
    assert json.loads(mended.out)["digest"] == json.loads(whole.out)["digest"]  # the same layers, byte for byte
