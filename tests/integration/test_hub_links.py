"""Sites pulling from the hub over real links: the hub and the site each in their own network namespace,
joined by a veth link shaped with tc (the store's WAN rate), every address in 127.0.0.0/8
(devtools/netns.py). What a site fetches is measured on the link itself (the hub side's byte counter)."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from bundler.oci.client import RegistryClient
from bundler.site.registry_process import registry_binary, registry_config
from devtools import images as im
from devtools.netns import HUB_ADDRESS, Topology
from tests.conftest import Keys, Registry, listen_options

HUB = f"oci://{HUB_ADDRESS}:5000/edge/store"


@dataclass
class Net:
    topology: Topology
    site: Path
    namespace: str
    fleet: Path
    work: Path
    keys: Keys

    def bundler(self, namespace: str, *args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return self.topology.run(namespace, [sys.executable, "-m", "bundler.cli", *map(str, args)],
                                 timeout=timeout, cwd=self.work)

    def release(self, version: str, size: int, source: Registry, seed: int) -> dict[str, object]:
        """A bundle of one image with a `size`-byte layer, built, then published to the hub (2 MiB layers)."""
        im.push_image(RegistryClient(source.host), "store/app", version, [im.random_layer(size, seed)])
        (self.work / f"{version}.yaml").write_text(
            f"apiVersion: bundler/v1\nkind: Profile\nmetadata: {{name: store, version: {version}}}\n"
            f"spec:\n  images:\n    - {source.host}/store/app:{version}\n")
        built = subprocess.run([sys.executable, "-m", "bundler.cli", "build", f"{version}.yaml", "-o",
                                f"store-{version}.bundle.tar", "--key", str(self.keys.release.key)],
                               cwd=self.work, capture_output=True, text=True)
        assert built.returncode == 0, built.stderr
        published = self.bundler(self.topology.hub, "publish", f"store-{version}.bundle.tar", HUB, "--layer-size",
                                 "2M", "--json")
        assert published.returncode == 0, published.stderr
        started = self.bundler(self.topology.hub, "fleet", "rollout", "start", "store", version, "--hub", HUB,
                               "--wave", "all=*", "--key", self.keys.release.key, "--fleet", self.fleet)
        assert started.returncode == 0, started.stderr
        return dict(json.loads(published.stdout))

    def sync(self, *options: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.topology.command(self.namespace, [
            sys.executable, "-m", "bundler.cli", "site", "sync", self.site, "--hub", HUB, "--json", *options]),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=self.work)


@pytest.fixture
def net(keys: Keys, tmp_path: Path) -> Iterator[Net]:
    """A hub (Distribution, plain HTTP on the hub's bridge address) behind 100 Mbit/s, and one default
    site (`site up` inside its namespace) behind a 20 Mbit/s link."""
    binary = registry_binary()
    assert binary is not None, "docker-registry is needed (.ci/run installs it)"
    with Topology(hub_rate="100mbit") as topology:
        link = topology.site("store-1", "20mbit")
        config = tmp_path / "hub.yml"
        config.write_text(yaml.safe_dump(registry_config(tmp_path / "hub-storage", f"{HUB_ADDRESS}:5000")))
        topology.popen(topology.hub, [binary, "serve", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if topology.run(topology.hub, ["curl", "-sf", f"http://{HUB_ADDRESS}:5000/v2/"]).returncode == 0:
                break
            time.sleep(0.1)
        site = tmp_path / "site"
        made = subprocess.run([sys.executable, "-m", "bundler.cli", "site", "init", "--as-root", site, "--trust-key",
                               keys.release.pub, "--name", "store-1", *listen_options()], capture_output=True,
                              text=True)
        assert made.returncode == 0, made.stderr
        net = Net(topology, site, link.namespace, tmp_path / "fleet", tmp_path, keys)
        up = net.bundler(link.namespace, "site", "up", site)
        assert up.returncode == 0, up.stderr
        assert net.bundler(topology.hub, "fleet", "enroll", site / "site.pub", "--name", "store-1", "--fleet",
                           net.fleet).returncode == 0
        try:
            yield net
        finally:
            net.bundler(link.namespace, "site", "down", site)


def test_a_cut_link_and_a_killed_sync_resume_and_no_byte_crosses_the_link_twice(
        net: Net, registry: Registry) -> None:
    """A 12 MB release over a 20 Mbit/s link, at most 1 MB/s: outside its window nothing crosses the
    link; the link dead for 20 s midway, the same sync finishes; the next release's sync killed midway,
    the next one resumes by Range where it stopped. The sync fetches each byte once; over the link go at most
    1.02x what was needed and what TCP had in flight at the fault."""
    t = net.topology
    first = net.release("1.0.0", 12 << 20, registry, seed=1)
    size = int(first["size"])  # type: ignore[call-overload]

    closed = (dt.datetime.now() + dt.timedelta(hours=2)).strftime("%H:%M")
    later = (dt.datetime.now() + dt.timedelta(hours=3)).strftime("%H:%M")
    before = t.sent_to("store-1")
    outside = net.sync("--window", f"{closed}-{later}")
    out, err = outside.communicate(timeout=120)
    assert outside.returncode == 0 and json.loads(out)["state"] == "outside-window", err
    assert t.sent_to("store-1") - before < 2_000  # the TCP handshake of nothing: no request was made

    # What TCP had sent when the link died (its ACKs lost, so sent again) or the power went (received,
    # never written): bounded by the receive buffers a rate-limited sync sets, 1/8 s of its rate in all
    # (the kernel doubles them), and the read size, no larger. The sync's own count must be exact.
    in_flight = 512 << 10
    before = t.sent_to("store-1")
    sync = net.sync("--max-rate", "1MB/s")
    time.sleep(4)
    t.cut("store-1")
    time.sleep(20)
    t.mend("store-1")
    out, err = sync.communicate(timeout=240)
    assert sync.returncode == 0, err
    result = json.loads(out)
    assert result["state"] == "imported" and result["bytes"] == size
    over_link = t.sent_to("store-1") - before
    assert size <= over_link <= size * 1.02 + in_flight, (over_link, size)

    second = net.release("2.0.0", 12 << 20, registry, seed=2)
    size = int(second["size"])  # type: ignore[call-overload]
    before = t.sent_to("store-1")
    killed = net.sync("--max-rate", "1MB/s", "-j", "1")
    time.sleep(6)
    killed.send_signal(signal.SIGKILL)  # the site's machine loses power midway
    killed.wait()
    partial = sorted((net.site / "staging" / "hub").rglob("*"))
    assert any(p.name.endswith(".partial") for p in partial), partial
    kept = sum(p.stat().st_size for p in partial if p.is_file())  # what the killed sync had written down
    resumed = net.sync("--max-rate", "4MB/s", "-j", "1")
    out, err = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, err
    result = json.loads(out)
    assert result["state"] == "imported" and result["bytes"] == size - kept, (result["bytes"], size, kept)
    over_link = t.sent_to("store-1") - before
    assert size <= over_link <= size * 1.02 + in_flight, (over_link, size)
    status = json.loads(net.bundler(net.namespace, "site", "status", net.site, "--json").stdout)
    assert [b["version"] for b in status["bundles"]] == ["1.0.0", "2.0.0"]


def test_max_rate_holds_over_a_30_second_download(net: Net, registry: Registry) -> None:
    """6 MB at --max-rate 200KB/s on a 20 Mbit/s link: the download takes 30 s, within 10% of the rate."""
    released = net.release("1.0.0", 6 << 20, registry, seed=3)
    before, start = net.topology.sent_to("store-1"), time.monotonic()
    sync = net.sync("--max-rate", "200KB/s")
    out, err = sync.communicate(timeout=240)
    assert sync.returncode == 0, err
    result = json.loads(out)
    assert result["bytes"] == released["size"]
    rate = result["bytes"] / result["download_seconds"]
    assert 0.9 * 200_000 <= rate <= 1.1 * 200_000, rate
    on_link = (net.topology.sent_to("store-1") - before) / (time.monotonic() - start)
    assert on_link <= 1.1 * 200_000, on_link
