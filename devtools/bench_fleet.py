"""`make bench-fleet`: a release rolled out through a hub to 12 stores over shaped links, against the
links' physical floor, in the same run.

Topology (devtools/netns.py, every address in 127.0.0.0/8): a hub namespace (Distribution, plain HTTP)
behind a 100 Mbit/s egress, and 12 store namespaces, each a default site (`site init` + `site up`
inside its namespace) behind its own 20 Mbit/s link. Every site runs `bundler site sync --every 1s`;
the connected side runs `bundler fleet rollout advance --every 1s`.

  release:  a ~60 MB release (4 images of 15 MB layers) published, then rolled out in two waves (2
            canaries, then the other 10); timed from the start of `bundler publish` to the rollout's
            last receipt seen on the hub
  delta:    its successor (one image's layer changed) as per-site deltas (`build --for-fleet` on the
            receipts the sites pushed), published under VERSION-for-SITE and rolled out the same way

  page:     `fleet status` and `fleet status --html` of 190 stores' signed receipts (some failed, some
            stale), best of 3

Floor (per wave, summed): the larger of the hub's bytes / its rate and one site's bytes / its rate.
Goals: release <= 1.3x its floor; bytes over each site's link <= 1.02x the artifact it needed; the
fleet's status at 190 stores, text and HTML, each under 1 s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from bundler.oci.client import RegistryClient
from bundler.site.registry_process import registry_binary, registry_config, start_registry
from devtools import images as im
from devtools.netns import HUB_ADDRESS, Topology

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".bench" / "fleet"
HUB = f"oci://{HUB_ADDRESS}:5000/edge/store"
RATES = {"20mbit": 20e6 / 8, "100mbit": 100e6 / 8}


def bundler(*args: object, namespace: str | None = None, topology: Topology | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "bundler.cli", *map(str, args)]
    if namespace is not None and topology is not None:
        argv = topology.command(namespace, argv)
    done = subprocess.run(argv, capture_output=True, text=True, cwd=WORK)
    if check and done.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))[:200]}: {done.stderr.strip()[-2000:]}")
    return done


def floor(size: int, waves: list[int], hub_rate: float, site_rate: float) -> float:
    """Seconds the links need at least: per wave, the hub's egress or one site's link, whichever is slower."""
    return sum(max(n * size / hub_rate, size / site_rate) for n in waves)


@contextmanager
def fleet_of(count: int, site_rate: str, hub_rate: str) -> Iterator[tuple[Topology, list[Path]]]:
    """The hub and `count` default sites, each up in its namespace and enrolled in the fleet."""
    with Topology(hub_rate=hub_rate) as topology:
        config = WORK / "hub.yml"
        config.write_text(yaml.safe_dump(registry_config(WORK / "hub-storage", f"{HUB_ADDRESS}:5000")))
        topology.popen(topology.hub, [registry_binary() or "docker-registry", "serve", config],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sites = []
        for i in range(1, count + 1):
            name = f"store-{i}"
            link = topology.site(name, site_rate)
            site = WORK / "sites" / name
            bundler("site", "init", "--as-root", site, "--trust-key", WORK / "release.pub", "--name", name)
            bundler("site", "up", site, namespace=link.namespace, topology=topology)
            bundler("fleet", "enroll", site / "site.pub", "--name", name, "--fleet", WORK / "fleet")
            sites.append(site)
        try:
            yield topology, sites
        finally:
            for name, link in topology.sites.items():
                bundler("site", "down", WORK / "sites" / name, namespace=link.namespace, topology=topology,
                        check=False)


def roll_out(topology: Topology, version: str, canaries: int, files: dict[str, Path]) -> dict[str, float]:
    """Publish (the full bundle under VERSION; `files[site]`, a site's delta, under VERSION-for-SITE),
    start the rollout, and wait for its last receipt. Seconds and each site's bytes over its link."""
    before = {name: topology.sent_to(name) for name in topology.sites}
    start = time.monotonic()
    full = bundler("publish", files["*"], HUB, "--json", namespace=topology.hub, topology=topology)
    sizes = {"*": int(json.loads(full.stdout)["size"])}
    deltas: dict[Path, list[str]] = {}
    for site, path in files.items():
        if site != "*":
            deltas.setdefault(path, []).append(site)
    for path, sites in deltas.items():  # one upload per delta, tagged VERSION-for-SITE for each of its sites
        tags = [option for site in sites for option in ("--tag", f"{version}-for-{site}")]
        done = bundler("publish", path, HUB, *tags, "--json", namespace=topology.hub, topology=topology)
        sizes.update(dict.fromkeys(sites, int(json.loads(done.stdout)["size"])))
    names = list(topology.sites)
    bundler("fleet", "rollout", "start", "store", version, "--hub", HUB, "--wave",
            f"canary={','.join(names[:canaries])}", "--wave", "rest=*", "--key", WORK / "release.key", "--fleet",
            WORK / "fleet", namespace=topology.hub, topology=topology)
    bundler("fleet", "rollout", "advance", "store", "--hub", HUB, "--key", WORK / "release.key", "--fleet",
            WORK / "fleet", "--every", "1s", namespace=topology.hub, topology=topology)
    seconds = time.monotonic() - start
    over = {name: (topology.sent_to(name) - before[name]) / sizes.get(name, sizes["*"]) for name in names}
    needed = max(sizes.get(name, sizes["*"]) for name in names)
    return {"seconds": seconds, "size": float(needed), "worst_link_ratio": max(over.values()),
            "best_link_ratio": min(over.values())}


def time_page() -> dict[str, float]:
    """`fleet status` (text and --html) of 190 stores' receipts: the best of 3 of each, in seconds."""
    from devtools.fleet_receipts import paper_fleet

    world = paper_fleet(WORK / "paper")
    best = {}
    for what, extra in (("text", []), ("html", ["--html", str(WORK / "paper" / "fleet.html")])):
        times = []
        for _ in range(3):
            start = time.monotonic()
            bundler("fleet", "status", "--fleet", world.fleet.directory, *extra)
            times.append(time.monotonic() - start)
        best[what] = min(times)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, default=12)
    parser.add_argument("--canaries", type=int, default=2)
    parser.add_argument("--layer-mb", type=int, default=15, help="each of the 4 images' layer (default 15 MB)")
    parser.add_argument("--site-rate", default="20mbit", choices=RATES)
    parser.add_argument("--hub-rate", default="100mbit", choices=RATES)
    parser.add_argument("--only-page", action="store_true", help="only time the fleet's status at 190 stores")
    args = parser.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    page = time_page()
    print(f"fleet page   190 stores: fleet status {page['text']:.2f} s, --html {page['html']:.2f} s (goal < 1 s each)")
    if args.only_page:
        return
    bundler("keygen", WORK / "release")
    source = start_registry(WORK / "source")
    try:
        client = RegistryClient(source.address)
        images = [f"{source.address}/store/app-{i}:1.0" for i in range(4)]
        for i in range(4):
            im.push_image(client, f"store/app-{i}", "1.0", [im.random_layer(args.layer_mb * 1_000_000, 100 + i)])
        profile = "apiVersion: bundler/v1\nkind: Profile\nmetadata: {{name: store, version: {v}}}\nspec:\n  images:\n"
        (WORK / "1.yaml").write_text(profile.format(v="1.0.0") + "".join(f"    - {ref}\n" for ref in images))
        bundler("build", "1.yaml", "-o", "store-1.0.0.bundle.tar", "--key", WORK / "release.key")
        im.push_image(client, "store/app-0", "1.1", [im.random_layer(args.layer_mb * 1_000_000, 200)])
        (WORK / "2.yaml").write_text(profile.format(v="2.0.0") + "".join(
            f"    - {ref.replace('app-0:1.0', 'app-0:1.1')}\n" for ref in images))
        waves = [args.canaries, args.sites - args.canaries]
        hub_rate, site_rate = RATES[args.hub_rate], RATES[args.site_rate]
        with fleet_of(args.sites, args.site_rate, args.hub_rate) as (topology, _):
            loops = [topology.popen(link.namespace, [
                sys.executable, "-m", "bundler.cli", "site", "sync", WORK / "sites" / name, "--hub", HUB, "--every",
                "1s", "--json"], stdout=(WORK / f"sync-{name}.log").open("wb"), stderr=subprocess.STDOUT)
                for name, link in topology.sites.items()]
            try:
                first = roll_out(topology, "1.0.0", args.canaries, {"*": WORK / "store-1.0.0.bundle.tar"})
                first_floor = floor(int(first["size"]), waves, hub_rate, site_rate)
                built = time.monotonic()
                bundler("build", "2.yaml", "-o", "store-2.0.0.bundle.tar", "--key", WORK / "release.key")
                (WORK / "deltas").mkdir()
                out = bundler("build", "2.yaml", "--for-fleet", WORK / "fleet", "-o", WORK / "deltas", "--key",
                              WORK / "release.key").stdout
                build_seconds = time.monotonic() - built
                files: dict[str, Path] = {"*": WORK / "store-2.0.0.bundle.tar"}
                for line in out.splitlines():  # "wrote PATH (SIZE) for store-1, store-2"
                    path, _, for_sites = line.removeprefix("wrote ").partition(" (")
                    for site in for_sites.split(") for ", 1)[1].split(", "):
                        files[site] = Path(path)
                second = roll_out(topology, "2.0.0", args.canaries, files)
                second_floor = floor(int(second["size"]), waves, hub_rate, site_rate)
            finally:
                for loop in loops:
                    loop.terminate()
    finally:
        source.stop()
    result = {"sites": args.sites, "waves": waves, "page_seconds": page, "release": {**first, "floor": first_floor,
                                                               "ratio": first["seconds"] / first_floor},
              "delta": {**second, "floor": second_floor, "ratio": second["seconds"] / second_floor,
                        "build_seconds": build_seconds}}
    (WORK / "result.json").write_text(json.dumps(result, indent=1))
    for what, r in (("release", result["release"]), ("delta", result["delta"])):
        print(f"fleet {what:8} {r['size'] / 1e6:6.1f} MB to {args.sites} sites in {r['seconds']:6.1f} s; link floor "
              f"{r['floor']:5.1f} s: {r['ratio']:.2f}x (goal <= 1.3x); bytes over a site's link "
              f"{r['best_link_ratio']:.3f}-{r['worst_link_ratio']:.3f}x what it needed (goal <= 1.02x)")


if __name__ == "__main__":
    main()
