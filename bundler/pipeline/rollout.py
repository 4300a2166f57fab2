"""`bundler fleet rollout`: the connected side starts a rollout on the hub, watches its waves through the
receipts and reports the sites push there, opens the next wave when one is done and healthy, stops it
when a site fails, and resumes or aborts it when a person says so. Every change is a new rollout under
the next serial, signed with the release keys (sites refuse anything else).

The fleet directory keeps the last rollout it published (`rollouts/NAME.json`); a site's receipt and
report are checked against its enrolled key before they count.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ec

from bundler import names
from bundler.errors import BundlerError, RefusedError, UsageError
from bundler.fleet import rollout as rollouts
from bundler.fleet.store import MAX_RECEIPT_BYTES, Fleet
from bundler.jsontypes import Doc
from bundler.oci.client import RegistryClient
from bundler.pipeline import hub as hubs


@dataclass
class SiteProgress:
    site: str
    state: str  # done, failed, pending
    message: str = ""


@dataclass
class WaveProgress:
    name: str
    open: bool
    sites: list[SiteProgress] = field(default_factory=list)

    def count(self, state: str) -> int:
        return sum(1 for s in self.sites if s.state == state)

    def to_dict(self) -> Doc:
        return {"name": self.name, "open": self.open, **{s: self.count(s) for s in ("done", "failed", "pending")},
                "sites": [{"site": s.site, "state": s.state, "message": s.message} for s in self.sites]}


def load(fleet: Fleet, name: str) -> rollouts.Rollout:
    """The rollout this fleet published last under `name`."""
    found = fleet.rollout(name)
    if found is None:
        raise UsageError(f"this fleet ({fleet.directory}) has started no rollout named {name}",
                         hint="bundler fleet rollout start NAME VERSION --hub oci://... --wave ... --key ...")
    return found


def publish(fleet: Fleet, client: RegistryClient, hub: hubs.Hub, rollout: rollouts.Rollout,
            keys: Sequence[ec.EllipticCurvePrivateKey]) -> None:
    data = rollouts.signed_bytes(rollout, keys)
    hubs.push_document(client, hub.repository, hubs.ROLLOUT_TAG, rollouts.ARTIFACT_TYPE, data)
    fleet.save_rollout(rollout.name, data)


def parse_waves(specs: tuple[str, ...]) -> tuple[rollouts.Wave, ...]:
    """`canary=store-1,store-2` `rest=*`: each wave's name and its sites (names or globs), in order."""
    waves = []
    for spec in specs:
        name, sep, sites = spec.partition("=")
        if not sep or not name or not sites:
            raise UsageError(f"--wave {spec!r} is not NAME=SITE[,SITE]...", hint="--wave canary=store-1,store-2 "
                             "--wave rest='*'")
        try:
            wave = rollouts.make_wave(name, sites.split(","))
        except ValueError as exc:
            raise UsageError(f"--wave {spec!r}: {exc}") from None
        waves.append(wave)
    if not waves:
        raise UsageError("a rollout needs at least one --wave", hint="--wave canary=store-1 --wave rest='*'")
    return tuple(waves)


def start(fleet: Fleet, client: RegistryClient, hub: hubs.Hub, name: str, version: str,
          waves: tuple[rollouts.Wave, ...], keys: Sequence[ec.EllipticCurvePrivateKey],
          expires: dt.timedelta) -> rollouts.Rollout:
    """Name the bundles published for release NAME VERSION (the full one under tag VERSION, each site's
    delta under VERSION-for-SITE) and open the first wave."""
    targets = {rollouts.EVERY: hubs.target_of(client, hub, version)}
    prefix = f"{version}-for-"
    for tag in client.list_tags(hub.repository):
        if tag.startswith(prefix):
            targets[tag.removeprefix(prefix)] = hubs.target_of(client, hub, tag)
    for site, target in targets.items():
        if not target.manifest_digest:
            raise RefusedError(f"{hub.host}/{hub.repository}:{target.tag} (for {site}) was not published by bundler "
                               "publish: it names no bundle.json digest")
    try:
        serial = load(fleet, name).serial + 1
    except UsageError:
        serial = 1
    now = dt.datetime.now(dt.UTC)
    rollout = rollouts.Rollout(name, version, serial, names.format_time(now), names.format_time(now + expires), waves,
                               targets)
    publish(fleet, client, hub, rollout, keys)
    return rollout


def progress(fleet: Fleet, client: RegistryClient, hub: hubs.Hub, rollout: rollouts.Rollout) -> list[WaveProgress]:
    """Each wave's sites: done (its receipt, checked, shows the release), failed (its signed report of
    this release says so), or pending. What the hub holds of each is checked and kept in the fleet (as
    `fleet add` keeps a receipt); what cannot be read there leaves the site pending, saying why."""
    out: list[WaveProgress] = []
    for number, sites in enumerate(rollouts.members(rollout, fleet.site_names())):
        wave = WaveProgress(rollout.waves[number].name, number < rollout.open)
        unreadable: dict[str, str] = {}
        kept = fleet.receipts()
        for site in sites:
            if rollouts.site_state(rollout, site, kept.get(site), None)[0] == "done":
                continue  # its receipt shows the release already: nothing on the hub can change that
            try:
                receipt = hubs.fetch_document(client, hub.receipts(site), "latest", hubs.RECEIPT_TYPE,
                                              MAX_RECEIPT_BYTES)
                if receipt is not None:
                    fleet.take(receipt, f"{hub.host}/{hub.receipts(site)}:latest")
                report = hubs.fetch_document(client, hub.receipts(site), "sync", hubs.REPORT_TYPE, MAX_RECEIPT_BYTES)
                if report is not None:
                    fleet.keep_report(report, f"{hub.host}/{hub.receipts(site)}:sync")
            except BundlerError as exc:
                unreadable[site] = f"unreadable on the hub: {exc}"
        receipts, reports = fleet.receipts(), fleet.reports()
        for site in sites:
            state, why = rollouts.site_state(rollout, site, receipts.get(site), reports.get(site))
            wave.sites.append(SiteProgress(site, state, why or unreadable.get(site, "")))
        out.append(wave)
    return out


def advance(fleet: Fleet, client: RegistryClient, hub: hubs.Hub, rollout: rollouts.Rollout,
            keys: Sequence[ec.EllipticCurvePrivateKey],
            by_hand: bool = False) -> tuple[rollouts.Rollout, list[WaveProgress]]:
    """Stop the rollout when a site of an open wave failed; open the next wave when every site of the
    open ones is done (or `by_hand`: now, a person's decision); else leave it. Returns the rollout now
    on the hub and the waves' progress."""
    waves = progress(fleet, client, hub, rollout)
    if rollout.state != "running":
        return rollout, waves
    if by_hand:
        if rollout.open >= len(rollout.waves):
            raise UsageError(f"every wave of rollout {rollout.name} {rollout.version} is open already")
        changed = rollout.next(open=rollout.open + 1)
        publish(fleet, client, hub, changed, keys)
        return changed, progress(fleet, client, hub, changed)
    failed = [s for w in waves if w.open for s in w.sites if s.state == "failed"]
    if failed:
        reason = "; ".join(f"{s.site}: {s.message}" for s in failed)[:1000]
        changed = rollout.next(state="stopped", reason=reason)
    elif rollout.open < len(rollout.waves) and all(s.state == "done" for w in waves if w.open for s in w.sites):
        changed = rollout.next(open=rollout.open + 1)
    else:
        return rollout, waves
    publish(fleet, client, hub, changed, keys)
    return changed, progress(fleet, client, hub, changed)


def set_state(fleet: Fleet, client: RegistryClient, hub: hubs.Hub, rollout: rollouts.Rollout, state: str,
              keys: Sequence[ec.EllipticCurvePrivateKey], reason: str = "") -> rollouts.Rollout:
    """`resume` (running again: failed sites try again at their next sync) or `abort`."""
    if rollout.state == "aborted":
        raise UsageError(f"rollout {rollout.name} {rollout.version} was aborted; start a new one")
    changed = rollout.next(state=state, reason=reason)
    publish(fleet, client, hub, changed, keys)
    return changed


def as_json(rollout: rollouts.Rollout, waves: list[WaveProgress]) -> Doc:
    return {"rollout": json.loads(json.dumps(rollout.to_dict())), "waves": [w.to_dict() for w in waves]}
