"""A fleet directory (`--fleet DIR`, default ./fleet): the site keys enrolled (`keys/<keyid>.pub`) and
the latest receipt of each site (`sites/<name>.json`), each checked against its site's key before it
is kept. A receipt is untrusted input until then: read by the bounded reader, refused (exit 3) when
its key is not enrolled, its signature does not match, or it is not a receipt."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bundler import names, signing
from bundler.errors import RefusedError, UsageError
from bundler.fleet.documents import SiteReceipt, SyncReport
from bundler.fleet.rollout import Rollout
from bundler.fleet.rollout import parse as parse_rollout
from bundler.fsutil import atomic_write, read_regular
from bundler.jsontypes import JsonObject
from bundler.keyfiles import load_trusted_key
from bundler.site import identity
from bundler.untrusted import Obj

T = TypeVar("T")

MAX_RECEIPT_BYTES = 64 << 20
MAX_CLOCK_SKEW = dt.timedelta(minutes=10)  # a receipt dated later than now plus this is refused


KEYS_DIR, SITES_DIR, REPORTS_DIR, ROLLOUTS_DIR = "keys", "sites", "reports", "rollouts"


@dataclass(frozen=True)
class Added:
    """A receipt taken into the fleet: for which site, made when, and whether it was kept."""
    site: str
    created: str
    kept: bool  # False when the fleet already holds a newer receipt of this site


class Fleet:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def enroll(self, pub: Path, name: str | None = None) -> str:
        """Accept receipts signed by this site key, for site `name` only (without one: the name of
        the first receipt it signs); returns its key id."""
        key = load_trusted_key(pub)
        if name is not None:
            try:
                names.site_name(name)
            except ValueError as exc:
                raise UsageError(f"--name: {exc}") from None
            bound = self.bound_name(key.keyid)
            if bound is not None and bound != name:
                raise UsageError(f"key {key.keyid[:12]} is enrolled for site {bound}, not {name}",
                                 hint="a site key speaks for one site; enroll each site's own DIR/site.pub")
        (self.directory / KEYS_DIR).mkdir(parents=True, exist_ok=True)
        atomic_write(self.directory / KEYS_DIR / f"{key.keyid}.pub", signing.public_pem(key.key))  # as parsed
        if name is not None:
            atomic_write(self.directory / KEYS_DIR / f"{key.keyid}.site", name.encode())
        return key.keyid

    def bound_name(self, keyid: str) -> str | None:
        """The site name this key speaks for (set at enrollment, or by the first receipt it signed)."""
        try:
            return (self.directory / KEYS_DIR / f"{keyid}.site").read_text().strip() or None
        except OSError:
            return None

    def _key(self, keyid: str) -> signing.TrustedKey | None:
        path = self.directory / KEYS_DIR / f"{keyid}.pub"
        return load_trusted_key(path) if names.SHA256_RE.match(keyid) and path.exists() else None

    def add(self, path: Path) -> Added:
        """Check a receipt (enrolled key, valid signature, a receipt's shape) and keep it unless the
        fleet holds a newer one of the same site."""
        try:
            data = read_regular(path, MAX_RECEIPT_BYTES)
        except (OSError, ValueError) as exc:
            raise RefusedError(f"receipt {path} is not a site receipt: {exc}") from None
        return self.take(data, str(path))

    def take(self, data: bytes, path: str) -> Added:
        """`add` for a receipt's bytes (from a file, or from the hub: `path` says where, in messages)."""
        try:
            doc = Obj.load(data, MAX_RECEIPT_BYTES)
            receipt = SiteReceipt.parse(doc)
        except (OSError, ValueError) as exc:
            raise RefusedError(f"receipt {path} is not a site receipt: {exc}") from None
        site, created, keyid = receipt.site, receipt.created, receipt.keyid
        bound = self.check_signed(doc.value, site, keyid, f"receipt {path}")
        if names.parse_time(created) > dt.datetime.now(dt.UTC) + MAX_CLOCK_SKEW:
            raise RefusedError(f"receipt {path} (site {site}) is dated {created}, in the future",
                               hint="check the site's clock (a receipt from the future would hide its later ones)")
        if bound is None:
            atomic_write(self.directory / KEYS_DIR / f"{keyid}.site", site.encode())  # its first receipt names it
        target = self.directory / SITES_DIR / f"{site}.json"
        held = self._read_one(target, SiteReceipt.parse) if target.exists() else None  # this site's alone
        if held is not None and names.parse_time(held.created) > names.parse_time(created):
            return Added(site, created, False)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, data)
        return Added(site, created, True)

    def check_signed(self, doc: JsonObject, site: str, keyid: str, what: str) -> str | None:
        """A document a site signed (a receipt, a sync report): by an enrolled key, over exactly its
        content, for the site that key speaks for; refused otherwise. The name the key is bound to."""
        key = self._key(keyid)
        if key is None:
            raise RefusedError(f"{what} (site {site}) is signed by key {keyid[:12]}, which this fleet "
                               "has not enrolled", hint=f"enroll the site's key first: bundler fleet enroll "
                                                       f"{site}.pub (the site's DIR/site.pub)")
        if not identity.signature_valid(doc, key.key):
            raise RefusedError(f"{what} (site {site}): its signature does not match its content "
                               "(edited after the site signed it)",
                               hint="ask the site for a fresh receipt: bundler site receipt DIR -o FILE")
        bound = self.bound_name(keyid)
        if bound is not None and bound != site:
            raise RefusedError(f"{what} claims to be site {site}'s, but is signed by the key of site {bound}",
                               hint="a site key speaks for its own site only: this receipt is forged or misfiled")
        return bound

    def keep_report(self, data: bytes, where: str) -> SyncReport:
        """A site's sync report (from the hub): checked as a receipt is (its enrolled key, over exactly
        its content, for its own site), then kept as the site's latest."""
        try:
            doc = Obj.load(data, MAX_RECEIPT_BYTES)
            report = SyncReport.parse(doc)
        except ValueError as exc:
            raise RefusedError(f"{where} is not a sync report: {exc}") from None
        self.check_signed(doc.value, report.site, report.keyid, where)
        target = self.directory / REPORTS_DIR / f"{report.site}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, data)
        return report

    def reports(self) -> dict[str, SyncReport]:
        """The last sync report of each site (each checked when kept)."""
        return self._read_all(REPORTS_DIR, SyncReport.parse)

    def save_rollout(self, name: str, data: bytes) -> None:
        (self.directory / ROLLOUTS_DIR).mkdir(parents=True, exist_ok=True)
        atomic_write(self.directory / ROLLOUTS_DIR / f"{name}.json", data)

    def rollout(self, name: str) -> Rollout | None:
        """The rollout this fleet published last under `name` (its own record, not read from the hub)."""
        path = self.directory / ROLLOUTS_DIR / f"{name}.json"
        try:
            return parse_rollout(Obj.load(read_regular(path, MAX_RECEIPT_BYTES), MAX_RECEIPT_BYTES).obj("rollout"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise UsageError(f"fleet file {path} is unreadable: {exc}") from None

    def rollouts(self) -> list[Rollout]:
        root = self.directory / ROLLOUTS_DIR
        found = [self.rollout(p.stem) for p in sorted(root.glob("*.json"))] if root.exists() else []
        return [r for r in found if r is not None]

    def _read_all(self, directory: str, parse: Callable[[Obj], T]) -> dict[str, T]:
        root = self.directory / directory
        return {path.stem: self._read_one(path, parse) for path in sorted(root.glob("*.json"))} \
            if root.exists() else {}

    @staticmethod
    def _read_one(path: Path, parse: Callable[[Obj], T]) -> T:
        try:
            return parse(Obj.load(read_regular(path, MAX_RECEIPT_BYTES), MAX_RECEIPT_BYTES))
        except (OSError, ValueError) as exc:
            raise UsageError(f"fleet file {path} is unreadable: {exc}") from None

    def site_names(self) -> list[str]:
        """Every site the fleet knows: bound to an enrolled key, or holding a receipt."""
        keys = self.directory / KEYS_DIR
        bound = {p.read_text().strip() for p in keys.glob("*.site")} if keys.exists() else set()
        return sorted(bound | set(self.receipt_paths()) - {""}, key=names.natural_key)

    def receipt_paths(self) -> dict[str, Path]:
        """Each site's kept receipt file (checked when added): a `build --since` parent."""
        root = self.directory / SITES_DIR
        return {path.stem: path for path in sorted(root.glob("*.json"))} if root.exists() else {}

    def receipts(self) -> dict[str, SiteReceipt]:
        """The receipts the fleet keeps (each was checked when added), by site name."""
        return self._read_all(SITES_DIR, SiteReceipt.parse)
