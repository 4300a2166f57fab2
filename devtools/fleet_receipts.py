"""A fleet of 190 stores on paper: each store's key enrolled and its signed receipt kept, some with a
problem (a failed sync, a two-day-old receipt, a nearly full disk, a registry down), and a stopped
rollout, for the fleet page's test and `make bench-fleet`'s timing of `fleet status`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from bundler.bundle.manifest import canonical_json
from bundler.fleet import rollout as rollouts
from bundler.fleet.documents import REPORT_KIND
from bundler.fleet.store import Fleet
from bundler.signing import generate_key, public_pem
from bundler.site.identity import signed


@dataclass(frozen=True)
class PaperFleet:
    fleet: Fleet
    failed: frozenset[str]  # reported a failed sync (and still run 1.4.0)
    stale: frozenset[str]  # receipts 50 h old
    full: frozenset[str]  # disks 96% full
    down: frozenset[str]  # a registry not answering

    @property
    def troubled(self) -> frozenset[str]:
        return self.failed | self.stale | self.full | self.down


def paper_fleet(directory: Path, count: int = 190) -> PaperFleet:
    """Stores store-1..store-COUNT: every 19th on 1.4.0, the rest on 1.5.0; a rollout of 1.5.0 in two
    waves (canary: store-1, store-2; rest: *), stopped by store-17's failure."""
    fleet = Fleet(directory / "fleet")
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    stamp = now.isoformat().replace("+00:00", "Z")
    digest = {"1.5.0": "sha256:" + "5" * 64, "1.4.0": "sha256:" + "4" * 64}
    world = PaperFleet(fleet, frozenset({"store-17", "store-88", "store-150"}),
                       frozenset(f"store-{i}" for i in (3, 40, 41, 99, 187)), frozenset({"store-60", "store-61"}),
                       frozenset({"store-120"}))
    (directory / "keys").mkdir(parents=True, exist_ok=True)
    for i in range(1, count + 1):
        name, key = f"store-{i}", generate_key()
        (directory / "keys" / f"{name}.pub").write_bytes(public_pem(key.public_key()))
        fleet.enroll(directory / "keys" / f"{name}.pub", name)
        version = "1.4.0" if i % 19 == 0 or name in world.failed else "1.5.0"
        created = now - dt.timedelta(hours=50 if name in world.stale else 1)
        used = 96 if name in world.full else 40
        receipt = {"kind": "bundler/receipt/v1", "site": name, "created": created.isoformat().replace("+00:00", "Z"),
                   "bundles": [{"name": "store", "version": version, "manifest_digest": digest[version]}],
                   "clients": [], "disk": {"total": 100 << 30, "used": used << 30, "free": (100 - used) << 30},
                   "services": {"registry": name not in world.down, "git": True, "updates": True}}
        fleet.take(canonical_json(signed(receipt, key)), name)
        if name in world.failed:
            report = {"kind": REPORT_KIND, "site": name, "created": stamp, "state": "failed",
                      "message": f"blob sha256:{i:064x} does not match its descriptor",
                      "rollout": {"name": "store", "version": "1.5.0", "serial": 3}, "bytes": 0}
            fleet.keep_report(canonical_json(signed(report, key)), name)
    target = rollouts.Target("1.5.0", "sha256:" + "a" * 64, 60_000_000, digest["1.5.0"])
    waves = (rollouts.make_wave("canary", ["store-1", "store-2"]), rollouts.make_wave("rest", ["*"]))
    rollout = rollouts.Rollout("store", "1.5.0", 3, stamp, (now + dt.timedelta(days=14)).isoformat(), waves,
                               {"*": target}, open=2, state="stopped", reason="store-17: blob ...")
    fleet.save_rollout("store", canonical_json({"rollout": rollout.to_dict(), "signatures": []}))
    return world
