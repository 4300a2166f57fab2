"""The fleet: sites at different versions write signed receipts; the connected side enrolls their
keys, adds the receipts and sees which site runs what. A receipt edited after signing, or signed
by a key nobody enrolled, is refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from bundler.oci.client import RegistryClient
from devtools.samples import push_samples
from tests.conftest import Keys, Registry, Run, SiteFactory
from tests.helpers import build_store_release


@pytest.fixture(scope="module")
def releases(registry_factory: Callable[[], Registry], keys: Keys,
             tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("fleet")
    refs = list(push_samples(RegistryClient(registry_factory().host)).refs)
    built = {}
    for version, images in (("1.0.0", refs[:1]), ("2.0.0", refs[:2])):  # 2.0.0 adds an image
        built[version] = build_store_release(work, version, images, keys.release.key)
    return built


def site_running(make_site: SiteFactory, cli: Callable[..., Run], registry: Registry, name: str,
                 *bundles: Path) -> Path:
    directory = make_site(name, "--name", name, registry=registry.url)
    for bundle in bundles:
        r = cli("import", bundle, "--site", directory)
        assert r.code == 0, r.err
    return directory


def test_the_fleet_knows_which_site_runs_what_and_refuses_an_edited_receipt(
        releases: dict[str, Path], registry_factory: Callable[[], Registry], keys: Keys,
        cli: Callable[..., Run], tmp_path: Path, make_site: SiteFactory) -> None:
    v1, v2 = releases["1.0.0"], releases["2.0.0"]
    sites = {"store-1": site_running(make_site, cli, registry_factory(), "store-1", v1),
             "store-2": site_running(make_site, cli, registry_factory(), "store-2", v1, v2),
             "store-3": site_running(make_site, cli, registry_factory(), "store-3", v2)}
    receipts = {}
    for name, site in sites.items():
        assert (site / "site.pub").exists() and oct((site / "pki" / "site.key").stat().st_mode)[-3:] == "600"
        written = cli("site", "receipt", site, "-o", tmp_path / f"{name}.receipt.json")
        assert written.code == 0, written.err
        receipts[name] = tmp_path / f"{name}.receipt.json"

    fleet = ["--fleet", tmp_path / "fleet"]
    unknown = cli("fleet", "add", receipts["store-1"], *fleet)
    assert unknown.code == 3 and "has not enrolled" in unknown.err and "bundler fleet enroll" in unknown.err
    assert cli("fleet", "enroll", *(site / "site.pub" for site in sites.values()), *fleet).code == 0
    added = cli("fleet", "add", *receipts.values(), *fleet)
    assert added.code == 0, added.err
    assert added.out.count(" kept") == 3

    status = json.loads(cli("fleet", "status", "--json", *fleet).out)
    assert status["bundles"] == ["store"]
    assert {s["site"]: s["running"] for s in status["sites"]} == {
        "store-1": {"store": "1.0.0"}, "store-2": {"store": "2.0.0"}, "store-3": {"store": "2.0.0"}}
    store_2 = next(s for s in status["sites"] if s["site"] == "store-2")
    assert store_2["disk"]["total"] > 0 and store_2["services"]["git"] is False  # `site up` never ran there
    table = cli("fleet", "status", *fleet)
    assert table.code == 0 and "store-1" in table.out and "1.0.0" in table.out

    doc = json.loads(receipts["store-1"].read_text())
    doc["bundles"][0]["version"] = "2.0.0"  # a receipt "upgraded" on the way back
    edited = tmp_path / "edited.receipt.json"
    edited.write_text(json.dumps(doc))
    refused = cli("fleet", "add", edited, *fleet)
    assert refused.code == 3 and "edited after the site signed it" in refused.err
    status = json.loads(cli("fleet", "status", "--json", *fleet).out)
    assert {s["site"]: s["running"] for s in status["sites"]}["store-1"] == {"store": "1.0.0"}

    # store-3's key (unencrypted on its edge box) signs a receipt for store-1, dated 2099: refused, so
    # store-1's real receipts still count and the fleet still plans what store-1 needs
    from bundler.site.identity import load_site_key, signed

    forged = json.loads(receipts["store-1"].read_text())
    forged.pop("signature")
    forged["created"], forged["bundles"] = "2099-01-01T00:00:00Z", [{"name": "store", "version": "9.9.9"}]
    for when, who in (("2099-01-01T00:00:00Z", sites["store-3"]), ("2099-01-01T00:00:00Z", sites["store-1"])):
        (tmp_path / "forged.json").write_text(json.dumps(signed({**forged, "created": when}, load_site_key(who))))
        refused = cli("fleet", "add", tmp_path / "forged.json", *fleet)
        assert refused.code == 3, refused.err
        assert ("signed by the key of site store-3" if who == sites["store-3"] else "in the future") in refused.err
    assert cli("fleet", "add", receipts["store-1"], *fleet).code == 0
    planned = json.loads(cli("fleet", "plan", v2, "--json", *fleet).out)
    assert {row["site"]: row["needs"] for row in planned["sites"]}["store-1"] == "delta"
    bound = cli("fleet", "enroll", sites["store-3"] / "site.pub", "--name", "store-1", *fleet)
    assert bound.code == 2 and "enrolled for site store-3" in bound.err

    # the receipt is still a parent for a delta: what store-1 holds, and v2 carries only the rest
    delta = cli("build", releases["2.0.0"].parent / "2.0.0.yaml", "-o", tmp_path / "d.bundle.tar",
                "--since", receipts["store-1"], cwd=releases["2.0.0"].parent)
    assert delta.code == 0, delta.err


def test_for_fleet_deltas_bring_every_site_to_the_same_content(
        releases: dict[str, Path], registry_factory: Callable[[], Registry], keys: Keys,
        cli: Callable[..., Run], tmp_path: Path, make_site: SiteFactory) -> None:
    v1, v2 = releases["1.0.0"], releases["2.0.0"]
    work = v2.parent
    sites = {"old": site_running(make_site, cli, registry_factory(), "old", v1),
             "new": site_running(make_site, cli, registry_factory(), "new", v1, v2),
             "bare": site_running(make_site, cli, registry_factory(), "bare")}
    fleet = ["--fleet", tmp_path / "fleet"]
    assert cli("fleet", "enroll", *(site / "site.pub" for site in sites.values()), *fleet).code == 0
    for name, site in sites.items():
        assert cli("site", "receipt", site, "-o", tmp_path / f"{name}.json").code == 0
        assert cli("fleet", "add", tmp_path / f"{name}.json", *fleet).code == 0

    plan = json.loads(cli("fleet", "plan", v2, "--json", *fleet).out)
    needs = {row["site"]: row["needs"] for row in plan["sites"]}
    assert needs == {"old": "delta", "new": "nothing", "bare": "full"}
    sizes = {row["site"]: row["bytes"] for row in plan["sites"]}
    assert 0 < sizes["old"] < sizes["bare"]
    from_profile = json.loads(cli("fleet", "plan", work / "2.0.0.yaml", "--json", *fleet, cwd=work).out)
    assert {row["site"]: row["needs"] for row in from_profile["sites"]} == needs  # the same, nothing written
    assert not list(work.glob("*for-*"))

    out = tmp_path / "deltas"
    built = cli("build", work / "2.0.0.yaml", "--for-fleet", tmp_path / "fleet", "-o", out, "--key",
                keys.release.key, cwd=work)
    assert built.code == 0, built.err
    assert "already at this release: new" in built.out
    deltas = {p.name.split("-for-")[1].removesuffix(".bundle.tar"): p for p in out.glob("*.bundle.tar")}
    assert set(deltas) == {"old", "bare"}
    assert deltas["old"].stat().st_size < deltas["bare"].stat().st_size
    planned = {row["site"]: row["bytes"] for row in from_profile["sites"]}
    for name in ("old", "bare"):  # what the plan said is what the bundle carries (tar headers aside)
        assert planned[name] <= deltas[name].stat().st_size < planned[name] + 64 * 1024
    # one delta rule: from the full bundle the plan says what the profile's plan says (no Git in it)
    assert sizes == {name: planned[name] for name in sizes}, (sizes, planned)
    full = json.loads(cli("inspect", v2, "--json").out)["content_digest"]
    # for sticks: the same deltas as split sets with a parity part; one part lost, each reads as its delta
    sets = tmp_path / "sets"
    assert cli("build", work / "2.0.0.yaml", "--for-fleet", tmp_path / "fleet", "-o", sets, "--key",
               keys.release.key, "--split-size", "1M", "--parity", "1", cwd=work).code == 0
    for name in ("old", "bare"):
        index = sets / f"{deltas[name].name}.parts.json"
        assert (sets / f"{deltas[name].name}.parity-000").exists()
        (sets / f"{deltas[name].name}.part-000").unlink()
        assert json.loads(cli("inspect", index, "--json").out)["content_digest"] == json.loads(
            cli("inspect", deltas[name], "--json").out)["content_digest"]
    for name in ("old", "bare"):
        imported = cli("import", deltas[name], "--site", sites[name])
        assert imported.code == 0, imported.err
        state = json.loads((sites[name] / "state.json").read_text())
        assert state["bundles"][-1]["content_digest"] == full and state["bundles"][-1]["version"] == "2.0.0"
