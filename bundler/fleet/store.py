"""A fleet directory (`--fleet DIR`, default ./fleet): the site keys enrolled (`keys/<keyid>.pub`) and
the latest receipt of each site (`sites/<name>.json`), each checked against its site's key before it
is kept. A receipt is untrusted input until then: read by the bounded reader, refused (exit 3) when
its key is not enrolled, its signature does not match, or it is not a receipt."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bundler import names, signing
from bundler.bundle.parent import RECEIPT_KIND, Parent, read_parent
from bundler.errors import RefusedError, UsageError
from bundler.fsutil import atomic_write, read_regular
from bundler.keyfiles import load_trusted_key
from bundler.site import identity
from bundler.untrusted import Malformed, Obj

MAX_RECEIPT_BYTES = 64 << 20
MAX_CLOCK_SKEW = dt.timedelta(minutes=10)  # a receipt dated later than now plus this is refused


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {type(value).__name__}")
    return value
KEYS_DIR, SITES_DIR = "keys", "sites"


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
            if doc.value.get("kind") != RECEIPT_KIND:
                raise Malformed(f"kind is not {RECEIPT_KIND!r}")
            site = doc.string("site", names.site_name)
            created = doc.string("created", names.timestamp)
            signature = doc.obj("signature")
            keyid = signature.string("keyid", names.sha256_hex)
            for item in doc.array("bundles"):
                release = item.obj()
                release.string("name", names.bundle_name)
                release.string("version", names.version)
            for item in doc.array("clients"):
                client = item.obj()
                client.string("client", names.text)
                list(client.array("lacking"))
                list(client.array("failed"))  # a Windows client's: steps that failed
                client.boolean("reboot_pending", default=None)
                client.string("aksee_version", names.text, default=None)
            if (disk := doc.obj("disk", None)) is not None:  # what status shows of it: whole numbers
                for field in ("total", "used", "free"):
                    disk.integer(field, default=None)
            if (services := doc.obj("services", None)) is not None:
                for _, healthy in services.entries():
                    healthy.checked(healthy.value, _boolean)
        except (OSError, ValueError) as exc:
            raise RefusedError(f"receipt {path} is not a site receipt: {exc}") from None
        bound = self.check_signed(doc.value, site, keyid, f"receipt {path}")
        if names.parse_time(created) > dt.datetime.now(dt.UTC) + MAX_CLOCK_SKEW:
            raise RefusedError(f"receipt {path} (site {site}) is dated {created}, in the future",
                               hint="check the site's clock (a receipt from the future would hide its later ones)")
        if bound is None:
            atomic_write(self.directory / KEYS_DIR / f"{keyid}.site", site.encode())  # its first receipt names it
        target = self.directory / SITES_DIR / f"{site}.json"
        held = self.receipts().get(site)
        if held is not None and names.parse_time(str(held["created"])) > names.parse_time(created):
            return Added(site, created, False)
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, data)
        return Added(site, created, True)

    def check_signed(self, doc: dict[str, Any], site: str, keyid: str, what: str) -> str | None:
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

    def site_names(self) -> list[str]:
        """Every site the fleet knows: bound to an enrolled key, or holding a receipt."""
        keys = self.directory / KEYS_DIR
        bound = {p.read_text().strip() for p in keys.glob("*.site")} if keys.exists() else set()
        return sorted(bound | set(self.receipt_paths()) - {""}, key=names.natural_key)

    def receipt_paths(self) -> dict[str, Path]:
        """Each site's kept receipt file (checked when added): a `build --since` parent."""
        root = self.directory / SITES_DIR
        return {path.stem: path for path in sorted(root.glob("*.json"))} if root.exists() else {}

    def receipts(self) -> dict[str, dict[str, Any]]:
        """The receipts the fleet keeps (each was checked when added), by site name."""
        root = self.directory / SITES_DIR
        out: dict[str, dict[str, Any]] = {}
        for path in sorted(root.glob("*.json")) if root.exists() else []:
            try:
                out[path.stem] = Obj.load(read_regular(path, MAX_RECEIPT_BYTES), MAX_RECEIPT_BYTES).value
            except (OSError, ValueError) as exc:
                raise UsageError(f"fleet file {path} is unreadable: {exc}") from None
        return out

    def plan(self, name: str, version: str, bytes_for: Callable[[Parent], int]) -> list[dict[str, Any]]:
        """For each site: what it needs of release NAME VERSION: nothing (it runs it), a full bundle (it
        holds nothing), or a delta on its receipt, with `bytes_for(base)` bytes (from a profile:
        what `build --for-fleet` writes; from a full bundle: the files the site lacks)."""
        out: list[dict[str, Any]] = []
        for site, path in self.receipt_paths().items():
            parent = read_parent(path)
            if (name, version) in parent.releases:
                out.append({"site": site, "needs": "nothing", "bytes": 0})
            else:
                out.append({"site": site, "needs": "delta" if parent.files else "full", "base": parent.label,
                            "bytes": bytes_for(parent)})
        return out

    def status(self, now: dt.datetime | None = None) -> dict[str, Any]:
        """Sites x bundle names -> the version each runs, the age of its receipt, clients lacking
        updates, disk use."""
        now = now or dt.datetime.now(dt.UTC)
        sites = []
        for name, doc in self.receipts().items():
            running: dict[str, str] = {}
            for release in doc.get("bundles") or []:
                running[str(release["name"])] = str(release["version"])  # in import order: the last one runs
            clients = doc.get("clients") or []
            lacking = {str(c.get("client")): len(c.get("lacking") or []) for c in clients}
            age = now - names.parse_time(str(doc["created"]))
            sites.append({"site": name, "receipt_created": doc["created"], "receipt_age_hours":
                          round(age.total_seconds() / 3600, 1), "running": running,
                          "clients_lacking_updates": {c: n for c, n in lacking.items() if n},
                          "clients_waiting_restart": sorted(str(c["client"]) for c in clients
                                                            if c.get("reboot_pending") is True),
                          "clients_failed": {str(c["client"]): len(c["failed"]) for c in clients if c.get("failed")},
                          "aksee_versions": {str(c["client"]): str(c["aksee_version"]) for c in clients
                                             if isinstance(c.get("aksee_version"), str)},
                          "disk": doc.get("disk"), "services": doc.get("services")})
        bundles = sorted({b for s in sites for b in s["running"]})
        return {"bundles": bundles, "sites": sites}
