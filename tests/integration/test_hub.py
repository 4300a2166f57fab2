"""A release reaches sites through a hub registry: `publish` pushes the bundle as an OCI artifact, a
signed rollout names it, each site's `site sync` takes its own bundle once its wave is open, imports it
as `bundler import` does and pushes its signed receipt back; `fleet rollout advance` opens the next
wave when the open ones are done, and stops the rollout when a site fails. The hub is untrusted: an
older, edited or expired rollout, or a bundle other than the one the rollout names, is refused with
its reason and nothing is imported."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from bundler.oci.client import RegistryClient
from devtools.samples import push_samples
from tests.conftest import Keys, Registry, Run, SiteFactory
from tests.helpers import build_store_release


@dataclass
class Release:
    work: Path
    v1: Path
    v2: Path
    source: Registry


@pytest.fixture(scope="module")
def release(registry_factory: Callable[[], Registry], keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Release:
    work = tmp_path_factory.mktemp("hub")
    source = registry_factory()
    refs = list(push_samples(RegistryClient(source.host)).refs)
    for version, images in (("1.0.0", refs[:2]), ("2.0.0", refs[:3])):
        build_store_release(work, version, images, keys.release.key)
    return Release(work, work / "store-1.0.0.bundle.tar", work / "store-2.0.0.bundle.tar", source)


def hub_repo(hub: Registry) -> str:
    return f"oci://{hub.host}/edge/store"


def enroll(cli: Callable[..., Run], fleet: list[str | Path], sites: dict[str, Path]) -> None:
    for name, site in sites.items():
        assert cli("fleet", "enroll", site / "site.pub", "--name", name, *fleet).code == 0


def test_a_release_goes_out_in_waves_through_the_hub_and_every_site_reports_back(
        release: Release, registry: Registry, registry_factory: Callable[[], Registry], keys: Keys,
        cli: Callable[..., Run], make_site: SiteFactory, tmp_path: Path) -> None:
    hub = hub_repo(registry)
    published = cli("publish", release.v1, hub, "--layer-size", "1M", "--json")
    assert published.code == 0, published.err
    artifact = json.loads(published.out)
    assert artifact["tag"] == "1.0.0" and artifact["layers"] > 2  # the index and 1 MiB layers

    sites = {name: make_site(name, "--name", name, registry=registry_factory().url)
             for name in ("store-1", "store-2", "store-3")}
    fleet = ["--fleet", tmp_path / "fleet"]
    enroll(cli, fleet, sites)
    started = cli("fleet", "rollout", "start", "store", "1.0.0", "--hub", hub, "--wave", "canary=store-1",
                  "--wave", "rest=*", "--key", keys.release.key, *fleet, "--json")
    assert started.code == 0, started.err
    waves = json.loads(started.out)["waves"]
    assert [(w["name"], w["open"], w["pending"]) for w in waves] == [("canary", True, 1), ("rest", False, 2)]

    waiting = cli("site", "sync", sites["store-2"], "--hub", hub, "--json")
    assert waiting.code == 0 and json.loads(waiting.out)["state"] == "waiting", waiting.out
    assert "wave rest is not open yet" in json.loads(waiting.out)["message"]

    synced = cli("site", "sync", sites["store-1"], "--hub", hub, "--json")
    assert synced.code == 0, synced.err
    result = json.loads(synced.out)
    assert result["state"] == "imported" and result["imported"]["version"] == "1.0.0"
    assert result["bytes"] == artifact["size"]  # every layer once, nothing twice
    assert not (sites["store-1"] / "staging" / "hub").exists()  # imported: the downloaded parts are gone
    again = json.loads(cli("site", "sync", sites["store-1"], "--hub", hub, "--json").out)
    assert again["state"] == "current" and again["bytes"] == 0

    advanced = json.loads(cli("fleet", "rollout", "advance", "store", "--hub", hub, "--key", keys.release.key,
                              *fleet, "--json").out)
    assert advanced["rollout"]["open"] == 2 and advanced["rollout"]["serial"] == 2
    assert [(w["name"], w["done"], w["pending"]) for w in advanced["waves"]] == [("canary", 1, 0), ("rest", 0, 2)]
    for name in ("store-2", "store-3"):
        r = cli("site", "sync", sites[name], "--hub", hub)
        assert r.code == 0 and r.out.startswith("imported: imported store 1.0.0 from the hub"), r.out + r.err
    status = json.loads(cli("fleet", "rollout", "status", "store", "--hub", hub, *fleet, "--json").out)
    assert [(w["done"], w["failed"], w["pending"]) for w in status["waves"]] == [(1, 0, 0), (2, 0, 0)]
    fleet_view = json.loads(cli("fleet", "status", "--json", *fleet).out)
    assert {s["site"]: s["running"] for s in fleet_view["sites"]} == {n: {"store": "1.0.0"} for n in sites}

    # the next release as deltas on the receipts the sites pushed: one delta for all three, tagged per site
    full = json.loads(cli("publish", release.v2, hub, "--json").out)
    (tmp_path / "deltas").mkdir()
    built = cli("build", release.work / "2.0.0.yaml", "--for-fleet", tmp_path / "fleet", "-o", tmp_path / "deltas",
                "--key", keys.release.key, "--publish", hub, cwd=release.work)
    assert built.code == 0, built.err
    assert "as 2.0.0-for-store-1, 2.0.0-for-store-2, 2.0.0-for-store-3" in built.out, built.out
    started = cli("fleet", "rollout", "start", "store", "2.0.0", "--hub", hub, "--wave", "all=*",
                  "--key", keys.release.key, *fleet, "--json")
    assert started.code == 0, started.err
    targets = json.loads(started.out)["rollout"]["targets"]
    assert set(targets) == {"*", "store-1", "store-2", "store-3"} and targets["store-1"]["size"] < full["size"] / 2
    for name, site in sites.items():
        took = json.loads(cli("site", "sync", site, "--hub", hub, "--json").out)
        assert took["state"] == "imported" and took["bytes"] == targets[name]["size"], took  # its delta, not all
    status = json.loads(cli("fleet", "rollout", "status", "store", "--hub", hub, *fleet, "--json").out)
    assert [(w["done"], w["pending"]) for w in status["waves"]] == [(3, 0)]


def test_a_canary_served_a_corrupt_blob_stops_the_rollout_until_a_person_resumes_it(
        release: Release, registry_factory: Callable[[], Registry], keys: Keys, cli: Callable[..., Run],
        make_site: SiteFactory, tmp_path: Path) -> None:
    """The hub serves one corrupted layer to the canary (a disk fault on the hub): the canary refuses it,
    keeps none of its bytes and reports the failure; `advance` stops the rollout, so the second wave
    never starts and no other site imports; `fleet rollout status` names the site and the reason. Once
    the hub is mended, `resume` lets the canary finish, and then the rest."""
    from bundler.site.registry_process import start_registry

    hub_registry = start_registry(tmp_path / "hub-registry")
    try:
        hub = f"oci://{hub_registry.address}/edge/store"
        assert cli("publish", release.v1, hub, "--layer-size", "1M").code == 0
        manifest = json.loads(RegistryClient(hub_registry.address).get_manifest("edge/store", "1.0.0")[0])
        layer = manifest["layers"][2]["digest"].split(":")[1]
        data = hub_registry.storage / "docker/registry/v2/blobs/sha256" / layer[:2] / layer / "data"
        good = data.read_bytes()
        data.write_bytes(good[:1000] + bytes([good[1000] ^ 1]) + good[1001:])

        canary = make_site("canary", "--name", "store-1", registry=registry_factory().url)
        other = make_site("other", "--name", "store-2", registry=registry_factory().url)
        fleet = ["--fleet", tmp_path / "fleet"]
        enroll(cli, fleet, {"store-1": canary, "store-2": other})
        control = ["--hub", hub, "--key", keys.release.key, *fleet]
        assert cli("fleet", "rollout", "start", "store", "1.0.0", "--wave", "canary=store-1", "--wave", "rest=store-2",
                   *control).code == 0

        failed = cli("site", "sync", canary, "--hub", hub)
        assert failed.code == 3 and "does not match its descriptor" in failed.err, failed.err
        assert json.loads((canary / "sync.json").read_text())["last"]["state"] == "failed"
        assert not list((canary / "staging").rglob("*.part-001*"))  # layer 2 is part 1: none of its bytes kept
        stopped = json.loads(cli("fleet", "rollout", "advance", "store", *control, "--json").out)
        assert stopped["rollout"]["state"] == "stopped" and stopped["rollout"]["open"] == 1
        assert "store-1" in stopped["rollout"]["reason"] and "does not match" in stopped["rollout"]["reason"]
        assert [w["failed"] for w in stopped["waves"]] == [1, 0]
        shown = cli("fleet", "rollout", "status", "store", "--hub", hub, *fleet)
        assert "store-1: failed: " in shown.out and "does not match its descriptor" in shown.out, shown.out
        waiting = json.loads(cli("site", "sync", other, "--hub", hub, "--json").out)
        assert waiting["state"] == "waiting" and "stopped" in waiting["message"]
        assert json.loads(cli("site", "status", other, "--json").out)["bundles"] == []  # nobody else imported

        data.write_bytes(good)  # the hub mended
        resumed = json.loads(cli("fleet", "rollout", "resume", "store", *control, "--json").out)
        assert resumed["rollout"]["state"] == "running" and resumed["rollout"]["serial"] == 3
        assert cli("site", "sync", canary, "--hub", hub).code == 0
        assert cli("fleet", "rollout", "advance", "store", *control).code == 0
        assert cli("site", "sync", other, "--hub", hub).code == 0
        status = json.loads(cli("fleet", "rollout", "status", "store", "--hub", hub, *fleet, "--json").out)
        assert [(w["done"], w["failed"]) for w in status["waves"]] == [(1, 0), (1, 0)]
    finally:
        hub_registry.stop()


def test_the_hub_cannot_roll_a_site_back_edit_freeze_or_swap_its_bundle(
        release: Release, registry: Registry, registry_factory: Callable[[], Registry], keys: Keys,
        cli: Callable[..., Run], make_site: SiteFactory, tmp_path: Path) -> None:
    from bundler.oci.client import RegistryClient
    from bundler.pipeline import hub as hubs

    hub = hub_repo(registry)
    client = RegistryClient(registry.host)
    assert cli("publish", release.v1, hub).code == 0
    site = make_site("site", "--name", "store-1", registry=registry_factory().url)
    fleet = ["--fleet", tmp_path / "fleet"]
    start = ["fleet", "rollout", "start", "store", "1.0.0", "--hub", hub, "--wave", "all=*", *fleet]
    assert cli(*start, "--key", keys.release.key).code == 0
    first = hubs.fetch_document(client, "edge/store", hubs.ROLLOUT_TAG, "application/vnd.bundler.rollout.v1+json",
                                1 << 20)
    assert first is not None
    assert cli(*start, "--key", keys.release.key).code == 0  # serial 2
    assert json.loads(cli("site", "sync", site, "--hub", hub, "--json").out)["state"] == "imported"

    def served(data: bytes) -> Run:
        hubs.push_document(client, "edge/store", hubs.ROLLOUT_TAG, "application/vnd.bundler.rollout.v1+json", data)
        return cli("site", "sync", site, "--hub", hub)

    older = served(first)
    assert older.code == 3 and "serial 1; this site has seen serial 2" in older.err, older.err
    doc = json.loads(first)
    doc["rollout"]["serial"] = 9  # edited on the hub: its signature no longer matches
    edited = served(json.dumps(doc).encode())
    assert edited.code == 3 and "not signed as this site's trust policy requires" in edited.err, edited.err
    assert cli("fleet", "rollout", "start", "store", "1.0.0", "--hub", hub, "--wave", "all=*", *fleet,
               "--key", keys.stranger.key).code == 0  # signed, but by a key the site does not trust
    stranger = cli("site", "sync", site, "--hub", hub)
    assert stranger.code == 3 and "not signed as this site's trust policy requires" in stranger.err

    from bundler.fleet import rollout as rollouts
    from bundler.fleet.store import Fleet
    from bundler.keyfiles import load_signing_key
    from bundler.pipeline.rollout import load

    current = load(Fleet(tmp_path / "fleet"), "store")
    key = load_signing_key(keys.release.key)
    expired = current.next(expires="2020-01-01T00:00:00Z")
    frozen = served(rollouts.signed_bytes(expired, [key]))
    assert frozen.code == 3 and "expired at 2020-01-01T00:00:00Z" in frozen.err, frozen.err
    shown = cli("site", "status", site).out  # what the technician sees (the site's services are not up here)
    assert "hub sync: failed at " in shown and "expired at 2020-01-01T00:00:00Z" in shown, shown
    assert "keeps running what it runs" in shown

    assert cli("publish", release.v2, hub).code == 0
    v2 = hubs.target_of(client, hubs.Hub.parse(hub), "2.0.0")
    named = "sha256:" + "ab" * 32  # the signed rollout names this bundle.json; the artifact holds another
    swapped = rollouts.Target(v2.tag, v2.digest, v2.size, named)
    other = served(rollouts.signed_bytes(replace(current, serial=current.serial + 5, version="2.0.0",
                                                 targets={"*": swapped}), [key]))
    assert other.code == 3 and f"the hub's bundle is {v2.manifest_digest}; the rollout names {named}" in other.err, \
        other.err
    imported = json.loads(cli("site", "status", site, "--json").out)["bundles"]
    assert [(b["name"], b["version"]) for b in imported] == [("store", "1.0.0")]  # nothing else imported
    short = rollouts.Target(v2.tag, v2.digest, v2.size - 1, v2.manifest_digest)  # the hub serves more than named
    endless = served(rollouts.signed_bytes(replace(current, serial=current.serial + 6, version="2.0.0",
                                                   targets={"*": short}), [key]))
    assert endless.code == 3 and f"the rollout says {v2.size - 1}" in endless.err, endless.err
    assert [b["version"] for b in json.loads(cli("site", "status", site, "--json").out)["bundles"]] == ["1.0.0"]


def test_a_site_told_to_keep_syncing_takes_each_release_as_its_service(
        release: Release, registry: Registry, keys: Keys, cli: Callable[..., Run], make_site: SiteFactory,
        tmp_path: Path) -> None:
    """`site sync --service --every 1s` keeps the settings; `site up` runs the sync as one of the site's
    services: a rollout published afterwards is imported with nobody at the site; `site down` stops it."""
    import time

    hub = hub_repo(registry)
    site = make_site("site", "--name", "store-1")
    kept = cli("site", "sync", site, "--hub", hub, "--every", "1s", "--service")
    assert kept.code == 0 and "hub-sync.json" in kept.out, kept.err
    assert cli("site", "up", site).code == 0
    assert cli("publish", release.v1, hub).code == 0
    assert cli("fleet", "rollout", "start", "store", "1.0.0", "--hub", hub, "--wave", "all=*", "--key",
               keys.release.key, "--fleet", tmp_path / "fleet").code == 0
    for _ in range(120):
        bundles = json.loads(cli("site", "status", site, "--json").out)["bundles"]
        if bundles:
            break
        time.sleep(0.5)
    assert [(b["name"], b["version"]) for b in bundles] == [("store", "1.0.0")]
    for _ in range(40):  # the import is recorded; the sync's own record follows once the receipt is pushed
        status = cli("site", "status", site)
        if "hub sync: imported at" in status.out or "hub sync: current at" in status.out:
            break
        time.sleep(0.25)
    assert "hub sync: imported at" in status.out or "hub sync: current at" in status.out, status.out
    assert "; next at 20" in status.out, status.out  # written with the sync's record, never after it
    assert (site / "run" / "sync.pid").exists()
    assert cli("site", "down", site).code == 0
    assert not (site / "run" / "sync.pid").exists()


def test_a_person_may_open_the_next_wave_by_hand(release: Release, registry: Registry, keys: Keys,
                                                 cli: Callable[..., Run], tmp_path: Path) -> None:
    """Nobody has taken the canary wave yet: `advance` leaves it; `advance --open-next` opens the next
    wave now, under the next serial; with every wave open it says so (exit 2)."""
    hub = hub_repo(registry)
    assert cli("publish", release.v1, hub).code == 0
    control = ["--hub", hub, "--key", keys.release.key, "--fleet", tmp_path / "fleet", "--json"]
    assert cli("fleet", "rollout", "start", "store", "1.0.0", "--wave", "canary=store-1", "--wave", "rest=store-2",
               *control).code == 0
    left = json.loads(cli("fleet", "rollout", "advance", "store", *control).out)["rollout"]
    assert (left["open"], left["serial"]) == (1, 1)
    opened = json.loads(cli("fleet", "rollout", "advance", "store", "--open-next", *control).out)["rollout"]
    assert (opened["open"], opened["serial"]) == (2, 2)
    again = cli("fleet", "rollout", "advance", "store", "--open-next", *control)
    assert again.code == 2 and "every wave of rollout store 1.0.0 is open already" in again.err


def test_a_usb_import_and_a_hub_sync_mix_on_one_site(release: Release, registry: Registry, keys: Keys,
                                                    cli: Callable[..., Run], make_site: SiteFactory,
                                                    tmp_path: Path) -> None:
    """A store imported 1.0.0 from a stick; the rollout of 1.0.0 finds it current (its receipt goes to
    the hub: the wave counts it done, nothing downloaded); the rollout of 2.0.0 then comes over the hub."""
    hub = hub_repo(registry)
    site = make_site("site", "--name", "store-1", up=True)
    assert cli("import", release.v1, "--site", site).code == 0
    fleet = ["--fleet", tmp_path / "fleet"]
    enroll(cli, fleet, {"store-1": site})
    for bundle in (release.v1, release.v2):
        assert cli("publish", bundle, hub).code == 0
    assert cli("fleet", "rollout", "start", "store", "1.0.0", "--hub", hub, "--wave", "all=*", "--key",
               keys.release.key, *fleet).code == 0
    current = json.loads(cli("site", "sync", site, "--hub", hub, "--json").out)
    assert current["state"] == "current" and current["bytes"] == 0
    status = json.loads(cli("fleet", "rollout", "status", "store", "--hub", hub, *fleet, "--json").out)
    assert [(w["done"], w["pending"]) for w in status["waves"]] == [(1, 0)]
    assert cli("fleet", "rollout", "start", "store", "2.0.0", "--hub", hub, "--wave", "all=*", "--key",
               keys.release.key, *fleet).code == 0
    took = json.loads(cli("site", "sync", site, "--hub", hub, "--json").out)
    assert took["state"] == "imported" and took["imported"]["version"] == "2.0.0"
    assert [b["version"] for b in json.loads(cli("site", "status", site, "--json").out)["bundles"]] == \
        ["1.0.0", "2.0.0"]
