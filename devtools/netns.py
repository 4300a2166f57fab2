"""Real links for the fleet's tests and bench: a hub and sites, each in its own network namespace.

The hub's namespace holds a bridge (127.201.0.1/16); each site's namespace is joined to it by a veth
pair (the site at 127.201.1.N), shaped with `tc`: the hub side's egress is the site's downlink (its
store's WAN rate), the bridge's egress the hub's total. Every address is in 127.0.0.0/8 with
`route_localnet` on (no other range is ever used); each namespace keeps its own 127.0.0.1, where a
site's services listen as they do outside. Needs root; `close()` stops every process started in the
namespaces and deletes them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HUB_ADDRESS = "127.201.0.1"
# jumbo frames: TCP/IP headers are then under 1% of a link's bytes, so a link's byte count measures the
# payload a site fetched (with 1,500-byte frames they add some 4.5%)
MTU = 9000


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _in(namespace: str, *argv: str) -> None:
    done = subprocess.run(["ip", "netns", "exec", namespace, *argv], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"in {namespace}: {' '.join(argv)}: {done.stderr.strip()}")


def _shape(namespace: str, device: str, rate: str) -> None:
    """Egress of `device` at `rate` (`20mbit`): a token bucket, as a WAN link's bottleneck is."""
    _in(namespace, "tc", "qdisc", "replace", "dev", device, "root", "tbf", "rate", rate, "burst", "64kb",
        "latency", "400ms")


@dataclass
class SiteLink:
    """A site's namespace and its link to the hub: `address` is the site's, `device` the hub side's."""
    name: str
    namespace: str
    address: str
    device: str  # the hub side of the veth: its tx bytes are what went over the link to the site
    rate: str


@dataclass
class Topology:
    """`Topology(hub_rate="100mbit")`, then `site("store-1", "20mbit")` for each site."""
    hub_rate: str | None = None
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:5])
    sites: dict[str, SiteLink] = field(default_factory=dict)
    _made: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.hub = f"bn{self.tag}-hub"
        try:
            self._namespace(self.hub)
            _in(self.hub, "ip", "link", "add", "br0", "mtu", str(MTU), "type", "bridge")
            _in(self.hub, "sysctl", "-qw", "net.ipv4.conf.br0.route_localnet=1")
            _in(self.hub, "ip", "addr", "add", f"{HUB_ADDRESS}/16", "dev", "br0")
            _in(self.hub, "ip", "link", "set", "br0", "up")
            if self.hub_rate:
                _shape(self.hub, "br0", self.hub_rate)
        except BaseException:
            self.close()
            raise

    def _namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self._made.append(name)
        _in(name, "ip", "link", "set", "lo", "up")
        _in(name, "sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1")

    def site(self, name: str, rate: str) -> SiteLink:
        """A namespace for site `name`, linked to the hub at `rate` (the hub's egress to it)."""
        number = len(self.sites) + 1
        namespace, hub_side, site_side = f"bn{self.tag}-s{number}", f"h{self.tag}{number}", f"s{self.tag}{number}"
        self._namespace(namespace)
        _ip("link", "add", hub_side, "mtu", str(MTU), "type", "veth", "peer", "name", site_side, "mtu", str(MTU))
        _ip("link", "set", hub_side, "netns", self.hub)
        _ip("link", "set", site_side, "netns", namespace)
        _in(self.hub, "ip", "link", "set", hub_side, "master", "br0")
        _in(self.hub, "ip", "link", "set", hub_side, "up")
        _in(namespace, "sysctl", "-qw", f"net.ipv4.conf.{site_side}.route_localnet=1")
        address = f"127.201.{1 + number // 250}.{1 + number % 250}"
        _in(namespace, "ip", "addr", "add", f"{address}/16", "dev", site_side)
        _in(namespace, "ip", "link", "set", site_side, "up")
        _shape(self.hub, hub_side, rate)
        link = SiteLink(name, namespace, address, hub_side, rate)
        self.sites[name] = link
        return link

    def command(self, namespace: str, argv: Sequence[str | Path]) -> list[str]:
        return ["ip", "netns", "exec", namespace, *map(str, argv)]

    def run(self, namespace: str, argv: Sequence[str | Path], **options: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(namespace, argv), capture_output=True, text=True, **options)

    def popen(self, namespace: str, argv: Sequence[str | Path], **options: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.command(namespace, argv), **options)

    def sent_to(self, site: str) -> int:
        """Bytes the hub has sent over `site`'s link so far (its device's tx counter)."""
        device = self.sites[site].device
        done = subprocess.run(["ip", "netns", "exec", self.hub, "cat", f"/sys/class/net/{device}/statistics/tx_bytes"],
                              capture_output=True, text=True, check=True)
        return int(done.stdout)

    def cut(self, site: str) -> None:
        """The site's link goes dead (its hub side down: packets dropped, connections hang) until `mend`."""
        _in(self.hub, "ip", "link", "set", self.sites[site].device, "down")

    def mend(self, site: str) -> None:
        _in(self.hub, "ip", "link", "set", self.sites[site].device, "up")

    def close(self) -> None:
        """Stop every process in the namespaces (by pid), then delete them (their devices go with them)."""
        for namespace in reversed(self._made):
            pids = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGTERM)
            deadline = time.monotonic() + 5
            while pids and time.monotonic() < deadline:
                pids = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True).stdout.split()
                time.sleep(0.1)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        self._made.clear()

    def __enter__(self) -> Topology:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
