"""A rollout: which sites take which bundle from the hub, in which wave, signed like a bundle.

The hub is any OCI registry and is not trusted: the rollout names each bundle by the digest of its
artifact on the hub and of its bundle.json, carries a serial that only grows (a hub serving an older
rollout is refused) and an expiry (a hub that freezes a site on an old rollout is noticed), and is
signed by the keys of the sites' trust policy. Waves open one after another: `open` says how many are
open; `state` is `running`, `stopped` (a site failed: nobody new starts until a person resumes) or
`aborted`.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from bundler import names, signing
from bundler.bundle.manifest import canonical_json
from bundler.errors import RefusedError
from bundler.fleet.documents import SiteReceipt, SyncReport
from bundler.jsontypes import Doc
from bundler.oci.reference import check_digest
from bundler.untrusted import Malformed, Obj, Value

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

SCHEMA = "bundler/rollout/v1"
ARTIFACT_TYPE = "application/vnd.bundler.rollout.v1+json"
MAX_BYTES = 1 << 20
STATES = ("running", "stopped", "aborted")
EVERY = "*"  # a wave of "every site not named in an earlier wave"; a target for sites without their own


@dataclass(frozen=True)
class Wave:
    name: str
    sites: tuple[str, ...]  # site names, or globs (`*`: every site not in an earlier wave)

    def takes(self, site: str) -> bool:
        return any(fnmatch.fnmatchcase(site, pattern) for pattern in self.sites)


@dataclass(frozen=True)
class Target:
    """A bundle on the hub: its artifact's manifest digest and size there, and its bundle.json digest."""
    tag: str
    digest: str
    size: int
    manifest_digest: str

    def to_dict(self) -> Doc:
        return {"tag": self.tag, "digest": self.digest, "size": self.size, "manifest_digest": self.manifest_digest}


@dataclass(frozen=True)
class Rollout:
    name: str
    version: str
    serial: int
    created: str
    expires: str
    waves: tuple[Wave, ...]
    targets: dict[str, Target]  # site name (or EVERY) -> its bundle
    open: int = 1  # how many waves are open
    state: str = "running"
    reason: str = ""  # why it was stopped or aborted
    keyids: tuple[str, ...] = field(default=(), compare=False)  # who signed it (read from the hub)

    def wave_of(self, site: str) -> int | None:
        """The index of the first wave that takes `site`, or None (not in this rollout)."""
        return next((i for i, wave in enumerate(self.waves) if wave.takes(site)), None)

    def target_for(self, site: str) -> Target | None:
        return self.targets.get(site) or self.targets.get(EVERY)

    def expired(self, now: dt.datetime | None = None) -> bool:
        return names.parse_time(self.expires) <= (now or dt.datetime.now(dt.UTC))

    def next(self, *, open: int | None = None, state: str | None = None, reason: str | None = None,
             expires: str | None = None) -> Rollout:
        """The same rollout, changed, under the next serial (signed anew by whoever publishes it)."""
        return replace(self, serial=self.serial + 1, created=names.format_time(),
                       open=self.open if open is None else open, state=self.state if state is None else state,
                       reason=self.reason if reason is None else reason,
                       expires=self.expires if expires is None else expires)

    def to_dict(self) -> Doc:
        return {"schema": SCHEMA, "name": self.name, "version": self.version, "serial": self.serial,
                "created": self.created, "expires": self.expires,
                "waves": [{"name": w.name, "sites": list(w.sites)} for w in self.waves],
                "targets": {site: t.to_dict() for site, t in sorted(self.targets.items())},
                "open": self.open, "state": self.state, "reason": self.reason}


def signed_bytes(rollout: Rollout, keys: Sequence[ec.EllipticCurvePrivateKey]) -> bytes:
    """The document the hub holds: the rollout and its signatures (each over its canonical JSON)."""
    body = canonical_json(rollout.to_dict())
    return canonical_json({"rollout": rollout.to_dict(), "signatures": [signing.sign(k, body) for k in keys]})


def make_wave(name: str, sites: list[str]) -> Wave:
    """A wave, its name and site patterns checked (ValueError says what is wrong)."""
    names.site_name(name)
    if not sites:
        raise ValueError("a wave names at least one site")
    return Wave(name, tuple(_site_pattern(site) for site in sites))


def _wave(item: Value) -> Wave:
    doc = item.obj()
    name, sites = doc.string("name"), [s.string() for s in doc.array("sites")]
    try:
        return make_wave(name, sites)
    except ValueError as exc:
        raise item.fail(str(exc)) from None


def _site_pattern(value: object) -> str:
    """A site name, or a glob of one (`store-*`, `*`)."""
    if not isinstance(value, str):
        raise ValueError("a site name or pattern is text")
    names.site_name(value.replace("*", "x").replace("?", "x"))
    return value


def parse(doc: Obj) -> Rollout:
    """A rollout's fields, each checked (untrusted input: it came from the hub)."""
    if doc.value.get("schema") != SCHEMA:
        raise Malformed(f"schema is not {SCHEMA!r}")
    targets = {}
    for site, item in doc.obj("targets").entries():
        if site != EVERY:
            names.site_name(site)
        t = item.obj()
        targets[site] = Target(t.string("tag", names.text), t.string("digest", check_digest), t.integer("size"),
                               t.string("manifest_digest", check_digest))
    state = doc.string("state", names.text)
    if state not in STATES:
        raise Malformed(f"state {state!r} is not one of {', '.join(STATES)}")
    waves = tuple(_wave(item) for item in doc.array("waves", required=True))
    return Rollout(doc.string("name", names.bundle_name), doc.string("version", names.version), doc.integer("serial"),
                   doc.string("created", names.timestamp), doc.string("expires", names.timestamp), waves, targets,
                   doc.integer("open"), state, doc.string("reason", names.text, default="") or "")


def read_signed(data: bytes, policy: signing.TrustPolicy, where: str) -> Rollout:
    """The rollout in `data`, if its signatures meet `policy` (the site's trust policy); refused otherwise."""
    try:
        outer = Obj.load(data, MAX_BYTES)
        rollout = parse(outer.obj("rollout"))
        signatures = [{key: text for key, value in entry.obj().entries() if isinstance(text := value.value, str)}
                      for entry in outer.array("signatures", required=True)]  # what else one holds: not judged
    except (Malformed, ValueError) as exc:
        raise RefusedError(f"the rollout at {where} is not a rollout: {exc}") from None
    verdict = signing.evaluate(policy, canonical_json(rollout.to_dict()), signatures)
    if not verdict.met:
        why = "; ".join(p.message for p in verdict.problems) or (
            f"{len(verdict.valid_signers)} valid signature(s) of a trusted key, the site needs {verdict.threshold}")
        raise RefusedError(f"the rollout at {where} is not signed as this site's trust policy requires: {why}",
                           hint="edited on the hub, or signed by a key this site does not trust; nothing was fetched")
    return replace(rollout, keyids=tuple(sorted(verdict.valid_signers)))


def members(rollout: Rollout, known: list[str]) -> list[list[str]]:
    """Each wave's sites: those it names, and the `known` sites its globs take (a site in the first
    wave that takes it), in the order given."""
    out: list[list[str]] = []
    placed: set[str] = set()
    for number, wave in enumerate(rollout.waves):
        named = [p for p in wave.sites if not any(c in p for c in "*?")]
        sites = [s for s in dict.fromkeys([*named, *known]) if s not in placed and rollout.wave_of(s) == number]
        placed.update(sites)
        out.append(sites)
    return out


def site_state(rollout: Rollout, site: str, receipt: SiteReceipt | None,
               report: SyncReport | None) -> tuple[str, str]:
    """(done | failed | pending, why): done when its receipt shows the release it was given; failed when
    its last report of this release says so."""
    target = rollout.target_for(site)
    if target is not None and receipt is not None and receipt.runs(rollout.name, rollout.version,
                                                                   target.manifest_digest):
        return "done", ""
    if report is not None and report.state == "failed" and (
            report.rollout is None or report.rollout == (rollout.name, rollout.version)):
        return "failed", report.message
    return "pending", ""
